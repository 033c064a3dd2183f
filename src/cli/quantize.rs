//! `quantize` (and `convert --format hf --quant`): arguments, shared scheme flags, the run.

use super::*;

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
    /// int4_awq: fold AWQ's input scale into the previous op (norm, v_proj / up_proj rows) as
    /// AutoAWQ does, instead of keeping pre_quant_scale (o_proj under GQA keeps s = 1).
    #[arg(long)]
    pub awq_fold: bool,
    /// Layout of the quantized Hugging Face folder: modelopt (unified checkpoint, read by
    /// TensorRT-LLM and vLLM) or transformers (its own loaders: fp8 as quant_method "fp8",
    /// int4_awq / int4_rtn as AutoAWQ GEMM "awq" with folded scales; int8 is an error).
    #[arg(long, value_enum, default_value = "modelopt")]
    pub hf_format: crate::quant::transformers::HfFormat,
    /// Leave linears matching this glob unquantized (module or weight name; repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Quantize only linears matching this glob (repeatable; --exclude still applies).
    #[arg(long)]
    pub include: Vec<String>,
    /// Quantize the linears GLOB matches with SCHEME instead of --quant: fp8, int8_wo, int8_sq,
    /// int4_awq, int4_rtn, or none (repeatable; the last matching rule wins). Differing schemes
    /// make a MIXED_PRECISION checkpoint; q/k/v and gate/up must share a scheme.
    #[arg(long, value_name = "GLOB=SCHEME")]
    pub layer_quant: Vec<String>,
    /// Quantize the KV cache too: fp8 (E4M3, one scale per attention layer = max |K|, |V| over
    /// the calibration tokens / 448; hf and trtllm output; needs --calib-data or --calib-stats).
    #[arg(long, value_enum)]
    pub kv_cache: Option<crate::quant::KvCacheQuant>,
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
    /// With --eval-data: quantize each FP8 / INT8 linear's input with its static activation
    /// scale, as the deployment does (`eval --act-quant`).
    #[arg(long)]
    pub eval_act_quant: bool,
    /// Where quantization runs: cpu (default), cuda (an error without a GPU), or auto (the GPU
    /// when present for the k-quant types, where it is faster; the CPU for the rest). Same
    /// bytes either way (GGUF blocks, and FP8 / INT8 / INT4 codes of the other schemes).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: plan::Device,
}

/// `quantize` with a GGUF block type (or `auto --target cpu`): the GGUF output `convert
/// --format gguf --quant TYPE` makes, with `--calib-stats` as the importance matrix.
pub(super) fn gguf_quant_request(
    quant: &str,
    f: &QuantFlags,
) -> Option<crate::quant::gguf::GgufQuant> {
    use crate::quant::{auto::Target, gguf::GgufQuant};
    if quant.trim().eq_ignore_ascii_case("auto") {
        return (f.target == Some(Target::Cpu)).then_some(GgufQuant::Q4KM);
    }
    GgufQuant::parse(quant).ok()
}

/// The first selection flag given, which GGUF types do not take (their presets choose a type
/// per tensor themselves).
pub(super) fn selection_flag(f: &QuantFlags) -> Option<&'static str> {
    [
        ("--layer-quant", f.layer_quant.is_empty()),
        ("--include", f.include.is_empty()),
        ("--exclude", f.exclude.is_empty()),
    ]
    .into_iter()
    .find_map(|(flag, empty)| (!empty).then_some(flag))
}

/// `quantize` and `convert --format hf --quant`: same options, same code.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_quantize(
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
    let exec = ExecOptions {
        device: f.device,
        ..exec
    };
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
            awq_fold: f.awq_fold,
        },
        sq_alpha: f.sq_alpha,
        kv_cache: f.kv_cache,
        group_size: f.group_size,
        selection: quant::select::Selection::new(&f.include, &f.exclude)?
            .with_layer_rules(&f.layer_quant)?,
        max_shard_size: max_shard_size.unwrap_or(formats::safetensors::DEFAULT_MAX_SHARD_SIZE),
        eval_data: f.eval_data.clone(),
        eval: crate::eval::EvalOptions {
            ctx: f.eval_ctx,
            max_windows: f.eval_max_windows,
            progress,
            act_quant: f.eval_act_quant,
            ..Default::default()
        },
        exec,
        output: output_layout,
        hf_format: f.hf_format,
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
        "layer_quant": f.layer_quant,
        "calib_data": f.calib_data,
        "calib_stats": f.calib_stats,
        "sq_alpha": f.sq_alpha,
        "hf_format": f.hf_format,
        "awq_fold": f.awq_fold,
        "kv_cache": f.kv_cache.map(|k| k.quant_algo()),
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
