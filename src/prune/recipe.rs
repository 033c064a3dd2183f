//! Recipe files (`--recipe prune.toml` or `.json`): every `prune` option in one reviewable
//! file, as NeMo's prune recipe holds `PruningConfig`. Keys are the long flags with `_` for
//! `-` (`target_ffn_hidden_size = 512`); unknown keys and wrong types are errors naming the
//! field. Relative paths are relative to the recipe file's folder.
//!
//! TOML support is the subset a flat options file needs (no TOML crate is vendored): `key =
//! value` lines with integers, `"strings"`, `true`/`false` and one-line arrays of those, `#`
//! comments, and an optional `[prune]` table header.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Every option a recipe can hold; `None` where the recipe does not set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipeOptions {
    pub drop_layers: Option<String>,
    pub target_num_layers: Option<usize>,
    pub depth_metric: Option<String>,
    pub target_ffn_hidden_size: Option<usize>,
    pub target_num_attention_heads: Option<usize>,
    pub target_num_query_groups: Option<usize>,
    pub target_hidden_size: Option<usize>,
    pub calib_stats: Option<PathBuf>,
    pub calib_data: Option<PathBuf>,
    pub calib_samples: Option<usize>,
    pub calib_seq_len: Option<usize>,
    pub seed: Option<u64>,
    pub emit_masks: Option<PathBuf>,
    pub apply_masks: Option<PathBuf>,
    pub eval_data: Option<PathBuf>,
    pub eval_ctx: Option<usize>,
    pub eval_max_windows: Option<usize>,
    pub report: Option<PathBuf>,
}

const KEYS: &[&str] = &[
    "drop_layers",
    "target_num_layers",
    "depth_metric",
    "target_ffn_hidden_size",
    "target_num_attention_heads",
    "target_num_query_groups",
    "target_hidden_size",
    "calib_stats",
    "calib_data",
    "calib_samples",
    "calib_seq_len",
    "seed",
    "emit_masks",
    "apply_masks",
    "eval_data",
    "eval_ctx",
    "eval_max_windows",
    "report",
];

/// Reads a recipe: JSON when the file is named `.json`, else the TOML subset.
pub fn load(path: &Path) -> Result<RecipeOptions> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(path, format!("cannot read recipe: {e}")))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let table = if is_json {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Error::config(path, "a recipe must be a JSON object")),
            Err(e) => return Err(Error::config(path, format!("invalid JSON: {e}"))),
        }
    } else {
        parse_toml(&text).map_err(|why| Error::config(path, why))?
    };
    let base = path.parent().unwrap_or(Path::new(""));
    from_table(&table, base).map_err(|why| Error::config(path, why))
}

fn from_table(t: &Map<String, Value>, base: &Path) -> std::result::Result<RecipeOptions, String> {
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown field `{k}` (known: {})", KEYS.join(", ")));
    }
    let count = |key: &str| -> std::result::Result<Option<usize>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("field `{key}` must be a non-negative integer, found {v}")),
        }
    };
    let text = |key: &str| -> std::result::Result<Option<String>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!("field `{key}` must be a string, found {v}")),
        }
    };
    let path = |key: &str| -> std::result::Result<Option<PathBuf>, String> {
        Ok(text(key)?.map(|p| base.join(p)))
    };
    let drop_layers = match t.get("drop_layers") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for v in items {
                match v.as_u64() {
                    Some(n) => parts.push(n.to_string()),
                    None => {
                        return Err(format!(
                            "field `drop_layers` must list non-negative layer indices, found {v}"
                        ))
                    }
                }
            }
            Some(parts.join(","))
        }
        Some(v) => {
            return Err(format!(
            "field `drop_layers` must be a string like \"3,5-7\" or a list of indices, found {v}"
        ))
        }
    };
    Ok(RecipeOptions {
        drop_layers,
        target_num_layers: count("target_num_layers")?,
        depth_metric: text("depth_metric")?,
        target_ffn_hidden_size: count("target_ffn_hidden_size")?,
        target_num_attention_heads: count("target_num_attention_heads")?,
        target_num_query_groups: count("target_num_query_groups")?,
        target_hidden_size: count("target_hidden_size")?,
        calib_stats: path("calib_stats")?,
        calib_data: path("calib_data")?,
        calib_samples: count("calib_samples")?,
        calib_seq_len: count("calib_seq_len")?,
        seed: count("seed")?.map(|s| s as u64),
        emit_masks: path("emit_masks")?,
        apply_masks: path("apply_masks")?,
        eval_data: path("eval_data")?,
        eval_ctx: count("eval_ctx")?,
        eval_max_windows: count("eval_max_windows")?,
        report: path("report")?,
    })
}

/// The flat TOML subset described in the module docs, as a JSON object.
fn parse_toml(text: &str) -> std::result::Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        let at = |why: String| format!("line {}: {why}", i + 1);
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if line == "[prune]" {
                continue;
            }
            return Err(at(format!(
                "table `{line}` is not supported (only [prune] or top-level keys)"
            )));
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected `key = value`, found `{line}`")))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(at(format!("`{key}` is not a bare key")));
        }
        let value = parse_value(value.trim()).map_err(|why| at(format!("field `{key}`: {why}")))?;
        if out.insert(key.to_string(), value).is_some() {
            return Err(at(format!("field `{key}` is given twice")));
        }
    }
    Ok(out)
}

/// The line up to a `#` that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if in_string => escaped = !escaped,
            '"' if !escaped => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    line
}

fn parse_value(v: &str) -> std::result::Result<Value, String> {
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated array `{v}`"))?;
        let items = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_value)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok(Value::Array(items));
    }
    if v.starts_with('"') {
        // A basic string is also a JSON string literal for the escapes we accept.
        return match serde_json::from_str::<Value>(v) {
            Ok(s @ Value::String(_)) => Ok(s),
            _ => Err(format!("invalid string `{v}`")),
        };
    }
    match v {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let digits = v.replace('_', "");
    if let Ok(n) = digits.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if let Ok(x) = digits.parse::<f64>() {
        return Ok(Value::from(x));
    }
    Err(format!("cannot read value `{v}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_subset() {
        let t = parse_toml(
            "# a recipe\n[prune]\ntarget_ffn_hidden_size = 512 # neurons\ndrop_layers = [1, 3]\ncalib_data = \"data #1.txt\"\n",
        )
        .unwrap();
        let r = from_table(&t, Path::new("/r")).unwrap();
        assert_eq!(r.target_ffn_hidden_size, Some(512));
        assert_eq!(r.drop_layers.as_deref(), Some("1,3"));
        assert_eq!(r.calib_data, Some(PathBuf::from("/r/data #1.txt")));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |text: &str| {
            let t = parse_toml(text);
            match t {
                Err(e) => e,
                Ok(t) => from_table(&t, Path::new("")).unwrap_err(),
            }
        };
        assert!(bad("target_ffn_hiden_size = 3").contains("unknown field `target_ffn_hiden_size`"));
        assert!(bad("target_hidden_size = \"big\"").contains("field `target_hidden_size`"));
        assert!(bad("target_hidden_size = -4").contains("field `target_hidden_size`"));
        assert!(bad("seed = 1\nseed = 2").contains("line 2"));
        assert!(bad("[quant]").contains("table `[quant]`"));
        assert!(bad("drop_layers = [\"x\"]").contains("field `drop_layers`"));
    }
}
