//! `quantize`: plan-then-stream quantization of a Hugging Face checkpoint into modelopt's
//! unified HF layout ([`hf`]). A calibration phase ([`calib`]) computes the small per-tensor
//! state (FP8 scales, SmoothQuant factors, AWQ scales); the executor then streams every
//! quantized weight in row chunks ([`producer`]); the report ([`report`]) compares the result
//! with the input. GGUF block types (llama.cpp's q8_0 … q6_k and presets) are in [`gguf`].

pub mod auto;
pub mod awq;
pub mod calib;
pub mod gguf;
pub mod hf;
pub mod producer;
pub mod report;
pub mod scheme;
pub mod select;
pub mod smoothquant;
pub mod transformers;
pub mod trtllm;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::plan::{self, ExecOptions};
use calib::{CalibSource, Calibration};
use hf::LinearState;
use rayon::prelude::*;
use report::{ModelQuality, QuantizeReport, TensorQuality};
use scheme::{QuantRequest, QuantScheme};
use select::Selection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const DEFAULT_GROUP_SIZE: usize = 128;
/// `quant_algo` of a checkpoint whose linears differ in scheme (TensorRT-LLM `QuantAlgo`).
pub use crate::model::trtllm_quant::MIXED_PRECISION;
pub const DEFAULT_SQ_ALPHA: f32 = 0.5;

#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub request: QuantRequest,
    pub target: Option<auto::Target>,
    pub calib: CalibSource,
    pub sq_alpha: f32,
    /// Quantize the KV cache (scales from calibration statistics).
    pub kv_cache: Option<KvCacheQuant>,
    pub group_size: usize,
    pub selection: Selection,
    pub max_shard_size: u64,
    /// Held-out text for the model-level report (perplexity, KL vs the input).
    pub eval_data: Option<PathBuf>,
    pub eval: crate::eval::EvalOptions,
    pub exec: ExecOptions,
    /// Where the quantized model goes.
    pub output: QuantOutput,
    /// The layout of a Hugging Face output (`--hf-format`).
    pub hf_format: transformers::HfFormat,
}

/// How the KV cache is quantized (`--kv-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvCacheQuant {
    /// E4M3 with one scale per attention layer: max |K|, |V| over the calibration / 448.
    Fp8,
}

impl KvCacheQuant {
    /// TensorRT-LLM / modelopt `kv_cache_quant_algo`.
    pub fn quant_algo(self) -> &'static str {
        match self {
            KvCacheQuant::Fp8 => "FP8",
        }
    }
}

/// Per attention layer, the FP8 KV-cache scales (k, v) = max |K| / 448, max |V| / 448 (keys
/// after RoPE), from calibration statistics.
pub type KvScales = Vec<(f32, f32)>;

/// The layout `quantize` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantOutput {
    /// modelopt's unified Hugging Face checkpoint ([`hf`]).
    #[default]
    Hf,
    /// A TensorRT-LLM checkpoint at this tensor/pipeline parallelism ([`trtllm`]).
    Trtllm(crate::shard::Parallel),
}

/// Quantizes the Hugging Face checkpoint `input` into the folder `output`.
pub fn quantize(input: &Path, output: &Path, opts: &QuantizeOptions) -> Result<QuantizeReport> {
    let ckpt = Arc::new(Checkpoint::open(input)?);
    if !matches!(ckpt.as_ref(), Checkpoint::Safetensors(_)) {
        return Err(Error::Usage(
            "quantize to a Hugging Face folder needs a safetensors input; GGUF block types are made by `convert --format gguf --quant TYPE`".into(),
        ));
    }
    if output.exists() && !opts.exec.force {
        return Err(Error::Usage(format!(
            "{} already exists (use --force to replace it)",
            output.display()
        )));
    }
    if !(opts.sq_alpha.is_finite() && (0.0..=1.0).contains(&opts.sq_alpha)) {
        return Err(Error::Usage(format!(
            "--sq-alpha must be in [0, 1], got {}",
            opts.sq_alpha
        )));
    }
    let group = opts.group_size;
    if group == 0 || !group.is_multiple_of(2) {
        return Err(Error::Usage(format!(
            "--group-size must be a positive even number, got {group}"
        )));
    }
    let cfg = ModelConfig::load(&ckpt.root())?;
    let default_scheme = match opts.request {
        QuantRequest::Scheme(s) => s,
        QuantRequest::Auto => {
            let target = opts.target.ok_or_else(|| {
                Error::Usage("--quant auto needs --target h100|h200|a100|l40s|rtx4090|cpu".into())
            })?;
            auto::choose(target, &cfg, group as u64)?
        }
    };

    // Checked before calibration: `--device cuda` without a GPU fails at once.
    let device = opts.exec.device.resolve()?;
    // Which linears, with which scheme, checked before any work.
    let transformers = opts.hf_format == transformers::HfFormat::Transformers;
    let (selected, excluded) = select_linears(&ckpt, opts, default_scheme, transformers)?;
    let used: BTreeSet<QuantScheme> = selected.iter().map(|l| l.2).collect();
    // One scheme names the checkpoint; several make it MIXED_PRECISION.
    let scheme = match used.len() {
        1 => used.first().copied().unwrap_or(default_scheme),
        _ => default_scheme,
    };
    let mixed = used.len() > 1;
    let any_int4 = used.iter().any(|s| s.is_int4());
    if let QuantOutput::Trtllm(par) = opts.output {
        let row_parallel_int4 = selected
            .iter()
            .any(|(m, _, s)| s.is_int4() && (m.ends_with(".o_proj") || m.ends_with(".down_proj")));
        trtllm::check_request(
            &cfg,
            row_parallel_int4,
            group as u64,
            par,
            opts.eval_data.is_some(),
        )?;
    }
    if transformers {
        if matches!(opts.output, QuantOutput::Trtllm(_)) {
            return Err(Error::Usage(
                "--hf-format applies to Hugging Face output, not --format trtllm".into(),
            ));
        }
        if mixed {
            return Err(Error::Usage(
                "--hf-format transformers holds one scheme (its quantization_config has no per-layer form): drop --layer-quant or use --hf-format modelopt (MIXED_PRECISION)".into(),
            ));
        }
        transformers::check_scheme(scheme)?;
    }
    // AutoAWQ's GEMM layout has no pre-quant scale: transformers' AWQ implies the fold.
    let mut calib_source = opts.calib.clone();
    calib_source.awq_fold |= transformers && scheme.is_int4();
    let opts = &QuantizeOptions {
        calib: calib_source,
        ..opts.clone()
    };
    // The fold divides the op before an AWQ site, which may be another linear (v_proj before
    // o_proj, up_proj before down_proj): only the INT4 producers apply that division.
    let not_int4 = std::iter::once(default_scheme)
        .chain(used.iter().copied())
        .find(|s| !s.is_int4());
    if let (true, Some(other)) = (opts.calib.awq_fold, not_int4) {
        return Err(Error::Usage(format!(
            "--awq-fold applies when every quantized linear is int4_awq or int4_rtn, not {}",
            other.name()
        )));
    }
    if opts.calib.awq_fold && matches!(opts.output, QuantOutput::Trtllm(_)) {
        return Err(Error::Usage(
            "--awq-fold applies to Hugging Face output; TensorRT-LLM keeps AWQ's pre_quant_scale"
                .into(),
        ));
    }
    if opts.kv_cache.is_some() && opts.calib.data.is_none() && opts.calib.stats.is_none() {
        return Err(Error::Usage(
            "--kv-cache fp8 needs calibration: give --calib-data FILE (calibration text) or --calib-stats FILE (from `ckpt-opt calibrate`)".into(),
        ));
    }
    if opts.calib.awq_clip && !used.contains(&QuantScheme::Int4Awq) {
        return Err(Error::Usage(format!(
            "--awq-clip applies to int4_awq, not {}",
            scheme.name()
        )));
    }
    let sources = ckpt.tensors();

    let started = Instant::now();
    let awq_modules: Vec<String> = selected
        .iter()
        .filter(|l| l.2 == QuantScheme::Int4Awq)
        .map(|l| l.0.clone())
        .collect();
    let needs = calib::Needs {
        stats: match used.iter().find(|s| s.needs_statistics()) {
            Some(s) => Some(format!("--quant {}", s.name())),
            None => opts.kv_cache.map(|_| "--kv-cache fp8".to_string()),
        },
        awq: &awq_modules,
    };
    let calibration = calib::run(&needs, &ckpt, &cfg, &opts.calib, group)?;
    // 1-D tensors (norms, biases) divided elementwise, and unquantized 2-D weights whose
    // rows are divided, by a smoothing or folded AWQ factor.
    let mut norm_divisors = BTreeMap::new();
    let mut divided_rows = BTreeMap::new();
    let mut linears: Vec<LinearState> = selected
        .iter()
        .map(|(m, i, scheme)| LinearState {
            module: m.clone(),
            source_index: *i,
            scheme: *scheme,
            col_scale: None,
            row_divisor: None,
            pre_quant_scale: None,
            input_scale: None,
            fp8_scale: None,
            clip: None,
            errors: Arc::default(),
        })
        .collect();
    let mut awq_choices = Vec::new();
    if let Some(stats) = &calibration.stats {
        if used.contains(&QuantScheme::Fp8) {
            for l in linears.iter_mut().filter(|l| l.scheme == QuantScheme::Fp8) {
                let act = stats.input_absmax(&l.module).unwrap_or(&[]);
                let amax = kernels::cpu::scale::amax(act);
                l.input_scale = Some(kernels::cpu::fp8_quant::fp8_scale(amax));
            }
            fp8_weight_scales(&ckpt, &mut linears)?;
        }
        if used.contains(&QuantScheme::Int8Sq) {
            plan_smoothquant(
                &ckpt,
                &cfg,
                stats,
                opts.sq_alpha,
                &mut linears,
                &mut norm_divisors,
            )?;
        }
    }
    if let Some((choices, clips)) = &calibration.awq {
        let mut seen = BTreeSet::new();
        let mut folds = Vec::new();
        for l in linears.iter_mut() {
            l.clip = clips.get(&l.module).cloned().map(Arc::new);
            if let Some(c) = choices.get(&l.module) {
                if c.ratio.is_some() {
                    if !opts.calib.awq_fold {
                        l.pre_quant_scale = Some(c.scale.iter().map(|s| 1.0 / s).collect());
                    }
                    l.col_scale = Some(Arc::new(c.scale.clone()));
                }
                if seen.insert(c.modules.clone()) {
                    awq_choices.push(c.clone());
                    if opts.calib.awq_fold && c.ratio.is_some() {
                        folds.push(c.clone());
                    }
                }
            }
        }
        for c in folds {
            let target = awq::fold_target(&cfg, &c.modules[0]);
            let divided = Divided {
                vectors: &mut norm_divisors,
                rows: &mut divided_rows,
            };
            fold_awq_scale(&ckpt, target, &c, &mut linears, divided)?;
        }
    }
    if !opts.calib.awq_fold {
        // `pre_quant_scale: true` promises the tensor on every AWQ linear: ones where the search
        // kept plain RTN (modelopt's awq_lite sets a pre-quant scale on every linear it visits).
        for l in linears
            .iter_mut()
            .filter(|l| l.scheme == QuantScheme::Int4Awq && l.pre_quant_scale.is_none())
        {
            l.pre_quant_scale = Some(vec![1.0; sources[l.source_index].shape[1] as usize]);
        }
    }
    if matches!(opts.output, QuantOutput::Trtllm(_)) {
        // TensorRT-LLM multiplies every SmoothQuant linear's input by its
        // `prequant_scaling_factor` and has no norm absorbing it (see `trtllm`): the sites
        // folded into a norm in the HF layout get `1/s` here instead, the norms stay as they are.
        for l in linears
            .iter_mut()
            .filter(|l| l.scheme == QuantScheme::Int8Sq)
        {
            if let (Some(s), None) = (&l.col_scale, &l.pre_quant_scale) {
                l.pre_quant_scale = Some(s.iter().map(|v| 1.0 / v).collect());
            }
        }
    }
    let kv_scales = match opts.kv_cache {
        Some(KvCacheQuant::Fp8) => Some(kv_cache_scales(&calibration, &cfg)?),
        None => None,
    };
    let calibration_seconds = started.elapsed().as_secs_f64();

    let stats = match opts.output {
        QuantOutput::Hf => {
            let job = hf::HfJob {
                ckpt: &ckpt,
                scheme: (!mixed).then_some(scheme),
                group,
                linears: &linears,
                norm_divisors: &norm_divisors,
                divided_rows: &divided_rows,
                awq_fold: opts.calib.awq_fold,
                format: opts.hf_format,
                excluded: &excluded,
                kv_scales: kv_scales.as_deref(),
                device,
                max_shard_size: opts.max_shard_size,
                output,
            };
            let plan = hf::plan(&job)?;
            plan::execute(&plan, &ckpt, &opts.exec)?
        }
        QuantOutput::Trtllm(par) => {
            let shard_input = crate::shard::input::open(input)?;
            let job = trtllm::TrtllmJob {
                ckpt: &ckpt,
                input: &shard_input,
                scheme: (!mixed).then_some(scheme),
                group,
                par,
                linears: &linears,
                kv_scales: kv_scales.as_deref(),
                device,
                output,
            };
            let plan = trtllm::plan(&job)?;
            plan::execute_produced(&plan, &opts.exec)?
        }
    };

    let tensors: Vec<TensorQuality> = linears
        .iter()
        .map(|l| {
            let shape = sources[l.source_index].shape.clone();
            let name = format!("{}.weight", l.module);
            TensorQuality::new(name, shape, l.scheme, l.errors.totals())
        })
        .collect();
    let n = tensors.len().max(1) as f64;
    let model = match &opts.eval_data {
        Some(data) => {
            let teacher = crate::eval::eval(input, data, None, &opts.eval)?;
            let student = crate::eval::eval(output, data, Some(input), &opts.eval)?;
            Some(ModelQuality::from_reports(&teacher, &student))
        }
        None => None,
    };
    Ok(QuantizeReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        scheme: if mixed { "mixed" } else { scheme.name() },
        quant_algo: if mixed {
            MIXED_PRECISION
        } else {
            scheme.quant_algo()
        },
        group_size: any_int4.then_some(group),
        quantized_tensors: tensors.len(),
        excluded_modules: excluded,
        calibration_seconds,
        quantization_seconds: stats.seconds,
        bytes_written: stats.bytes_written,
        mean_rel_error: tensors.iter().map(|t| t.rel_error).sum::<f64>() / n,
        min_sqnr_db: tensors
            .iter()
            .map(|t| t.sqnr_db)
            .fold(f64::INFINITY, f64::min),
        tensors,
        awq: awq_choices,
        model,
    })
}

/// A linear to quantize: module name, source tensor index, scheme.
type Selected = (String, usize, QuantScheme);

/// The linears `quantize` quantizes, each with its scheme (`--quant`, `--layer-quant`), and
/// the candidate modules left as they are; fails, naming the tensor, on weights a scheme
/// cannot hold.
fn select_linears(
    ckpt: &Checkpoint,
    opts: &QuantizeOptions,
    default: QuantScheme,
    transformers: bool,
) -> Result<(Vec<Selected>, Vec<String>)> {
    let group = opts.group_size as u64;
    let paths = ckpt.file_paths();
    let mut selected = Vec::new();
    let mut excluded = Vec::new();
    for (i, t) in ckpt.tensors().iter().enumerate() {
        let Some(module) = Selection::candidate(&t.name, &t.shape) else {
            continue;
        };
        let Some(scheme) = opts.selection.scheme_of(&t.name, &t.shape, default) else {
            excluded.push(module.to_string());
            continue;
        };
        let fail = |why: String| Error::tensor(&paths[t.file], &t.name, why);
        if !t.ty.dense().is_some_and(|d| d.is_float()) {
            return Err(fail(format!("{} weights cannot be quantized", t.ty.name())));
        }
        if scheme.is_int4() {
            if !t.shape[1].is_multiple_of(group) {
                return Err(fail(format!(
                    "input width {} is not a multiple of --group-size {group}",
                    t.shape[1]
                )));
            }
            if transformers && !t.shape[0].is_multiple_of(transformers::AWQ_PACK) {
                return Err(fail(format!(
                    "{} output rows: AWQ's qweight packs 8 output channels per int32",
                    t.shape[0]
                )));
            }
            if !t.shape[0].is_multiple_of(2) {
                return Err(fail(format!(
                    "{} output rows: INT4 packs pairs of rows, so the count must be even",
                    t.shape[0]
                )));
            }
        }
        selected.push((module.to_string(), i, scheme));
    }
    check_shared_inputs(&selected)?;
    Ok((selected, excluded))
}

/// Linears that read one input (q/k/v, gate/up) share a scheme: TensorRT-LLM fuses q/k/v
/// into one linear, and modelopt requires one format per fused group
/// (`export/quant_utils.py` `preprocess_linear_fusion`: "Modules have different quantization
/// formats"); SmoothQuant and AWQ scale that shared input once.
fn check_shared_inputs(selected: &[Selected]) -> Result<()> {
    const SHARED: [&[&str]; 2] = [
        &[
            ".self_attn.q_proj",
            ".self_attn.k_proj",
            ".self_attn.v_proj",
        ],
        &[".mlp.gate_proj", ".mlp.up_proj"],
    ];
    let mut first: BTreeMap<(String, usize), (&str, QuantScheme)> = BTreeMap::new();
    for (module, _, scheme) in selected {
        let Some((site, suffix)) = SHARED.iter().enumerate().find_map(|(site, suffixes)| {
            suffixes
                .iter()
                .find(|s| module.ends_with(*s))
                .map(|s| (site, *s))
        }) else {
            continue;
        };
        let layer = module[..module.len() - suffix.len()].to_string();
        match first.get(&(layer.clone(), site)) {
            Some((other, s)) if s != scheme => {
                return Err(Error::Usage(format!(
                    "--layer-quant gives {other} {} but {module} {}: linears reading the same input (q/k/v, gate/up) must share one scheme",
                    s.name(),
                    scheme.name()
                )))
            }
            Some(_) => {}
            None => {
                first.insert((layer, site), (module, *scheme));
            }
        }
    }
    Ok(())
}

/// Where folded factors go: 1-D tensors divided elementwise, unquantized 2-D weights whose rows
/// are divided.
struct Divided<'a> {
    vectors: &'a mut BTreeMap<String, Vec<f32>>,
    rows: &'a mut BTreeMap<String, Arc<Vec<f32>>>,
}

/// `--awq-fold`: the site's linears quantize `W·diag(s)` and `1/s` goes into the op before
/// them (AutoAWQ `scale_ln_fcs`: norm `/ s`; `scale_fc_fc`: the previous linear's output rows
/// and bias `/ s`), in the tensor's own dtype.
fn fold_awq_scale(
    ckpt: &Checkpoint,
    target: Option<awq::FoldTarget>,
    choice: &awq::AwqChoice,
    linears: &mut [LinearState],
    divided: Divided,
) -> Result<()> {
    let Some(target) = target else {
        // The observer only searches foldable sites; a site without a target keeps s = 1.
        for l in linears
            .iter_mut()
            .filter(|l| choice.modules.contains(&l.module))
        {
            l.col_scale = None;
        }
        return Ok(());
    };
    let sources = ckpt.tensors();
    let find = |name: &str| sources.iter().find(|t| t.name == name);
    let fits = |name: &str, rows: u64| -> Result<bool> {
        let Some(t) = find(name) else {
            return Ok(false);
        };
        if t.shape.first() != Some(&rows) {
            return Err(Error::tensor(
                &ckpt.file_paths()[t.file],
                name,
                format!(
                    "shape {:?}: cannot fold an AWQ scale of {rows} channels into it",
                    t.shape
                ),
            ));
        }
        Ok(true)
    };
    let s = choice.scale.clone();
    let n = s.len() as u64;
    match target {
        awq::FoldTarget::Norm(norm) => {
            if !fits(&norm, n)? {
                return Err(Error::tensor(
                    ckpt.display_path(),
                    &norm,
                    "missing: --awq-fold divides it by the AWQ scale",
                ));
            }
            divided.vectors.insert(norm, s);
        }
        awq::FoldTarget::Rows(module) => {
            let weight = format!("{module}.weight");
            if !fits(&weight, n)? {
                return Err(Error::tensor(
                    ckpt.display_path(),
                    &weight,
                    "missing: --awq-fold divides its rows by the AWQ scale",
                ));
            }
            let bias = format!("{module}.bias");
            if fits(&bias, n)? {
                divided.vectors.insert(bias, s.clone());
            }
            let s = Arc::new(s);
            match linears.iter_mut().find(|l| l.module == module) {
                Some(l) => l.row_divisor = Some(s),
                None => {
                    divided.rows.insert(weight, s);
                }
            }
        }
    }
    Ok(())
}

/// FP8 KV-cache scales per layer from the calibration statistics (gathered for the KV cache
/// when no scheme needed them). Scale = amax / 448 (modelopt `export/quant_utils.py`
/// `get_kv_cache_scaling_factor`: the k/v bmm quantizers' amax over the E4M3 max).
fn kv_cache_scales(calibration: &Calibration, cfg: &ModelConfig) -> Result<KvScales> {
    let stats = calibration
        .stats
        .as_ref()
        .ok_or_else(|| Error::Usage("--kv-cache fp8 needs calibration statistics".into()))?;
    (0..cfg.num_hidden_layers as usize)
        .map(|l| {
            let (k, v) = stats.kv_cache_absmax(l).ok_or_else(|| {
                Error::Usage(format!(
                    "--kv-cache fp8: the calibration statistics have no KV-cache maxima for layer {l} (written by an older `ckpt-opt calibrate`): run calibrate again or give --calib-data"
                ))
            })?;
            let s = kernels::cpu::fp8_quant::fp8_scale;
            Ok((s(k), s(v)))
        })
        .collect()
}

/// Rows decoded per step of a plan-time read pass (bounds its memory to a few MiB per thread).
const PASS_ROWS_BYTES: usize = 4 << 20;

/// A plan-time read pass over `src`: its dtype, its row width and the bytes of whole rows read
/// per step (about [`PASS_ROWS_BYTES`], at least one row).
fn pass_geometry(
    ckpt: &Checkpoint,
    src: &crate::checkpoint::SourceTensor,
) -> Result<(formats::Dtype, usize, usize)> {
    let dtype = src
        .ty
        .dense()
        .ok_or_else(|| crate::checkpoint::unsupported_type(ckpt, src, "quantized"))?;
    let cols = src.shape.last().copied().unwrap_or(1) as usize;
    let row_bytes = (cols * dtype.size()).max(1);
    Ok((
        dtype,
        cols,
        (PASS_ROWS_BYTES / row_bytes).max(1) * row_bytes,
    ))
}

/// Runs `f` over `src`'s rows decoded to f32, chunk by chunk, releasing the pages read; fails
/// on NaN / ±Inf naming the tensor.
fn for_each_row_chunk(
    ckpt: &Checkpoint,
    src: &crate::checkpoint::SourceTensor,
    mut f: impl FnMut(&[f32]),
) -> Result<()> {
    let path = &ckpt.file_paths()[src.file];
    let (dtype, cols, chunk_bytes) = pass_geometry(ckpt, src)?;
    let bytes = ckpt.bytes(src);
    let mut buf = Vec::new();
    for (c, chunk) in bytes.chunks(chunk_bytes).enumerate() {
        buf.resize(chunk.len() / dtype.size(), 0.0f32);
        kernels::cpu::cast::decode_f32(chunk, dtype, &mut buf)
            .map_err(|e| Error::tensor(path, &src.name, e.to_string()))?;
        if let Some(i) = kernels::cpu::scale::first_non_finite(&buf) {
            return Err(not_finite(
                path,
                &src.name,
                buf[i],
                c * chunk_bytes / dtype.size() + i,
                cols,
            ));
        }
        f(&buf);
        ckpt.mapped(src.file)
            .release(src.start + (c * chunk_bytes) as u64, chunk.len() as u64);
    }
    Ok(())
}

/// `tensor NAME: NaN at row R, column C: cannot quantize` for element `at` of a `cols`-wide tensor.
fn not_finite(path: &Path, name: &str, value: f32, at: usize, cols: usize) -> Error {
    let why = format!(
        "{value} at row {}, column {}: cannot quantize",
        at / cols,
        at % cols
    );
    Error::tensor(path, name, why)
}

/// FP8 per-tensor weight scales of the FP8 linears: one read pass per weight over its encoded
/// bytes (in parallel over tensors; [`kernels::cpu::fp8_quant::amax_encoded`] also refuses
/// NaN / ±Inf, which the streaming pass then need not check).
fn fp8_weight_scales(ckpt: &Checkpoint, linears: &mut [LinearState]) -> Result<()> {
    use kernels::cpu::fp8_quant::{amax_encoded, fp8_scale, Amax};
    let sources = ckpt.tensors();
    let fp8 = |l: &&mut LinearState| l.scheme == QuantScheme::Fp8;
    let mut linears: Vec<&mut LinearState> = linears.iter_mut().filter(fp8).collect();
    let scales = linears
        .par_iter()
        .map(|l| {
            let src = &sources[l.source_index];
            let path = &ckpt.file_paths()[src.file];
            let (dtype, cols, per) = pass_geometry(ckpt, src)?;
            let mut amax = 0.0f32;
            for (c, chunk) in ckpt.bytes(src).chunks(per).enumerate() {
                match amax_encoded(chunk, dtype)
                    .map_err(|e| Error::tensor(path, &src.name, e.to_string()))?
                {
                    Amax::Finite(m) => amax = amax.max(m),
                    Amax::NotFinite(i) => {
                        let at = c * per / dtype.size() + i;
                        let mut v = [0f32; 1];
                        let b = &chunk[i * dtype.size()..(i + 1) * dtype.size()];
                        kernels::cpu::cast::decode_f32(b, dtype, &mut v)
                            .map_err(|e| Error::tensor(path, &src.name, e.to_string()))?;
                        return Err(not_finite(path, &src.name, v[0], at, cols));
                    }
                }
                ckpt.mapped(src.file)
                    .release(src.start + (c * per) as u64, chunk.len() as u64);
            }
            Ok(fp8_scale(amax))
        })
        .collect::<Result<Vec<f32>>>()?;
    linears
        .iter_mut()
        .zip(scales)
        .for_each(|(l, s)| l.fp8_scale = Some(s));
    Ok(())
}

/// SmoothQuant factors per input site of each layer (see [`smoothquant`]), the norms that
/// absorb them, and the per-tensor INT8 activation scales.
fn plan_smoothquant(
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
    stats: &crate::calibrate::CalibrationStats,
    alpha: f32,
    linears: &mut [LinearState],
    norm_divisors: &mut BTreeMap<String, Vec<f32>>,
) -> Result<()> {
    let sources = ckpt.tensors();
    const SITES: [(&[&str], Option<&str>); 4] = [
        (
            &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
            Some("input_layernorm"),
        ),
        (&["self_attn.o_proj"], None),
        (
            &["mlp.gate_proj", "mlp.up_proj"],
            Some("post_attention_layernorm"),
        ),
        (&["mlp.down_proj"], None),
    ];
    for layer in 0..cfg.num_hidden_layers {
        for (suffixes, norm) in SITES {
            let modules: Vec<String> = suffixes
                .iter()
                .map(|s| format!("model.layers.{layer}.{s}"))
                .collect();
            let idx: Vec<usize> = modules
                .iter()
                .filter_map(|m| {
                    let sq = |l: &LinearState| &l.module == m && l.scheme == QuantScheme::Int8Sq;
                    linears.iter().position(sq)
                })
                .collect();
            if idx.is_empty() {
                continue;
            }
            let act = stats.input_absmax(&modules[0]).unwrap_or(&[]).to_vec();
            // A norm is shared by the whole site: smooth only when every linear of it is
            // quantized, so no unquantized linear sees a changed input.
            let smooth = norm.is_none() || idx.len() == modules.len();
            let s = if smooth {
                let cols = act.len();
                let mut wmax = vec![0.0f32; cols];
                for &i in &idx {
                    for_each_row_chunk(ckpt, &sources[linears[i].source_index], |w| {
                        smoothquant::accumulate_column_absmax(w, cols, &mut wmax)
                    })?;
                }
                smoothquant::smoothing_factors(&act, &wmax, alpha)
            } else {
                vec![1.0; act.len()]
            };
            let input_scale = smoothquant::smoothed_input_scale(&act, &s);
            let shared = Arc::new(s.clone());
            for &i in &idx {
                let l = &mut linears[i];
                l.input_scale = Some(input_scale);
                if smooth {
                    l.col_scale = Some(Arc::clone(&shared));
                    if norm.is_none() {
                        l.pre_quant_scale = Some(s.iter().map(|v| 1.0 / v).collect());
                    }
                }
            }
            if let (Some(n), true) = (norm, smooth) {
                norm_divisors.insert(format!("model.layers.{layer}.{n}.weight"), s);
            }
        }
    }
    Ok(())
}
