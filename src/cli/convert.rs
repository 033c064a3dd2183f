//! `convert`: its arguments and the plan-then-execute run shared with `quantize` to GGUF.

use super::*;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (format detected from its content).
    pub input: PathBuf,
    /// Output: a .gguf file (split sets get -0000N-of-0000M suffixes) or a folder for hf
    /// and trtllm.
    pub output: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// trtllm output: tensor-parallel ranks.
    #[arg(long, default_value_t = 1)]
    pub tp: u64,
    /// trtllm output: pipeline-parallel stages.
    #[arg(long, default_value_t = 1)]
    pub pp: u64,
    /// Output dtype of the weights (default: keep the input's).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// hf output: largest shard, e.g. 5GB (default, as Hugging Face), 500MB, 2GiB.
    #[arg(long, value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    /// gguf output: split into files of at most this size, e.g. 2G (as llama-gguf-split).
    #[arg(long, value_parser = parse_size, conflicts_with = "split_max_tensors")]
    pub split_max_size: Option<u64>,
    /// gguf output: split into files of at most this many tensors.
    #[arg(long)]
    pub split_max_tensors: Option<usize>,
    /// gguf output: general.name (default: the input folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Quantize the weights. gguf output, as llama-quantize does: q8_0, q4_0, q4_1, q5_0,
    /// q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, or the mixes q4_k_s, q4_k_m, q5_k_m, q6_k. hf output,
    /// as `quantize` does: fp8, int8_wo, int8_sq, int4_awq, int4_rtn, auto. trtllm output:
    /// fp8, int8_wo, int8_sq, int4_awq, int4_rtn, auto.
    #[arg(long)]
    pub quant: Option<String>,
    /// With --quant: importance weights from `calibrate` statistics (llama.cpp's imatrix).
    #[arg(long, requires = "quant")]
    pub imatrix: Option<PathBuf>,
    /// Print the plan (outputs, tensors, recipes, bytes, memory estimate) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing output (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Largest unit of work in flight per thread, e.g. 8MiB (default); bounds memory.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    pub chunk_size: u64,
    /// Options of the hf schemes (as `quantize`).
    #[command(flatten)]
    pub quant_flags: QuantFlags,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    Gguf,
    Hf,
    /// TensorRT-LLM checkpoint: config.json + rank{N}.safetensors.
    Trtllm,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Dtype {
        match d {
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::F16 => Dtype::F16,
            DtypeArg::Bf16 => Dtype::BF16,
        }
    }
}

/// How `convert` (and `quantize` to GGUF) runs its plan.
pub(super) struct RunConvert {
    /// The subcommand, for the manifest.
    pub(super) job: &'static str,
    pub(super) dry_run: bool,
    pub(super) chunk_size: u64,
    pub(super) force: bool,
    pub(super) progress: bool,
    pub(super) device: plan::Device,
}

pub(super) fn run_convert(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &ConvertOptions,
    run: &RunConvert,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let input_path = input;
    let input = Checkpoint::open(input)?;
    let plan = crate::convert::plan_convert(&input, output, opts)?;
    let exec = ExecOptions {
        device: run.device,
        ..exec_options(global.threads, run.chunk_size, run.progress, run.force)
    };
    let threads = exec.threads;
    if run.dry_run {
        let report = DryRun {
            input_bytes: input.tensor_bytes(),
            output_bytes: plan.output_bytes(),
            tensors: plan.tensor_count(),
            threads,
            estimated_peak_bytes: estimated_peak(run.chunk_size, threads),
            plan: &plan,
        };
        return write_json(out, &report);
    }
    let stats = plan::execute(&plan, &input, &exec)?;
    let options = serde_json::json!({
        "format": opts.format,
        "dtype": opts.dtype.map(|d| d.name()),
        "quant": opts.quant,
        "imatrix": opts.imatrix,
        "max_shard_size": opts.max_shard_size,
        "split_max_size": opts.split.max_bytes,
        "split_max_tensors": opts.split.max_tensors,
        "name": opts.model_name,
    });
    record_manifest(
        global,
        run.job,
        input_path,
        output,
        options,
        None,
        &stats.files,
    )?;
    if global.json {
        write_json(out, &stats)
    } else {
        write_out(out, &render_written(&stats, None))
    }
}
