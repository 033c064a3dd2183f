//! `calibrate`: one pass of the forward pass over sampled calibration windows, collecting the
//! activation statistics that quantization (SmoothQuant / AWQ / FP8 scales) and pruning (Minitron
//! importance, ShortGPT block influence) need, written as one safetensors file.
//!
//! Definitions (every sum over all calibration windows `w` and their tokens `t`; `x` is the
//! activation at the named point, `|·|` elementwise):
//! - **Linear inputs**, per input channel `c`: `input_absmax[c] = max_{w,t} |x[t,c]|` and
//!   `input_mean_abs[c] = Σ_{w,t} |x[t,c]| / tokens`. q/k/v share one input (the
//!   `input_layernorm` output) and gate/up another (the `post_attention_layernorm` output); the
//!   same values are stored under each linear's name. `o_proj`'s input is the attention output
//!   `[heads · head_dim]`, `down_proj`'s is `silu(gate) · up`. `lm_head`'s input is the final
//!   norm's output.
//! - **Minitron importance** (Muralidharan et al., arXiv 2407.14679; modelopt
//!   `torch/nas/plugins/megatron.py`): for each window `a_w[c] = mean_t |x[t,c]|`, and
//!   `s[c] = sqrt(Σ_w a_w[c]²)`. FFN neurons: `s` at `down_proj`'s input. Heads: `s` at
//!   `o_proj`'s input, then the L2 norm over each head's `head_dim` channels; query groups
//!   (one per KV head): the L2 norm over the group's heads and their channels. Hidden channels:
//!   `sqrt(Σ_norms Σ_w a_w[c]²)` over the outputs of every `input_layernorm`,
//!   `post_attention_layernorm` and the final norm (one accumulator, as modelopt's shared
//!   `_emb_layernorm_forward_hook` buffer).
//! - **Block influence** (ShortGPT, Men et al., arXiv 2403.03853; modelopt's layer score):
//!   `BI_l = 1 − mean_{w,t} cos(h_in[t], h_out[t])` of the residual stream entering and leaving
//!   layer `l` (a zero vector counts as cosine 1 with another zero vector, else 0).
//!
//! Partial sums are per window, in f64, and are merged in window order after each layer, so the
//! file is the same bytes whatever the thread count or timing.

use crate::checkpoint::Checkpoint;
use crate::data::{self, Sampling, TextSource};
use crate::error::{Error, Result};
use crate::forward::{tokenizer, ActivationObserver, Model, Tap};
use crate::model::ModelConfig;
use formats::safetensors::{SafetensorsFile, TensorSpec};
use formats::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// `__metadata__["format"]` of a statistics file.
pub const FORMAT: &str = "ckpt-opt-calibration-v1";

/// The linears of one decoder layer, by the suffix of their Hugging Face weight name.
pub use crate::model::LAYER_LINEARS as LINEARS;

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub sampling: Sampling,
    /// Windows run together per pass over the weights.
    pub batch: usize,
    pub progress: bool,
    /// Also write the sampled token windows as JSON (`[[id, ...], ...]`) here (for tests).
    pub dump_windows: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CalibrateReport {
    pub model: PathBuf,
    pub data: PathBuf,
    pub output: PathBuf,
    pub samples: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub windows: u64,
    pub tokens: u64,
    pub tensors: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// The model dimensions a statistics file is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Dims {
    pub fn of(cfg: &ModelConfig) -> Self {
        Dims {
            layers: cfg.num_hidden_layers as usize,
            hidden: cfg.hidden_size as usize,
            ffn: cfg.intermediate_size as usize,
            heads: cfg.num_attention_heads as usize,
            kv_heads: cfg.num_key_value_heads as usize,
            head_dim: cfg.head_dim as usize,
        }
    }

    const KEYS: [&'static str; 6] = [
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
    ];

    fn values(&self) -> [usize; 6] {
        [
            self.layers,
            self.hidden,
            self.ffn,
            self.heads,
            self.kv_heads,
            self.head_dim,
        ]
    }

    /// Width of a linear's input.
    fn linear_in(&self, suffix: &str) -> usize {
        match suffix {
            "self_attn.o_proj" => self.heads * self.head_dim,
            "mlp.down_proj" => self.ffn,
            _ => self.hidden,
        }
    }

    /// Every tensor of the file, with its shape, in a fixed order.
    pub fn tensor_specs(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for l in 0..self.layers {
            for lin in LINEARS {
                let n = self.linear_in(lin);
                out.push((input_absmax_name(&format!("model.layers.{l}.{lin}")), n));
                out.push((input_mean_abs_name(&format!("model.layers.{l}.{lin}")), n));
            }
            out.push((format!("importance.layers.{l}.ffn"), self.ffn));
            out.push((format!("importance.layers.{l}.heads"), self.heads));
            out.push((format!("importance.layers.{l}.query_groups"), self.kv_heads));
        }
        out.push((input_absmax_name("lm_head"), self.hidden));
        out.push((input_mean_abs_name("lm_head"), self.hidden));
        out.push(("importance.hidden".into(), self.hidden));
        out.push(("block_influence".into(), self.layers));
        out
    }
}

/// `stats.{linear}.input_absmax`, `linear` an HF name without `.weight`.
pub fn input_absmax_name(linear: &str) -> String {
    format!("stats.{linear}.input_absmax")
}

/// `stats.model.layers.{layer}.self_attn.{k|v}_cache_absmax`: one value, max |k| (after RoPE)
/// or max |v| over the calibration tokens.
pub fn kv_absmax_name(layer: usize, kv: char) -> String {
    format!("stats.model.layers.{layer}.self_attn.{kv}_cache_absmax")
}

/// `stats.{linear}.input_mean_abs`.
pub fn input_mean_abs_name(linear: &str) -> String {
    format!("stats.{linear}.input_mean_abs")
}

/// A statistics file in memory: every tensor by name (all 1-D f32), with the dimensions and
/// metadata it was written with.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationStats {
    pub dims: Dims,
    pub windows: u64,
    pub tokens: u64,
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, Vec<f32>>,
}

impl CalibrationStats {
    fn get(&self, name: &str) -> &[f32] {
        self.tensors.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Per-channel max |x| at the input of `linear` (e.g. `model.layers.0.self_attn.q_proj`).
    pub fn input_absmax(&self, linear: &str) -> Option<&[f32]> {
        self.tensors
            .get(&input_absmax_name(linear))
            .map(Vec::as_slice)
    }

    /// max |k| and max |v| of layer `layer`'s KV cache (keys after RoPE) over the calibration
    /// tokens; `None` for statistics written before they were recorded.
    pub fn kv_cache_absmax(&self, layer: usize) -> Option<(f32, f32)> {
        let one = |c| Some(*self.tensors.get(&kv_absmax_name(layer, c))?.first()?);
        Some((one('k')?, one('v')?))
    }

    /// Per-channel mean |x| at the input of `linear`.
    pub fn input_mean_abs(&self, linear: &str) -> Option<&[f32]> {
        self.tensors
            .get(&input_mean_abs_name(linear))
            .map(Vec::as_slice)
    }

    pub fn ffn_importance(&self, layer: usize) -> &[f32] {
        self.get(&format!("importance.layers.{layer}.ffn"))
    }

    pub fn head_importance(&self, layer: usize) -> &[f32] {
        self.get(&format!("importance.layers.{layer}.heads"))
    }

    pub fn query_group_importance(&self, layer: usize) -> &[f32] {
        self.get(&format!("importance.layers.{layer}.query_groups"))
    }

    pub fn hidden_importance(&self) -> &[f32] {
        self.get("importance.hidden")
    }

    pub fn block_influence(&self) -> &[f32] {
        self.get("block_influence")
    }

    /// Checks that these statistics fit a model of config `cfg`: every tensor the model implies
    /// is present with the model's shape. `path` names the statistics file in errors.
    pub fn check_model(&self, cfg: &ModelConfig, path: &Path) -> Result<()> {
        for (name, n) in Dims::of(cfg).tensor_specs() {
            match self.tensors.get(&name) {
                None => {
                    return Err(Error::tensor(
                        path,
                        &name,
                        "missing: the statistics are from another model",
                    ))
                }
                Some(v) if v.len() != n => {
                    return Err(Error::tensor(
                        path,
                        &name,
                        format!(
                            "shape [{}] does not match the model (expected [{n}]): the statistics are from another model",
                            v.len()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Writes the file atomically (all F32 tensors, `__metadata__` sorted).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(TensorSpec, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, v)| {
                let spec = TensorSpec::new(name.clone(), Dtype::F32, vec![v.len() as u64]);
                (spec, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            })
            .collect();
        let refs: Vec<(TensorSpec, &[u8])> = bytes
            .iter()
            .map(|(s, b)| (s.clone(), b.as_slice()))
            .collect();
        formats::safetensors::write_file(path, &refs, Some(&self.metadata))?;
        Ok(())
    }
}

/// Reads a statistics file written by `calibrate`, checking its layout against its own
/// metadata (every tensor present, F32, of the shape the recorded dimensions give).
pub fn load_stats(path: &Path) -> Result<CalibrationStats> {
    let file = SafetensorsFile::open(path)?;
    let metadata = file.header().metadata.clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::data(
            path,
            format!("not a calibration statistics file (no __metadata__ format \"{FORMAT}\")"),
        ));
    }
    let num = |key: &str| -> Result<u64> {
        metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::data(
                    path,
                    format!("__metadata__ `{key}` missing or not a number"),
                )
            })
    };
    let mut v = [0usize; 6];
    for (slot, key) in v.iter_mut().zip(Dims::KEYS) {
        *slot = num(key)? as usize;
    }
    let dims = Dims {
        layers: v[0],
        hidden: v[1],
        ffn: v[2],
        heads: v[3],
        kv_heads: v[4],
        head_dim: v[5],
    };
    let mut tensors = BTreeMap::new();
    for (name, n) in dims.tensor_specs() {
        let info = file
            .get(&name)
            .ok_or_else(|| Error::tensor(path, &name, "missing"))?;
        if info.dtype != Dtype::F32 || info.shape != [n as u64] {
            return Err(Error::tensor(
                path,
                &name,
                format!(
                    "{} {:?}, expected F32 [{n}] for the dimensions in __metadata__",
                    info.dtype.name(),
                    info.shape
                ),
            ));
        }
        let data = file.data(info);
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, values);
    }
    // KV-cache maxima: optional (files from before they were recorded load without them).
    for l in 0..dims.layers {
        for c in ['k', 'v'] {
            let name = kv_absmax_name(l, c);
            let Some(info) = file.get(&name) else {
                continue;
            };
            if info.dtype != Dtype::F32 || info.shape != [1] {
                let why = format!("{} {:?}, expected F32 [1]", info.dtype.name(), info.shape);
                return Err(Error::tensor(path, &name, why));
            }
            let b = file.data(info);
            tensors.insert(name, vec![f32::from_le_bytes([b[0], b[1], b[2], b[3]])]);
        }
    }
    Ok(CalibrationStats {
        dims,
        windows: num("windows")?,
        tokens: num("tokens")?,
        metadata,
        tensors,
    })
}

/// [`load_stats`], then [`CalibrationStats::check_model`] against `cfg`.
pub fn load_stats_for(path: &Path, cfg: &ModelConfig) -> Result<CalibrationStats> {
    let stats = load_stats(path)?;
    stats.check_model(cfg, path)?;
    Ok(stats)
}

/// Runs calibration: samples windows from `data`, runs them through `model_path` and writes the
/// statistics to `output`. Threads come from the current rayon pool.
pub fn calibrate(
    model_path: &Path,
    data_path: &Path,
    output: &Path,
    opts: &CalibrateOptions,
) -> Result<CalibrateReport> {
    check_sampling(opts)?;
    check_output_dir(output)?;
    let (stats, seconds) = collect_stats(model_path, data_path, opts)?;
    stats.write(output)?;
    let s = opts.sampling;
    Ok(CalibrateReport {
        model: model_path.to_path_buf(),
        data: data_path.to_path_buf(),
        output: output.to_path_buf(),
        samples: s.samples,
        seq_len: s.seq_len,
        seed: s.seed,
        windows: stats.windows,
        tokens: stats.tokens,
        tensors: stats.tensors.len(),
        seconds,
        tokens_per_second: stats.tokens as f64 / seconds.max(1e-9),
    })
}

fn check_sampling(opts: &CalibrateOptions) -> Result<()> {
    if opts.sampling.samples == 0 {
        return Err(Error::Usage("--calib-samples must be at least 1".into()));
    }
    if opts.sampling.seq_len == 0 {
        return Err(Error::Usage("--calib-seq-len must be at least 1".into()));
    }
    Ok(())
}

/// The statistics [`calibrate`] writes, kept in memory (pruning computes them on the fly), with
/// the seconds the forward passes took.
pub fn collect_stats(
    model_path: &Path,
    data_path: &Path,
    opts: &CalibrateOptions,
) -> Result<(CalibrationStats, f64)> {
    check_sampling(opts)?;
    let s = opts.sampling;
    let ckpt = Checkpoint::open(model_path)?;
    let model = Model::load(&ckpt)?;
    let (tok, tok_path) = crate::eval::load_checked_tokenizer(&ckpt, &model)?;
    let text = TextSource::open(data_path)?.joined();
    let ids = tokenizer::encode(&tok, &text, &tok_path)?;
    let windows = data::sample_windows(&ids, &s, data_path)?;
    if let Some(p) = &opts.dump_windows {
        let json = serde_json::to_string(&windows)
            .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
        std::fs::write(p, json).map_err(|e| formats::FormatError::io(p, "write", e))?;
    }

    let start = Instant::now();
    let collector = collect(&model, &windows, opts.batch, opts.progress)?;
    let seconds = start.elapsed().as_secs_f64();

    let metadata = BTreeMap::from(
        [
            ("format", FORMAT.to_string()),
            ("model", model_path.display().to_string()),
            ("data", data_path.display().to_string()),
            ("samples", s.samples.to_string()),
            ("seq_len", s.seq_len.to_string()),
            ("seed", s.seed.to_string()),
            ("windows", collector.windows.to_string()),
            ("tokens", collector.tokens.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    Ok((collector.finish(metadata), seconds))
}

/// Runs `windows` through `model` in batches of `batch`, collecting every statistic.
fn collect(model: &Model, windows: &[Vec<u32>], batch: usize, progress: bool) -> Result<Collector> {
    let mut collector = Collector::new(Dims::of(model.config()));
    let bar = crate::eval::progress_bar(progress, windows.len() as u64);
    for batch in windows.chunks(batch.max(1)) {
        let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
        model.observe_batch(&refs, &mut collector)?;
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(collector)
}

/// The statistics of `windows` in memory (what [`calibrate`] writes), for jobs that calibrate
/// on the fly (`quantize --calib-data`) on a model they already hold.
pub fn collect_stats_of_windows(
    model: &Model,
    windows: &[Vec<u32>],
    batch: usize,
    progress: bool,
) -> Result<CalibrationStats> {
    let collector = collect(model, windows, batch, progress)?;
    let metadata = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("windows".to_string(), collector.windows.to_string()),
        ("tokens".to_string(), collector.tokens.to_string()),
    ]);
    Ok(collector.finish(metadata))
}

/// The output's folder must exist (checked before the model runs, so nothing is computed for a
/// file that cannot be written).
fn check_output_dir(output: &Path) -> Result<()> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(formats::FormatError::io(
            output,
            "create",
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("folder {} does not exist", parent.display()),
            ),
        )
        .into());
    }
    if output.is_dir() {
        return Err(Error::Usage(format!(
            "{}: is a folder; -o takes a file name",
            output.display()
        )));
    }
    Ok(())
}

/// One window's reduction at one point: per-channel max |x| and Σ_t |x|.
struct WindowSite {
    absmax: Vec<f32>,
    sum_abs: Vec<f64>,
    tokens: usize,
}

fn reduce(x: &[f32], width: usize) -> WindowSite {
    let mut absmax = vec![0.0f32; width];
    let mut sum_abs = vec![0.0f64; width];
    for row in x.chunks_exact(width) {
        for ((m, s), &v) in absmax.iter_mut().zip(sum_abs.iter_mut()).zip(row) {
            let a = v.abs();
            *m = m.max(a);
            *s += f64::from(a);
        }
    }
    WindowSite {
        absmax,
        sum_abs,
        tokens: x.len() / width.max(1),
    }
}

/// Running statistics of one point over all windows.
#[derive(Clone)]
struct SiteAcc {
    absmax: Vec<f32>,
    sum_abs: Vec<f64>,
    /// Σ_w (mean_t |x|)², Minitron's aggregation.
    sum_sq_mean: Vec<f64>,
}

impl SiteAcc {
    fn new(n: usize) -> Self {
        SiteAcc {
            absmax: vec![0.0; n],
            sum_abs: vec![0.0; n],
            sum_sq_mean: vec![0.0; n],
        }
    }

    fn add(&mut self, w: &WindowSite) {
        let t = w.tokens.max(1) as f64;
        for i in 0..self.absmax.len() {
            self.absmax[i] = self.absmax[i].max(w.absmax[i]);
            self.sum_abs[i] += w.sum_abs[i];
            let a = w.sum_abs[i] / t;
            self.sum_sq_mean[i] += a * a;
        }
    }
}

/// Points per layer: q/k/v input, o_proj input, gate/up input, down_proj input.
const ATTN_IN: usize = 0;
const O_IN: usize = 1;
const MLP_IN: usize = 2;
const DOWN_IN: usize = 3;

/// One window's results for the layer in flight.
#[derive(Default)]
struct Slot {
    sites: [Option<WindowSite>; 4],
    /// max |k|, max |v| of this window's layer (keys after RoPE).
    kv: Option<(f32, f32)>,
    cos_sum: f64,
    final_norm: Option<WindowSite>,
}

/// The [`ActivationObserver`] of calibration.
struct Collector {
    dims: Dims,
    layers: Vec<[SiteAcc; 4]>,
    /// Per layer max |k|, max |v| (the KV cache's contents; FP8 KV-cache scales).
    kv_absmax: Vec<(f32, f32)>,
    cos_sum: Vec<f64>,
    final_norm: SiteAcc,
    slots: Vec<Mutex<Slot>>,
    windows: u64,
    tokens: u64,
}

impl Collector {
    fn new(dims: Dims) -> Self {
        let layer = [
            SiteAcc::new(dims.hidden),
            SiteAcc::new(dims.heads * dims.head_dim),
            SiteAcc::new(dims.hidden),
            SiteAcc::new(dims.ffn),
        ];
        Collector {
            dims,
            layers: vec![layer; dims.layers],
            kv_absmax: vec![(0.0, 0.0); dims.layers],
            cos_sum: vec![0.0; dims.layers],
            final_norm: SiteAcc::new(dims.hidden),
            slots: Vec::new(),
            windows: 0,
            tokens: 0,
        }
    }

    fn finish(self, metadata: BTreeMap<String, String>) -> CalibrationStats {
        let d = self.dims;
        let tokens = self.tokens.max(1) as f64;
        let f32s = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        let sqrt = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x.sqrt()).collect() };
        let mut t = BTreeMap::new();
        let mut hidden_sq = self.final_norm.sum_sq_mean.clone();
        for (l, sites) in self.layers.iter().enumerate() {
            for lin in LINEARS {
                let site = match lin {
                    "self_attn.o_proj" => &sites[O_IN],
                    "mlp.gate_proj" | "mlp.up_proj" => &sites[MLP_IN],
                    "mlp.down_proj" => &sites[DOWN_IN],
                    _ => &sites[ATTN_IN],
                };
                let name = format!("model.layers.{l}.{lin}");
                t.insert(input_absmax_name(&name), site.absmax.clone());
                let mean: Vec<f64> = site.sum_abs.iter().map(|s| s / tokens).collect();
                t.insert(input_mean_abs_name(&name), f32s(&mean));
            }
            for s in [&sites[ATTN_IN], &sites[MLP_IN]] {
                hidden_sq
                    .iter_mut()
                    .zip(&s.sum_sq_mean)
                    .for_each(|(h, x)| *h += x);
            }
            let (k, v) = self.kv_absmax[l];
            t.insert(kv_absmax_name(l, 'k'), vec![k]);
            t.insert(kv_absmax_name(l, 'v'), vec![v]);
            t.insert(
                format!("importance.layers.{l}.ffn"),
                f32s(&sqrt(&sites[DOWN_IN].sum_sq_mean)),
            );
            // Per channel s = sqrt(Σ a²); a head's L2 over its channels is sqrt(Σ_c s²).
            let o = &sites[O_IN].sum_sq_mean;
            let heads: Vec<f64> = o.chunks_exact(d.head_dim).map(|c| c.iter().sum()).collect();
            let group = d.heads / d.kv_heads.max(1);
            let groups: Vec<f64> = heads
                .chunks_exact(group.max(1))
                .map(|c| c.iter().sum())
                .collect();
            t.insert(format!("importance.layers.{l}.heads"), f32s(&sqrt(&heads)));
            t.insert(
                format!("importance.layers.{l}.query_groups"),
                f32s(&sqrt(&groups)),
            );
        }
        t.insert(input_absmax_name("lm_head"), self.final_norm.absmax.clone());
        let mean: Vec<f64> = self.final_norm.sum_abs.iter().map(|s| s / tokens).collect();
        t.insert(input_mean_abs_name("lm_head"), f32s(&mean));
        t.insert("importance.hidden".into(), f32s(&sqrt(&hidden_sq)));
        let bi: Vec<f64> = self.cos_sum.iter().map(|c| 1.0 - c / tokens).collect();
        t.insert("block_influence".into(), f32s(&bi));

        let mut metadata = metadata;
        for (k, v) in Dims::KEYS.iter().zip(d.values()) {
            metadata.insert(k.to_string(), v.to_string());
        }
        CalibrationStats {
            dims: d,
            windows: self.windows,
            tokens: self.tokens,
            metadata,
            tensors: t,
        }
    }
}

impl ActivationObserver for Collector {
    fn begin_batch(&mut self, sequences: usize) {
        self.slots.clear();
        self.slots.resize_with(sequences, Default::default);
    }

    fn observe(&self, seq: usize, _layer: usize, tap: Tap<'_>) {
        let d = &self.dims;
        let (idx, x, width) = match tap {
            Tap::AttnInput(x) => (ATTN_IN, x, d.hidden),
            Tap::OProjInput(x) => (O_IN, x, d.heads * d.head_dim),
            Tap::MlpInput(x) => (MLP_IN, x, d.hidden),
            Tap::DownProjInput(x) => (DOWN_IN, x, d.ffn),
            Tap::Residual { before, after } => {
                let c: f64 = before
                    .chunks_exact(d.hidden)
                    .zip(after.chunks_exact(d.hidden))
                    .map(|(a, b)| cosine(a, b))
                    .sum();
                lock(&self.slots[seq]).cos_sum = c;
                return;
            }
            Tap::KvCache { k, v } => {
                let amax = kernels::cpu::scale::amax;
                lock(&self.slots[seq]).kv = Some((amax(k), amax(v)));
                return;
            }
            Tap::FinalNorm(x) => {
                let r = reduce(x, d.hidden);
                lock(&self.slots[seq]).final_norm = Some(r);
                return;
            }
        };
        let r = reduce(x, width);
        lock(&self.slots[seq]).sites[idx] = Some(r);
    }

    fn layer_done(&mut self, layer: usize) {
        for slot in &self.slots {
            let mut s = lock(slot);
            if layer < self.dims.layers {
                for (acc, site) in self.layers[layer].iter_mut().zip(s.sites.iter_mut()) {
                    if let Some(w) = site.take() {
                        acc.add(&w);
                    }
                }
                self.cos_sum[layer] += std::mem::take(&mut s.cos_sum);
                if let Some((k, v)) = s.kv.take() {
                    let acc = &mut self.kv_absmax[layer];
                    *acc = (acc.0.max(k), acc.1.max(v));
                }
            } else if let Some(w) = s.final_norm.take() {
                self.final_norm.add(&w);
                self.windows += 1;
                self.tokens += w.tokens as u64;
            }
        }
    }
}

fn lock(m: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cosine similarity in f64 (two zero vectors: 1; one zero vector: 0), as `eval`'s.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return if aa == bb { 1.0 } else { 0.0 };
    }
    ab / (aa.sqrt() * bb.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Dims {
        Dims {
            layers: 1,
            hidden: 2,
            ffn: 3,
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
        }
    }

    #[test]
    fn minitron_aggregation_and_linear_stats() {
        let mut c = Collector::new(dims());
        c.begin_batch(2);
        // Window 0: down input [2 tokens, 3]; window 1: [1 token, 3].
        c.observe(0, 0, Tap::DownProjInput(&[1.0, -2.0, 0.0, 3.0, 2.0, 0.0]));
        c.observe(1, 0, Tap::DownProjInput(&[-4.0, 0.0, 1.0]));
        c.observe(0, 0, Tap::OProjInput(&[1.0, 0.0, 0.0, 2.0]));
        c.observe(1, 0, Tap::OProjInput(&[0.0, 0.0, 3.0, 0.0]));
        c.observe(
            0,
            0,
            Tap::KvCache {
                k: &[0.5, -3.0],
                v: &[1.0, 0.0],
            },
        );
        c.observe(
            1,
            0,
            Tap::KvCache {
                k: &[2.0, 0.0],
                v: &[0.0, -4.0],
            },
        );
        c.observe(
            0,
            0,
            Tap::Residual {
                before: &[1.0, 0.0, 0.0, 1.0],
                after: &[1.0, 0.0, 1.0, 0.0],
            },
        );
        c.observe(
            1,
            0,
            Tap::Residual {
                before: &[1.0, 1.0],
                after: &[2.0, 2.0],
            },
        );
        c.layer_done(0);
        c.observe(0, 1, Tap::FinalNorm(&[1.0, 1.0, 1.0, 1.0]));
        c.observe(1, 1, Tap::FinalNorm(&[1.0, 1.0]));
        c.layer_done(1);
        assert_eq!((c.windows, c.tokens), (2, 3));
        let s = c.finish(BTreeMap::new());
        let down = "model.layers.0.mlp.down_proj";
        assert_eq!(s.input_absmax(down).unwrap(), [4.0, 2.0, 1.0]);
        assert_eq!(
            s.input_mean_abs(down).unwrap(),
            [8.0 / 3.0, 4.0 / 3.0, 1.0 / 3.0]
        );
        // a_0 = [2, 2, 0], a_1 = [4, 0, 1].
        let want = [20f32.sqrt(), 2.0, 1.0];
        assert!(s
            .ffn_importance(0)
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() < 1e-6));
        // o channels (one token each): a_0 = [1, 0, 0, 2], a_1 = [0, 0, 3, 0] → head 0: 1,
        // head 1: sqrt(4 + 9); the one query group: sqrt(1 + 13).
        let h = s.head_importance(0);
        assert!((h[0] - 1.0).abs() < 1e-6 && (h[1] - 13f32.sqrt()).abs() < 1e-6);
        assert!((s.query_group_importance(0)[0] - 14f32.sqrt()).abs() < 1e-6);
        // cos: window 0 tokens 1 and 0, window 1 token 1 → BI = 1 - 2/3.
        assert!((s.block_influence()[0] - 1.0 / 3.0).abs() < 1e-6);
        // KV cache: max over both windows, per layer.
        assert_eq!(s.kv_cache_absmax(0), Some((3.0, 4.0)));
        let layers = dims().layers;
        assert_eq!(s.tensors.len(), dims().tensor_specs().len() + 2 * layers);
    }
}
