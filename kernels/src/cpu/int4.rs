//! INT4 weights, symmetric, one scale per group of `group` input channels of a row (W4A16 AWQ
//! / RTN as modelopt's `INT4_AWQ_CFG`: `num_bits 4`, `block_sizes {-1: 128}`):
//! `scale = group amax / 7`, `q = round(w / scale)` clamped to [-8, 7] (modelopt
//! `quant_utils.py` `get_scaling_factor_from_weight`, maxbound `2^(4-1) - 1 = 7`, and
//! `pack_int4_in_uint8`; AutoAWQ's symmetric `pseudo_quantize_tensor` uses the same
//! `absmax / 7`). With amax/7 the codes span [-7, 7]; -8 is never produced.
//!
//! Packing ([`pack_int4_row_pairs`]) is modelopt's `pack_int4_in_uint8` for 2-D weights:
//! two **adjacent output rows** share a byte, `byte[i, k] = (q[2i, k] & 0xF) | (q[2i+1, k] << 4)`,
//! giving a `[out / 2, in]` uint8 tensor (TensorRT-LLM unpacks it in
//! `postprocess_weight_only_groupwise`).

use super::scale::{amax, round_half_even_small, scale_for};

pub const INT4_MAX: f32 = 7.0;

/// Quantizes `w` (rows of `cols` values) group-wise: `codes` gets one value in [-8, 7] per
/// weight, `scales` one scale per (row, group), row-major `[rows, cols / group]`.
///
/// # Panics
/// If `group` does not divide `cols` or the lengths disagree.
pub fn quantize_int4_group_rows(
    w: &[f32],
    cols: usize,
    group: usize,
    codes: &mut [i8],
    scales: &mut [f32],
) {
    assert!(
        group > 0 && cols.is_multiple_of(group),
        "int4: group must divide cols"
    );
    assert_eq!(w.len(), codes.len(), "int4 quantize: length mismatch");
    assert_eq!(w.len() / group, scales.len(), "int4 quantize: scale count");
    for ((g, q), s) in w
        .chunks_exact(group)
        .zip(codes.chunks_exact_mut(group))
        .zip(scales.iter_mut())
    {
        *s = scale_for(amax(g), INT4_MAX);
        for (c, &x) in q.iter_mut().zip(g) {
            *c = round_half_even_small(x / *s).clamp(-8.0, 7.0) as i8;
        }
    }
}

/// [`quantize_int4_group_rows`] with a clip ratio per (row, group) (AWQ's clip search, AutoAWQ
/// `apply_clip`: weights are clamped to `±ratio · amax` before quantizing): `scale =
/// ratio · amax / 7`, `q = clamp(round(w / scale), -7, 7)`. A ratio of 1 gives the same codes
/// and scales as the unclipped quantizer.
///
/// # Panics
/// If `group` does not divide `cols` or the lengths disagree (`clip` has one ratio per group).
pub fn quantize_int4_group_rows_clipped(
    w: &[f32],
    cols: usize,
    group: usize,
    clip: &[f32],
    codes: &mut [i8],
    scales: &mut [f32],
) {
    assert!(
        group > 0 && cols.is_multiple_of(group),
        "int4: group must divide cols"
    );
    assert_eq!(w.len(), codes.len(), "int4 quantize: length mismatch");
    assert_eq!(w.len() / group, scales.len(), "int4 quantize: scale count");
    assert_eq!(clip.len(), scales.len(), "int4 quantize: clip count");
    for (((g, q), s), &r) in w
        .chunks_exact(group)
        .zip(codes.chunks_exact_mut(group))
        .zip(scales.iter_mut())
        .zip(clip)
    {
        *s = scale_for(amax(g) * r, INT4_MAX);
        for (c, &x) in q.iter_mut().zip(g) {
            *c = round_half_even_small((x / *s).clamp(-7.0, 7.0)) as i8;
        }
    }
}

/// Only the group scales of [`quantize_int4_group_rows`] (for a writer that emits them apart).
///
/// # Panics
/// If `group` does not divide `w.len()` or `scales` is not one per group.
pub fn int4_group_scales(w: &[f32], group: usize, scales: &mut [f32]) {
    assert!(
        group > 0 && w.len().is_multiple_of(group),
        "int4: group must divide len"
    );
    assert_eq!(w.len() / group, scales.len(), "int4 scales: scale count");
    for (g, s) in w.chunks_exact(group).zip(scales.iter_mut()) {
        *s = scale_for(amax(g), INT4_MAX);
    }
}

/// Quantize-dequantize in place (the "fake quantization" AWQ's search evaluates).
///
/// # Panics
/// If `group` does not divide `w.len()`.
pub fn fake_quantize_int4_groups(w: &mut [f32], group: usize) {
    assert!(
        group > 0 && w.len().is_multiple_of(group),
        "int4: group must divide len"
    );
    for g in w.chunks_exact_mut(group) {
        let s = scale_for(amax(g), INT4_MAX);
        for x in g.iter_mut() {
            *x = round_half_even_small(*x / s).clamp(-8.0, 7.0) * s;
        }
    }
}

/// `dst = codes * scale[row, group]`.
///
/// # Panics
/// If the lengths disagree.
pub fn dequantize_int4_group_rows(codes: &[i8], group: usize, scales: &[f32], dst: &mut [f32]) {
    assert_eq!(codes.len(), dst.len(), "int4 dequantize: length mismatch");
    assert_eq!(
        codes.len() / group.max(1),
        scales.len(),
        "int4 dequantize: scales"
    );
    for ((q, d), &s) in codes
        .chunks_exact(group)
        .zip(dst.chunks_exact_mut(group))
        .zip(scales)
    {
        for (y, &c) in d.iter_mut().zip(q) {
            *y = f32::from(c) * s;
        }
    }
}

/// Packs an even number of rows of codes: `dst[i * cols + k] = lo(q[2i, k]) | hi(q[2i+1, k])`.
///
/// # Panics
/// If the row count is odd or `dst` is not half the length of `codes`.
pub fn pack_int4_row_pairs(codes: &[i8], cols: usize, dst: &mut [u8]) {
    assert!(
        codes.len().is_multiple_of(2 * cols),
        "int4 pack: rows must pair up"
    );
    assert_eq!(codes.len() / 2, dst.len(), "int4 pack: length mismatch");
    for (pair, d) in codes.chunks_exact(2 * cols).zip(dst.chunks_exact_mut(cols)) {
        let (even, odd) = pair.split_at(cols);
        for ((b, &lo), &hi) in d.iter_mut().zip(even).zip(odd) {
            *b = (lo as u8 & 0x0F) | ((hi as u8) << 4);
        }
    }
}

/// Inverse of [`pack_int4_row_pairs`]: `dst` gets `2 × dst rows` rows of signed codes.
///
/// # Panics
/// If `dst` is not twice the length of `packed`.
pub fn unpack_int4_row_pairs(packed: &[u8], cols: usize, dst: &mut [i8]) {
    assert_eq!(packed.len() * 2, dst.len(), "int4 unpack: length mismatch");
    let signed = |n: u8| ((n << 4) as i8) >> 4;
    for (p, pair) in packed
        .chunks_exact(cols)
        .zip(dst.chunks_exact_mut(2 * cols))
    {
        let (even, odd) = pair.split_at_mut(cols);
        for ((&b, lo), hi) in p.iter().zip(even).zip(odd) {
            *lo = signed(b & 0x0F);
            *hi = signed(b >> 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_adjacent_rows_low_nibble_first() {
        // Rows 0 and 1 of a 2 x 2 matrix: byte k holds row 0 in the low nibble.
        let q = [1i8, -1, -8, 7];
        let mut p = [0u8; 2];
        pack_int4_row_pairs(&q, 2, &mut p);
        assert_eq!(p, [0x81, 0x7F]);
        let mut back = [0i8; 4];
        unpack_int4_row_pairs(&p, 2, &mut back);
        assert_eq!(back, q);
    }

    #[test]
    fn clipping_ratio_one_is_plain_and_smaller_ratios_saturate() {
        let w = [0.7, -0.35, 0.0, 0.1, 14.0, 0.0, -7.0, 1.0];
        let (mut q, mut s) = ([0i8; 8], [0f32; 2]);
        quantize_int4_group_rows(&w, 8, 4, &mut q, &mut s);
        let (mut qc, mut sc) = ([0i8; 8], [0f32; 2]);
        quantize_int4_group_rows_clipped(&w, 8, 4, &[1.0, 0.5], &mut qc, &mut sc);
        assert_eq!((&qc[..4], sc[0]), (&q[..4], s[0]));
        assert_eq!(sc[1], 1.0);
        assert_eq!(&qc[4..], &[7, 0, -7, 1]);
    }

    #[test]
    fn group_amax_maps_to_7() {
        let w = [0.7, -0.35, 0.0, 0.1, 14.0, 0.0, -7.0, 1.0];
        let (mut q, mut s) = ([0i8; 8], [0f32; 2]);
        quantize_int4_group_rows(&w, 8, 4, &mut q, &mut s);
        assert_eq!(s, [0.1, 2.0]);
        assert_eq!(q, [7, -4, 0, 1, 7, 0, -4, 0]);
    }

    proptest! {
        #[test]
        fn error_at_most_half_a_step_and_fake_quant_agrees(
            w in proptest::collection::vec(-20.0f32..20.0, 1..8).prop_map(|v| v.repeat(32))
        ) {
            let group = 16;
            let w = &w[..w.len() / (2 * group) * (2 * group)];
            let (mut q, mut s) = (vec![0i8; w.len()], vec![0f32; w.len() / group]);
            quantize_int4_group_rows(w, 2 * group, group, &mut q, &mut s);
            let mut back = vec![0f32; w.len()];
            dequantize_int4_group_rows(&q, group, &s, &mut back);
            let mut fake = w.to_vec();
            fake_quantize_int4_groups(&mut fake, group);
            for (i, (&x, &y)) in w.iter().zip(&back).enumerate() {
                prop_assert!((x - y).abs() <= s[i / group] / 2.0 * 1.0001, "{x} -> {y}");
                prop_assert_eq!(y, fake[i]);
            }
            if w.len().is_multiple_of(4 * group) {
                let mut p = vec![0u8; w.len() / 2];
                pack_int4_row_pairs(&q, 2 * group, &mut p);
                let mut u = vec![0i8; w.len()];
                unpack_int4_row_pairs(&p, 2 * group, &mut u);
                prop_assert_eq!(u, q);
            }
        }
    }
}
