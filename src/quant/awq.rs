//! AWQ (activation-aware weight quantization, Lin et al. 2023) scale search for INT4 W4A16.
//!
//! For each set of linears sharing one input (AutoAWQ `get_layers_for_scaling` for Llama:
//! q/k/v after `input_layernorm`, gate/up after `post_attention_layernorm`; o_proj and
//! down_proj each on their own, as modelopt's per-linear `awq_lite`), with calibration
//! activations `X` (a bounded subsample of the input rows) and `x_mean = mean_t |x|` over all
//! calibration tokens (AutoAWQ `_search_best_scale`):
//!
//! - `w_mean[j]` = mean over the rows of every linear of the set of `|w| / max|w|_group`
//!   (AutoAWQ: on the concatenated weights reshaped to `(-1, group)`);
//! - for `r = i / 20`, `i = 0..20` (AutoAWQ `_compute_best_scale`, `n_grid = 20`,
//!   `duo_scaling`): `s = max(x_mean^r / (w_mean^(1-r) + 1e-4), 1e-4)`, normalized by
//!   `sqrt(max(s) · min(s))`;
//! - loss = mean squared difference between `X · Wᵀ` and `X · (Q(W·diag(s)) · diag(1/s))ᵀ`
//!   summed over the set's linears (modelopt `awq_lite` scores each linear's own output;
//!   AutoAWQ scores the whole attention / MLP block, which our streaming forward pass does not
//!   re-run per candidate);
//! - the loss uses at most [`MAX_LOSS_ROWS`] output rows per linear (a strided subset) and
//!   at most `calib::AWQ_MAX_SAMPLE_ROWS` calibration tokens per site (every k-th token), which
//!   bounds the search's cost on wide models;
//! - the identity scale (plain RTN) is a candidate too, so the chosen scale never does worse
//!   than RTN on the calibration loss.
//!
//! The written checkpoint keeps `pre_quant_scale = 1/s` per linear (modelopt's
//! `apply_pre_quant_scale_and_smooth(module, 1/best_scale)`) and quantizes `W·diag(s)`; with
//! `--awq-fold` it folds `1/s` into the op before instead ([`fold_target`], AutoAWQ
//! `awq/quantize/scale.py` `apply_scale`), and a site that cannot be folded keeps `s = 1`.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::forward::weights::WeightIndex;
use crate::forward::{ops, ActivationObserver, Tap};
use crate::model::ModelConfig;
use kernels::cpu::int4::fake_quantize_int4_groups;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Grid points of the ratio search (AutoAWQ `n_grid`).
pub const N_GRID: usize = 20;
/// Output rows of a linear the loss is evaluated on (a strided subset beyond this).
pub const MAX_LOSS_ROWS: usize = 512;
/// Output rows per work item of the loss (bounds the scaled weight copy per thread).
const ROW_BLOCK: usize = 64;

/// The outcome of one search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AwqChoice {
    /// Modules of the set, e.g. `model.layers.0.self_attn.q_proj`.
    pub modules: Vec<String>,
    /// Chosen ratio `r`, or `None` when the identity (RTN) won.
    pub ratio: Option<f32>,
    pub loss: f64,
    pub rtn_loss: f64,
    /// The weight column multiplier `s` (activations are multiplied by `1/s`); all ones when
    /// the identity won (written to the report so that a reader can check a folded checkpoint).
    pub scale: Vec<f32>,
}

/// Where `--awq-fold` puts the `1/s` of a site (AutoAWQ `awq/models/llama.py`
/// `get_layers_for_scaling` names the previous op of each; `awq/quantize/scale.py`
/// `scale_ln_fcs` divides a norm's weight, `scale_fc_fc` divides the previous linear's output
/// rows and bias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldTarget {
    /// A norm weight (`input_layernorm` for q/k/v, `post_attention_layernorm` for gate/up).
    Norm(String),
    /// The output rows (and bias) of a linear: `v_proj` for o_proj, `up_proj` for down_proj.
    Rows(String),
}

/// The op `1/s` of the site read by `module` folds into, or `None` when it cannot: o_proj
/// under GQA (v_proj's rows are not o_proj's input channels; AutoAWQ scales o_proj only when
/// `v_proj.weight.shape == o_proj.weight.shape`).
pub fn fold_target(cfg: &ModelConfig, module: &str) -> Option<FoldTarget> {
    let (layer, kind) = module.rsplit_once('.')?;
    let (block, _) = layer.rsplit_once('.')?;
    match kind {
        "q_proj" | "k_proj" | "v_proj" => {
            Some(FoldTarget::Norm(format!("{block}.input_layernorm.weight")))
        }
        "gate_proj" | "up_proj" => Some(FoldTarget::Norm(format!(
            "{block}.post_attention_layernorm.weight"
        ))),
        "o_proj" => (cfg.num_key_value_heads == cfg.num_attention_heads)
            .then(|| FoldTarget::Rows(format!("{layer}.v_proj"))),
        "down_proj" => Some(FoldTarget::Rows(format!("{block}.mlp.up_proj"))),
        _ => None,
    }
}

/// Searches the scale for linears `weights` (each `[out_i, cols]`) sharing input samples `x`
/// (`[rows, cols]`) with per-channel mean |x| `x_mean`, INT4 groups of `group` columns. With
/// `search` false only the identity is scored (a site whose scale could not be folded).
pub fn search_scale(
    x: &[f32],
    x_mean: &[f32],
    weights: &[&[f32]],
    cols: usize,
    group: usize,
    search: bool,
) -> (Option<f32>, Vec<f32>, f64, f64) {
    let rows = x.len() / cols.max(1);
    let w_mean = weight_mean(weights, cols, group);
    let sampled: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| sample_output_rows(w, cols))
        .collect();
    let weights: Vec<&[f32]> = sampled.iter().map(Vec::as_slice).collect();
    let reference: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| ops::linear(x, w, None, rows, cols, true))
        .collect();
    let loss_of = |s: &[f32]| -> f64 {
        let mut total = 0.0f64;
        let mut count = 0usize;
        for (w, y) in weights.iter().zip(&reference) {
            let out = w.len() / cols;
            let parts: Vec<f64> = (0..out.div_ceil(ROW_BLOCK))
                .into_par_iter()
                .map(|b| block_loss(x, rows, cols, group, s, w, y, out, b))
                .collect();
            total += parts.iter().sum::<f64>();
            count += rows * out;
        }
        total / count.max(1) as f64
    };
    let identity = vec![1.0f32; cols];
    let rtn_loss = loss_of(&identity);
    let (mut best_ratio, mut best, mut best_loss) = (None, identity, rtn_loss);
    for i in (0..N_GRID).filter(|_| search) {
        let r = i as f32 / N_GRID as f32;
        let s = candidate_scale(x_mean, &w_mean, r);
        let loss = loss_of(&s);
        if loss < best_loss {
            (best_ratio, best, best_loss) = (Some(r), s, loss);
        }
    }
    (best_ratio, best, best_loss, rtn_loss)
}

/// Every `k`-th output row of `w`, so that at most [`MAX_LOSS_ROWS`] remain: the scale is per
/// input channel and acts on every row alike, so a strided subset of rows estimates the loss
/// at a fraction of the cost on wide layers.
fn sample_output_rows(w: &[f32], cols: usize) -> Vec<f32> {
    let out = w.len() / cols.max(1);
    let stride = out.div_ceil(MAX_LOSS_ROWS).max(1);
    w.chunks_exact(cols)
        .step_by(stride)
        .flatten()
        .copied()
        .collect()
}

/// `mean over rows of |w| / max|w| of its group`, per column, over every linear of the set.
fn weight_mean(weights: &[&[f32]], cols: usize, group: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; cols];
    let mut rows = 0usize;
    for w in weights {
        for row in w.chunks_exact(cols) {
            for (g, acc) in row.chunks_exact(group).zip(sum.chunks_exact_mut(group)) {
                let m = kernels::cpu::scale::amax(g).max(f32::MIN_POSITIVE);
                acc.iter_mut()
                    .zip(g)
                    .for_each(|(a, v)| *a += f64::from(v.abs() / m));
            }
            rows += 1;
        }
    }
    sum.iter()
        .map(|s| (s / rows.max(1) as f64) as f32)
        .collect()
}

/// AutoAWQ's duo-scaling candidate for ratio `r`, normalized by `sqrt(max · min)`.
pub fn candidate_scale(x_mean: &[f32], w_mean: &[f32], r: f32) -> Vec<f32> {
    let mut s: Vec<f32> = x_mean
        .iter()
        .zip(w_mean)
        .map(|(&x, &w)| (x.powf(r) / (w.powf(1.0 - r) + 1e-4)).max(1e-4))
        .collect();
    let (lo, hi) = s.iter().fold((f32::INFINITY, 0.0f32), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    let norm = (lo * hi).sqrt();
    if norm.is_finite() && norm > 0.0 {
        s.iter_mut().for_each(|v| *v /= norm);
    }
    s
}

/// Σ (x·ŵᵀ − y)² over the output rows of block `b` of `w`, `ŵ = Q(w·s)/s`.
#[allow(clippy::too_many_arguments)]
fn block_loss(
    x: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    s: &[f32],
    w: &[f32],
    y: &[f32],
    out: usize,
    b: usize,
) -> f64 {
    let (r0, r1) = (b * ROW_BLOCK, ((b + 1) * ROW_BLOCK).min(out));
    let mut q: Vec<f32> = w[r0 * cols..r1 * cols].to_vec();
    for row in q.chunks_exact_mut(cols) {
        row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        fake_quantize_int4_groups(row, group);
        row.iter_mut().zip(s).for_each(|(v, s)| *v /= s);
    }
    let got = ops::linear(x, &q, None, rows, cols, false);
    let n = r1 - r0;
    let mut sum = 0.0f64;
    for t in 0..rows {
        for (o, &g) in got[t * n..(t + 1) * n].iter().enumerate() {
            let d = f64::from(g - y[t * out + r0 + o]);
            sum += d * d;
        }
    }
    sum
}

/// Clip candidates per group: ratios `1 − i/20` for `i < CLIP_GRID` (AutoAWQ
/// `_compute_best_clip`: `n_grid 20`, `max_shrink 0.5`).
pub const CLIP_GRID: usize = 10;
/// Calibration tokens the clip error is measured on (modelopt `awq_clip`'s
/// `max_tokens_per_batch` 64; AutoAWQ samples 512 on a GPU).
pub const CLIP_TOKENS: usize = 64;

/// AWQ's clip search (AutoAWQ `_compute_best_clip`, symmetric): for every (row, group) of the
/// column-scaled weight `w` (`[out, cols]`), the ratio `r` of the group's max |w| that minimizes
/// `Σ_t (Σ_{k∈g} x[t,k] · (q_r(w)_k − w_k))²` over the input rows `x` (already divided by the
/// AWQ scale), where `q_r` clamps to `±r·amax` and quantizes with scale `r·amax/7`. Returns
/// `[out, cols / group]` ratios (1 where nothing beats plain rounding). AutoAWQ skips q/k.
pub fn search_clip(x: &[f32], w: &[f32], cols: usize, group: usize) -> Vec<f32> {
    use kernels::cpu::scale::{amax, round_half_even_small, scale_for};
    let tokens = x.len() / cols.max(1);
    w.par_chunks(cols)
        .flat_map_iter(|row| {
            let mut ratios = Vec::with_capacity(cols / group);
            let mut d = vec![0.0f32; group];
            for (gi, g) in row.chunks_exact(group).enumerate() {
                let org = amax(g);
                let (mut best, mut best_err) = (1.0f32, f64::INFINITY);
                for i in 0..CLIP_GRID {
                    let r = 1.0 - i as f32 / 20.0;
                    let s = scale_for(org * r, kernels::cpu::int4::INT4_MAX);
                    for (dk, &wk) in d.iter_mut().zip(g) {
                        *dk = round_half_even_small((wk / s).clamp(-7.0, 7.0)) * s - wk;
                    }
                    let mut err = 0.0f64;
                    for t in 0..tokens {
                        let xs = &x[t * cols + gi * group..t * cols + (gi + 1) * group];
                        let dot = dot8(xs, &d);
                        err += f64::from(dot) * f64::from(dot);
                    }
                    if err < best_err {
                        (best, best_err) = (r, err);
                    }
                }
                ratios.push(best);
            }
            ratios
        })
        .collect()
}

/// `Σ a·b` with eight partial sums (vectorizes; the clip search's inner loop).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The four input sites of a decoder layer and the linears that read each.
const SITES: [&[&str]; 4] = [
    &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    &["self_attn.o_proj"],
    &["mlp.gate_proj", "mlp.up_proj"],
    &["mlp.down_proj"],
];

#[derive(Default)]
struct SiteBuf {
    sum_abs: Vec<f64>,
    tokens: usize,
    rows: Vec<f32>,
}

/// Collects, per layer, each site's mean |x| over all tokens and a subsample of input rows,
/// then runs the searches for that layer in `layer_done` and drops the samples: memory is one
/// layer's samples and weights, whatever the depth.
pub struct AwqObserver<'a> {
    weights: WeightIndex<'a>,
    /// Quantized modules (others are left out of their set's search).
    selected: Vec<String>,
    group: usize,
    /// Every `stride`-th token of a sequence is kept as a sample row.
    stride: usize,
    slots: Vec<Mutex<[SiteBuf; 4]>>,
    /// Sequences of the current batch (one slot each).
    sequences: usize,
    /// Run the clip search after the scale search.
    clip: bool,
    /// `--awq-fold`: sites whose scale cannot be folded keep `s = 1`.
    fold: bool,
    pub choices: BTreeMap<String, AwqChoice>,
    /// Clip ratios `[out, cols / group]` by module (with `clip`; not for q/k, as AutoAWQ).
    pub clips: BTreeMap<String, Vec<f32>>,
    pub error: Option<Error>,
}

impl<'a> AwqObserver<'a> {
    pub fn new(
        ckpt: &'a Checkpoint,
        cfg: ModelConfig,
        selected: Vec<String>,
        group: usize,
        stride: usize,
        clip: bool,
        fold: bool,
    ) -> Result<Self> {
        Ok(AwqObserver {
            weights: WeightIndex::new(ckpt, cfg)?,
            selected,
            group,
            stride: stride.max(1),
            slots: Vec::new(),
            sequences: 0,
            clip,
            fold,
            choices: BTreeMap::new(),
            clips: BTreeMap::new(),
            error: None,
        })
    }

    fn search_layer(&mut self, layer: usize) -> Result<()> {
        let slots = std::mem::take(&mut self.slots);
        let mut merged: [SiteBuf; 4] = Default::default();
        for slot in slots {
            let bufs = slot.into_inner().unwrap_or_else(|p| p.into_inner());
            for (m, b) in merged.iter_mut().zip(bufs) {
                if m.sum_abs.len() < b.sum_abs.len() {
                    m.sum_abs.resize(b.sum_abs.len(), 0.0);
                }
                m.sum_abs
                    .iter_mut()
                    .zip(&b.sum_abs)
                    .for_each(|(a, v)| *a += v);
                m.tokens += b.tokens;
                m.rows.extend_from_slice(&b.rows);
            }
        }
        for (site, buf) in SITES.iter().zip(merged) {
            let modules: Vec<String> = site
                .iter()
                .map(|s| format!("model.layers.{layer}.{s}"))
                .filter(|m| self.selected.contains(m))
                .collect();
            if modules.is_empty() || buf.tokens == 0 {
                continue;
            }
            let cols = buf.sum_abs.len();
            let x_mean: Vec<f32> = buf
                .sum_abs
                .iter()
                .map(|s| (s / buf.tokens as f64) as f32)
                .collect();
            let decoded = modules
                .iter()
                .map(|m| self.weights.decode(&format!("{m}.weight")))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&[f32]> = decoded.iter().map(Vec::as_slice).collect();
            let search = !self.fold || self.foldable(site, &modules);
            let (ratio, scale, loss, rtn_loss) =
                search_scale(&buf.rows, &x_mean, &refs, cols, self.group, search);
            if self.clip {
                let step = (buf.tokens.min(buf.rows.len() / cols.max(1)) / CLIP_TOKENS).max(1);
                let x: Vec<f32> = buf
                    .rows
                    .chunks_exact(cols)
                    .step_by(step)
                    .take(CLIP_TOKENS)
                    .flat_map(|r| r.iter().zip(&scale).map(|(v, s)| v / s))
                    .collect();
                for (m, w) in modules.iter().zip(&decoded) {
                    if m.ends_with("q_proj") || m.ends_with("k_proj") {
                        continue;
                    }
                    let scaled: Vec<f32> = w
                        .chunks_exact(cols)
                        .flat_map(|r| r.iter().zip(&scale).map(|(v, s)| v * s))
                        .collect();
                    self.clips
                        .insert(m.clone(), search_clip(&x, &scaled, cols, self.group));
                }
            }
            let choice = AwqChoice {
                modules: modules.clone(),
                ratio,
                loss,
                rtn_loss,
                scale,
            };
            for m in modules {
                self.choices.insert(m, choice.clone());
            }
        }
        Ok(())
    }
}

impl AwqObserver<'_> {
    /// Whether `1/s` of a site can be folded: a norm only when every linear reading it is
    /// quantized (an unquantized one would see a changed input), a linear's rows when the
    /// shapes allow ([`fold_target`]).
    fn foldable(&self, site: &[&str], modules: &[String]) -> bool {
        match fold_target(self.weights.config(), &modules[0]) {
            Some(FoldTarget::Norm(_)) => modules.len() == site.len(),
            Some(FoldTarget::Rows(_)) => true,
            None => false,
        }
    }
}

impl ActivationObserver for AwqObserver<'_> {
    fn begin_batch(&mut self, sequences: usize) {
        self.sequences = sequences;
        self.slots = (0..sequences).map(|_| Mutex::default()).collect();
    }

    fn observe(&self, seq: usize, _layer: usize, tap: Tap<'_>) {
        let (site, x) = match tap {
            Tap::AttnInput(x) => (0, x),
            Tap::OProjInput(x) => (1, x),
            Tap::MlpInput(x) => (2, x),
            Tap::DownProjInput(x) => (3, x),
            _ => return,
        };
        let Some(slot) = self.slots.get(seq) else {
            return;
        };
        let width = match site {
            1 => self.weights.config().num_attention_heads * self.weights.config().head_dim,
            3 => self.weights.config().intermediate_size,
            _ => self.weights.config().hidden_size,
        } as usize;
        let mut bufs = slot.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut bufs[site];
        b.sum_abs.resize(width, 0.0);
        for (t, row) in x.chunks_exact(width).enumerate() {
            b.sum_abs
                .iter_mut()
                .zip(row)
                .for_each(|(a, v)| *a += f64::from(v.abs()));
            if t.is_multiple_of(self.stride) {
                b.rows.extend_from_slice(row);
            }
        }
        b.tokens += x.len() / width.max(1);
    }

    fn layer_done(&mut self, layer: usize) {
        if self.error.is_some() || layer >= self.weights.config().num_hidden_layers as usize {
            return;
        }
        if let Err(e) = self.search_layer(layer) {
            self.error = Some(e);
        }
        // The next layer's taps arrive in the same batch: fresh slots for every sequence.
        self.slots = (0..self.sequences).map(|_| Mutex::default()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_protects_a_salient_channel() {
        // One input channel carries large activations; AWQ should scale it up and beat RTN.
        let cols = 32;
        let rows = 16;
        let mut x = vec![0.0f32; rows * cols];
        for t in 0..rows {
            for j in 0..cols {
                let v = ((t * 7 + j * 13) % 11) as f32 / 11.0 - 0.5;
                x[t * cols + j] = if j == 3 { 40.0 * v } else { v };
            }
        }
        let w: Vec<f32> = (0..8 * cols)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * if i % cols == 5 { 8.0 } else { 1.0 })
            .collect();
        let x_mean: Vec<f32> = (0..cols)
            .map(|j| (0..rows).map(|t| x[t * cols + j].abs()).sum::<f32>() / rows as f32)
            .collect();
        let (ratio, s, loss, rtn) = search_scale(&x, &x_mean, &[&w], cols, 16, true);
        assert!(ratio.is_some(), "a ratio beats the identity");
        assert!(loss < rtn, "{loss} < {rtn}");
        assert!(s[3] > s[0], "the salient channel is scaled up");
    }

    #[test]
    fn candidate_is_normalized() {
        let s = candidate_scale(&[1.0, 4.0, 0.25], &[0.5, 0.5, 0.5], 0.5);
        let (lo, hi) = (
            s.iter().cloned().fold(f32::MAX, f32::min),
            s.iter().cloned().fold(0.0, f32::max),
        );
        assert!((lo * hi - 1.0).abs() < 1e-5);
    }
}
