//! Command-line definitions (clap) and the thin glue from flags to library calls. Raw flags
//! become validated options before any work starts.

use crate::checkpoint::Checkpoint;
use crate::convert::{ConvertOptions, OutputFormat};
use crate::error::{Error, Result};
use crate::plan::{self, ExecOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use formats::Dtype;
use std::io::Write;
use std::path::PathBuf;

mod convert;
mod prune;
mod quantize;
mod reshard;

use convert::{run_convert, RunConvert};
pub use convert::{ConvertArgs, DtypeArg, FormatArg};
use prune::run_prune;
pub use prune::PruneArgs;
use quantize::{gguf_quant_request, run_quantize, selection_flag};
pub use quantize::{QuantFlags, QuantizeArgs};
use reshard::run_reshard;
pub use reshard::{LayoutArg, PlanPipelineArgs, ReshardArgs};

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
pub struct CalibrateArgs {
    /// The model: a Hugging Face folder (with tokenizer.json), a GGUF file, or a TensorRT-LLM
    /// checkpoint folder (config.json with `mapping`, rank*.safetensors, tokenizer.json).
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
    /// The model: a Hugging Face folder (with tokenizer.json), a GGUF file, or a TensorRT-LLM
    /// checkpoint folder (config.json with `mapping`, rank*.safetensors, tokenizer.json).
    pub model: PathBuf,
    /// UTF-8 text, tokenized as one stream without BOS.
    #[arg(long)]
    pub data: PathBuf,
    /// Tokens per window; windows do not overlap and a last partial window is dropped.
    #[arg(long, default_value_t = 128)]
    pub ctx: usize,
    /// A teacher model with the same vocabulary, run on the same windows (any kind MODEL can be).
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
    /// Quantize each FP8 / INT8 (SmoothQuant) linear's input with its static activation scale,
    /// as the deployment does, instead of keeping activations in f32.
    #[arg(long)]
    pub act_quant: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A .safetensors file, a Hugging Face folder, a .gguf file or any member of a split set.
    pub path: PathBuf,
    /// Omit the per-tensor table.
    #[arg(long)]
    pub summary: bool,
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
                act_quant: args.act_quant,
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
                if let Some(flag) = selection_flag(&args.flags) {
                    return Err(Error::Usage(format!(
                        "{flag} applies to the hf and trtllm schemes, not GGUF types"
                    )));
                }
                if args.flags.kv_cache.is_some() {
                    return Err(Error::Usage(
                        "--kv-cache applies to the hf and trtllm schemes, not GGUF types".into(),
                    ));
                }
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
            if args.quant_flags.kv_cache.is_some()
                && (args.quant.is_none() || matches!(args.format, FormatArg::Gguf))
            {
                return Err(Error::Usage(
                    "--kv-cache applies to hf and trtllm output with --quant".into(),
                ));
            }
            if let Some(flag) = selection_flag(&args.quant_flags) {
                if args.quant.is_none() || matches!(args.format, FormatArg::Gguf) {
                    return Err(Error::Usage(format!(
                        "{flag} applies to hf and trtllm output with --quant"
                    )));
                }
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

/// The human summary of an executed plan: the files written, then bytes, seconds and GB/s
/// (after `job: ` when given).
fn render_written(stats: &plan::ExecStats, job: Option<&str>) -> String {
    let gbps = stats.bytes_written as f64 / stats.seconds.max(1e-9) / 1e9;
    let mut text = String::new();
    for f in &stats.files {
        text.push_str(&format!("wrote {}\n", f.display()));
    }
    if let Some(job) = job {
        text.push_str(&format!("{job}: "));
    }
    text.push_str(&format!(
        "{} in {:.2}s ({gbps:.2} GB/s)\n",
        crate::inspect::human_bytes(stats.bytes_written),
        stats.seconds
    ));
    text
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
