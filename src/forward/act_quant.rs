//! Simulated activation quantization (`eval --act-quant`): the static per-tensor quantization
//! an FP8 or W8A8 (SmoothQuant) deployment applies to each quantized linear's input at run
//! time, so `eval --teacher` judges the numerics that ship, not only the weight error.
//!
//! A linear with an activation scale `s` (modelopt HF `input_scale`; TensorRT-LLM
//! `activation_scaling_factor`) and a pre-quant scale `p` (`pre_quant_scale` /
//! `prequant_scaling_factor`, ones when absent) computes `Q(x ⊙ p) · dequant(codes)ᵀ`, where
//! - FP8: `Q(y) = e4m3(y / s) · s`, round to nearest even, saturating at ±448 (modelopt's
//!   `TensorQuantizer` with `num_bits (4, 3)`; TensorRT-LLM's FP8 GEMMs take `x / s` cast to
//!   `float8_e4m3fn` with `satfinite`);
//! - INT8: `Q(y) = clamp(round(y / s), -128, 127) · s`, round to nearest even (TensorRT-LLM's
//!   SmoothQuant `quantize_tensor` casts with `__float2int_rn` and saturation).
//!
//! The forward pass multiplies by the effective weight `dequant(codes) · diag(p)` (see
//! [`super::weights`]), so the input it is given is `Q(x ⊙ p) ⊘ p`: the same product, up to
//! float rounding of the division. Weight-only schemes (W8A16, W4A16 AWQ) have no activation
//! scale and their inputs pass unchanged.

use std::borrow::Cow;

/// The number format of a quantized activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    Fp8,
    Int8,
}

/// How one linear's input is quantized at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct ActQuant {
    pub kind: ActKind,
    /// Per-tensor scale `s`.
    pub scale: f32,
    /// The input's per-channel pre-quant scale `p` (`[in]`), when the linear has one.
    pub pre: Option<Vec<f32>>,
}

impl ActQuant {
    /// `x` (`[rows, in]`) as the linear's effective weight sees it: `Q(x ⊙ p) ⊘ p`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let q = |y: f32| -> f32 {
            let r = y / self.scale;
            let code = match self.kind {
                ActKind::Fp8 => kernels::cpu::f8::e4m3_round(r),
                ActKind::Int8 => r.round_ties_even().clamp(-128.0, 127.0),
            };
            code * self.scale
        };
        match &self.pre {
            None => x.iter().map(|&v| q(v)).collect(),
            Some(p) => x
                .chunks_exact(p.len())
                .flat_map(|row| row.iter().zip(p).map(|(&v, &s)| q(v * s) / s))
                .collect(),
        }
    }
}

/// The activation quantization of a decoder layer's linears (`None`: the input passes as is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinearActs {
    pub q: Option<ActQuant>,
    pub k: Option<ActQuant>,
    pub v: Option<ActQuant>,
    pub o: Option<ActQuant>,
    pub gate: Option<ActQuant>,
    pub up: Option<ActQuant>,
    pub down: Option<ActQuant>,
}

impl LinearActs {
    /// Layer `l`'s activation quantization, each linear's from `of(module)`
    /// (`model.layers.{l}.self_attn.q_proj`, …).
    pub fn gather(
        l: u64,
        mut of: impl FnMut(&str) -> crate::error::Result<Option<ActQuant>>,
    ) -> crate::error::Result<Self> {
        let mut get = |suffix: &str| of(&format!("model.layers.{l}.{suffix}"));
        let [q, k, v, o, gate, up, down] = crate::model::LAYER_LINEARS;
        Ok(LinearActs {
            q: get(q)?,
            k: get(k)?,
            v: get(v)?,
            o: get(o)?,
            gate: get(gate)?,
            up: get(up)?,
            down: get(down)?,
        })
    }
}

/// `x` as the linear with activation quantization `act` sees it (borrowed when there is none).
pub fn input<'a>(act: &Option<ActQuant>, x: &'a [f32]) -> Cow<'a, [f32]> {
    match act {
        Some(a) => Cow::Owned(a.apply(x)),
        None => Cow::Borrowed(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rounds_to_even_and_saturates() {
        let a = ActQuant {
            kind: ActKind::Int8,
            scale: 0.5,
            pre: None,
        };
        // y / s = 1.5 → 2, 2.5 → 2, -0.75 / 0.5 = -1.5 → -2, 100 → 127 (saturated).
        assert_eq!(a.apply(&[0.75, 1.25, -0.75, 100.0]), [1.0, 1.0, -1.0, 63.5]);
    }

    #[test]
    fn fp8_keeps_three_mantissa_bits_and_saturates() {
        let a = ActQuant {
            kind: ActKind::Fp8,
            scale: 2.0,
            pre: None,
        };
        // 2.25 / 2 = 1.125 → 1.125 (exact in E4M3); 2.125 / 2 = 1.0625 → 1.0 (tie to even);
        // 1e4 / 2 → 448 (saturated).
        assert_eq!(a.apply(&[2.25, 2.125, 1e4]), [2.25, 2.0, 896.0]);
    }

    #[test]
    fn pre_quant_scale_applies_in_its_own_domain() {
        let a = ActQuant {
            kind: ActKind::Int8,
            scale: 1.0,
            pre: Some(vec![2.0, 0.5]),
        };
        // Row [1.3, 3.0]: 1.3·2 = 2.6 → 3 → 3/2; 3.0·0.5 = 1.5 → 2 → 2/0.5.
        assert_eq!(a.apply(&[1.3, 3.0, -0.2, 0.0]), [1.5, 4.0, 0.0, 0.0]);
        assert!(matches!(input(&None, &[1.0]), Cow::Borrowed(_)));
    }
}
