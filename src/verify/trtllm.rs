//! TensorRT-LLM checkpoint: `config.json` + `rank{N}.safetensors` for N < mapping.world_size.
//! The expected tensors of every rank come from the same layout rules `reshard` writes with
//! ([`crate::shard::layout::rank_files`]); quantized linears are then checked against the
//! tensors FORMATS.md 1.6 documents for each module's quant_algo (modelopt's export,
//! `modelopt/torch/export/quant_utils.py`; TensorRT-LLM `docs/source/architecture/
//! checkpoint.md`): config.json's, or for MIXED_PRECISION the module's own from quant_cfg.json
//! ([`crate::model::trtllm_quant`]).

use super::finite::first_non_finite;
use super::{Findings, VerifyOptions};
use crate::model::trtllm_quant::{self, QuantizedLayers};
use crate::model::ModelConfig;
use crate::shard::config::hf_config_from_trtllm;
use crate::shard::layout::{padded_vocab, rank_files, Logical, StoredTensor};
use crate::shard::ShardLayout;
use formats::safetensors::SafetensorsFile;
use formats::Dtype;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// One tensor the checkpoint must hold: name, dtype, shape.
struct Want {
    name: String,
    dtype: Dtype,
    /// Accepted shapes (scales may be stored as `[]` or `[1]`).
    shapes: Vec<Vec<u64>>,
}

pub(super) fn check(dir: &Path, opts: &VerifyOptions) -> Findings {
    let mut f = Findings::default();
    let cfg_path = dir.join("config.json");
    let tl: Value = match std::fs::read_to_string(&cfg_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            f.file(&cfg_path, format!("unreadable: {e}"));
            return f;
        }
    };
    let Some(dtype) = tl.get("dtype").and_then(Value::as_str).and_then(dtype_of) else {
        f.file(
            &cfg_path,
            "field `dtype` is missing or not float16/bfloat16/float32",
        );
        return f;
    };
    for key in ["hidden_act", "vocab_size", "num_hidden_layers"] {
        if tl.get(key).is_none_or(Value::is_null) {
            f.file(&cfg_path, format!("field `{key}` is missing"));
        }
    }
    // The model geometry, read with quantization set aside (reshard refuses quantized input).
    let mut plain = tl.clone();
    plain["quantization"] = Value::Null;
    let (hf, par) = match hf_config_from_trtllm(&cfg_path, &plain) {
        Ok(x) => x,
        Err(e) => {
            f.problems.push(e.to_string());
            return f;
        }
    };
    let cfg = match ModelConfig::from_json(&cfg_path, &hf.to_string()) {
        Ok(c) => c,
        Err(e) => {
            f.problems.push(e.to_string());
            return f;
        }
    };
    if let Err(why) = crate::shard::layout::check_parallel(&cfg, ShardLayout::Trtllm, par) {
        f.file(&cfg_path, why);
        return f;
    }
    let quant = match Quant::read(dir, &tl) {
        Ok(q) => q,
        Err(problems) => {
            // Without the per-module schemes no quantized tensor can be judged.
            f.problems.extend(problems);
            return f;
        }
    };
    let lg = Logical::new(cfg.clone());
    let padded = padded_vocab(cfg.vocab_size, par.tp);
    let ranks = rank_files(&lg, ShardLayout::Trtllm, par, padded);
    if let Some(mixed) = &quant.mixed {
        let weights = ranks
            .iter()
            .flat_map(|r| &r.tensors)
            .map(|t| t.name.as_str());
        f.problems.extend(mixed.keys_naming_no_module(weights));
    }
    for (rank, rf) in ranks.iter().enumerate() {
        let path = dir.join(&rf.name);
        if !path.is_file() {
            f.file(
                &path,
                format!(
                    "missing: rank {rank} of mapping.world_size {} (tp {} × pp {})",
                    par.world(),
                    par.tp,
                    par.pp
                ),
            );
            continue;
        }
        let file = match SafetensorsFile::open(&path) {
            Ok(x) => x,
            Err(e) => {
                f.problems.push(e.to_string());
                continue;
            }
        };
        f.files += 1;
        f.tensors += file.tensors().len();
        let mut wants = Vec::new();
        for t in &rf.tensors {
            wants.extend(quant.wants(t, dtype, cfg.vocab_size, par.tp));
        }
        if quant.kv_cache.is_some() {
            let stage = rank as u64 / par.tp;
            let layers = crate::shard::layout::stage_layers(cfg.num_hidden_layers, par.pp, stage).1;
            for l in 0..layers {
                wants.push(Want {
                    name: format!("transformer.layers.{l}.attention.kv_cache_scaling_factor"),
                    dtype: Dtype::F32,
                    shapes: vec![vec![], vec![1]],
                });
            }
        }
        check_rank(&mut f, &file, &wants, &quant, opts);
    }
    f
}

fn dtype_of(name: &str) -> Option<Dtype> {
    match name {
        "float16" => Some(Dtype::F16),
        "bfloat16" => Some(Dtype::BF16),
        "float32" => Some(Dtype::F32),
        _ => None,
    }
}

fn check_rank(
    f: &mut Findings,
    file: &SafetensorsFile,
    wants: &[Want],
    quant: &Quant,
    opts: &VerifyOptions,
) {
    let path = file.path().to_path_buf();
    if let Some(why) = &quant.unknown {
        f.file(&path, why);
    }
    let mut expected = HashSet::new();
    for w in wants {
        expected.insert(w.name.as_str());
        let Some(t) = file.get(&w.name) else {
            f.tensor(&path, &w.name, "missing");
            continue;
        };
        if !w.shapes.contains(&t.shape) {
            f.tensor(
                &path,
                &w.name,
                format!("shape {:?}, {} {:?}", t.shape, quant.source(), w.shapes[0]),
            );
        }
        if t.dtype != w.dtype && !(w.dtype == Dtype::I8 && t.dtype == Dtype::U8) {
            f.tensor(
                &path,
                &w.name,
                format!(
                    "dtype {}, {} {}",
                    t.dtype.name(),
                    quant.source(),
                    w.dtype.name()
                ),
            );
        }
        let is_scale = is_scale_name(&w.name);
        if is_scale || opts.deep {
            if let Some(i) = first_non_finite(t.dtype, file.data(t)) {
                let what = if is_scale { "scale" } else { "weight" };
                f.tensor(&path, &w.name, format!("{what} element {i} is NaN or Inf"));
            }
            // Deep reads stay within bounded memory: drop the pages behind each tensor.
            file.mapped().release(t.start, t.end - t.start);
        }
    }
    for t in file.tensors() {
        if !expected.contains(t.name.as_str()) {
            f.tensor(
                &path,
                &t.name,
                "unexpected for this architecture, mapping and quant_algo",
            );
        }
    }
}

fn is_scale_name(name: &str) -> bool {
    name.ends_with("scaling_factor") || name.ends_with("per_channel_scale")
}

/// One module's single-scheme block: config.json's `quantization`, or a `quantized_layers`
/// value of quant_cfg.json (TensorRT-LLM `QuantConfig` fields and defaults).
#[derive(Debug, Clone)]
struct Scheme {
    algo: String,
    group_size: u64,
    pre_quant_scale: bool,
}

impl Scheme {
    /// `None` when the block has no quant_algo (unquantized).
    fn from_block(q: &Value) -> Option<Self> {
        Some(Scheme {
            algo: q.get("quant_algo")?.as_str()?.to_string(),
            group_size: q.get("group_size").and_then(Value::as_u64).unwrap_or(64),
            pre_quant_scale: q
                .get("pre_quant_scale")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The quant_algo values whose tensors verify knows (per module).
const KNOWN_ALGOS: [&str; 5] = [
    "FP8",
    "W8A16",
    "W8A8_SQ_PER_CHANNEL",
    "W4A16_AWQ",
    "W4A8_AWQ",
];

/// The quantization of the checkpoint, module by module.
struct Quant {
    kv_cache: Option<String>,
    /// config.json's scheme (single-scheme checkpoints), applied outside `exclude`.
    single: Option<Scheme>,
    exclude: Vec<String>,
    /// MIXED_PRECISION: quant_cfg.json's keys (fnmatch, first match wins).
    mixed: Option<QuantizedLayers>,
    unknown: Option<String>,
}

impl Quant {
    /// config.json's `quantization` and, for MIXED_PRECISION, `dir/quant_cfg.json`; its
    /// problems (missing, unreadable, unknown algos) are the error.
    fn read(dir: &Path, tl: &Value) -> Result<Self, Vec<String>> {
        let q = tl.get("quantization").cloned().unwrap_or(Value::Null);
        let s = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_string);
        let mut quant = Quant {
            kv_cache: s("kv_cache_quant_algo"),
            single: None,
            exclude: q
                .get("exclude_modules")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            mixed: None,
            unknown: None,
        };
        if !trtllm_quant::is_mixed(Some(&q)) {
            quant.single = Scheme::from_block(&q);
            quant.unknown = quant
                .single
                .as_ref()
                .filter(|sc| !KNOWN_ALGOS.contains(&sc.algo.as_str()))
                .map(|sc| {
                    format!(
                        "quantization.quant_algo {}: verify knows {}, MIXED_PRECISION",
                        sc.algo,
                        KNOWN_ALGOS.join(", ")
                    )
                });
            return Ok(quant);
        }
        let layers = QuantizedLayers::read_trtllm(dir, tl).map_err(|e| vec![e.to_string()])?;
        let unknown: Vec<String> = layers
            .layers
            .iter()
            .filter(|(_, b)| !KNOWN_ALGOS.contains(&trtllm_quant::algo_of(b)))
            .map(|(k, b)| {
                format!(
                    "{}: quantized_layers key `{k}`: quant_algo {}: verify knows {}",
                    layers.path.display(),
                    trtllm_quant::algo_of(b),
                    KNOWN_ALGOS.join(", ")
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        quant.mixed = Some(layers);
        Ok(quant)
    }

    /// Which files the expected tensors follow, as problems say it.
    fn source(&self) -> &'static str {
        if self.mixed.is_some() {
            "config.json and quant_cfg.json imply"
        } else {
            "config.json implies"
        }
    }

    /// The scheme of linear `module` (e.g. `transformer.layers.0.attention.qkv`).
    fn scheme_of(&self, module: &str) -> Option<Scheme> {
        if let Some(m) = &self.mixed {
            // TensorRT-LLM `LayerQuantConfig._get_quant_cfg` ignores exclude_modules.
            return m.find(module).and_then(|(_, b)| Scheme::from_block(b));
        }
        if self
            .exclude
            .iter()
            .any(|p| trtllm_quant::fnmatch(p, module))
        {
            return None;
        }
        self.single.clone()
    }

    /// What stored tensor `t` (unquantized geometry) becomes under this config.
    fn wants(&self, t: &StoredTensor, dtype: Dtype, vocab: u64, tp: u64) -> Vec<Want> {
        let mut shapes = vec![t.shape.clone()];
        if t.name.ends_with("vocab_embedding.weight") || t.name == "lm_head.weight" {
            // modelopt pads the vocabulary to a multiple of 64 first (FORMATS.md 1.5).
            let alt = padded_vocab(vocab.next_multiple_of(64), tp) / tp;
            if alt != t.shape[0] {
                shapes.push(vec![alt, t.shape[1]]);
            }
        }
        let plain = |name: String, shapes: Vec<Vec<u64>>| Want {
            name,
            dtype,
            shapes,
        };
        let module = t.name.strip_suffix(".weight");
        let is_linear = module.is_some_and(trtllm_quant::is_decoder_linear);
        let (Some(module), true) = (module, is_linear) else {
            return vec![plain(t.name.clone(), shapes)];
        };
        let Some(scheme) = self.scheme_of(module) else {
            return vec![plain(t.name.clone(), shapes)];
        };
        let algo = scheme.algo.as_str();
        let (out, inp) = (t.shape[0], t.shape[1]);
        let scalar = || vec![vec![], vec![1]];
        let scale = |suffix: &str, shapes: Vec<Vec<u64>>| Want {
            name: format!("{module}.{suffix}"),
            dtype: Dtype::F32,
            shapes,
        };
        let weight = |dtype: Dtype, shape: Vec<u64>| Want {
            name: t.name.clone(),
            dtype,
            shapes: vec![shape],
        };
        match algo {
            "FP8" => vec![
                weight(Dtype::F8E4M3, vec![out, inp]),
                scale("weights_scaling_factor", scalar()),
                scale("activation_scaling_factor", scalar()),
            ],
            "W8A16" => vec![
                weight(Dtype::I8, vec![out, inp]),
                scale("weights_scaling_factor", vec![vec![out]]),
            ],
            "W8A8_SQ_PER_CHANNEL" => vec![
                weight(Dtype::I8, vec![out, inp]),
                scale("weights_scaling_factor", vec![vec![out]]),
                scale("activation_scaling_factor", scalar()),
                scale("prequant_scaling_factor", vec![vec![inp]]),
            ],
            "W4A16_AWQ" | "W4A8_AWQ" => {
                let mut w = vec![
                    weight(Dtype::I8, vec![out / 2, inp]),
                    scale(
                        "weights_scaling_factor",
                        vec![vec![out, inp / scheme.group_size.max(1)]],
                    ),
                ];
                if scheme.pre_quant_scale {
                    w.push(scale("prequant_scaling_factor", vec![vec![inp]]));
                }
                if algo == "W4A8_AWQ" {
                    w.push(scale("weights_scaling_factor_2", scalar()));
                    w.push(scale("activation_scaling_factor", scalar()));
                }
                w
            }
            _ => vec![plain(t.name.clone(), shapes)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awq_linear_wants_packed_weight_and_group_scales() {
        let tl = serde_json::json!({"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 128,
            "pre_quant_scale": true, "exclude_modules": ["lm_head"]}});
        let q = Quant::read(Path::new("."), &tl).unwrap();
        let t = StoredTensor {
            name: "transformer.layers.0.mlp.fc.weight".into(),
            shape: vec![512, 256],
            blocks: vec![],
            redundant: false,
        };
        let w = q.wants(&t, Dtype::F16, 1000, 1);
        assert_eq!(w[0].shapes, vec![vec![256, 256]]);
        assert_eq!(w[0].dtype, Dtype::I8);
        assert_eq!(
            w[1].name,
            "transformer.layers.0.mlp.fc.weights_scaling_factor"
        );
        assert_eq!(w[1].shapes, vec![vec![512, 2]]);
        assert_eq!(w[2].shapes, vec![vec![256]]);
    }

    #[test]
    fn mixed_precision_wants_each_module_s_own_scheme() {
        let tmp = tempfile::tempdir().unwrap();
        let tl = serde_json::json!({"quantization": {"quant_algo": "MIXED_PRECISION",
            "exclude_modules": ["transformer.layers.0.mlp.fc"]}});
        std::fs::write(
            tmp.path().join("quant_cfg.json"),
            serde_json::json!({"quant_algo": "MIXED_PRECISION", "quantized_layers": {
                "transformer.layers.0.mlp.fc": {"quant_algo": "W4A16_AWQ", "group_size": 32},
                "transformer.layers.*.attention.*": {"quant_algo": "FP8"}}})
            .to_string(),
        )
        .unwrap();
        let q = Quant::read(tmp.path(), &tl).unwrap();
        let t = |name: &str| StoredTensor {
            name: name.into(),
            shape: vec![512, 256],
            blocks: vec![],
            redundant: false,
        };
        // exclude_modules does not apply to MIXED_PRECISION (TensorRT-LLM ignores it there).
        let w = q.wants(
            &t("transformer.layers.0.mlp.fc.weight"),
            Dtype::F16,
            1000,
            1,
        );
        assert_eq!(w[1].shapes, vec![vec![512, 8]]);
        let w = q.wants(
            &t("transformer.layers.1.attention.qkv.weight"),
            Dtype::F16,
            1000,
            1,
        );
        assert_eq!((w[0].dtype, w.len()), (Dtype::F8E4M3, 3));
        let w = q.wants(
            &t("transformer.layers.1.mlp.fc.weight"),
            Dtype::F16,
            1000,
            1,
        );
        assert_eq!((w[0].dtype, w.len()), (Dtype::F16, 1));
        std::fs::write(
            tmp.path().join("quant_cfg.json"),
            r#"{"quant_algo": "MIXED_PRECISION", "quantized_layers": {"x": {"quant_algo": "NVFP4"}}}"#,
        )
        .unwrap();
        let problems = Quant::read(tmp.path(), &tl).err().unwrap();
        assert!(problems[0].contains("quant_cfg.json") && problems[0].contains("NVFP4"));
    }
}
