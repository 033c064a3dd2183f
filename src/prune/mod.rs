//! `prune`: drop layers and shrink FFN, attention and hidden widths by importance (Minitron,
//! as NeMo's `prune_language_model` runs it through modelopt's `mcore_minitron`), as a
//! streaming slice of the input.
//!
//! The decision ([`Kept`], the kept original indices of every dimension) is made first, from
//! explicit `--drop-layers`, from importance in `calibrate` statistics, or from a masks file;
//! then a [`Plan`] lists every output tensor with its final shape, and tensors that lose rows
//! or columns are made by a [`gather::Gather`] producer reading the kept bytes straight from
//! the input's mmap in row chunks. Output is in the input's format: a Hugging Face folder
//! (rewritten `config.json`, tokenizer files copied) or one GGUF file (rewritten metadata).

pub mod depth;
pub mod gather;
pub mod masks;
pub mod recipe;
pub mod rewrite;
pub mod select;

use crate::calibrate::{CalibrateOptions, CalibrationStats, Dims};
use crate::checkpoint::{Checkpoint, ElementType, SourceTensor};
use crate::error::{Error, Result};
use crate::model::{self, ModelConfig, TensorRole};
use crate::plan::{self, ExecOptions, OutputLayout, Plan, PlannedFile, PlannedTensor, Recipe};
use crate::plan::{SideFile, TensorProducer};
use formats::gguf::{GgmlType, GgufTensorSpec};
use formats::safetensors::TensorSpec;
use select::Kept;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How layers are ranked for `--target-num-layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DepthMetric {
    /// ShortGPT block influence from the statistics.
    Bi,
    /// Perplexity with the layer removed, on the calibration windows.
    Ppl,
}

impl DepthMetric {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "bi" => Ok(DepthMetric::Bi),
            "ppl" => Ok(DepthMetric::Ppl),
            other => Err(Error::Usage(format!(
                "depth metric `{other}` is not one of: bi, ppl"
            ))),
        }
    }
}

/// What to prune and how to decide it.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Layers to drop (0-based, as in `model.layers.N` / `blk.N`).
    pub drop_layers: Option<Vec<usize>>,
    pub target_num_layers: Option<usize>,
    pub depth_metric: DepthMetric,
    pub target_ffn_hidden_size: Option<usize>,
    pub target_num_attention_heads: Option<usize>,
    pub target_num_query_groups: Option<usize>,
    pub target_hidden_size: Option<usize>,
    /// A `calibrate` statistics file.
    pub calib_stats: Option<PathBuf>,
    /// Calibration text: statistics computed on the fly, and the `ppl` depth metric's windows.
    pub calib_data: Option<PathBuf>,
    pub calibrate: CalibrateOptions,
    /// Apply this decision instead of computing one.
    pub apply_masks: Option<PathBuf>,
    /// Hugging Face output: largest shard.
    pub max_shard_size: u64,
}

/// The plan and the decision behind it.
pub struct PrunePlan {
    pub plan: Plan,
    pub kept: Kept,
    pub params_before: u64,
    pub params_after: u64,
    /// Scores behind a `--target-num-layers` choice (index = original layer).
    pub depth_scores: Option<DepthScores>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DepthScores {
    pub metric: DepthMetric,
    /// Block influence, or perplexity with the layer removed.
    pub scores: Vec<f64>,
    /// `ppl` only: perplexity of the whole model on the same windows.
    pub baseline_perplexity: Option<f64>,
}

/// The model sizes the report prints.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sizes {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
}

impl From<Dims> for Sizes {
    fn from(d: Dims) -> Self {
        Sizes {
            num_hidden_layers: d.layers,
            hidden_size: d.hidden,
            intermediate_size: d.ffn,
            num_attention_heads: d.heads,
            num_key_value_heads: d.kv_heads,
            head_dim: d.head_dim,
        }
    }
}

/// The model config of a checkpoint: `config.json` beside safetensors, or rebuilt from the
/// GGUF metadata (as the forward pass reads it).
pub fn model_config(ckpt: &Checkpoint) -> Result<ModelConfig> {
    match ckpt {
        Checkpoint::Safetensors(_) => ModelConfig::load(&ckpt.root()),
        Checkpoint::Gguf(g) => {
            let path = ckpt.display_path();
            let tensors = ckpt.tensors();
            let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
            let json = crate::import::hf_config::config_from_gguf_with_tensors(
                g.metadata(),
                &names,
                &path,
            )?;
            ModelConfig::from_json(&path, &json.to_string())
        }
    }
}

/// Query heads and groups after pruning: `(heads, groups)`. Heads alone keep the groups; groups
/// alone keep the heads per group (modelopt prunes `num_heads_per_group` and
/// `num_query_groups`).
fn attention_targets(opts: &PruneOptions, d: &Dims) -> Result<(usize, usize)> {
    let per_group = d.heads / d.kv_heads.max(1);
    let (heads, groups) = match (
        opts.target_num_attention_heads,
        opts.target_num_query_groups,
    ) {
        (None, None) => return Ok((d.heads, d.kv_heads)),
        (Some(h), Some(g)) => (h, g),
        (Some(h), None) => (h, d.kv_heads),
        (None, Some(g)) => (g * per_group, g),
    };
    if heads == 0 || groups == 0 {
        return Err(Error::Usage(
            "--target-num-attention-heads and --target-num-query-groups must be at least 1".into(),
        ));
    }
    if heads > d.heads || groups > d.kv_heads || (heads == d.heads && groups == d.kv_heads) {
        return Err(Error::Usage(format!(
            "target {heads} attention heads in {groups} query groups is not smaller than the model's {} heads in {} groups",
            d.heads, d.kv_heads
        )));
    }
    if !heads.is_multiple_of(groups) {
        return Err(Error::Usage(format!(
            "target {heads} attention heads is not divisible by {groups} query groups (heads per group must be uniform, as modelopt requires)"
        )));
    }
    if heads / groups > per_group {
        return Err(Error::Usage(format!(
            "target {heads} heads in {groups} groups needs {} heads per group; the model has {per_group}",
            heads / groups
        )));
    }
    Ok((heads, groups))
}

fn check_width(flag: &str, target: Option<usize>, current: usize, key: &str) -> Result<()> {
    match target {
        Some(0) => Err(Error::Usage(format!("{flag} must be at least 1"))),
        Some(t) if t >= current => Err(Error::Usage(format!(
            "{flag} {t} is not smaller than the model's {key} {current}"
        ))),
        _ => Ok(()),
    }
}

/// Checks the options against the model before any work.
fn check_options(opts: &PruneOptions, d: &Dims) -> Result<()> {
    if opts.drop_layers.is_some() && opts.target_num_layers.is_some() {
        return Err(Error::Usage(
            "--drop-layers and --target-num-layers are alternatives: give one".into(),
        ));
    }
    if let Some(drop) = &opts.drop_layers {
        if let Some(&bad) = drop.iter().find(|&&l| l >= d.layers) {
            return Err(Error::Usage(format!(
                "--drop-layers names layer {bad}, but the model has layers 0..{} (0-based)",
                d.layers - 1
            )));
        }
        if drop.len() >= d.layers {
            return Err(Error::Usage(format!(
                "--drop-layers would drop every one of the {} layers",
                d.layers
            )));
        }
    }
    check_width(
        "--target-num-layers",
        opts.target_num_layers,
        d.layers,
        "num_hidden_layers",
    )?;
    check_width(
        "--target-ffn-hidden-size",
        opts.target_ffn_hidden_size,
        d.ffn,
        "intermediate_size",
    )?;
    check_width(
        "--target-hidden-size",
        opts.target_hidden_size,
        d.hidden,
        "hidden_size",
    )?;
    attention_targets(opts, d)?;
    let any = opts.drop_layers.is_some()
        || opts.target_num_layers.is_some()
        || opts.target_ffn_hidden_size.is_some()
        || opts.target_hidden_size.is_some()
        || opts.target_num_attention_heads.is_some()
        || opts.target_num_query_groups.is_some();
    match (&opts.apply_masks, any) {
        (Some(_), true) => Err(Error::Usage(
            "--apply-masks carries the whole decision: give no other target".into(),
        )),
        (None, false) => Err(Error::Usage(
            "nothing to prune: give --drop-layers, a --target-* size, or --apply-masks".into(),
        )),
        _ => Ok(()),
    }
}

/// Importance statistics: the given file (checked against the model) or computed now.
fn statistics(opts: &PruneOptions, input: &Path, cfg: &ModelConfig) -> Result<CalibrationStats> {
    match (&opts.calib_stats, &opts.calib_data) {
        (Some(path), _) => crate::calibrate::load_stats_for(path, cfg),
        (None, Some(data)) => Ok(crate::calibrate::collect_stats(input, data, &opts.calibrate)?.0),
        (None, None) => Err(Error::Usage(
            "importance-based pruning needs --calib-stats FILE (from `ckpt-opt calibrate`) or --calib-data FILE".into(),
        )),
    }
}

/// Decides what to keep from the options (not from masks).
fn decide(
    opts: &PruneOptions,
    input_path: &Path,
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
) -> Result<(Kept, Option<DepthScores>)> {
    let d = Dims::of(cfg);
    let mut kept = Kept::all(d);
    let (heads, groups) = attention_targets(opts, &d)?;
    let width = opts.target_ffn_hidden_size.is_some()
        || opts.target_hidden_size.is_some()
        || (heads, groups) != (d.heads, d.kv_heads);
    let bi = opts.target_num_layers.is_some() && opts.depth_metric == DepthMetric::Bi;
    let stats = if width || bi {
        Some(statistics(opts, input_path, cfg)?)
    } else {
        None
    };

    let mut depth_scores = None;
    let dropped: Vec<usize> = if let Some(drop) = &opts.drop_layers {
        drop.clone()
    } else if let Some(n) = opts.target_num_layers {
        let scores = match (opts.depth_metric, &stats) {
            (DepthMetric::Bi, Some(s)) => DepthScores {
                metric: DepthMetric::Bi,
                scores: s.block_influence().iter().map(|&v| f64::from(v)).collect(),
                baseline_perplexity: None,
            },
            _ => {
                let data = opts.calib_data.as_ref().ok_or_else(|| {
                    Error::Usage("--depth-metric ppl needs --calib-data FILE (its windows are scored with each layer removed)".into())
                })?;
                let (scores, full) = depth::perplexity_without_each_layer(
                    ckpt,
                    data,
                    &opts.calibrate.sampling,
                    opts.calibrate.batch,
                )?;
                DepthScores {
                    metric: DepthMetric::Ppl,
                    scores,
                    baseline_perplexity: Some(full),
                }
            }
        };
        let drop = depth::lowest(&scores.scores, d.layers - n);
        depth_scores = Some(scores);
        drop
    } else {
        Vec::new()
    };
    kept.layers.retain(|l| !dropped.contains(l));

    let n = kept.layers.len();
    let per_group = d.heads / d.kv_heads.max(1);
    kept.ffn = vec![(0..d.ffn).collect(); n];
    kept.heads = vec![(0..d.heads).collect(); n];
    kept.query_groups = vec![(0..d.kv_heads).collect(); n];
    if let Some(s) = &stats {
        for (at, &l) in kept.layers.iter().enumerate() {
            if let Some(t) = opts.target_ffn_hidden_size {
                kept.ffn[at] = select::top_k(s.ffn_importance(l), t);
            }
            if (heads, groups) != (d.heads, d.kv_heads) {
                let g = select::top_k(s.query_group_importance(l), groups);
                kept.heads[at] =
                    select::heads_in_groups(s.head_importance(l), &g, per_group, heads / groups);
                kept.query_groups[at] = g;
            }
        }
        if let Some(t) = opts.target_hidden_size {
            kept.hidden = select::top_k(s.hidden_importance(), t);
        }
    }
    kept.check()
        .map_err(|(name, why)| Error::Usage(format!("pruning decision: {name}: {why}")))?;
    Ok((kept, depth_scores))
}

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
                        ckpt.clone(),
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

/// Plans pruning `input` to `output` (a folder for Hugging Face input, a `.gguf` file for GGUF).
pub fn plan_prune(
    ckpt: &Arc<Checkpoint>,
    input_path: &Path,
    output: &Path,
    opts: &PruneOptions,
) -> Result<PrunePlan> {
    let cfg = model_config(ckpt)?;
    let dims = Dims::of(&cfg);
    check_options(opts, &dims)?;
    let (kept, depth_scores) = match &opts.apply_masks {
        Some(path) => (masks::read(path, dims)?, None),
        None => decide(opts, input_path, ckpt, &cfg)?,
    };
    plan_kept(ckpt, output, kept, depth_scores, opts.max_shard_size)
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
            for name in crate::convert::CARRIED_FILES {
                let path = root.join(name);
                if path.is_file() {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| formats::FormatError::io(&path, "read", e))?;
                    side_files.push(SideFile {
                        name: (*name).into(),
                        bytes,
                    });
                }
            }
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

/// Held-out quality of the pruned model against the unpruned one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityReport {
    pub data: PathBuf,
    pub ctx: usize,
    pub windows: usize,
    pub tokens_scored: u64,
    pub perplexity_before: f64,
    pub perplexity_after: f64,
    /// Mean KL(unpruned ‖ pruned) per scored token, nats.
    pub kl: f64,
    pub top1_agreement: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub before: Sizes,
    pub after: Sizes,
    pub kept_layers: Vec<usize>,
    pub dropped_layers: Vec<usize>,
    pub depth_scores: Option<DepthScores>,
    pub params_before: u64,
    pub params_after: u64,
    pub bytes_written: u64,
    /// Seconds of the streaming slice alone (deciding and evaluating not included).
    pub seconds: f64,
    pub masks: Option<PathBuf>,
    pub quality: Option<QualityReport>,
}

/// Everything `ckpt-opt prune` does after the plan: where outputs go and what to measure.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub exec: ExecOptions,
    pub emit_masks: Option<PathBuf>,
    /// Held-out text for perplexity and KL before/after.
    pub eval_data: Option<PathBuf>,
    pub eval: crate::eval::EvalOptions,
}

/// Plans, writes the pruned model (and masks), and measures it. Threads come from the current
/// rayon pool (the executor has its own, sized by `exec.threads`).
pub fn prune(
    input: &Path,
    output: &Path,
    opts: &PruneOptions,
    run: &RunOptions,
) -> Result<PruneReport> {
    let ckpt = Arc::new(Checkpoint::open(input)?);
    if let Some(m) = &run.emit_masks {
        if m.parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
        {
            return Err(Error::Usage(format!(
                "--emit-masks {}: its folder does not exist",
                m.display()
            )));
        }
    }
    let planned = plan_prune(&ckpt, input, output, opts)?;
    let started = Instant::now();
    let stats = plan::execute(&planned.plan, &ckpt, &run.exec)?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(m) = &run.emit_masks {
        masks::write(m, &planned.kept)?;
    }
    let quality = match &run.eval_data {
        None => None,
        Some(data) => {
            let before = crate::eval::eval(input, data, None, &run.eval)?;
            let after = crate::eval::eval(output, data, Some(input), &run.eval)?;
            let teacher = after.teacher.as_ref();
            Some(QualityReport {
                data: data.clone(),
                ctx: after.ctx,
                windows: after.windows,
                tokens_scored: after.tokens_scored,
                perplexity_before: before.perplexity,
                perplexity_after: after.perplexity,
                kl: teacher.map_or(0.0, |t| t.kl),
                top1_agreement: teacher.map_or(1.0, |t| t.top1_agreement),
            })
        }
    };
    let kept = &planned.kept;
    Ok(PruneReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        before: kept.source.into(),
        after: kept.target().into(),
        kept_layers: kept.layers.clone(),
        dropped_layers: (0..kept.source.layers)
            .filter(|l| kept.layer_position(*l).is_none())
            .collect(),
        depth_scores: planned.depth_scores,
        params_before: planned.params_before,
        params_after: planned.params_after,
        bytes_written: stats.bytes_written,
        seconds,
        masks: run.emit_masks.clone(),
        quality,
    })
}

/// The human table of a report.
pub fn render(r: &PruneReport) -> String {
    let mut t = format!(
        "wrote {} in {:.2}s ({:.2} GB/s)\n",
        r.output.display(),
        r.seconds,
        r.bytes_written as f64 / r.seconds.max(1e-9) / 1e9
    );
    t.push_str(&format!("{:<22} {:>14} {:>14}\n", "", "before", "after"));
    let (b, a) = (r.before, r.after);
    for (name, x, y) in [
        (
            "num_hidden_layers",
            b.num_hidden_layers,
            a.num_hidden_layers,
        ),
        ("hidden_size", b.hidden_size, a.hidden_size),
        (
            "intermediate_size",
            b.intermediate_size,
            a.intermediate_size,
        ),
        (
            "num_attention_heads",
            b.num_attention_heads,
            a.num_attention_heads,
        ),
        (
            "num_key_value_heads",
            b.num_key_value_heads,
            a.num_key_value_heads,
        ),
        ("head_dim", b.head_dim, a.head_dim),
    ] {
        t.push_str(&format!("{name:<22} {x:>14} {y:>14}\n"));
    }
    t.push_str(&format!(
        "{:<22} {:>14} {:>14}\n",
        "parameters", r.params_before, r.params_after
    ));
    if let Some(q) = &r.quality {
        t.push_str(&format!(
            "{:<22} {:>14.4} {:>14.4}\n",
            "perplexity", q.perplexity_before, q.perplexity_after
        ));
        t.push_str(&format!(
            "KL(unpruned || pruned) {:.6} nats, top-1 agreement {:.4} ({} windows of {} tokens of {})\n",
            q.kl,
            q.top1_agreement,
            q.windows,
            q.ctx,
            q.data.display()
        ));
    }
    if !r.dropped_layers.is_empty() {
        t.push_str(&format!(
            "dropped layers (0-based): {:?}\n",
            r.dropped_layers
        ));
    }
    if let Some(d) = &r.depth_scores {
        let list: Vec<String> = d.scores.iter().map(|v| format!("{v:.5}")).collect();
        let metric = match d.metric {
            DepthMetric::Bi => "block influence",
            DepthMetric::Ppl => "perplexity without the layer",
        };
        t.push_str(&format!("layer scores ({metric}): {}\n", list.join(" ")));
    }
    t
}
