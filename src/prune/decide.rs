//! The decision: from targets, importance statistics and depth metrics to [`Kept`], checked
//! against the model before any work.

use super::select::{self, Kept};
use super::{depth, DepthMetric, DepthScores, PruneOptions};
use crate::calibrate::{CalibrationStats, Dims};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use std::path::Path;

/// Query heads and groups after pruning: `(heads, groups)`. Heads alone keep the groups; groups
/// alone keep the heads per group (modelopt prunes `num_heads_per_group` and
/// `num_query_groups`).
pub(super) fn attention_targets(opts: &PruneOptions, d: &Dims) -> Result<(usize, usize)> {
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
pub(super) fn check_options(opts: &PruneOptions, d: &Dims) -> Result<()> {
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
pub(super) fn decide(
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
