//! `inspect`: what a checkpoint holds, from metadata alone.

use crate::checkpoint::{Checkpoint, CheckpointFormat};
use crate::error::Result;
use crate::model::ModelConfig;
use formats::gguf::MetadataValue;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub format: CheckpointFormat,
    pub files: Vec<FileSummary>,
    /// `architectures[0]` of config.json, or GGUF `general.architecture`.
    pub architecture: Option<String>,
    pub config: Option<ConfigSummary>,
    /// A config.json that is present but unusable (the tensors are still listed).
    pub config_error: Option<String>,
    pub parameters: u64,
    pub bytes_by_dtype: BTreeMap<String, u64>,
    /// GGUF metadata (long arrays summarised).
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    pub tensors: Vec<TensorSummary>,
}

#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ConfigSummary {
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    pub tie_word_embeddings: bool,
}

#[derive(Debug, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
    pub file: usize,
}

pub fn inspect(path: &Path) -> Result<Inspection> {
    let ckpt = Checkpoint::open(path)?;
    let sources = ckpt.tensors();
    let mut bytes_by_dtype = BTreeMap::new();
    for t in &sources {
        *bytes_by_dtype.entry(t.ty.name()).or_insert(0) += t.len;
    }
    let files = ckpt
        .file_paths()
        .into_iter()
        .enumerate()
        .map(|(i, path)| FileSummary {
            path,
            bytes: ckpt.mapped(i).len(),
        })
        .collect();
    let (architecture, config, config_error, metadata) = match &ckpt {
        Checkpoint::Safetensors(_) => {
            let config_path = ckpt.root().join("config.json");
            if config_path.is_file() {
                match ModelConfig::load(&ckpt.root()) {
                    Ok(cfg) => (
                        cfg.raw["architectures"][0].as_str().map(str::to_string),
                        Some(summary(&cfg)),
                        None,
                        None,
                    ),
                    Err(e) => (None, None, Some(e.to_string()), None),
                }
            } else {
                (None, None, None, None)
            }
        }
        Checkpoint::Gguf(model) => {
            let metadata = model
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), metadata_json(v)))
                .collect();
            let arch = model
                .get("general.architecture")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            (arch, None, None, Some(metadata))
        }
    };
    Ok(Inspection {
        path: path.to_path_buf(),
        format: ckpt.format(),
        files,
        architecture,
        config,
        config_error,
        parameters: sources.iter().map(|t| t.numel()).sum(),
        bytes_by_dtype,
        metadata,
        tensors: sources
            .into_iter()
            .map(|t| TensorSummary {
                dtype: t.ty.name(),
                bytes: t.len,
                file: t.file,
                shape: t.shape,
                name: t.name,
            })
            .collect(),
    })
}

fn summary(cfg: &ModelConfig) -> ConfigSummary {
    ConfigSummary {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
        vocab_size: cfg.vocab_size,
        tie_word_embeddings: cfg.tie_word_embeddings,
    }
}

/// GGUF metadata as JSON; arrays longer than 16 items become `{"array": type, "len": n}`.
fn metadata_json(v: &MetadataValue) -> serde_json::Value {
    use serde_json::json;
    match v {
        MetadataValue::U8(x) => json!(x),
        MetadataValue::I8(x) => json!(x),
        MetadataValue::U16(x) => json!(x),
        MetadataValue::I16(x) => json!(x),
        MetadataValue::U32(x) => json!(x),
        MetadataValue::I32(x) => json!(x),
        MetadataValue::F32(x) => json!(x),
        MetadataValue::Bool(x) => json!(x),
        MetadataValue::String(x) => json!(x),
        MetadataValue::U64(x) => json!(x),
        MetadataValue::I64(x) => json!(x),
        MetadataValue::F64(x) => json!(x),
        MetadataValue::Array(ty, items) if items.len() > 16 => {
            json!({"array": format!("{ty:?}").to_lowercase(), "len": items.len()})
        }
        MetadataValue::Array(_, items) => items.iter().map(metadata_json).collect(),
    }
}

/// The human-readable report.
pub fn render(ins: &Inspection, show_tensors: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "path:         {}", ins.path.display());
    let _ = writeln!(
        out,
        "format:       {} ({} file{})",
        serde_json::to_value(ins.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        ins.files.len(),
        if ins.files.len() == 1 { "" } else { "s" }
    );
    if let Some(a) = &ins.architecture {
        let _ = writeln!(out, "architecture: {a}");
    }
    if let Some(c) = &ins.config {
        let _ = writeln!(
            out,
            "config:       hidden {}, ffn {}, layers {}, heads {} (kv {}), head_dim {}, vocab {}, tied embeddings {}",
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.vocab_size,
            if c.tie_word_embeddings { "yes" } else { "no" }
        );
    }
    if let Some(e) = &ins.config_error {
        let _ = writeln!(out, "config:       unusable: {e}");
    }
    let _ = writeln!(out, "parameters:   {}", group_digits(ins.parameters));
    let _ = writeln!(out, "tensors:      {}", ins.tensors.len());
    for (dtype, bytes) in &ins.bytes_by_dtype {
        let _ = writeln!(out, "  {dtype:<8} {}", human_bytes(*bytes));
    }
    if let Some(meta) = &ins.metadata {
        let _ = writeln!(out, "metadata:");
        for (k, v) in meta {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    if show_tensors {
        let width = ins.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:<8}  {:<20}  {:>12}  file",
            "name", "dtype", "shape", "bytes"
        );
        for t in &ins.tensors {
            let _ = writeln!(
                out,
                "{:<width$}  {:<8}  {:<20}  {:>12}  {}",
                t.name,
                t.dtype,
                format!("{:?}", t.shape),
                t.bytes,
                ins.files[t.file]
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
        }
    }
    out
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_bytes() {
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(12), "12");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
    }
}
