//! `convert`: plans for changing format (Hugging Face safetensors ⇄ GGUF), dtype, and file
//! splitting. Each planner reads metadata only and returns a [`Plan`] for the executor.

mod gguf_to_gguf;
mod gguf_to_hf;
mod hf_to_gguf;
pub(crate) mod hf_to_hf;

pub(crate) use hf_to_hf::carried_files;

use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::{Op, Plan, PlannedFile, PlannedTensor, Recipe};
use formats::Dtype;
use std::collections::HashMap;
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
    /// GGUF output: quantize the weights (`--quant`).
    pub quant: Option<crate::quant::gguf::GgufQuant>,
    /// GGUF output with `quant`: importance weights from `calibrate` statistics (`--imatrix`).
    pub imatrix: Option<PathBuf>,
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
            quant: None,
            imatrix: None,
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
    if opts.format == OutputFormat::Hf && opts.quant.is_some() {
        return Err(Error::Usage("--quant applies to gguf output".into()));
    }
    if opts.imatrix.is_some() && opts.quant.is_none() {
        return Err(Error::Usage("--imatrix needs --quant".into()));
    }
    if opts.quant.is_some() && opts.dtype.is_some() {
        return Err(Error::Usage(
            "--dtype and --quant are exclusive (unquantized tensors stay F32, others F16)".into(),
        ));
    }
    match (input, opts.format) {
        (Checkpoint::Safetensors(_), OutputFormat::Gguf) => hf_to_gguf::plan(input, output, opts),
        (Checkpoint::Safetensors(_), OutputFormat::Hf) => hf_to_hf::plan(input, output, opts),
        (Checkpoint::Gguf(_), OutputFormat::Hf) => gguf_to_hf::plan(input, output, opts),
        (Checkpoint::Gguf(_), OutputFormat::Gguf) => gguf_to_gguf::plan(input, output, opts),
    }
}

/// How each output tensor is made, by output name: the source tensor's index and the ops.
type Recipes = HashMap<String, (usize, Vec<Op>)>;

/// The planned tensor `name` of a format layout, made by its recipe. Conversions keep shapes
/// (casts and row permutations), so the shape is the source's.
fn planned_tensor(
    name: &str,
    dtype: &str,
    (offset, len): (u64, u64),
    recipes: &Recipes,
    sources: &[SourceTensor],
) -> PlannedTensor {
    // Layouts are planned from the recipes' own names, so every name has a recipe.
    let (index, ops) = &recipes[name];
    let src = &sources[*index];
    PlannedTensor {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape: src.shape.clone(),
        offset,
        len,
        recipe: Recipe {
            source: src.name.clone(),
            source_index: *index,
            row_elements: src.shape.last().copied().unwrap_or(1),
            ops: ops.clone(),
        },
        inline: None,
        producer: None,
    }
}

/// Planned files for Hugging Face safetensors shards.
fn safetensors_files(
    shards: Vec<(String, formats::safetensors::FileLayout)>,
    recipes: &Recipes,
    sources: &[SourceTensor],
) -> Vec<PlannedFile> {
    shards
        .into_iter()
        .map(|(name, layout)| PlannedFile {
            name,
            size: layout.total_size,
            tensors: layout
                .tensors
                .iter()
                .map(|t| {
                    let place = (t.start, t.len);
                    planned_tensor(&t.spec.name, t.spec.dtype.name(), place, recipes, sources)
                })
                .collect(),
            header: layout.header,
        })
        .collect()
}

/// Planned files for a GGUF file, or a split set named after `output` when there are several
/// layouts. Tensors without a recipe take their bytes from `inline`.
fn gguf_files(
    layouts: Vec<formats::gguf::GgufLayout>,
    output: &Path,
    recipes: &Recipes,
    inline: &HashMap<String, Vec<u8>>,
    sources: &[SourceTensor],
) -> (PathBuf, Vec<PlannedFile>) {
    let (dir, file_name) = split_output_path(output);
    let prefix = file_name.strip_suffix(".gguf").unwrap_or(&file_name);
    let count = layouts.len();
    let files = layouts
        .into_iter()
        .enumerate()
        .map(|(i, layout)| PlannedFile {
            name: if count == 1 {
                file_name.clone()
            } else {
                formats::gguf::split_file_name(prefix, i, count)
            },
            size: layout.total_size,
            tensors: layout
                .tensors
                .iter()
                .map(|t| {
                    let (name, dtype) = (t.spec.name.as_str(), t.spec.ggml_type.name());
                    match inline.get(name) {
                        Some(bytes) => PlannedTensor {
                            name: name.to_string(),
                            dtype: dtype.to_string(),
                            shape: t.spec.dims.iter().rev().copied().collect(),
                            offset: t.start,
                            len: t.len,
                            recipe: Recipe {
                                source: String::new(),
                                source_index: usize::MAX,
                                row_elements: t.spec.dims.first().copied().unwrap_or(1),
                                ops: Vec::new(),
                            },
                            inline: Some(bytes.clone()),
                            producer: None,
                        },
                        None => planned_tensor(name, dtype, (t.start, t.len), recipes, sources),
                    }
                })
                .collect(),
            header: layout.header,
        })
        .collect();
    (dir, files)
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
