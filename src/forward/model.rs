//! The Llama-family decoder (Llama, Mistral, Qwen2) as written in transformers'
//! `modeling_llama.py`: embedding → N × (RMSNorm → GQA attention with RoPE → residual → RMSNorm →
//! SwiGLU MLP → residual) → RMSNorm → LM head. Weights are decoded one layer at a time and
//! applied to every sequence of the batch before the next layer is read, so resident memory is
//! one layer in f32 plus the activations, whatever the model's size.

use super::act_quant::input;
use super::ops::{self, RopeTable};
use super::source::Weights;
use super::trtllm_weights::TrtllmWeights;
use super::weights::{LayerWeights, WeightIndex};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use rayon::prelude::*;

/// Decoded LM-head rows per step: bounds the f32 copy of a large vocabulary to about 64 MiB.
const LM_HEAD_CHUNK_BYTES: usize = 64 << 20;

/// A model ready to run: the checkpoint's tensor index and the rotary frequencies. Holds no
/// decoded weights between calls.
pub struct Model<'a> {
    weights: Weights<'a>,
    inv_freq: Vec<f64>,
    /// Decoder layers passed over (the residual stream goes through unchanged): the model
    /// with those layers removed, for pruning's perplexity-based depth metric.
    skipped: Vec<bool>,
    /// Simulate the run-time quantization of quantized linears' inputs ([`super::act_quant`]).
    act_quant: bool,
}

/// One observation point of the forward pass, with the activations of one sequence there
/// (row-major `[seq, width]`). Linear layers are named by their Hugging Face weight names.
#[derive(Clone, Copy)]
pub enum Tap<'x> {
    /// `input_layernorm` output `[seq, hidden]`: the input of `q_proj`, `k_proj` and `v_proj`.
    AttnInput(&'x [f32]),
    /// Keys after RoPE and values `[seq, kv_heads * head_dim]` each: what the KV cache stores
    /// (and what modelopt's `k_bmm_quantizer` / `v_bmm_quantizer` calibrate: the attention
    /// function's key and value inputs, the keys rotated).
    KvCache { k: &'x [f32], v: &'x [f32] },
    /// Attention output before `o_proj` `[seq, heads * head_dim]` (head-major): `o_proj`'s input.
    OProjInput(&'x [f32]),
    /// `post_attention_layernorm` output `[seq, hidden]`: the input of `gate_proj` and `up_proj`.
    MlpInput(&'x [f32]),
    /// `silu(gate) * up` `[seq, intermediate]`: `down_proj`'s input.
    DownProjInput(&'x [f32]),
    /// The residual stream entering and leaving the decoder layer, each `[seq, hidden]`.
    Residual { before: &'x [f32], after: &'x [f32] },
    /// The final `model.norm` output `[seq, hidden]`: the LM head's input (layer index
    /// `num_hidden_layers`).
    FinalNorm(&'x [f32]),
}

/// Receives activations from [`Model::observe_batch`]. `observe` is called from the worker
/// threads, concurrently for different sequences of a batch but in forward order for any one
/// sequence (`seq` is its index in the batch); `begin_batch` and `layer_done` are called on the
/// caller's thread, so an observer can keep per-sequence partial results and merge them in a
/// fixed order (deterministic whatever the thread timing).
pub trait ActivationObserver: Sync {
    /// A batch of `sequences` sequences is about to run.
    fn begin_batch(&mut self, _sequences: usize) {}
    /// Activations of sequence `seq` at `layer` (`num_hidden_layers` for [`Tap::FinalNorm`]).
    fn observe(&self, seq: usize, layer: usize, tap: Tap<'_>);
    /// Every sequence of the batch has passed `layer` (`num_hidden_layers`: the final norm).
    fn layer_done(&mut self, _layer: usize) {}
}

/// What one sequence produced.
pub struct ForwardOutput {
    /// `[seq, vocab]`, row-major.
    pub logits: Vec<f32>,
    /// The residual stream after each decoder layer, each `[seq, hidden]` (empty unless asked).
    pub hidden: Vec<Vec<f32>>,
}

impl<'a> Model<'a> {
    /// Reads the config (`config.json` beside safetensors, or the GGUF metadata) and indexes the
    /// tensors, checking shapes and that every tensor is a dense float type.
    pub fn load(ckpt: &'a Checkpoint) -> Result<Self> {
        let cfg = match ckpt {
            Checkpoint::Safetensors(_) => ModelConfig::load(&ckpt.root())?,
            Checkpoint::Gguf(g) => {
                let path = ckpt.display_path();
                let tensors = ckpt.tensors();
                let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
                let json = crate::import::hf_config::config_from_gguf_with_tensors(
                    g.metadata(),
                    &names,
                    &path,
                )?;
                ModelConfig::from_json(&path, &json.to_string())?
            }
        };
        let mut inv_freq = rope_inv_freq(&cfg, &ckpt.display_path())?;
        let weights = WeightIndex::new(ckpt, cfg)?;
        weights.check_types()?;
        // A llama3 GGUF carries its scaling only as `rope_freqs` (llama.cpp divides θ_i by it).
        if let Some(factors) = weights.rope_freqs()? {
            if factors.len() != inv_freq.len() {
                return Err(Error::tensor(
                    ckpt.display_path(),
                    crate::model::ROPE_FREQS_GGUF_NAME,
                    format!(
                        "{} values for head_dim/2 = {}",
                        factors.len(),
                        inv_freq.len()
                    ),
                ));
            }
            inv_freq
                .iter_mut()
                .zip(factors)
                .for_each(|(f, d)| *f /= f64::from(d));
        }
        Ok(Model {
            weights: Weights::Checkpoint(Box::new(weights)),
            inv_freq,
            skipped: Vec::new(),
            act_quant: false,
        })
    }

    /// A model over a TensorRT-LLM checkpoint (checked when it was opened).
    pub fn from_trtllm(w: &'a TrtllmWeights) -> Result<Self> {
        let inv_freq = rope_inv_freq(w.config(), w.config_path())?;
        Ok(Model {
            weights: Weights::Trtllm(w),
            inv_freq,
            skipped: Vec::new(),
            act_quant: false,
        })
    }

    /// From now on, quantizes each quantized linear's input as the deployment does (FP8 and
    /// W8A8 checkpoints' static activation scales, [`super::act_quant`]) instead of keeping it
    /// in f32.
    pub fn simulate_activation_quant(&mut self, on: bool) {
        self.act_quant = on;
    }

    /// From now on, runs as if decoder layers `layers` were removed (an empty list restores
    /// every layer). Indices past the last layer are ignored.
    pub fn skip_layers(&mut self, layers: &[usize]) {
        let n = self.config().num_hidden_layers as usize;
        self.skipped = vec![false; n];
        for &l in layers.iter().filter(|&&l| l < n) {
            self.skipped[l] = true;
        }
    }

    fn is_skipped(&self, layer: u64) -> bool {
        self.skipped.get(layer as usize).copied().unwrap_or(false)
    }

    pub fn config(&self) -> &ModelConfig {
        self.weights.config()
    }

    pub fn vocab_size(&self) -> usize {
        self.config().vocab_size as usize
    }

    /// Logits `[tokens.len(), vocab]` for one sequence.
    pub fn forward(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut out = self.forward_batch(&[tokens], false)?;
        Ok(out.pop().map(|o| o.logits).unwrap_or_default())
    }

    /// Logits and the hidden state after each layer, for one sequence.
    pub fn forward_with_hidden(&self, tokens: &[u32]) -> Result<ForwardOutput> {
        let mut out = self.forward_batch(&[tokens], true)?;
        out.pop().ok_or_else(|| Error::Usage("empty batch".into()))
    }

    /// Runs every sequence of `batch` (any lengths), in parallel over sequences. Each layer's
    /// weights are decoded once for the whole batch.
    pub fn forward_batch(&self, batch: &[&[u32]], keep_hidden: bool) -> Result<Vec<ForwardOutput>> {
        let cfg = self.config();
        let hidden = cfg.hidden_size as usize;
        let vocab = self.vocab_size();
        let par_gemm = batch.len() == 1;
        let (states, hiddens) = self.run_layers(batch, keep_hidden, None)?;

        let norm = self.weights.decode("model.norm.weight")?;
        let normed: Vec<Vec<f32>> = states
            .iter()
            .map(|x| ops::rms_norm(x, &norm, cfg.rms_norm_eps))
            .collect();
        drop(states);
        let mut logits: Vec<Vec<f32>> = batch
            .iter()
            .map(|t| vec![0.0f32; t.len() * vocab])
            .collect();
        let head = self.weights.lm_head_name();
        let chunk = (LM_HEAD_CHUNK_BYTES / 4 / hidden.max(1)).max(1);
        for v0 in (0..vocab).step_by(chunk) {
            let v1 = (v0 + chunk).min(vocab);
            let w = self.weights.decode_rows(head, v0..v1)?;
            logits.par_iter_mut().zip(&normed).for_each(|(out, x)| {
                let seq = x.len() / hidden;
                if seq == 0 {
                    return;
                }
                // logits[:, v0..v1] = x · w_chunkᵀ
                ops::matmul_strided(
                    &mut out[v0..],
                    vocab,
                    x,
                    hidden,
                    1,
                    &w,
                    1,
                    hidden,
                    seq,
                    v1 - v0,
                    hidden,
                    par_gemm,
                );
            });
        }
        Ok(logits
            .into_iter()
            .zip(hiddens)
            .map(|(logits, hidden)| ForwardOutput { logits, hidden })
            .collect())
    }

    /// Runs the decoder layers (not the final norm or LM head) on every sequence of `batch` and
    /// reports every [`Tap`] to `obs`, then the final norm's output. No logits are computed.
    pub fn observe_batch(&self, batch: &[&[u32]], obs: &mut dyn ActivationObserver) -> Result<()> {
        let cfg = self.config();
        let n_layers = cfg.num_hidden_layers as usize;
        obs.begin_batch(batch.len());
        let (states, _) = self.run_layers(batch, false, Some(&mut *obs))?;
        let norm = self.weights.decode("model.norm.weight")?;
        let shared: &dyn ActivationObserver = obs;
        states.par_iter().enumerate().for_each(|(i, x)| {
            let h = ops::rms_norm(x, &norm, cfg.rms_norm_eps);
            shared.observe(i, n_layers, Tap::FinalNorm(&h));
        });
        obs.layer_done(n_layers);
        Ok(())
    }

    /// Embeds every sequence and runs all decoder layers; returns the residual streams and, with
    /// `keep_hidden`, a copy after each layer.
    #[allow(clippy::type_complexity)]
    fn run_layers(
        &self,
        batch: &[&[u32]],
        keep_hidden: bool,
        mut obs: Option<&mut dyn ActivationObserver>,
    ) -> Result<(Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>)> {
        let cfg = self.config();
        let hidden = cfg.hidden_size as usize;
        let vocab = self.vocab_size();
        // One sequence: let gemm use the pool; several: one sequence per worker.
        let par_gemm = batch.len() == 1;

        let mut states = Vec::with_capacity(batch.len());
        for tokens in batch {
            let mut x = Vec::with_capacity(tokens.len() * hidden);
            for &t in tokens.iter() {
                let t = t as usize;
                if t >= vocab {
                    return Err(Error::Usage(format!(
                        "token id {t} is outside the vocabulary of {vocab}"
                    )));
                }
                x.extend(
                    self.weights
                        .decode_rows("model.embed_tokens.weight", t..t + 1)?,
                );
            }
            states.push(x);
        }
        let longest = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        let rope = RopeTable::new(&self.inv_freq, longest);

        let mut hiddens: Vec<Vec<Vec<f32>>> = vec![Vec::new(); batch.len()];
        for l in 0..cfg.num_hidden_layers {
            if self.is_skipped(l) {
                if keep_hidden {
                    hiddens
                        .iter_mut()
                        .zip(&states)
                        .for_each(|(h, x)| h.push(x.clone()));
                }
                continue;
            }
            let w = self.weights.layer(l, self.act_quant)?;
            if l + 1 < cfg.num_hidden_layers {
                self.weights.prefetch_layer(l + 1);
            }
            match obs.as_deref() {
                None => states
                    .par_iter_mut()
                    .for_each(|x| self.block(x, &w, &rope, par_gemm, None)),
                Some(o) => states.par_iter_mut().enumerate().for_each(|(i, x)| {
                    self.block(x, &w, &rope, par_gemm, Some((o, i, l as usize)))
                }),
            }
            if let Some(o) = obs.as_deref_mut() {
                o.layer_done(l as usize);
            }
            if keep_hidden {
                hiddens
                    .iter_mut()
                    .zip(&states)
                    .for_each(|(h, x)| h.push(x.clone()));
            }
        }
        Ok((states, hiddens))
    }

    /// One decoder layer on one sequence's residual stream `x` (`[seq, hidden]`), in place.
    /// With `obs = (observer, sequence index, layer)`, reports each [`Tap`] as it is computed
    /// (and copies the layer's input for [`Tap::Residual`]); without, does nothing extra.
    fn block(
        &self,
        x: &mut [f32],
        w: &LayerWeights,
        rope: &RopeTable,
        par: bool,
        obs: Option<(&dyn ActivationObserver, usize, usize)>,
    ) {
        let cfg = self.config();
        let d = cfg.hidden_size as usize;
        let seq = x.len() / d;
        let heads = cfg.num_attention_heads as usize;
        let kv_heads = cfg.num_key_value_heads as usize;
        let hd = cfg.head_dim as usize;
        let ff = cfg.intermediate_size as usize;
        let tap = |t: Tap<'_>| {
            if let Some((o, s, l)) = obs {
                o.observe(s, l, t);
            }
        };
        let before = obs.map(|_| x.to_vec());

        let h = ops::rms_norm(x, &w.attn_norm, cfg.rms_norm_eps);
        tap(Tap::AttnInput(&h));
        let a = &w.acts;
        let mut q = ops::linear(&input(&a.q, &h), &w.q, w.q_bias.as_deref(), seq, d, par);
        let mut k = ops::linear(&input(&a.k, &h), &w.k, w.k_bias.as_deref(), seq, d, par);
        let v = ops::linear(&input(&a.v, &h), &w.v, w.v_bias.as_deref(), seq, d, par);
        ops::apply_rope(&mut q, heads, rope);
        ops::apply_rope(&mut k, kv_heads, rope);
        tap(Tap::KvCache { k: &k, v: &v });
        let att = ops::causal_attention(&q, &k, &v, seq, heads, kv_heads, hd);
        tap(Tap::OProjInput(&att));
        let o = ops::linear(&input(&a.o, &att), &w.o, None, seq, heads * hd, par);
        x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

        let h = ops::rms_norm(x, &w.ffn_norm, cfg.rms_norm_eps);
        tap(Tap::MlpInput(&h));
        let mut g = ops::linear(&input(&a.gate, &h), &w.gate, None, seq, d, par);
        let u = ops::linear(&input(&a.up, &h), &w.up, None, seq, d, par);
        ops::swiglu(&mut g, &u);
        tap(Tap::DownProjInput(&g));
        let down = ops::linear(&input(&a.down, &g), &w.down, None, seq, ff, par);
        x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        if let Some(before) = &before {
            tap(Tap::Residual { before, after: x });
        }
    }
}

/// Rotary inverse frequencies `θ_i = base^(-2i/d)` for `i < head_dim/2`, with `rope_scaling`
/// applied as transformers' `modeling_rope_utils` does for `default`, `linear` and `llama3`.
pub fn rope_inv_freq(cfg: &ModelConfig, path: &std::path::Path) -> Result<Vec<f64>> {
    let d = cfg.head_dim as usize;
    let base = cfg.rope_theta;
    let mut inv: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64))
        .collect();
    let Some(rs) = &cfg.rope_scaling else {
        return Ok(inv);
    };
    match rs.kind.to_ascii_lowercase().as_str() {
        "default" => {}
        // Positions divided by the factor is the same as frequencies divided by it.
        "linear" => inv.iter_mut().for_each(|f| *f /= rs.factor),
        // `_compute_llama3_parameters`: long wavelengths scaled by 1/factor, short kept, and a
        // smooth blend between.
        "llama3" => {
            let factor = rs.factor;
            let low = rs.low_freq_factor.unwrap_or(1.0);
            let high = rs.high_freq_factor.unwrap_or(4.0);
            let old_ctx = rs.original_max_position_embeddings.unwrap_or(8192) as f64;
            let low_wavelen = old_ctx / low;
            let high_wavelen = old_ctx / high;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old_ctx / wavelen - low) / (high - low);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        other => {
            return Err(Error::config(
                path,
                format!("rope_scaling type `{other}` is not supported by the forward pass (default, linear, llama3)"),
            ))
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rope_scaling: &str) -> ModelConfig {
        let json = format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":10,
            "rope_theta":500000.0,"rope_scaling":{rope_scaling}}}"#
        );
        ModelConfig::from_json(std::path::Path::new("config.json"), &json).expect("valid config")
    }

    #[test]
    fn rope_default_and_linear() {
        let p = std::path::Path::new("x");
        let d = rope_inv_freq(&cfg("null"), p).expect("default");
        assert_eq!(d.len(), 16);
        assert_eq!(d[0], 1.0);
        assert!((d[1] - 500000f64.powf(-2.0 / 32.0)).abs() < 1e-15);
        let l = rope_inv_freq(&cfg(r#"{"type":"linear","factor":4.0}"#), p).expect("linear");
        assert!(d.iter().zip(&l).all(|(a, b)| (a / 4.0 - b).abs() < 1e-18));
        assert!(rope_inv_freq(&cfg(r#"{"rope_type":"dynamic","factor":2.0}"#), p).is_err());
    }

    #[test]
    fn rope_llama3_bands() {
        let p = std::path::Path::new("x");
        let d = rope_inv_freq(&cfg("null"), p).expect("default");
        let s = rope_inv_freq(
            &cfg(r#"{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#),
            p,
        )
        .expect("llama3");
        for (a, b) in d.iter().zip(&s) {
            let wavelen = 2.0 * std::f64::consts::PI / a;
            if wavelen < 8192.0 / 4.0 {
                assert_eq!(a, b, "high frequencies are kept");
            } else if wavelen > 8192.0 {
                assert!(
                    (a / 8.0 - b).abs() < 1e-18,
                    "low frequencies are divided by the factor"
                );
            } else {
                assert!(*b < *a && *b > a / 8.0, "the band between is blended");
            }
        }
    }
}
