//! GGUF block quantization of a whole model: which ggml type each tensor gets (llama.cpp's
//! `llama_tensor_get_type` in `src/llama-quant.cpp`), the `general.file_type` that says so,
//! and importance weights from our calibration statistics (llama.cpp's imatrix).
//!
//! The kernels are `kernels::cpu::ggml`; the executor runs them row-chunked through
//! [`crate::plan::Op::QuantizeGgml`].

use crate::calibrate::CalibrationStats;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use formats::gguf::GgmlType;
use std::path::Path;
use std::sync::Arc;

/// What `--quant` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GgufQuant {
    /// Every quantizable weight in this type, except `output.weight` (and a tied
    /// `token_embd.weight`), which llama.cpp keeps at Q6_K (Q8_0 when rows are not 256-multiples
    /// or the type is Q8_0). For `q6_k` this is exactly llama.cpp's `Q6_K` mix.
    Uniform(GgmlType),
    /// llama.cpp `Q4_K_S`: Q4_K; attn_v of the first 4 layers and ffn_down of the first n/8 in Q5_K.
    Q4KS,
    /// llama.cpp `Q4_K_M`: Q4_K; attn_v and ffn_down of the `use_more_bits` layers in Q6_K.
    Q4KM,
    /// llama.cpp `Q5_K_M`: Q5_K; attn_v and ffn_down of the `use_more_bits` layers in Q6_K.
    Q5KM,
}

/// The spellings `--quant` accepts.
pub const QUANT_NAMES: [&str; 13] = [
    "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_s",
    "q4_k_m", "q5_k_m",
];

impl GgufQuant {
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "q4_k_s" => return Ok(GgufQuant::Q4KS),
            "q4_k_m" => return Ok(GgufQuant::Q4KM),
            "q5_k_m" => return Ok(GgufQuant::Q5KM),
            _ => {}
        }
        match GgmlType::from_name(&lower) {
            Some(t) if kernels::cpu::ggml::is_supported(t) => Ok(GgufQuant::Uniform(t)),
            _ if crate::quant::scheme::QuantRequest::parse(&lower).is_ok() => {
                Err(Error::Usage(format!(
                    "--quant {name} is a Hugging Face scheme: use --format hf (GGUF output takes {})",
                    QUANT_NAMES.join(", ")
                )))
            }
            _ => Err(Error::Usage(format!(
                "--quant {name} is not supported: use one of {}",
                QUANT_NAMES.join(", ")
            ))),
        }
    }

    pub fn name(self) -> String {
        match self {
            GgufQuant::Uniform(t) => t.name().to_ascii_lowercase(),
            GgufQuant::Q4KS => "q4_k_s".into(),
            GgufQuant::Q4KM => "q4_k_m".into(),
            GgufQuant::Q5KM => "q5_k_m".into(),
        }
    }

    /// The type most weights get (llama.cpp's `default_type` for the ftype).
    pub fn default_type(self) -> GgmlType {
        match self {
            GgufQuant::Uniform(t) => t,
            GgufQuant::Q4KS | GgufQuant::Q4KM => GgmlType::Q4K,
            GgufQuant::Q5KM => GgmlType::Q5K,
        }
    }

    /// `general.file_type` (`llama_ftype`). A uniform K type has no ftype of its own: it gets
    /// the "small" mix's number (Q3_K_S, Q4_K_S, Q5_K_S), the closest llama.cpp has.
    pub fn file_type(self) -> u32 {
        match self {
            GgufQuant::Uniform(t) => match t {
                GgmlType::Q4_0 => 2,
                GgmlType::Q4_1 => 3,
                GgmlType::Q8_0 => 7,
                GgmlType::Q5_0 => 8,
                GgmlType::Q5_1 => 9,
                GgmlType::Q2K => 10,
                GgmlType::Q3K => 11,
                GgmlType::Q4K => 14,
                GgmlType::Q5K => 16,
                _ => 18, // Q6_K
            },
            GgufQuant::Q4KS => 14,
            GgufQuant::Q4KM => 15,
            GgufQuant::Q5KM => 17,
        }
    }
}

/// `tensor_allows_quantization` for the dense decoder models we know: weights of 2+ dims, not
/// norms.
pub fn allows_quantization(gguf_name: &str, n_dims: usize) -> bool {
    n_dims >= 2 && gguf_name.ends_with("weight") && !gguf_name.contains("_norm.weight")
}

/// The model facts the type choice depends on.
#[derive(Debug, Clone, Copy)]
pub struct MixContext {
    pub n_layers: u64,
    /// The file has no `output.weight` (the output projection is `token_embd`).
    pub tied_embeddings: bool,
    pub has_imatrix: bool,
    /// llama.cpp's `LLM_TYPE_70B` (80 layers with grouped KV heads): attn_v Q3_K/Q4_K → Q5_K.
    pub is_70b: bool,
}

impl MixContext {
    pub fn new(cfg: &ModelConfig, tied_embeddings: bool, has_imatrix: bool) -> Self {
        MixContext {
            n_layers: cfg.num_hidden_layers,
            tied_embeddings,
            has_imatrix,
            is_70b: cfg.num_hidden_layers == 80
                && cfg.num_attention_heads != cfg.num_key_value_heads,
        }
    }
}

/// `use_more_bits` in llama-quant.cpp: the first and last eighth of the layers and every third
/// in between get more bits in the `_M` mixes.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer index of `blk.N.…`.
fn layer_of(name: &str) -> Option<i64> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The ggml type of the quantizable tensor `name` with rows of `ne0` values
/// (`llama_tensor_get_type` for a dense llama-family model, then `tensor_type_fallback`).
/// `Ok(None)` means F16: llama.cpp's fallback when even the 32-element fallback does not fit.
pub fn tensor_type(
    quant: GgufQuant,
    name: &str,
    ne0: u64,
    ctx: &MixContext,
) -> std::result::Result<Option<GgmlType>, String> {
    use GgmlType::*;
    let default = quant.default_type();
    let n = ctx.n_layers as i64;
    let is_output = name == "output.weight";
    let is_embd = name == "token_embd.weight";
    let mut ty = default;
    if is_output || (ctx.tied_embeddings && is_embd) {
        // llama_tensor_get_type_impl: the output projection.
        ty = if !ne0.is_multiple_of(default.block_size()) || default == Q8_0 {
            Q8_0
        } else {
            Q6K
        };
    } else if is_embd {
        // Untied token embeddings keep the default type for these ftypes.
    } else if name.contains("attn_v.weight") {
        let i = layer_of(name).unwrap_or(0);
        ty = match quant {
            GgufQuant::Q4KM | GgufQuant::Q5KM if use_more_bits(i, n) => Q6K,
            GgufQuant::Q4KS if i < 4 => Q5K,
            _ => ty,
        };
        if ctx.is_70b && matches!(ty, Q3K | Q4K) {
            ty = Q5K;
        }
    } else if name.contains("ffn_down") {
        let i = layer_of(name).unwrap_or(0);
        ty = match quant {
            GgufQuant::Q4KM | GgufQuant::Q5KM if use_more_bits(i, n) => Q6K,
            GgufQuant::Q4KS if i < n / 8 => Q5K,
            // "Guard against craziness in the first few ffn_down layers" (only with an imatrix).
            GgufQuant::Uniform(Q4_0) if ctx.has_imatrix && i < n / 8 => Q4_1,
            GgufQuant::Uniform(Q5_0) if ctx.has_imatrix && i < n / 8 => Q5_1,
            _ => ty,
        };
    }
    // tensor_type_fallback: rows that are not whole blocks of the chosen type.
    if ne0.is_multiple_of(ty.block_size()) {
        return Ok(Some(ty));
    }
    let fallback = match ty {
        Q2K | Q3K => Q4_0,
        Q4K => Q5_0,
        Q5K => Q5_1,
        Q6K => Q8_0,
        other => {
            return Err(format!(
                "rows of {ne0} values are not whole {other} blocks of {} (llama.cpp has no \
                 fallback for {other} either)",
                other.block_size()
            ))
        }
    };
    Ok(ne0
        .is_multiple_of(fallback.block_size())
        .then_some(fallback))
}

/// Importance weights (llama.cpp's imatrix) for the quantizable tensor `gguf_name`, whose rows
/// have `ne0` values, from calibration statistics.
///
/// llama.cpp's imatrix is the per-input-column mean of x² over the calibration tokens. Our
/// statistics hold `input_mean_abs` (mean |x|) and `input_absmax` (max |x|); we use
/// `input_mean_abs²`. It is the same scale of quantity (a second moment, so it weighs a column's
/// squared error by its typical squared activation), it is a lower bound of mean x² (Jensen)
/// that differs from it only by a per-column factor set by the activation's shape, and, unlike
/// `absmax²`, one outlier token cannot dominate it. Tensors without statistics (the token
/// embedding, which is a lookup, not a matmul) get `None`, as in llama.cpp.
pub fn importance_for(
    stats: &CalibrationStats,
    stats_path: &Path,
    gguf_name: &str,
    ne0: u64,
) -> Result<Option<Arc<[f32]>>> {
    let Some(hf) = crate::model::gguf_to_hf_name(gguf_name) else {
        return Ok(None);
    };
    let Some(linear) = hf.strip_suffix(".weight") else {
        return Ok(None);
    };
    let Some(mean_abs) = stats.input_mean_abs(linear) else {
        return Ok(None);
    };
    if mean_abs.len() as u64 != ne0 {
        return Err(Error::tensor(
            stats_path,
            crate::calibrate::input_mean_abs_name(linear),
            format!(
                "{} channels, but {gguf_name} has rows of {ne0}",
                mean_abs.len()
            ),
        ));
    }
    if mean_abs.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::tensor(
            stats_path,
            crate::calibrate::input_mean_abs_name(linear),
            "holds a negative, NaN or infinite value",
        ));
    }
    Ok(Some(mean_abs.iter().map(|v| v * v).collect()))
}

/// Everything a GGUF planner needs to quantize: the mix, the model facts, the statistics.
pub struct QuantPlanner {
    pub quant: GgufQuant,
    ctx: MixContext,
    stats: Option<(CalibrationStats, std::path::PathBuf)>,
}

/// One output tensor's type and the ops that make it from rows of `from`.
pub struct TensorQuant {
    /// `None`: a dense tensor of this dtype (norms, 1-D tensors, the F16 fallback).
    pub ggml_type: GgmlType,
    pub ops: Vec<crate::plan::Op>,
}

impl QuantPlanner {
    /// `tied_embeddings`: the output has no `output.weight`. `imatrix`: a `calibrate` statistics
    /// file for this model.
    pub fn new(
        quant: GgufQuant,
        cfg: &ModelConfig,
        tied_embeddings: bool,
        imatrix: Option<&Path>,
    ) -> Result<Self> {
        let stats = match imatrix {
            Some(p) => Some((crate::calibrate::load_stats_for(p, cfg)?, p.to_path_buf())),
            None => None,
        };
        Ok(QuantPlanner {
            quant,
            ctx: MixContext::new(cfg, tied_embeddings, stats.is_some()),
            stats,
        })
    }

    /// The type and ops of the output tensor `gguf_name` (ggml dims `ne`, innermost first) made
    /// from rows of dense `from` values; `source` names the input for errors.
    pub fn tensor(
        &self,
        gguf_name: &str,
        ne: &[u64],
        from: formats::Dtype,
        source: (&Path, &str),
    ) -> Result<TensorQuant> {
        use crate::plan::Op;
        let dense = |to: formats::Dtype| TensorQuant {
            ggml_type: GgmlType::from_dtype(to).unwrap_or(GgmlType::F32),
            ops: (from != to)
                .then_some(Op::Cast { from, to })
                .into_iter()
                .collect(),
        };
        if crate::model::gguf_keeps_f32(gguf_name, ne.len()) {
            return Ok(dense(formats::Dtype::F32));
        }
        if !allows_quantization(gguf_name, ne.len()) {
            return Ok(dense(formats::Dtype::F16));
        }
        let ne0 = ne.first().copied().unwrap_or(1);
        let ty = tensor_type(self.quant, gguf_name, ne0, &self.ctx)
            .map_err(|why| Error::tensor(source.0, source.1, why))?;
        let Some(ty) = ty else {
            return Ok(dense(formats::Dtype::F16));
        };
        let importance = match &self.stats {
            Some((stats, path)) => importance_for(stats, path, gguf_name, ne0)?,
            None => None,
        };
        Ok(TensorQuant {
            ggml_type: ty,
            ops: vec![Op::QuantizeGgml {
                from,
                ty,
                importance,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GgmlType::*;

    fn ctx(n: u64) -> MixContext {
        MixContext {
            n_layers: n,
            tied_embeddings: false,
            has_imatrix: false,
            is_70b: false,
        }
    }

    #[test]
    fn parses_the_names_users_know() {
        assert_eq!(GgufQuant::parse("Q4_K_M").unwrap(), GgufQuant::Q4KM);
        assert_eq!(GgufQuant::parse("q8_0").unwrap(), GgufQuant::Uniform(Q8_0));
        assert_eq!(GgufQuant::parse("q6_k").unwrap(), GgufQuant::Uniform(Q6K));
        assert!(GgufQuant::parse("iq2_xs").is_err());
        assert!(GgufQuant::parse("f16").is_err());
        for n in QUANT_NAMES {
            assert_eq!(GgufQuant::parse(n).unwrap().name(), n);
        }
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        // n = 32: layers 0-3, 28-31 and every third from 6 (i - 4 ≡ 2 mod 3).
        let picked: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn q4_k_m_mix() {
        let c = ctx(32);
        let t = |name: &str, ne0| tensor_type(GgufQuant::Q4KM, name, ne0, &c).unwrap();
        assert_eq!(t("output.weight", 4096), Some(Q6K));
        assert_eq!(t("token_embd.weight", 4096), Some(Q4K));
        assert_eq!(t("blk.0.attn_v.weight", 4096), Some(Q6K));
        assert_eq!(t("blk.4.attn_v.weight", 4096), Some(Q4K));
        assert_eq!(t("blk.6.ffn_down.weight", 14336), Some(Q6K));
        assert_eq!(t("blk.7.ffn_down.weight", 14336), Some(Q4K));
        assert_eq!(t("blk.7.attn_q.weight", 4096), Some(Q4K));
        // 11008 = 43 × 256: fits; 1000 is not a 256-multiple → Q5_0 needs 32-multiples: no → F16.
        assert_eq!(t("blk.7.ffn_up.weight", 11008), Some(Q4K));
        assert_eq!(t("blk.7.ffn_up.weight", 96), Some(Q5_0));
        assert_eq!(t("blk.7.ffn_up.weight", 100), None);
        assert_eq!(t("output.weight", 96), Some(Q8_0));
    }

    #[test]
    fn q4_k_s_and_tied_and_legacy_rules() {
        let c = ctx(16);
        let s = |name: &str| tensor_type(GgufQuant::Q4KS, name, 512, &c).unwrap();
        assert_eq!(s("blk.3.attn_v.weight"), Some(Q5K));
        assert_eq!(s("blk.4.attn_v.weight"), Some(Q4K));
        assert_eq!(s("blk.1.ffn_down.weight"), Some(Q5K));
        assert_eq!(s("blk.2.ffn_down.weight"), Some(Q4K));
        let tied = MixContext {
            tied_embeddings: true,
            ..c
        };
        let q = |quant, name: &str, ctx: &MixContext| tensor_type(quant, name, 512, ctx).unwrap();
        assert_eq!(
            q(GgufQuant::Uniform(Q4_0), "token_embd.weight", &tied),
            Some(Q6K)
        );
        assert_eq!(
            q(GgufQuant::Uniform(Q8_0), "token_embd.weight", &tied),
            Some(Q8_0)
        );
        assert_eq!(
            q(GgufQuant::Uniform(Q4_0), "token_embd.weight", &c),
            Some(Q4_0)
        );
        let imat = MixContext {
            has_imatrix: true,
            ..c
        };
        assert_eq!(
            q(GgufQuant::Uniform(Q4_0), "blk.1.ffn_down.weight", &imat),
            Some(Q4_1)
        );
        assert_eq!(
            q(GgufQuant::Uniform(Q4_0), "blk.1.ffn_down.weight", &c),
            Some(Q4_0)
        );
        assert!(tensor_type(GgufQuant::Uniform(Q4_0), "blk.1.attn_q.weight", 100, &c).is_err());
    }
}
