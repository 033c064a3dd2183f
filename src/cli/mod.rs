//! Command-line definitions (clap) and the thin glue from flags to library calls. Raw flags
//! become validated options before any work starts.

use crate::checkpoint::Checkpoint;
use crate::convert::{self, ConvertOptions, OutputFormat};
use crate::error::{Error, Result};
use crate::plan::{self, ExecOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use formats::Dtype;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-opt",
    version,
    about = "Turn LLM checkpoints into deployment artifacts, streaming, in bounded memory"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// No progress output on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print the result as JSON on stdout (implies --quiet).
    #[arg(long, global = true)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j', global = true, default_value_t = 0)]
    pub threads: usize,
    /// Do not write the ckpt-opt.json manifest (command, options, blake3 checksums of inputs
    /// and outputs) beside an export's output.
    #[arg(long, global = true)]
    pub no_manifest: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a checkpoint: safetensors file or Hugging Face folder, GGUF file or split set.
    Inspect(InspectArgs),
    /// Convert between Hugging Face safetensors, GGUF and TensorRT-LLM checkpoints; change dtype,
    /// reshard, split, quantize (--quant).
    Convert(ConvertArgs),
    /// Perplexity on a text file; with --teacher, KL divergence and agreement with a teacher.
    Eval(EvalArgs),
    /// Activation statistics for quantization and pruning, from sampled calibration windows.
    Calibrate(CalibrateArgs),
    /// Drop layers or shrink FFN, attention and hidden widths by activation importance
    /// (Minitron), writing the pruned model in the input's format.
    Prune(Box<PruneArgs>),
    /// Split or merge tensor/pipeline-parallel checkpoints (hf, trtllm, megatron), streaming.
    Reshard(ReshardArgs),
    /// Per pipeline stage: layers, and shapes of the hidden states sent and received.
    PlanPipeline(PlanPipelineArgs),
    /// Quantize: fp8, int8_wo, int8_sq, int4_awq, int4_rtn into modelopt's unified HF layout,
    /// or GGUF block types (q8_0 … q6_k, q4_k_m) into GGUF, or auto; with a quality report.
    Quantize(QuantizeArgs),
    /// Check a TensorRT-LLM checkpoint, Megatron folder, GGUF file or split set, or Hugging Face folder: every
    /// file present, config against every tensor, scales finite, checksums against the
    /// ckpt-opt.json manifest when there is one. Exit 1 with one problem per line.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A TensorRT-LLM checkpoint folder, a Megatron folder, a .gguf file (any member of a split set), or a
    /// Hugging Face folder or safetensors file.
    pub path: PathBuf,
    /// Also read every weight: NaN/Inf in float weights and in GGUF block scales.
    #[arg(long)]
    pub deep: bool,
}

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

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Input: a Hugging Face folder (safetensors + config.json), or for GGUF types also an
    /// F32/F16/BF16 GGUF file.
    pub input: PathBuf,
    /// Output: a folder (written whole, atomically), or a .gguf file for GGUF types.
    pub output: PathBuf,
    /// Scheme: fp8, int8_wo, int8_sq, int4_awq, int4_rtn; a GGUF type (q8_0, q4_0, q4_1, q5_0,
    /// q5_1, q2_k … q6_k, q4_k_s, q4_k_m, q5_k_m); or auto (with --target).
    #[arg(long)]
    pub quant: String,
    #[command(flatten)]
    pub flags: QuantFlags,
    /// hf output: largest shard, e.g. 5GB (default), 500MB, 2GiB.
    #[arg(long, value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    /// Replace an existing output (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Largest unit of work in flight per thread, e.g. 8MiB (default); bounds memory.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    pub chunk_size: u64,
}

/// Options of a quantization scheme, shared by `quantize` and `convert --quant`.
#[derive(Args, Debug, Clone)]
pub struct QuantFlags {
    /// With --quant auto: the deployment target whose hardware picks the scheme.
    #[arg(long, value_enum)]
    pub target: Option<crate::quant::auto::Target>,
    /// Calibration text (UTF-8 or JSONL), run through the model (fp8, int8_sq, int4_awq).
    #[arg(long)]
    pub calib_data: Option<PathBuf>,
    /// Precomputed statistics from `ckpt-opt calibrate` (fp8, int8_sq).
    #[arg(long)]
    pub calib_stats: Option<PathBuf>,
    /// Calibration windows sampled from --calib-data.
    #[arg(long, default_value_t = 32)]
    pub calib_samples: usize,
    /// Tokens per calibration window.
    #[arg(long, default_value_t = 128)]
    pub calib_seq_len: usize,
    /// Seed of the calibration window sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SmoothQuant migration strength α (0..1).
    #[arg(long, default_value_t = crate::quant::DEFAULT_SQ_ALPHA)]
    pub sq_alpha: f32,
    /// INT4 group size (input channels per scale).
    #[arg(long, default_value_t = crate::quant::DEFAULT_GROUP_SIZE)]
    pub group_size: usize,
    /// int4_awq: also search a clip ratio per group (AutoAWQ's clip search; not for q/k).
    #[arg(long)]
    pub awq_clip: bool,
    /// Leave linears matching this glob unquantized (module or weight name; repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Quantize only linears matching this glob (repeatable; --exclude still applies).
    #[arg(long)]
    pub include: Vec<String>,
    /// Write the quality report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Held-out text: adds perplexity and KL vs the input model to the report.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Tokens per --eval-data window.
    #[arg(long, default_value_t = 128)]
    pub eval_ctx: usize,
    /// Evaluate only the first N windows of --eval-data.
    #[arg(long)]
    pub eval_max_windows: Option<usize>,
    /// Where GGUF block quantization runs: cpu (default), cuda (an error without a GPU), or
    /// auto. Same bytes either way; the Hugging Face schemes run on the CPU.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: plan::Device,
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

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The model: a Hugging Face folder (with tokenizer.json) or a GGUF file.
    pub model: PathBuf,
    /// Calibration text: UTF-8 text, or JSONL with one {"text": ...} per line; tokenized as one
    /// stream without BOS.
    #[arg(long)]
    pub data: PathBuf,
    /// The statistics file to write (safetensors; replaced atomically).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Windows sampled from the text (non-overlapping).
    #[arg(long, default_value_t = 64)]
    pub calib_samples: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    pub calib_seq_len: usize,
    /// Seed of the window sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Windows run together per pass over the weights (more: faster, more memory).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Also write the sampled token windows as JSON here (for the reference tests).
    #[arg(long, hide = true)]
    pub dump_windows: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: a Hugging Face folder (with tokenizer.json) or a GGUF file.
    pub model: PathBuf,
    /// UTF-8 text, tokenized as one stream without BOS.
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens per window; windows do not overlap and a last partial window is dropped.
    #[arg(long, default_value_t = 128)]
    pub ctx: usize,
    /// A teacher model with the same vocabulary, run on the same windows.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Softmax temperature for the teacher comparison.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Evaluate only the first N windows.
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Windows run together per pass over the weights (more: faster, more memory).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A .safetensors file, a Hugging Face folder, a .gguf file or any member of a split set.
    pub path: PathBuf,
    /// Omit the per-tensor table.
    #[arg(long)]
    pub summary: bool,
}

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
    /// fp8, int8_wo, int4_awq, int4_rtn, auto.
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

/// Parses `5GB` (decimal, as Hugging Face and llama.cpp), `2GiB` (binary) or plain bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 5GB, 500MB, 2GiB, 1048576)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    let bytes = value * scale;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as u64)
}

/// Runs the parsed command, printing results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let show_progress = !(cli.global.quiet || cli.global.json);
    match cli.command {
        Command::Inspect(args) => {
            let ins = crate::inspect::inspect(&args.path)?;
            if cli.global.json {
                write_json(out, &ins)
            } else {
                write_out(out, &crate::inspect::render(&ins, !args.summary))
            }
        }
        Command::Eval(args) => {
            let opts = crate::eval::EvalOptions {
                ctx: args.ctx,
                temperature: args.temperature,
                max_windows: args.max_windows,
                batch: args.batch,
                progress: show_progress,
            };
            let pool = thread_pool(cli.global.threads)?;
            let report = pool.install(|| {
                crate::eval::eval(&args.model, &args.data, args.teacher.as_deref(), &opts)
            })?;
            if cli.global.json {
                write_json(out, &report)
            } else {
                write_out(out, &render_eval(&report))
            }
        }
        Command::Calibrate(args) => {
            let opts = crate::calibrate::CalibrateOptions {
                sampling: crate::data::Sampling {
                    samples: args.calib_samples,
                    seq_len: args.calib_seq_len,
                    seed: args.seed,
                },
                batch: args.batch,
                progress: show_progress,
                dump_windows: args.dump_windows,
            };
            let pool = thread_pool(cli.global.threads)?;
            let report = pool.install(|| {
                crate::calibrate::calibrate(&args.model, &args.data, &args.output, &opts)
            })?;
            if cli.global.json {
                write_json(out, &report)
            } else {
                write_out(
                    out,
                    &format!(
                        "wrote {} ({} tensors): {} windows, {} tokens in {:.2}s ({:.1} tokens/s)\n",
                        report.output.display(),
                        report.tensors,
                        report.windows,
                        report.tokens,
                        report.seconds,
                        report.tokens_per_second
                    ),
                )
            }
        }
        Command::Verify(args) => {
            let pool = thread_pool(cli.global.threads)?;
            let opts = crate::verify::VerifyOptions { deep: args.deep };
            let report = pool.install(|| crate::verify::verify(&args.path, &opts));
            if cli.global.json {
                write_json(out, &report)?;
            } else {
                write_out(out, &crate::verify::render(&report))?;
            }
            if report.problems.is_empty() {
                Ok(())
            } else {
                Err(Error::Verify(report.problems.len()))
            }
        }
        Command::Reshard(args) => run_reshard(args, &cli.global, show_progress, out),
        Command::PlanPipeline(args) => {
            let student = crate::model::ModelConfig::load(&args.config)?;
            let teacher = args
                .teacher
                .as_deref()
                .map(crate::model::ModelConfig::load)
                .transpose()?;
            let plan = crate::shard::pipeline::plan_pipeline(
                &student,
                teacher.as_ref(),
                args.pp,
                args.seq_len,
                args.micro_batch,
            )
            .map_err(Error::Usage)?;
            if cli.global.json {
                write_json(out, &plan)
            } else {
                write_out(out, &crate::shard::pipeline::render(&plan))
            }
        }
        Command::Prune(args) => run_prune(*args, &cli.global, show_progress, out),
        Command::Quantize(args) => {
            if let Some(q) = gguf_quant_request(&args.quant, &args.flags) {
                if args.flags.calib_data.is_some() {
                    return Err(Error::Usage(
                        "GGUF types take an importance matrix as --calib-stats (from `ckpt-opt calibrate`), not --calib-data".into(),
                    ));
                }
                let opts = ConvertOptions {
                    format: OutputFormat::Gguf,
                    dtype: None,
                    max_shard_size: formats::safetensors::DEFAULT_MAX_SHARD_SIZE,
                    split: formats::gguf::SplitOptions::default(),
                    model_name: None,
                    quant: Some(q),
                    imatrix: args.flags.calib_stats.clone(),
                };
                let run = RunConvert {
                    job: "quantize",
                    dry_run: false,
                    chunk_size: args.chunk_size,
                    force: args.force,
                    progress: show_progress,
                    device: args.flags.device,
                };
                return run_convert(&args.input, &args.output, &opts, &run, &cli.global, out);
            }
            let exec = exec_options(
                cli.global.threads,
                args.chunk_size,
                show_progress,
                args.force,
            );
            run_quantize(
                &cli.global,
                "quantize",
                &args.input,
                &args.output,
                &args.quant,
                &args.flags,
                args.max_shard_size,
                crate::quant::QuantOutput::Hf,
                exec,
                out,
            )
        }
        Command::Convert(args) => {
            let par = crate::shard::Parallel {
                tp: args.tp,
                pp: args.pp,
            };
            if !matches!(args.format, FormatArg::Trtllm) && (args.tp != 1 || args.pp != 1) {
                return Err(Error::Usage(
                    "--tp/--pp apply to trtllm output (for hf and megatron layouts use `reshard`)"
                        .into(),
                ));
            }
            if matches!(args.format, FormatArg::Trtllm)
                && (args.split_max_size.is_some() || args.split_max_tensors.is_some())
            {
                return Err(Error::Usage(
                    "--split-max-size/--split-max-tensors apply to gguf output".into(),
                ));
            }
            if let (None, FormatArg::Trtllm) = (&args.quant, args.format) {
                if args.dtype.is_some() || args.name.is_some() || args.imatrix.is_some() {
                    return Err(Error::Usage(
                        "--dtype, --name and --imatrix do not apply to trtllm output".into(),
                    ));
                }
                let reshard = ReshardArgs {
                    input: args.input,
                    output: args.output,
                    tp: args.tp,
                    pp: args.pp,
                    layout: LayoutArg::Trtllm,
                    rank: None,
                    max_shard_size: args.max_shard_size,
                    dry_run: args.dry_run,
                    force: args.force,
                    chunk_size: args.chunk_size,
                };
                return run_reshard(reshard, &cli.global, show_progress, out);
            }
            if let (Some(quant), FormatArg::Hf | FormatArg::Trtllm) = (&args.quant, args.format) {
                if args.imatrix.is_some() {
                    return Err(Error::Usage(
                        "--imatrix applies to gguf output; hf schemes take --calib-stats".into(),
                    ));
                }
                if args.dry_run || args.dtype.is_some() || args.name.is_some() {
                    return Err(Error::Usage(
                        "--quant cannot be combined with --dry-run, --dtype or --name".into(),
                    ));
                }
                let exec = exec_options(
                    cli.global.threads,
                    args.chunk_size,
                    show_progress,
                    args.force,
                );
                let output = match args.format {
                    FormatArg::Trtllm => {
                        if args.max_shard_size.is_some() {
                            return Err(Error::Usage(
                                "--max-shard-size applies to hf output".into(),
                            ));
                        }
                        crate::quant::QuantOutput::Trtllm(par)
                    }
                    _ => crate::quant::QuantOutput::Hf,
                };
                return run_quantize(
                    &cli.global,
                    "convert",
                    &args.input,
                    &args.output,
                    quant,
                    &args.quant_flags,
                    args.max_shard_size,
                    output,
                    exec,
                    out,
                );
            }
            let opts = ConvertOptions {
                format: match args.format {
                    FormatArg::Gguf => OutputFormat::Gguf,
                    // trtllm output returned above, with or without --quant.
                    FormatArg::Hf | FormatArg::Trtllm => OutputFormat::Hf,
                },
                dtype: args.dtype.map(Dtype::from),
                max_shard_size: args
                    .max_shard_size
                    .unwrap_or(formats::safetensors::DEFAULT_MAX_SHARD_SIZE),
                split: formats::gguf::SplitOptions {
                    max_tensors: args.split_max_tensors,
                    max_bytes: args.split_max_size,
                },
                model_name: args.name,
                quant: args
                    .quant
                    .as_deref()
                    .map(crate::quant::gguf::GgufQuant::parse)
                    .transpose()?,
                imatrix: args.imatrix,
            };
            if matches!(opts.format, OutputFormat::Hf)
                && (args.split_max_size.is_some() || args.split_max_tensors.is_some())
            {
                return Err(Error::Usage(
                    "--split-max-size/--split-max-tensors apply to gguf output; use --max-shard-size for hf".into(),
                ));
            }
            let run = RunConvert {
                job: "convert",
                dry_run: args.dry_run,
                chunk_size: args.chunk_size,
                force: args.force,
                progress: show_progress,
                device: args.quant_flags.device,
            };
            run_convert(&args.input, &args.output, &opts, &run, &cli.global, out)
        }
    }
}

/// How `convert` (and `quantize` to GGUF) runs its plan.
struct RunConvert {
    /// The subcommand, for the manifest.
    job: &'static str,
    dry_run: bool,
    chunk_size: u64,
    force: bool,
    progress: bool,
    device: plan::Device,
}

fn run_convert(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &ConvertOptions,
    run: &RunConvert,
    global: &GlobalArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let input_path = input;
    let input = Checkpoint::open(input)?;
    let plan = convert::plan_convert(&input, output, opts)?;
    let threads = if global.threads == 0 {
        rayon::current_num_threads()
    } else {
        global.threads
    };
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
    let stats = plan::execute(
        &plan,
        &input,
        &ExecOptions {
            threads,
            chunk_bytes: run.chunk_size,
            progress: run.progress,
            force: run.force,
            device: run.device,
        },
    )?;
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
        let gbps = stats.bytes_written as f64 / stats.seconds.max(1e-9) / 1e9;
        let mut text = String::new();
        for f in &stats.files {
            text.push_str(&format!("wrote {}\n", f.display()));
        }
        text.push_str(&format!(
            "{} in {:.2}s ({gbps:.2} GB/s)\n",
            crate::inspect::human_bytes(stats.bytes_written),
            stats.seconds
        ));
        write_out(out, &text)
    }
}

/// `quantize` with a GGUF block type (or `auto --target cpu`): the GGUF output `convert
/// --format gguf --quant TYPE` makes, with `--calib-stats` as the importance matrix.
fn gguf_quant_request(quant: &str, f: &QuantFlags) -> Option<crate::quant::gguf::GgufQuant> {
    use crate::quant::{auto::Target, gguf::GgufQuant};
    if quant.trim().eq_ignore_ascii_case("auto") {
        return (f.target == Some(Target::Cpu)).then_some(GgufQuant::Q4KM);
    }
    GgufQuant::parse(quant).ok()
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

fn run_prune(
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
    let threads = if global.threads == 0 {
        rayon::current_num_threads()
    } else {
        global.threads
    };
    let report_path = args.report.or(r.report);
    let run = crate::prune::RunOptions {
        exec: ExecOptions {
            threads,
            chunk_bytes: args.chunk_size,
            progress,
            force: args.force,
            device: plan::Device::Cpu,
        },
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
            estimated_peak_bytes: estimated_peak(args.chunk_size, threads),
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

fn run_reshard(
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
    let threads = if global.threads == 0 {
        rayon::current_num_threads()
    } else {
        global.threads
    };
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
    let stats = plan::execute_produced(
        &plan,
        &ExecOptions {
            threads,
            chunk_bytes: args.chunk_size,
            progress: show_progress,
            force: args.force,
            device: plan::Device::Cpu,
        },
    )?;
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
        let gbps = stats.bytes_written as f64 / stats.seconds.max(1e-9) / 1e9;
        let mut text = String::new();
        for f in &stats.files {
            text.push_str(&format!("wrote {}\n", f.display()));
        }
        text.push_str(&format!(
            "{}: {} in {:.2}s ({gbps:.2} GB/s)\n",
            plan.job,
            crate::inspect::human_bytes(stats.bytes_written),
            stats.seconds
        ));
        write_out(out, &text)
    }
}

fn exec_options(threads: usize, chunk_bytes: u64, progress: bool, force: bool) -> ExecOptions {
    ExecOptions {
        threads: if threads == 0 {
            rayon::current_num_threads()
        } else {
            threads
        },
        chunk_bytes,
        progress,
        force,
        device: plan::Device::Cpu,
    }
}

/// `quantize` and `convert --format hf --quant`: same options, same code.
#[allow(clippy::too_many_arguments)]
fn run_quantize(
    global: &GlobalArgs,
    job: &str,
    input: &std::path::Path,
    output: &std::path::Path,
    quant: &str,
    f: &QuantFlags,
    max_shard_size: Option<u64>,
    output_layout: crate::quant::QuantOutput,
    exec: ExecOptions,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::quant;
    if f.device == plan::Device::Cuda {
        return Err(Error::Usage(
            "--device cuda applies to GGUF block types; the Hugging Face schemes run on the CPU"
                .into(),
        ));
    }
    let progress = exec.progress;
    let opts = quant::QuantizeOptions {
        request: quant::scheme::QuantRequest::parse(quant)?,
        target: f.target,
        calib: quant::calib::CalibSource {
            data: f.calib_data.clone(),
            stats: f.calib_stats.clone(),
            sampling: Some(crate::data::Sampling {
                samples: f.calib_samples,
                seq_len: f.calib_seq_len,
                seed: f.seed,
            }),
            batch: 8,
            progress,
            awq_clip: f.awq_clip,
        },
        sq_alpha: f.sq_alpha,
        group_size: f.group_size,
        selection: quant::select::Selection::new(&f.include, &f.exclude)?,
        max_shard_size: max_shard_size.unwrap_or(formats::safetensors::DEFAULT_MAX_SHARD_SIZE),
        eval_data: f.eval_data.clone(),
        eval: crate::eval::EvalOptions {
            ctx: f.eval_ctx,
            max_windows: f.eval_max_windows,
            progress,
            ..Default::default()
        },
        exec,
        output: output_layout,
    };
    if let Some(p) = &f.report {
        if p.is_dir() {
            return Err(Error::Usage(format!(
                "--report {}: is a folder",
                p.display()
            )));
        }
    }
    let pool = thread_pool(global.threads)?;
    let report = pool.install(|| quant::quantize(input, output, &opts))?;
    let options = serde_json::json!({
        "scheme": report.scheme,
        "quant_algo": report.quant_algo,
        "group_size": report.group_size,
        "excluded_modules": report.excluded_modules,
        "calib_data": f.calib_data,
        "calib_stats": f.calib_stats,
        "sq_alpha": f.sq_alpha,
        "max_shard_size": max_shard_size,
    });
    let quality = serde_json::json!({
        "mean_rel_error": report.mean_rel_error,
        "min_sqnr_db": report.min_sqnr_db,
        "model": report.model,
    });
    record_manifest(global, job, input, output, options, Some(quality), &[])?;
    if let Some(p) = &f.report {
        let mut text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        text.push('\n');
        std::fs::write(p, text).map_err(|e| formats::FormatError::io(p, "write", e))?;
    }
    if global.json {
        write_json(out, &report)
    } else {
        write_out(out, &quant::report::render(&report))
    }
}

/// Writes the job's `ckpt-opt.json` (see [`crate::manifest`]) once its outputs are in place,
/// unless `--no-manifest`.
fn record_manifest(
    global: &GlobalArgs,
    job: &str,
    input: &std::path::Path,
    output: &std::path::Path,
    options: serde_json::Value,
    quality: Option<serde_json::Value>,
    written: &[PathBuf],
) -> Result<()> {
    if global.no_manifest {
        return Ok(());
    }
    let rec = crate::manifest::JobRecord {
        job,
        input,
        output,
        options,
        quality,
    };
    crate::manifest::write(&rec, written)?;
    Ok(())
}

/// A rayon pool of `threads` workers (0: one per core).
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if threads > 0 {
        builder = builder.num_threads(threads);
    }
    builder
        .build()
        .map_err(|e| Error::Usage(format!("cannot start worker threads: {e}")))
}

fn render_eval(r: &crate::eval::EvalReport) -> String {
    let mut text = format!(
        "perplexity {:.4}  nll {:.6}  tokens_scored {}  windows {} (ctx {})\n",
        r.perplexity, r.nll, r.tokens_scored, r.windows, r.ctx
    );
    if let Some(t) = &r.teacher {
        text.push_str(&format!(
            "teacher {}: kl {:.6e} (T={})  top1_agreement {:.4}\n",
            t.teacher.display(),
            t.kl,
            t.temperature,
            t.top1_agreement
        ));
        if let Some(c) = &t.layer_cosine {
            let list: Vec<String> = c.iter().map(|v| format!("{v:.6}")).collect();
            text.push_str(&format!("layer cosine: {}\n", list.join(" ")));
        }
    }
    text.push_str(&format!(
        "{:.2}s, {:.1} tokens/s\n",
        r.seconds, r.tokens_per_second
    ));
    text
}

/// Working memory of the executor: each thread holds at most a chunk in and a chunk out,
/// plus a fixed allowance for the program itself and headers.
pub fn estimated_peak(chunk_bytes: u64, threads: usize) -> u64 {
    2 * chunk_bytes * threads as u64 + (32 << 20)
}

#[derive(serde::Serialize)]
struct DryRun<'a> {
    input_bytes: u64,
    output_bytes: u64,
    tensors: usize,
    threads: usize,
    estimated_peak_bytes: u64,
    plan: &'a plan::Plan,
}

fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    write_out(out, &text)
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(formats::FormatError::io("<stdout>", "write", e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("0").is_err());
    }
}
