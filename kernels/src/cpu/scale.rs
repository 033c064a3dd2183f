//! Shared pieces of the symmetric integer / FP8 quantizers: the scale floor and max |x|.

/// Smallest scale any quantizer emits. An all-zero row, group or tensor would otherwise get a
/// zero scale and `0 / 0 = NaN` codes; with the floor its codes are 0 and it dequantizes to 0.
/// (modelopt clamps amax the same way before dividing; any floor far below real weight
/// magnitudes keeps the error bound `|w - ŵ| ≤ scale / 2`.)
pub const SCALE_FLOOR: f32 = 1e-12;

/// `max |x|` over `x` (0 for an empty slice). NaN is ignored by `f32::max`, so callers check
/// finiteness separately ([`first_non_finite`]).
#[inline]
pub fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Index of the first NaN or ±Inf in `x`, if any.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !v.is_finite())
}

/// `amax / qmax`, floored at [`SCALE_FLOOR`].
#[inline]
pub fn scale_for(amax: f32, qmax: f32) -> f32 {
    (amax / qmax).max(SCALE_FLOOR)
}

/// `round(v)` half-to-even for `|v| ≤ 2^22`, without a libm call: adding and subtracting
/// 1.5·2^23 makes the FPU round to an integer in its default (nearest-even) mode. Quantizer
/// quotients are bounded by the format's largest code (|w / s| ≤ qmax as `s ≥ amax / qmax`).
#[inline(always)]
pub fn round_half_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_rounding_is_round_ties_even() {
        for i in -4000..4000 {
            let v = i as f32 / 16.0;
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
        for v in [127.49999f32, -7.5, 6.5, 0.49999997, -0.5, 2.5e-8] {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }
}
