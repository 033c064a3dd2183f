//! `prune`: drop layers and shrink FFN, attention and hidden widths by importance (Minitron,
//! as NeMo's `prune_language_model` runs it through modelopt's `mcore_minitron`), as a
//! streaming slice of the input.
//!
//! The decision ([`Kept`], the kept original indices of every dimension) is made first, from
//! explicit `--drop-layers`, from importance in `calibrate` statistics, or from a masks file;
//! then a [`Plan`] lists every output tensor with its final shape, and tensors that lose rows
//! or columns are made by a [`gather::Gather`] producer in row chunks: runs of whole kept rows
//! copied file to file inside the kernel, rows losing columns read with positioned reads and
//! gathered in a per-worker buffer. Output is in the input's format: a Hugging Face folder
//! (rewritten `config.json`, tokenizer files copied) or one GGUF file (rewritten metadata).

mod decide;
pub mod depth;
pub mod gather;
mod layout;
pub mod masks;
pub mod recipe;
pub mod rewrite;
pub mod select;

pub use layout::plan_kept;

use crate::calibrate::{CalibrateOptions, Dims};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::plan::{self, ExecOptions, Plan};
use select::Kept;
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

/// Plans pruning `input` to `output` (a folder for Hugging Face input, a `.gguf` file for GGUF).
pub fn plan_prune(
    ckpt: &Arc<Checkpoint>,
    input_path: &Path,
    output: &Path,
    opts: &PruneOptions,
) -> Result<PrunePlan> {
    let cfg = model_config(ckpt)?;
    let dims = Dims::of(&cfg);
    decide::check_options(opts, &dims)?;
    let (kept, depth_scores) = match &opts.apply_masks {
        Some(path) => (masks::read(path, dims)?, None),
        None => decide::decide(opts, input_path, ckpt, &cfg)?,
    };
    plan_kept(ckpt, output, kept, depth_scores, opts.max_shard_size)
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
