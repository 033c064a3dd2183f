//! FP8 (E4M3FN) weight quantization with one scale per tensor, as modelopt's `FP8_DEFAULT_CFG`
//! (`num_bits (4, 3)`, `axis None`): `scale = amax / 448` (modelopt `quant_utils.py`
//! `get_scaling_factor`), `code = e4m3(w / scale)` (`to_quantized_weight`: a division, not a
//! multiplication by the reciprocal, so codes match it bit for bit).

use super::f8::{e4m3_round, e4m3_to_f32, f32_to_e4m3};
use super::scale::scale_for;
use crate::KernelError;
use formats::Dtype;

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

/// Elements decoded per step of the fused kernels (a stack buffer that stays in L1).
const BLOCK: usize = 512;
/// Independent accumulators of the fused loops (one AVX register of f32).
const LANES: usize = 8;

/// What [`amax_encoded`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amax {
    /// `max |x|` over all elements.
    Finite(f32),
    /// The index of the first NaN or ±Inf element.
    NotFinite(usize),
}

/// `max |x|` of little-endian float elements of `dtype`, straight from their bytes. For BF16,
/// F16 and F32 it is an integer max over the magnitude bits (which order finite values as
/// their magnitudes do, and put every NaN / ±Inf above them), so one vectorised pass also
/// checks finiteness; other float types are decoded.
///
/// # Errors
/// [`KernelError::NotFloat`] for a non-float dtype; [`KernelError::LengthMismatch`] unless
/// `src` holds whole elements.
pub fn amax_encoded(src: &[u8], dtype: Dtype) -> Result<Amax, KernelError> {
    if !dtype.is_float() {
        return Err(KernelError::NotFloat(dtype));
    }
    let size = dtype.size();
    if !src.len().is_multiple_of(size) {
        return Err(KernelError::LengthMismatch {
            src_bytes: src.len(),
            dst_bytes: src.len() / size * 4,
            from: dtype,
            to: Dtype::F32,
        });
    }
    let first_bad = |mask: u32, inf: u32| {
        src.chunks_exact(size)
            .position(|c| {
                let mut b = [0u8; 4];
                b[..size].copy_from_slice(c);
                u32::from_le_bytes(b) & mask >= inf
            })
            .unwrap_or(0)
    };
    let (max, inf, mask) = match dtype {
        Dtype::BF16 | Dtype::F16 => {
            let max = max_magnitude_u16(src);
            let inf = if dtype == Dtype::BF16 { 0x7F80 } else { 0x7C00 };
            (u32::from(max), inf, 0x7FFF)
        }
        Dtype::F32 => {
            let max = src
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7FFF_FFFF)
                .fold(0u32, u32::max);
            (max, 0x7F80_0000, 0x7FFF_FFFF)
        }
        _ => {
            let mut buf = [0f32; BLOCK];
            let mut amax = 0.0f32;
            for (b, chunk) in src.chunks(BLOCK * size).enumerate() {
                let buf = &mut buf[..chunk.len() / size];
                super::cast::decode_f32(chunk, dtype, buf)?;
                if let Some(i) = super::scale::first_non_finite(buf) {
                    return Ok(Amax::NotFinite(b * BLOCK + i));
                }
                amax = amax.max(super::scale::amax(buf));
            }
            return Ok(Amax::Finite(amax));
        }
    };
    if max >= inf {
        return Ok(Amax::NotFinite(first_bad(mask, inf)));
    }
    let value = match dtype {
        Dtype::BF16 => f32::from_bits(max << 16),
        Dtype::F16 => half::f16::from_bits(max as u16).to_f32(),
        _ => f32::from_bits(max),
    };
    Ok(Amax::Finite(value))
}

/// `max(bits & 0x7FFF)` over little-endian u16 elements, on AVX2 where the CPU has it.
fn max_magnitude_u16(src: &[u8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { max_magnitude_u16_avx2(src) };
    }
    max_magnitude_u16_lanes(src)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_magnitude_u16_avx2(src: &[u8]) -> u16 {
    max_magnitude_u16_lanes(src)
}

/// Reads `src` as u16 elements in place when it holds whole, aligned little-endian ones (the
/// usual case: tensor data is aligned in the file and the map); `None` otherwise.
#[inline(always)]
fn as_u16s(src: &[u8]) -> Option<&[u16]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every bit pattern is a valid u16; `align_to` only yields aligned elements.
    let (head, mid, tail) = unsafe { src.align_to::<u16>() };
    (head.is_empty() && tail.is_empty()).then_some(mid)
}

#[inline(always)]
fn max_magnitude_u16_lanes(src: &[u8]) -> u16 {
    match as_u16s(src) {
        Some(words) => words.iter().map(|w| w & 0x7FFF).fold(0u16, u16::max),
        None => src
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7FFF)
            .fold(0u16, u16::max),
    }
}

/// Σ w² and Σ (w − ŵ)² of a quantized slice (f32 within a block, f64 across blocks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorSum {
    pub signal: f64,
    pub noise: f64,
}

/// [`quantize_fp8_rows`] of little-endian float elements of `dtype`, decoded a block at a time
/// (no f32 copy of the input), returning the error sums of the result in the same pass
/// (`ŵ = e4m3(w / scale) · scale`, computed arithmetically with [`e4m3_round`]).
///
/// # Errors
/// [`KernelError::NotFloat`] / [`KernelError::LengthMismatch`] as
/// [`decode_f32`](super::cast::decode_f32), unless `dst` holds one code per element.
pub fn quantize_fp8_encoded(
    src: &[u8],
    dtype: Dtype,
    scale: f32,
    dst: &mut [u8],
) -> Result<ErrorSum, KernelError> {
    if !dtype.is_float() {
        return Err(KernelError::NotFloat(dtype));
    }
    if Some(src.len()) != dst.len().checked_mul(dtype.size()) {
        return Err(KernelError::LengthMismatch {
            src_bytes: src.len(),
            dst_bytes: dst.len(),
            from: dtype,
            to: Dtype::F8E4M3,
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { quantize_fp8_encoded_avx2(src, dtype, scale, dst) };
    }
    quantize_fp8_blocks(src, dtype, scale, dst)
}

/// [`quantize_fp8_blocks`] compiled for AVX2 (8 lanes instead of SSE2's 4); same results, as
/// no floating-point contraction is enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_fp8_encoded_avx2(
    src: &[u8],
    dtype: Dtype,
    scale: f32,
    dst: &mut [u8],
) -> Result<ErrorSum, KernelError> {
    quantize_fp8_blocks(src, dtype, scale, dst)
}

/// The body of [`quantize_fp8_encoded`] (lengths checked by it), inlined into each
/// instruction-set variant.
#[inline(always)]
fn quantize_fp8_blocks(
    src: &[u8],
    dtype: Dtype,
    scale: f32,
    dst: &mut [u8],
) -> Result<ErrorSum, KernelError> {
    let mut buf = [0f32; BLOCK];
    let mut sum = ErrorSum::default();
    for (s, d) in src.chunks(BLOCK * dtype.size()).zip(dst.chunks_mut(BLOCK)) {
        let w = &mut buf[..d.len()];
        if let (Dtype::BF16, Some(words)) = (dtype, as_u16s(s)) {
            for (x, &b) in w.iter_mut().zip(words) {
                *x = f32::from_bits(u32::from(b) << 16);
            }
        } else {
            super::cast::decode_f32(s, dtype, w)?;
        }
        // LANES independent accumulators, so the loop vectorises (one running f32 sum is a
        // dependency chain the compiler may not reorder).
        let (mut a2, mut d2) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut lanes = d.chunks_exact_mut(LANES).zip(w.chunks_exact(LANES));
        for (c, x) in &mut lanes {
            for l in 0..LANES {
                let q = x[l] / scale;
                c[l] = f32_to_e4m3(q);
                let e = x[l] - e4m3_round(q) * scale;
                a2[l] += x[l] * x[l];
                d2[l] += e * e;
            }
        }
        let tail = d.len() - d.len() % LANES;
        for (c, &x) in d[tail..].iter_mut().zip(&w[tail..]) {
            let q = x / scale;
            *c = f32_to_e4m3(q);
            let e = x - e4m3_round(q) * scale;
            a2[0] += x * x;
            d2[0] += e * e;
        }
        sum.signal += a2.iter().map(|&v| f64::from(v)).sum::<f64>();
        sum.noise += d2.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    Ok(sum)
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

    #[test]
    fn amax_from_bytes_matches_decoded_amax_and_finds_non_finite() {
        let values = [0.5f32, -3.25, 1e-3, 2.0, -0.0];
        for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
            let mut bytes = vec![0u8; values.len() * dtype.size()];
            crate::cpu::cast::encode_f32(&values, dtype, &mut bytes).unwrap();
            assert_eq!(
                amax_encoded(&bytes, dtype).unwrap(),
                Amax::Finite(3.25),
                "{dtype}"
            );
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = values.to_vec();
                v.insert(3, bad);
                let mut bytes = vec![0u8; v.len() * dtype.size()];
                crate::cpu::cast::encode_f32(&v, dtype, &mut bytes).unwrap();
                if dtype == Dtype::F8E4M3 && bad.is_infinite() {
                    continue; // E4M3FN saturates ±Inf to ±448
                }
                assert_eq!(
                    amax_encoded(&bytes, dtype).unwrap(),
                    Amax::NotFinite(3),
                    "{dtype}"
                );
            }
        }
        assert!(amax_encoded(&[0u8; 3], Dtype::BF16).is_err());
        assert!(amax_encoded(&[0u8; 4], Dtype::I32).is_err());
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

        /// The fused kernel writes the codes of decode + [`quantize_fp8_rows`] and the error
        /// sums of [`dequantize_fp8_rows`].
        #[test]
        fn fused_matches_the_two_pass_kernels(w in proptest::collection::vec(-50.0f32..50.0, 1..1500)) {
            let mut bytes = vec![0u8; w.len() * 2];
            crate::cpu::cast::encode_f32(&w, Dtype::BF16, &mut bytes).unwrap();
            let mut x = vec![0f32; w.len()];
            crate::cpu::cast::decode_f32(&bytes, Dtype::BF16, &mut x).unwrap();
            let s = fp8_scale(super::super::scale::amax(&x));
            let mut want = vec![0u8; w.len()];
            quantize_fp8_rows(&x, s, &mut want);
            let mut got = vec![0u8; w.len()];
            let sum = quantize_fp8_encoded(&bytes, Dtype::BF16, s, &mut got).unwrap();
            prop_assert_eq!(&got, &want);
            let mut back = vec![0f32; w.len()];
            dequantize_fp8_rows(&want, s, &mut back);
            let signal: f64 = x.iter().map(|v| f64::from(v * v)).sum();
            let noise: f64 = x.iter().zip(&back).map(|(a, b)| f64::from((a - b) * (a - b))).sum();
            prop_assert!((sum.signal - signal).abs() <= 1e-5 * signal.max(1e-30));
            prop_assert!((sum.noise - noise).abs() <= 1e-4 * noise.max(1e-30), "{} vs {}", sum.noise, noise);
        }
    }
}
