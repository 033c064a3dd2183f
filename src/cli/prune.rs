//! `prune`: its arguments and run (recipe file merged under the flags).

use super::*;

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    /// Input: a Hugging Face folder or a GGUF file.
    pub input: PathBuf,
    /// Output: a folder (Hugging Face input) or a .gguf file (GGUF input).
    pub output: PathBuf,
    /// All options in a TOML (flat key = value) or JSON file; flags given here override it.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Layers to drop, 0-based as in model.layers.N / blk.N, e.g. 3,5-7.
    #[arg(long)]
    pub drop_layers: Option<String>,
    /// Keep this many layers, dropping the least important (see --depth-metric).
    #[arg(long)]
    pub target_num_layers: Option<usize>,
    /// Layer ranking for --target-num-layers: bi (block influence from the statistics) or ppl
    /// (perplexity with the layer removed, on the --calib-data windows). Default bi.
    #[arg(long)]
    pub depth_metric: Option<String>,
    /// New intermediate_size (FFN neurons kept per layer by importance).
    #[arg(long)]
    pub target_ffn_hidden_size: Option<usize>,
    /// New num_attention_heads (uniform per query group).
    #[arg(long)]
    pub target_num_attention_heads: Option<usize>,
    /// New num_key_value_heads (whole query groups removed).
    #[arg(long)]
    pub target_num_query_groups: Option<usize>,
    /// New hidden_size (embedding channels kept by importance).
    #[arg(long)]
    pub target_hidden_size: Option<usize>,
    /// Importance statistics from `ckpt-opt calibrate`.
    #[arg(long)]
    pub calib_stats: Option<PathBuf>,
    /// Calibration text: statistics computed on the fly (and the ppl depth metric's windows).
    #[arg(long)]
    pub calib_data: Option<PathBuf>,
    /// Calibration windows (default 64).
    #[arg(long)]
    pub calib_samples: Option<usize>,
    /// Tokens per calibration window (default 128).
    #[arg(long)]
    pub calib_seq_len: Option<usize>,
    /// Seed of the calibration window sampling (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the decision (kept indices per dimension) as a safetensors masks file.
    #[arg(long)]
    pub emit_masks: Option<PathBuf>,
    /// Apply a masks file from --emit-masks (possibly edited) instead of deciding.
    #[arg(long)]
    pub apply_masks: Option<PathBuf>,
    /// Held-out text: perplexity before/after and KL of the pruned model vs the unpruned one.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Tokens per evaluation window (default 128).
    #[arg(long)]
    pub eval_ctx: Option<usize>,
    /// Evaluate only the first N windows.
    #[arg(long)]
    pub eval_max_windows: Option<usize>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// hf output: largest shard, e.g. 5GB (default).
    #[arg(long, value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    /// Print the plan and the decision and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing output.
    #[arg(long)]
    pub force: bool,
    /// Largest unit of work in flight per thread, e.g. 8MiB (default); bounds memory.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    pub chunk_size: u64,
}

#[derive(serde::Serialize)]
struct PruneDryRun<'a> {
    params_before: u64,
    params_after: u64,
    after: crate::prune::Sizes,
    kept_layers: &'a [usize],
    depth_scores: Option<&'a crate::prune::DepthScores>,
    output_bytes: u64,
    estimated_peak_bytes: u64,
    plan: &'a plan::Plan,
}

pub(super) fn run_prune(
    args: PruneArgs,
    global: &GlobalArgs,
    progress: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = match &args.recipe {
        Some(p) => crate::prune::recipe::load(p)?,
        None => crate::prune::recipe::RecipeOptions::default(),
    };
    let drop_layers = args
        .drop_layers
        .or(r.drop_layers)
        .map(|t| {
            crate::prune::select::parse_layer_list(&t)
                .map_err(|why| Error::Usage(format!("--drop-layers: {why}")))
        })
        .transpose()?;
    let depth_metric = match args.depth_metric.or(r.depth_metric) {
        Some(m) => crate::prune::DepthMetric::parse(&m)?,
        None => crate::prune::DepthMetric::Bi,
    };
    let opts = crate::prune::PruneOptions {
        drop_layers,
        target_num_layers: args.target_num_layers.or(r.target_num_layers),
        depth_metric,
        target_ffn_hidden_size: args.target_ffn_hidden_size.or(r.target_ffn_hidden_size),
        target_num_attention_heads: args
            .target_num_attention_heads
            .or(r.target_num_attention_heads),
        target_num_query_groups: args.target_num_query_groups.or(r.target_num_query_groups),
        target_hidden_size: args.target_hidden_size.or(r.target_hidden_size),
        calib_stats: args.calib_stats.or(r.calib_stats),
        calib_data: args.calib_data.or(r.calib_data),
        calibrate: crate::calibrate::CalibrateOptions {
            sampling: crate::data::Sampling {
                samples: args.calib_samples.or(r.calib_samples).unwrap_or(64),
                seq_len: args.calib_seq_len.or(r.calib_seq_len).unwrap_or(128),
                seed: args.seed.or(r.seed).unwrap_or(0),
            },
            batch: 8,
            progress,
            dump_windows: None,
        },
        apply_masks: args.apply_masks.or(r.apply_masks),
        max_shard_size: args
            .max_shard_size
            .unwrap_or(formats::safetensors::DEFAULT_MAX_SHARD_SIZE),
    };
    let report_path = args.report.or(r.report);
    let run = crate::prune::RunOptions {
        exec: exec_options(global.threads, args.chunk_size, progress, args.force),
        emit_masks: args.emit_masks.or(r.emit_masks),
        eval_data: args.eval_data.or(r.eval_data),
        eval: crate::eval::EvalOptions {
            ctx: args.eval_ctx.or(r.eval_ctx).unwrap_or(128),
            max_windows: args.eval_max_windows.or(r.eval_max_windows),
            progress,
            ..crate::eval::EvalOptions::default()
        },
    };
    if run.eval.ctx < 2 {
        return Err(Error::Usage("--eval-ctx must be at least 2".into()));
    }
    let pool = thread_pool(global.threads)?;
    if args.dry_run {
        let planned = pool.install(|| {
            let ckpt = std::sync::Arc::new(Checkpoint::open(&args.input)?);
            crate::prune::plan_prune(&ckpt, &args.input, &args.output, &opts)
        })?;
        let report = PruneDryRun {
            params_before: planned.params_before,
            params_after: planned.params_after,
            after: planned.kept.target().into(),
            kept_layers: &planned.kept.layers,
            depth_scores: planned.depth_scores.as_ref(),
            output_bytes: planned.plan.output_bytes(),
            estimated_peak_bytes: estimated_peak(args.chunk_size, run.exec.threads),
            plan: &planned.plan,
        };
        return write_json(out, &report);
    }
    let report = pool.install(|| crate::prune::prune(&args.input, &args.output, &opts, &run))?;
    let options = serde_json::json!({
        "kept_layers": report.kept_layers,
        "dropped_layers": report.dropped_layers,
        "after": report.after,
        "calib_data": opts.calib_data,
        "calib_stats": opts.calib_stats,
    });
    let quality = report
        .quality
        .as_ref()
        .map(|q| serde_json::to_value(q).unwrap_or(serde_json::Value::Null));
    record_manifest(
        global,
        "prune",
        &args.input,
        &args.output,
        options,
        quality,
        &[],
    )?;
    if let Some(p) = &report_path {
        let mut text = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        text.push(b'\n');
        formats::atomic::write_file_atomic(p, &text)?;
    }
    if global.json {
        write_json(out, &report)
    } else {
        write_out(out, &crate::prune::render(&report))
    }
}
