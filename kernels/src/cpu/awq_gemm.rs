//! INT4 weights in AutoAWQ's GEMM layout (what transformers loads with `quant_method: "awq"`,
//! `version: "gemm"`; AutoAWQ `awq/modules/linear/gemm.py` `WQLinear_GEMM.from_linear`):
//!
//! - `qweight` int32 `[in, out / 8]`: the codes transposed (one row per input channel), eight
//!   output channels per word, nibble `i` (bits `4i .. 4i + 3`) holding output `8c +
//!   AWQ_ORDER[i]` of word `c` (`order_map = [0, 2, 4, 6, 1, 3, 5, 7]`);
//! - `qzeros` int32 `[in / group, out / 8]`, packed alike; `scales` f16 `[in / group, out]`;
//! - `w = (q - z) · s` with unsigned `q, z ∈ [0, 15]`.
//!
//! Our symmetric codes `c ∈ [-7, 7]` are `q = c + 8` with every zero point 8. AutoAWQ computes
//! the codes with the scales already rounded to f16 (`awq_linear.scales = scales.half()`, then
//! `round(w / awq_linear.scales)`), and so does [`quantize_int4_f16_scales`].

use super::cast::{f16_to_f32, f32_to_f16};
use super::scale::{amax, round_half_even_small, scale_for};

/// Output channel held by nibble `i` of a word (AutoAWQ `order_map`).
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// The zero point of our symmetric codes.
pub const AWQ_ZERO: u8 = 8;
/// A `qzeros` word: eight zero points of 8.
pub const AWQ_ZERO_WORD: u32 = 0x8888_8888;

/// Quantizes rows of `cols` values group-wise with scales rounded to f16: `scale = ratio ·
/// amax / 7` (ratio 1 without `clip`, one per group otherwise), `s16 = f16(scale)`, codes
/// `clamp(round(w / s16), -7, 7)` (0 where `s16` underflowed to 0). `scales` gets the f16 bits,
/// row-major `[rows, cols / group]`. Returns the index of the first group whose scale overflows
/// f16 as `Err`.
///
/// # Panics
/// If `group` does not divide `cols` or the lengths disagree.
pub fn quantize_int4_f16_scales(
    w: &[f32],
    cols: usize,
    group: usize,
    clip: Option<&[f32]>,
    codes: &mut [i8],
    scales: &mut [u16],
) -> Result<(), usize> {
    assert!(
        group > 0 && cols.is_multiple_of(group),
        "awq: group must divide cols"
    );
    assert_eq!(w.len(), codes.len(), "awq quantize: length mismatch");
    assert_eq!(w.len() / group, scales.len(), "awq quantize: scale count");
    let mut s32: Vec<f32> = w
        .chunks_exact(group)
        .enumerate()
        .map(|(i, g)| scale_for(amax(g) * clip.map_or(1.0, |c| c[i]), super::int4::INT4_MAX))
        .collect();
    f32_to_f16(&s32, scales);
    f16_to_f32(scales, &mut s32);
    if let Some(i) = s32.iter().position(|s| !s.is_finite()) {
        return Err(i);
    }
    for ((g, q), &s) in w
        .chunks_exact(group)
        .zip(codes.chunks_exact_mut(group))
        .zip(&s32)
    {
        for (c, &x) in q.iter_mut().zip(g) {
            *c = if s > 0.0 {
                round_half_even_small((x / s).clamp(-7.0, 7.0)) as i8
            } else {
                0
            };
        }
    }
    Ok(())
}

/// Packs codes `[rows, out]` (one row per input channel, signed, zero point 8) into `qweight`
/// words `[rows, out / 8]`, little-endian bytes.
///
/// # Panics
/// If `out` is not a multiple of 8 or the lengths disagree.
pub fn pack_awq_gemm(codes: &[i8], out: usize, dst: &mut [u8]) {
    assert!(
        out.is_multiple_of(8),
        "awq pack: out must be a multiple of 8"
    );
    assert_eq!(codes.len() / 2, dst.len(), "awq pack: length mismatch");
    for (eight, word) in codes.chunks_exact(8).zip(dst.chunks_exact_mut(4)) {
        let mut v = 0u32;
        for (i, &o) in AWQ_ORDER.iter().enumerate() {
            v |= u32::from((eight[o] + AWQ_ZERO as i8) as u8 & 0xF) << (4 * i);
        }
        word.copy_from_slice(&v.to_le_bytes());
    }
}

/// Inverse of the packing: little-endian words `[rows, out / 8]` to unsigned nibbles `[rows,
/// out]` in output order (also for `qzeros`).
///
/// # Panics
/// If `dst` is not twice the length of `src`.
pub fn unpack_awq_gemm(src: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len() * 2, dst.len(), "awq unpack: length mismatch");
    for (word, eight) in src.chunks_exact(4).zip(dst.chunks_exact_mut(8)) {
        let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        for (i, &o) in AWQ_ORDER.iter().enumerate() {
            eight[o] = ((v >> (4 * i)) & 0xF) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_in_autoawq_order() {
        // Outputs 0..8 with codes -7..0 (unsigned 1..8): nibble i holds output AWQ_ORDER[i].
        let codes: Vec<i8> = (0..8).map(|o| o as i8 - 7).collect();
        let mut p = [0u8; 4];
        pack_awq_gemm(&codes, 8, &mut p);
        let v = u32::from_le_bytes(p);
        let nibbles: Vec<u32> = (0..8).map(|i| (v >> (4 * i)) & 0xF).collect();
        assert_eq!(nibbles, [1, 3, 5, 7, 2, 4, 6, 8]);
        let mut back = [0u8; 8];
        unpack_awq_gemm(&p, &mut back);
        assert_eq!(back, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            u32::from_le_bytes({
                let mut z = [0u8; 4];
                pack_awq_gemm(&[0; 8], 8, &mut z);
                z
            }),
            AWQ_ZERO_WORD
        );
    }

    #[test]
    fn codes_use_the_f16_scale() {
        // amax 0.7 -> scale 0.1, which f16 rounds to 0.0999755859375.
        let w = [0.7f32, -0.35, 0.0, 0.05];
        let (mut q, mut s) = ([0i8; 4], [0u16; 1]);
        quantize_int4_f16_scales(&w, 4, 4, None, &mut q, &mut s).expect("finite");
        let mut sf = [0f32];
        f16_to_f32(&s, &mut sf);
        assert_eq!(sf[0], 0.099975586);
        assert_eq!(q, [7, -4, 0, 1]);
        for (&x, &c) in w.iter().zip(&q) {
            assert!((x - f32::from(c) * sf[0]).abs() <= sf[0] / 2.0 + 1e-6);
        }
        let mut zero = [0i8; 4];
        quantize_int4_f16_scales(&[0.0; 4], 4, 4, None, &mut zero, &mut s).expect("finite");
        assert_eq!(zero, [0; 4]);
        assert_eq!(
            quantize_int4_f16_scales(&[1e6; 4], 4, 4, None, &mut q, &mut s),
            Err(0)
        );
    }
}
