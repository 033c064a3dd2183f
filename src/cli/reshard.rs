//! `reshard` and `plan-pipeline`: arguments and the reshard run.

use super::*;

#[derive(Args, Debug)]
pub struct ReshardArgs {
    /// Input: a Hugging Face folder or safetensors file, a TensorRT-LLM checkpoint folder
    /// (config.json + rank{N}.safetensors) or a Megatron folder (mp_rank_*/model.safetensors).
    pub input: PathBuf,
    /// Output folder.
    pub output: PathBuf,
    /// Output tensor-parallel size.
    #[arg(long, default_value_t = 1)]
    pub tp: u64,
    /// Output pipeline-parallel size.
    #[arg(long, default_value_t = 1)]
    pub pp: u64,
    /// Output layout.
    #[arg(long, value_enum, default_value = "trtllm")]
    pub layout: LayoutArg,
    /// Write only this rank's file (rank = pp_rank × tp + tp_rank) and the config, into OUT.
    #[arg(long)]
    pub rank: Option<u64>,
    /// hf output: largest shard, e.g. 5GB (default), 500MB.
    #[arg(long, value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    /// Print the plan (outputs, tensors, the slices each is made of) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing output (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Largest unit of work in flight per thread, e.g. 8MiB (default); bounds memory.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    pub chunk_size: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LayoutArg {
    Hf,
    Trtllm,
    Megatron,
}

#[derive(Args, Debug)]
pub struct PlanPipelineArgs {
    /// The student's (or only model's) config.json, or a folder holding it.
    pub config: PathBuf,
    /// A teacher's config.json (pipeline-parallel distillation): each stage also runs its
    /// slice of the teacher and sends both hidden states.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Pipeline stages.
    #[arg(long)]
    pub pp: u64,
    /// Sequence length.
    #[arg(long)]
    pub seq_len: u64,
    /// Micro-batch size.
    #[arg(long, default_value_t = 1)]
    pub micro_batch: u64,
}

pub(super) fn run_reshard(
    args: ReshardArgs,
    global: &GlobalArgs,
    show_progress: bool,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::shard::{Parallel, ReshardOptions, ShardLayout};
    let opts = ReshardOptions {
        layout: match args.layout {
            LayoutArg::Hf => ShardLayout::Hf,
            LayoutArg::Trtllm => ShardLayout::Trtllm,
            LayoutArg::Megatron => ShardLayout::Megatron,
        },
        par: Parallel {
            tp: args.tp,
            pp: args.pp,
        },
        rank: args.rank,
        max_shard_size: args
            .max_shard_size
            .unwrap_or(formats::safetensors::DEFAULT_MAX_SHARD_SIZE),
    };
    if args.max_shard_size.is_some() && opts.layout != ShardLayout::Hf {
        return Err(Error::Usage("--max-shard-size applies to hf output".into()));
    }
    let (input, plan) = crate::shard::plan_reshard(&args.input, &args.output, &opts)?;
    let exec = exec_options(global.threads, args.chunk_size, show_progress, args.force);
    let threads = exec.threads;
    if args.dry_run {
        let report = DryRun {
            input_bytes: input.input_bytes,
            output_bytes: plan.output_bytes(),
            tensors: plan.tensor_count(),
            threads,
            estimated_peak_bytes: estimated_peak(args.chunk_size, threads),
            plan: &plan,
        };
        return write_json(out, &report);
    }
    let stats = plan::execute_produced(&plan, &exec)?;
    let options = serde_json::json!({
        "layout": opts.layout.name(),
        "tp": opts.par.tp,
        "pp": opts.par.pp,
        "rank": opts.rank,
        "max_shard_size": args.max_shard_size,
    });
    record_manifest(
        global,
        "reshard",
        &args.input,
        &args.output,
        options,
        None,
        &stats.files,
    )?;
    if global.json {
        write_json(out, &stats)
    } else {
        write_out(out, &render_written(&stats, Some(&plan.job)))
    }
}
