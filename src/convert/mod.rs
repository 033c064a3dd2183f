//! `convert`: plans for changing format (Hugging Face safetensors ⇄ GGUF), dtype, and file
//! splitting. Each planner reads metadata only and returns a [`Plan`] for the executor.

mod gguf_to_gguf;
mod gguf_to_hf;
mod hf_to_gguf;
mod hf_to_hf;

use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::{Op, Plan, PlannedTensor, Recipe};
use formats::Dtype;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Gguf,
    Hf,
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub format: OutputFormat,
    /// Output dtype of the weights (f32, f16 or bf16); `None` keeps the input's.
    pub dtype: Option<Dtype>,
    /// Hugging Face output: largest shard in bytes.
    pub max_shard_size: u64,
    /// GGUF output: split like llama.cpp's gguf-split.
    pub split: formats::gguf::SplitOptions,
    /// GGUF `general.name`; defaults to the input folder's name.
    pub model_name: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            format: OutputFormat::Gguf,
            dtype: None,
            max_shard_size: formats::safetensors::DEFAULT_MAX_SHARD_SIZE,
            split: formats::gguf::SplitOptions {
                max_tensors: None,
                max_bytes: None,
            },
            model_name: None,
        }
    }
}

/// Plans converting `input` to `output` (a file for GGUF, a folder for Hugging Face).
pub fn plan_convert(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    if let Some(d) = opts.dtype {
        if !matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::Usage(format!(
                "--dtype {} is not supported: use f32, f16 or bf16",
                d.name().to_lowercase()
            )));
        }
    }
    match (input, opts.format) {
        (Checkpoint::Safetensors(_), OutputFormat::Gguf) => hf_to_gguf::plan(input, output, opts),
        (Checkpoint::Safetensors(_), OutputFormat::Hf) => hf_to_hf::plan(input, output, opts),
        (Checkpoint::Gguf(_), OutputFormat::Hf) => gguf_to_hf::plan(input, output, opts),
        (Checkpoint::Gguf(_), OutputFormat::Gguf) => gguf_to_gguf::plan(input, output, opts),
    }
}

/// A planned tensor made from `src` by `ops`, with its offset and size from a format layout.
#[allow(clippy::too_many_arguments)] // one field per column of the source tensor record
fn from_source(
    name: &str,
    dtype: String,
    shape: Vec<u64>,
    offset: u64,
    len: u64,
    src_index: usize,
    src: &SourceTensor,
    ops: Vec<Op>,
) -> PlannedTensor {
    PlannedTensor {
        name: name.to_string(),
        dtype,
        shape,
        offset,
        len,
        recipe: Recipe {
            source: src.name.clone(),
            source_index: src_index,
            row_elements: src.shape.last().copied().unwrap_or(1),
            ops,
        },
        inline: None,
    }
}

/// The cast op from `from` to `to`, or nothing when they are equal.
fn cast_op(from: Dtype, to: Dtype) -> Option<Op> {
    (from != to).then_some(Op::Cast { from, to })
}

/// A source tensor's dense dtype, or an error naming it when it is block-quantized.
fn dense_dtype(input: &Checkpoint, t: &SourceTensor, what: &str) -> Result<Dtype> {
    t.ty.dense()
        .ok_or_else(|| crate::checkpoint::unsupported_type(input, t, what))
}

/// The dtype most 2-D tensors have (ties go to the first seen): the checkpoint's weight dtype.
fn weight_dtype(tensors: &[SourceTensor]) -> Option<Dtype> {
    let mut counts: Vec<(Dtype, usize)> = Vec::new();
    for t in tensors.iter().filter(|t| t.shape.len() >= 2) {
        if let Some(d) = t.ty.dense() {
            match counts.iter_mut().find(|(k, _)| *k == d) {
                Some((_, n)) => *n += 1,
                None => counts.push((d, 1)),
            }
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(d, _)| d)
}

/// Splits an output file path into (folder, file name).
fn split_output_path(output: &Path) -> (PathBuf, String) {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.gguf".into());
    (dir, name)
}

/// The name of the folder holding the input.
fn folder_name(input: &Checkpoint) -> String {
    let root = input.root();
    root.canonicalize()
        .unwrap_or(root)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
