//! Which quantization each module of a TensorRT-LLM checkpoint has.
//!
//! A single-scheme checkpoint has one `quantization` block in `config.json` (`quant_algo`,
//! `group_size`, … and `exclude_modules`). A mixed one says `"quant_algo": "MIXED_PRECISION"`
//! there and keeps the per-module blocks in `quant_cfg.json` beside it:
//! `{"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": …, "quantized_layers":
//! {"transformer.layers.0.attention.qkv": {"quant_algo": "FP8"}, …}}`. Keys are module names
//! as the rank files spell them (stage-local layer numbers) matched with `fnmatch`, first key
//! wins; a module no key matches is unquantized. Sources: TensorRT-LLM
//! `models/modeling_utils.py` (`PretrainedConfig.from_json_file` reads `quant_cfg.json` and
//! raises without it, `to_layer_quant_config`, `LayerQuantConfig._get_quant_cfg`); modelopt
//! `export/quant_utils.py` `process_layer_quant_config`, `export/model_config_export.py`.
//!
//! The same rules serve the Hugging Face unified layout, whose `quantized_layers` keys are
//! Hugging Face module names (`model.layers.0.self_attn.q_proj`).

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The file beside `config.json` that holds a MIXED_PRECISION checkpoint's per-module blocks.
pub const QUANT_CFG_FILE: &str = "quant_cfg.json";

/// `quant_algo` of a checkpoint whose modules differ.
pub const MIXED_PRECISION: &str = "MIXED_PRECISION";

/// The decoder linears a quant_algo applies to (TensorRT-LLM names, FORMATS.md 1.3).
pub const DECODER_LINEARS: [&str; 5] = [
    "attention.qkv",
    "attention.dense",
    "mlp.fc",
    "mlp.gate",
    "mlp.proj",
];

/// Whether `module` (`transformer.layers.0.mlp.fc`) is one of [`DECODER_LINEARS`].
pub fn is_decoder_linear(module: &str) -> bool {
    DECODER_LINEARS
        .iter()
        .any(|l| module.strip_suffix(l).is_some_and(|m| m.ends_with('.')))
}

/// Whether `quantization` (config.json's block) says MIXED_PRECISION.
pub fn is_mixed(quantization: Option<&Value>) -> bool {
    quantization
        .and_then(|q| q.get("quant_algo"))
        .and_then(Value::as_str)
        == Some(MIXED_PRECISION)
}

/// The per-module blocks of a MIXED_PRECISION checkpoint, in file order.
#[derive(Debug, Clone)]
pub struct QuantizedLayers {
    /// Where they were read (named in errors).
    pub path: PathBuf,
    /// (module-name pattern, its single-scheme block with a string `quant_algo`).
    pub layers: Vec<(String, Value)>,
}

impl QuantizedLayers {
    /// Reads `dir/quant_cfg.json` of a TensorRT-LLM checkpoint whose `config.json` (`tl`)
    /// says MIXED_PRECISION; its `kv_cache_quant_algo` must agree with config.json's.
    pub fn read_trtllm(dir: &Path, tl: &Value) -> Result<Self> {
        let path = dir.join(QUANT_CFG_FILE);
        if !path.is_file() {
            return Err(Error::config(
                &path,
                "missing: config.json's quant_algo is MIXED_PRECISION, whose per-module schemes TensorRT-LLM reads from quant_cfg.json",
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::config(&path, format!("cannot read: {e}")))?;
        let cfg: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("invalid JSON: {e}")))?;
        match cfg.get("quant_algo") {
            Some(Value::String(a)) if a == MIXED_PRECISION => {}
            other => {
                return Err(Error::config(
                    &path,
                    format!(
                        "quant_algo is {}, expected \"MIXED_PRECISION\"",
                        other.unwrap_or(&Value::Null)
                    ),
                ))
            }
        }
        let kv = |v: &Value| v.get("kv_cache_quant_algo").cloned().unwrap_or(Value::Null);
        let (ours, theirs) = (kv(&cfg), kv(tl.get("quantization").unwrap_or(&Value::Null)));
        if ours != theirs {
            return Err(Error::config(
                &path,
                format!("kv_cache_quant_algo {ours} disagrees with config.json's {theirs}"),
            ));
        }
        Self::parse(&path, cfg.get("quantized_layers"))
    }

    /// `quantized_layers` (an object of objects with a string `quant_algo`), read from `path`.
    pub fn parse(path: &Path, layers: Option<&Value>) -> Result<Self> {
        let Some(map) = layers.and_then(Value::as_object) else {
            return Err(Error::config(
                path,
                "quantized_layers is missing or not an object (MIXED_PRECISION lists each quantized module there)",
            ));
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, block) in map {
            if block.get("quant_algo").and_then(Value::as_str).is_none() {
                return Err(Error::config(
                    path,
                    format!("quantized_layers key `{key}`: no string quant_algo in {block}"),
                ));
            }
            out.push((key.clone(), block.clone()));
        }
        Ok(QuantizedLayers {
            path: path.to_path_buf(),
            layers: out,
        })
    }

    /// The block of `module`: the first key that matches it (TensorRT-LLM
    /// `LayerQuantConfig._get_quant_cfg`), `None` when it is unquantized.
    pub fn find(&self, module: &str) -> Option<(&str, &Value)> {
        self.layers
            .iter()
            .find(|(k, _)| fnmatch(k, module))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// One problem line per key that matches none of the modules whose weights are named
    /// `weights` (`….weight`): a module name the checkpoint does not have, which TensorRT-LLM
    /// would silently ignore.
    pub fn keys_naming_no_module<'a>(&self, weights: impl Iterator<Item = &'a str>) -> Vec<String> {
        let modules: Vec<&str> = weights.filter_map(|w| w.strip_suffix(".weight")).collect();
        self.layers
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !modules.iter().any(|m| fnmatch(k, m)))
            .map(|k| {
                format!(
                    "{}: quantized_layers key `{k}` names no module of this checkpoint",
                    self.path.display()
                )
            })
            .collect()
    }
}

/// The `quant_algo` string of a block (checked present by [`QuantizedLayers::parse`]).
pub fn algo_of(block: &Value) -> &str {
    block
        .get("quant_algo")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Python's `fnmatch.fnmatchcase`: `*` any run, `?` one character, `[seq]` / `[!seq]` one
/// character of (not of) a set with ranges; anything else literal. (`fnmatch.fnmatch` also
/// folds case on case-insensitive systems only; module names are compared as written.)
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard matching with one backtrack point (the last `*`).
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p[pi..], n[ni]) {
                Some((true, len)) => Some(pi + len),
                Some((false, _)) => None,
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p` against `c`: (matches, pattern length), or `None` when
/// the bracket is not closed (then it is a literal `[`, as in Python).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    while i < p.len() && (p[i] != ']' || i == start) {
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((hit != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnmatch_like_python() {
        assert!(fnmatch(
            "transformer.layers.*.mlp.fc",
            "transformer.layers.12.mlp.fc"
        ));
        assert!(fnmatch("*", "lm_head"));
        assert!(fnmatch("*lm_head*", "lm_head"));
        assert!(!fnmatch(
            "transformer.layers.1.*",
            "transformer.layers.0.mlp.fc"
        ));
        assert!(fnmatch(
            "transformer.layers.?.mlp.*",
            "transformer.layers.3.mlp.proj"
        ));
        assert!(!fnmatch(
            "transformer.layers.?.mlp.*",
            "transformer.layers.13.mlp.proj"
        ));
        assert!(fnmatch(
            "transformer.layers.[0-1].*",
            "transformer.layers.1.attention.qkv"
        ));
        assert!(!fnmatch(
            "transformer.layers.[!0-1].*",
            "transformer.layers.1.mlp.fc"
        ));
        assert!(fnmatch("a[", "a["));
        assert!(fnmatch("a.b", "a.b") && !fnmatch("a.b", "a.bc") && !fnmatch("a.bc", "a.b"));
        assert!(fnmatch("*.fc", "x.fc") && !fnmatch("*.fc", "x.fc.y"));
        assert!(fnmatch("a*b*c", "aXbYbc") && !fnmatch("a*b*c", "aXbYbd"));
    }

    fn write(dir: &Path, v: &Value) {
        std::fs::write(dir.join(QUANT_CFG_FILE), v.to_string()).unwrap();
    }

    #[test]
    fn first_matching_key_wins_and_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let tl =
            json!({"quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": null}});
        assert!(is_mixed(tl.get("quantization")));
        let e = QuantizedLayers::read_trtllm(tmp.path(), &tl).unwrap_err();
        assert!(e.to_string().contains("quant_cfg.json") && e.to_string().contains("missing"));
        write(
            tmp.path(),
            &json!({"quant_algo": "MIXED_PRECISION", "quantized_layers": {
                "transformer.layers.0.mlp.fc": {"quant_algo": "W4A16_AWQ", "group_size": 64},
                "transformer.layers.*": {"quant_algo": "FP8"}}}),
        );
        let q = QuantizedLayers::read_trtllm(tmp.path(), &tl).unwrap();
        assert_eq!(
            q.find("transformer.layers.0.mlp.fc")
                .map(|(_, b)| algo_of(b)),
            Some("W4A16_AWQ")
        );
        assert_eq!(
            q.find("transformer.layers.1.mlp.fc")
                .map(|(_, b)| algo_of(b)),
            Some("FP8")
        );
        assert!(q.find("lm_head").is_none());
        let weights = ["transformer.layers.0.mlp.fc.weight"];
        assert!(q.keys_naming_no_module(weights.into_iter()).is_empty());
        let stray = q.keys_naming_no_module(["lm_head.weight"].into_iter());
        assert_eq!(stray.len(), 2);
        assert!(stray[1].contains("quant_cfg.json: quantized_layers key `transformer.layers.*`"));

        let bad = |v: Value, needle: &str| {
            write(tmp.path(), &v);
            let e = QuantizedLayers::read_trtllm(tmp.path(), &tl)
                .unwrap_err()
                .to_string();
            assert!(e.contains("quant_cfg.json") && e.contains(needle), "{e}");
        };
        bad(
            json!({"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": "FP8", "quantized_layers": {}}),
            "disagrees",
        );
        bad(
            json!({"quant_algo": "FP8", "quantized_layers": {}}),
            "expected",
        );
        bad(json!({"quant_algo": "MIXED_PRECISION"}), "quantized_layers");
        bad(
            json!({"quant_algo": "MIXED_PRECISION", "quantized_layers": {"x": {"group_size": 4}}}),
            "`x`",
        );
        std::fs::write(tmp.path().join(QUANT_CFG_FILE), "{").unwrap();
        let e = QuantizedLayers::read_trtllm(tmp.path(), &tl).unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
    }
}
