//! INT8 weights with one symmetric scale per output channel (row): `scale = row amax / 127`,
//! `q = round(w / scale)` clamped to [-128, 127] (modelopt `quant_utils.py`
//! `get_scaling_factor_from_weight` with group size 0, `to_quantized_weight` for `int8_wo` /
//! `int8_sq`; TensorRT-LLM `per_channel_scale`). `round` is half-to-even, as `torch.round`.

use super::scale::{amax, round_half_even_small, scale_for};

pub const INT8_MAX: f32 = 127.0;

/// Quantizes `w` (rows of `cols` values) into `codes` and one scale per row into `scales`.
///
/// # Panics
/// If the lengths disagree (`w.len() == codes.len() == scales.len() * cols`).
pub fn quantize_int8_rows(w: &[f32], cols: usize, codes: &mut [i8], scales: &mut [f32]) {
    assert_eq!(w.len(), codes.len(), "int8 quantize: length mismatch");
    assert_eq!(w.len(), scales.len() * cols, "int8 quantize: row count");
    for ((row, q), s) in w
        .chunks_exact(cols)
        .zip(codes.chunks_exact_mut(cols))
        .zip(scales.iter_mut())
    {
        *s = scale_for(amax(row), INT8_MAX);
        for (c, &x) in q.iter_mut().zip(row) {
            *c = round_half_even_small(x / *s).clamp(-128.0, 127.0) as i8;
        }
    }
}

/// Only the per-row scales of [`quantize_int8_rows`] (for a writer that emits them apart).
///
/// # Panics
/// If `w.len() != scales.len() * cols`.
pub fn int8_row_scales(w: &[f32], cols: usize, scales: &mut [f32]) {
    assert_eq!(w.len(), scales.len() * cols, "int8 scales: row count");
    for (row, s) in w.chunks_exact(cols).zip(scales.iter_mut()) {
        *s = scale_for(amax(row), INT8_MAX);
    }
}

/// `dst = codes * scale[row]`.
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_int8_rows(codes: &[i8], cols: usize, scales: &[f32], dst: &mut [f32]) {
    assert_eq!(codes.len(), dst.len(), "int8 dequantize: length mismatch");
    assert_eq!(
        codes.len(),
        scales.len() * cols,
        "int8 dequantize: row count"
    );
    for ((q, d), &s) in codes
        .chunks_exact(cols)
        .zip(dst.chunks_exact_mut(cols))
        .zip(scales)
    {
        for (y, &c) in d.iter_mut().zip(q) {
            *y = f32::from(c) * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn row_amax_maps_to_127() {
        let w = [1.0, -2.0, 0.5, 0.0, 0.0, 0.0];
        let (mut q, mut s) = ([0i8; 6], [0f32; 2]);
        quantize_int8_rows(&w, 3, &mut q, &mut s);
        assert_eq!(&q[..3], &[64, -127, 32]);
        assert_eq!(s[0], 2.0 / 127.0);
        assert_eq!(&q[3..], &[0, 0, 0]);
        assert!(s[1] > 0.0, "zero rows get the floor scale");
    }

    proptest! {
        #[test]
        fn error_at_most_half_a_step(
            (cols, w) in (1usize..40).prop_flat_map(|c| (Just(c), proptest::collection::vec(-50.0f32..50.0, c..=c * 6)))
        ) {
            let rows = w.len() / cols;
            let w = &w[..rows * cols];
            let (mut q, mut s) = (vec![0i8; w.len()], vec![0f32; rows]);
            quantize_int8_rows(w, cols, &mut q, &mut s);
            let mut back = vec![0f32; w.len()];
            dequantize_int8_rows(&q, cols, &s, &mut back);
            for (i, (&x, &y)) in w.iter().zip(&back).enumerate() {
                prop_assert!((x - y).abs() <= s[i / cols] / 2.0 * 1.0001, "{x} -> {y}");
            }
        }
    }
}
