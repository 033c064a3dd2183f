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
