//! FP8 (E4M3FN) weight quantization with one scale per tensor, as modelopt's `FP8_DEFAULT_CFG`
//! (`num_bits (4, 3)`, `axis None`): `scale = amax / 448` (modelopt `quant_utils.py`
//! `get_scaling_factor`), `code = e4m3(w / scale)` (`to_quantized_weight`: a division, not a
//! multiplication by the reciprocal, so codes match it bit for bit).

use super::f8::{e4m3_to_f32, f32_to_e4m3};
use super::scale::scale_for;

/// Largest finite E4M3FN value.
pub const E4M3_MAX: f32 = 448.0;

/// The per-tensor scale for a tensor whose max |w| is `amax`.
pub fn fp8_scale(amax: f32) -> f32 {
    scale_for(amax, E4M3_MAX)
}

/// `dst[i] = e4m3(w[i] / scale)` (round to nearest even, saturating at ±448).
///
/// # Panics
/// If `w.len() != dst.len()`.
pub fn quantize_fp8_rows(w: &[f32], scale: f32, dst: &mut [u8]) {
    assert_eq!(w.len(), dst.len(), "fp8 quantize: length mismatch");
    for (d, &x) in dst.iter_mut().zip(w) {
        *d = f32_to_e4m3(x / scale);
    }
}

/// `dst[i] = f32(code[i]) * scale`.
///
/// # Panics
/// If `codes.len() != dst.len()`.
pub fn dequantize_fp8_rows(codes: &[u8], scale: f32, dst: &mut [f32]) {
    assert_eq!(codes.len(), dst.len(), "fp8 dequantize: length mismatch");
    for (d, &c) in dst.iter_mut().zip(codes) {
        *d = e4m3_to_f32(c) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_tensor_gets_floor_scale_and_zero_codes() {
        let s = fp8_scale(0.0);
        assert!(s > 0.0);
        let mut q = [1u8; 3];
        quantize_fp8_rows(&[0.0, -0.0, 0.0], s, &mut q);
        let mut back = [1.0f32; 3];
        dequantize_fp8_rows(&q, s, &mut back);
        assert!(back.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn amax_maps_to_448() {
        let s = fp8_scale(3.5);
        let mut q = [0u8; 2];
        quantize_fp8_rows(&[3.5, -3.5], s, &mut q);
        assert_eq!(q, [0x7E, 0xFE]);
    }

    proptest! {
        /// E4M3 keeps 3 mantissa bits: relative error ≤ 2^-4 for values in the normal range
        /// (|w / scale| ≥ 2^-6); below it the absolute error is ≤ half a subnormal step.
        #[test]
        fn error_bounds(w in proptest::collection::vec(-1.0e3f32..1.0e3, 1..200)) {
            let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s = fp8_scale(amax);
            let mut q = vec![0u8; w.len()];
            quantize_fp8_rows(&w, s, &mut q);
            let mut back = vec![0.0f32; w.len()];
            dequantize_fp8_rows(&q, s, &mut back);
            for (&x, &y) in w.iter().zip(&back) {
                let err = (x - y).abs();
                if (x / s).abs() >= 2f32.powi(-6) {
                    prop_assert!(err <= x.abs() * 2f32.powi(-4) * 1.0001, "{x} -> {y}");
                } else {
                    prop_assert!(err <= s * 2f32.powi(-10) * 1.0001, "{x} -> {y}");
                }
            }
        }
    }
}
