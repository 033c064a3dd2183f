//! The output layout: every output tensor's name, shape and producer, from its role and the
//! kept indices of the dimensions its rows and columns run along; then the files (safetensors
//! shards with the rewritten `config.json`, or one GGUF with rewritten metadata).

use super::select::Kept;
use super::{gather, rewrite, DepthScores, PrunePlan};
use crate::checkpoint::{Checkpoint, ElementType, SourceTensor};
use crate::error::{Error, Result};
use crate::model::{self, TensorRole};
use crate::plan::TensorProducer;
use crate::plan::{OutputLayout, Plan, PlannedFile, PlannedTensor, Recipe, SideFile};
use formats::gguf::{GgmlType, GgufTensorSpec};
use formats::safetensors::TensorSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which dimension a tensor axis runs along.
#[derive(Clone, Copy)]
enum Axis {
    Hidden,
    Ffn,
    QRows,
    KvRows,
}

/// (rows axis, columns axis) of a tensor role; 1-D roles have only a column axis. Rows of the
/// embedding and LM head are the vocabulary, never pruned.
fn axes(role: TensorRole) -> (Option<Axis>, Axis) {
    use TensorRole::*;
    match role {
        Embedding | LmHead | AttnNorm | FfnNorm | OutputNorm => (None, Axis::Hidden),
        Q => (Some(Axis::QRows), Axis::Hidden),
        K | V => (Some(Axis::KvRows), Axis::Hidden),
        QBias => (None, Axis::QRows),
        KBias | VBias => (None, Axis::KvRows),
        AttnOutput => (Some(Axis::Hidden), Axis::QRows),
        Gate | Up => (Some(Axis::Ffn), Axis::Hidden),
        Down => (Some(Axis::Hidden), Axis::Ffn),
    }
}

/// Kept indices along `axis` (layer position `at` for per-layer axes), with the full size;
/// `None` when everything is kept.
fn kept_along(kept: &Kept, axis: Axis, at: Option<usize>) -> (Option<Vec<usize>>, usize) {
    let s = kept.source;
    let (list, full) = match (axis, at) {
        (Axis::Hidden, _) => (kept.hidden.clone(), s.hidden),
        (Axis::Ffn, Some(at)) => (kept.ffn[at].clone(), s.ffn),
        (Axis::QRows, Some(at)) => (kept.q_rows(at), s.heads * s.head_dim),
        (Axis::KvRows, Some(at)) => (kept.kv_rows(at), s.kv_heads * s.head_dim),
        // Per-layer axes only occur on per-layer roles.
        (_, None) => return (None, 0),
    };
    if list.len() == full {
        (None, full)
    } else {
        (Some(list), full)
    }
}

/// `model.layers.N.rest` / `blk.N.rest` split into (prefix, N, rest).
fn layer_of(name: &str) -> Option<(&'static str, usize, &str)> {
    for prefix in ["model.layers.", "blk."] {
        if let Some(tail) = name.strip_prefix(prefix) {
            let (idx, rest) = tail.split_once('.')?;
            if let Ok(l) = idx.parse() {
                return Some((prefix, l, rest));
            }
        }
    }
    None
}

/// One output tensor before layout: its name, shape and how its bytes are made.
struct Output {
    name: String,
    shape: Vec<u64>,
    ty: ElementType,
    source_index: usize,
    producer: Option<Arc<dyn TensorProducer>>,
}

/// Plans every output tensor, in input order, dropping those of dropped layers.
fn outputs(ckpt: &Arc<Checkpoint>, kept: &Kept) -> Result<Vec<Output>> {
    let gguf = matches!(**ckpt, Checkpoint::Gguf(_));
    let paths = ckpt.file_paths();
    let readers = crate::shard::input::Reader::open_all(ckpt)?;
    let s = kept.source;
    let width = kept.target().hidden != s.hidden
        || kept.target().ffn != s.ffn
        || kept.target().heads != s.heads
        || kept.target().kv_heads != s.kv_heads;
    let mut out = Vec::new();
    for (index, src) in ckpt.tensors().into_iter().enumerate() {
        let fail = |why: String| Error::tensor(&paths[src.file], &src.name, why);
        let (name, at) = match layer_of(&src.name) {
            Some((prefix, l, rest)) => match kept.layer_position(l) {
                None => continue, // a dropped layer
                Some(at) => (format!("{prefix}{at}.{rest}"), Some(at)),
            },
            None => (src.name.clone(), None),
        };
        let hf_name = if gguf {
            model::gguf_to_hf_name(&src.name)
        } else {
            Some(src.name.clone())
        };
        let role = hf_name.as_deref().and_then(model::role_of_hf_name);
        let mut shape = src.shape.clone();
        let producer: Option<Arc<dyn TensorProducer>> = match role {
            // llama.cpp's rope_freqs depends on head_dim only, which pruning keeps.
            _ if src.name == model::ROPE_FREQS_GGUF_NAME => None,
            None if width => {
                return Err(fail(
                    "not a tensor of the Llama family's layout, so its pruned shape is unknown"
                        .into(),
                ))
            }
            None => None,
            Some((role, _)) => {
                let (row_axis, col_axis) = axes(role);
                let (rows, full_rows) = match row_axis {
                    Some(a) => kept_along(kept, a, at),
                    None => (None, 0),
                };
                let (cols, full_cols) = kept_along(kept, col_axis, at);
                let expected_1d = row_axis.is_none()
                    && !matches!(role, TensorRole::Embedding | TensorRole::LmHead);
                let shape_ok = if expected_1d {
                    src.shape == [full_cols as u64]
                } else {
                    src.shape.len() == 2
                        && src.shape[1] == full_cols as u64
                        && (row_axis.is_none() || src.shape[0] == full_rows as u64)
                };
                if !shape_ok {
                    return Err(fail(format!(
                        "shape {:?} does not match the model config",
                        src.shape
                    )));
                }
                if rows.is_none() && cols.is_none() {
                    None
                } else {
                    if let Some(r) = &rows {
                        shape[0] = r.len() as u64;
                    }
                    if let (Some(c), Some(last)) = (&cols, shape.last_mut()) {
                        *last = c.len() as u64;
                    }
                    let elem = src.ty.dense().map(|d| d.size());
                    let g = gather::Gather::new(
                        readers[src.file].clone(),
                        src.clone(),
                        elem,
                        rows.as_deref(),
                        cols.as_deref(),
                    )?;
                    Some(Arc::new(g))
                }
            }
        };
        out.push(Output {
            name,
            shape,
            ty: src.ty,
            source_index: index,
            producer,
        });
    }
    Ok(out)
}

fn planned(
    o: &Output,
    dtype: &str,
    (offset, len): (u64, u64),
    sources: &[SourceTensor],
) -> PlannedTensor {
    let src = &sources[o.source_index];
    PlannedTensor {
        name: o.name.clone(),
        dtype: dtype.to_string(),
        shape: o.shape.clone(),
        offset,
        len,
        recipe: Recipe {
            source: src.name.clone(),
            source_index: o.source_index,
            row_elements: src.shape.last().copied().unwrap_or(1),
            ops: Vec::new(),
        },
        inline: None,
        producer: o.producer.clone(),
    }
}

/// Plans the slicing for a decision already made.
pub fn plan_kept(
    ckpt: &Arc<Checkpoint>,
    output: &Path,
    kept: Kept,
    depth_scores: Option<DepthScores>,
    max_shard_size: u64,
) -> Result<PrunePlan> {
    let sources = ckpt.tensors();
    let outs = outputs(ckpt, &kept)?;
    let by_name: HashMap<&str, &Output> = outs.iter().map(|o| (o.name.as_str(), o)).collect();
    let params_before = sources.iter().map(SourceTensor::numel).sum();
    let params_after = outs.iter().map(|o| o.shape.iter().product::<u64>()).sum();
    let paths = ckpt.file_paths();

    let plan = match &**ckpt {
        Checkpoint::Safetensors(model) => {
            let specs = outs
                .iter()
                .map(|o| TensorSpec {
                    name: o.name.clone(),
                    // A safetensors input only holds dense tensors.
                    dtype: o.ty.dense().unwrap_or(formats::Dtype::U8),
                    shape: o.shape.clone(),
                })
                .collect();
            let metadata = model.files()[0].header().metadata.clone();
            let shards =
                formats::safetensors::plan_shards(specs, max_shard_size, metadata.as_ref())?;
            let files = shards
                .files
                .into_iter()
                .map(|(name, layout)| PlannedFile {
                    name,
                    size: layout.total_size,
                    tensors: layout
                        .tensors
                        .iter()
                        .map(|t| {
                            let o = by_name[t.spec.name.as_str()];
                            planned(o, t.spec.dtype.name(), (t.start, t.len), &sources)
                        })
                        .collect(),
                    header: layout.header,
                })
                .collect();
            let mut side_files = Vec::new();
            if let Some(index) = shards.index_json {
                side_files.push(SideFile {
                    name: "model.safetensors.index.json".into(),
                    bytes: index,
                });
            }
            let root = ckpt.root();
            let config_path = root.join("config.json");
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| formats::FormatError::io(&config_path, "read", e))?;
            let config: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::config(&config_path, format!("invalid JSON: {e}")))?;
            side_files.push(SideFile::json(
                "config.json",
                &rewrite::config_json(config, &kept),
            ));
            side_files.extend(crate::convert::carried_files(&root)?);
            Plan {
                job: "prune safetensors".into(),
                target: output.to_path_buf(),
                layout: OutputLayout::Folder,
                files,
                side_files,
            }
        }
        Checkpoint::Gguf(model) => {
            let metadata = rewrite::gguf_metadata(model.metadata(), &kept, params_after)
                .map_err(|why| Error::config(ckpt.display_path(), why))?;
            let mut specs = Vec::with_capacity(outs.len());
            for o in &outs {
                let ggml_type = match o.ty {
                    ElementType::Ggml(t) => t,
                    ElementType::Dense(d) => GgmlType::from_dtype(d).ok_or_else(|| {
                        let src = &sources[o.source_index];
                        crate::checkpoint::unsupported_type(ckpt, src, "written to GGUF")
                    })?,
                };
                specs.push(GgufTensorSpec {
                    name: o.name.clone(),
                    dims: o.shape.iter().rev().copied().collect(),
                    ggml_type,
                });
            }
            let split = formats::gguf::SplitOptions {
                max_tensors: None,
                max_bytes: None,
            };
            let layouts = formats::gguf::plan_split(&metadata, specs, &split)?;
            let (dir, file_name) = split_output_path(output);
            let files = layouts
                .into_iter()
                .map(|layout| PlannedFile {
                    name: file_name.clone(),
                    size: layout.total_size,
                    tensors: layout
                        .tensors
                        .iter()
                        .map(|t| {
                            let o = by_name[t.spec.name.as_str()];
                            planned(o, t.spec.ggml_type.name(), (t.start, t.len), &sources)
                        })
                        .collect(),
                    header: layout.header,
                })
                .collect();
            Plan {
                job: "prune gguf".into(),
                target: dir,
                layout: OutputLayout::Files,
                files,
                side_files: Vec::new(),
            }
        }
    };
    // Every planned size must be what its producer makes (checked again by the executor, but
    // here it fails before any output file is created).
    for f in &plan.files {
        for t in &f.tensors {
            if let Some(p) = &t.producer {
                if p.rows() * p.row_bytes() != t.len {
                    return Err(Error::tensor(
                        &paths[sources[t.recipe.source_index].file],
                        &t.recipe.source,
                        format!(
                            "pruned size {} bytes differs from the planned {} bytes",
                            p.rows() * p.row_bytes(),
                            t.len
                        ),
                    ));
                }
            }
        }
    }
    Ok(PrunePlan {
        plan,
        kept,
        params_before,
        params_after,
        depth_scores,
    })
}

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
