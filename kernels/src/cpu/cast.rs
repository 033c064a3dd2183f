//! Dtype conversions between the dense float types F64, F32, F16, BF16, F8E4M3 and F8E5M2.
//!
//! # Rounding rules (every conversion rounds at most once)
//! - **Widening is exact**: F16, BF16, F8E4M3 and F8E5M2 decode to f32 exactly (NaN stays NaN,
//!   Inf stays Inf, subnormals kept); f32 widens to f64 exactly.
//! - **f32 -> F16**: IEEE round to nearest, ties to even; overflow -> ±Inf; NaN -> quiet NaN with
//!   its sign (the top payload bits are kept). Done by the `half` crate's slice conversion, which
//!   uses F16C (`vcvtps2ph`, round-to-nearest-even immediate) when the CPU has it.
//! - **f32 -> BF16**: round to nearest, ties to even; overflow -> ±Inf; NaN -> quiet NaN with its
//!   sign and top payload bits, so a NaN whose payload lives only in the low 16 bits stays NaN
//!   instead of truncating to Inf.
//! - **f32 -> F8E4M3 / F8E5M2**: see [`crate::cpu::f8`] — RNE, saturating (E4M3: finite overflow
//!   and ±Inf -> ±448; E5M2: finite overflow -> ±57344, ±Inf kept), NaN -> NaN.
//! - **F16 <-> BF16, F16/BF16 <-> F8**: exact widening to f32, then one RNE rounding, so the result
//!   is the correctly rounded value of the source.
//! - **F64 -> F32**: one IEEE RNE rounding (`as f32`).
//! - **F64 -> F16 / BF16 / F8**: rounded once, not through a RNE f32. The f64 is first rounded
//!   to f32 with *round-to-odd* (truncate, then set the last bit if anything was lost), then
//!   RNE'd to the target. Round-to-odd to a format with at least two more bits of precision
//!   than the target, followed by RNE, equals direct RNE (Boldo & Melquiond, "Emulation of FMA
//!   and correctly-rounded sums: proved algorithms using rounding to odd", IEEE TC 2008); f32 has
//!   24 bits against at most 11 here, and its exponent range covers every target's normals and
//!   subnormals with a finer grid. Values beyond f32's range become ±`f32::MAX`, which still
//!   overflows (F16/BF16 -> ±Inf) or saturates (F8) exactly as the f64 would. (`half`'s own
//!   `f16::from_f64` goes through `f32` with RNE when F16C is present, which double-rounds, so it
//!   is not used; its `bf16::from_f64` drops the low 32 bits before rounding, same problem.)
//!
//! # Byte-level entry points
//! [`cast_bytes`], [`decode_f32`] and [`encode_f32`] take raw little-endian bytes of *any*
//! alignment (they come straight from mmaps). They work in chunks of [`CHUNK`] elements through
//! a small stack buffer of f32, dispatching on the dtype once per chunk, never per element.

use crate::cpu::f8;
use crate::error::KernelError;
use formats::Dtype;
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

pub use crate::cpu::f8::{f32_to_f8e4m3, f32_to_f8e5m2, f8e4m3_to_f32, f8e5m2_to_f32};

/// Elements per chunk in the byte-level paths: 4 KiB of f32 on the stack, small enough to stay
/// in L1 next to the source and destination chunks.
pub const CHUNK: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Typed kernels
// ---------------------------------------------------------------------------------------------

/// f32 -> F16 bits: IEEE round to nearest, ties to even; overflow -> ±Inf; NaN -> quiet NaN with
/// sign kept. Uses `half`'s slice conversion (F16C when available).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16: length mismatch");
    dst.reinterpret_cast_mut::<f16>()
        .convert_from_f32_slice(src);
}

/// F16 bits -> f32, exact (subnormals, Inf and NaN preserved).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: length mismatch");
    src.reinterpret_cast::<f16>().convert_to_f32_slice(dst);
}

/// One f32 -> BF16 bits: round to nearest, ties to even; overflow -> ±Inf; NaN -> quiet NaN
/// (`0x0040` set) with sign and top payload bits kept — never Inf, even when the payload is only
/// in the low 16 bits.
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    // Adding 0x7FFF plus the lsb of the kept part rounds to nearest even; a carry into the
    // exponent is the correct result (including rounding up to Inf).
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
    let nan = (b >> 16) | 0x0040;
    (if b & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    }) as u16
}

/// One BF16 bits -> f32, exact (a bit shift; NaN payloads kept).
#[inline]
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 -> BF16 bits: round to nearest, ties to even; overflow -> ±Inf; NaN -> quiet NaN with sign
/// kept (see [`f32_to_bf16_bits`]).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_bf16: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16_bits(s);
    }
}

/// BF16 bits -> f32, exact.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "bf16_to_f32: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16_bits_to_f32(s);
    }
}

/// f64 -> f32 with round-to-odd: truncate toward zero, and if the result is inexact set its last
/// mantissa bit. Finite values beyond f32's range become ±`f32::MAX`; ±Inf stays ±Inf; NaN becomes
/// a quiet NaN with sign and top payload bits. The intermediate step for F64 -> F16/BF16/F8, see
/// the [module docs](self).
#[inline]
pub fn f64_to_f32_round_odd(x: f64) -> f32 {
    if x.is_nan() {
        let b = x.to_bits();
        let sign = ((b >> 32) as u32) & 0x8000_0000;
        let payload = ((b >> 29) as u32) & 0x003F_FFFF;
        return f32::from_bits(sign | 0x7FC0_0000 | payload);
    }
    let t = x as f32;
    if t as f64 == x {
        return t;
    }
    let mut bits = t.to_bits();
    if (t as f64).abs() > x.abs() {
        // RNE rounded away from zero (possibly to Inf): step one ulp back toward zero.
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

// ---------------------------------------------------------------------------------------------
// Byte-level kernels
// ---------------------------------------------------------------------------------------------

/// Number of elements in `src_bytes` if it holds a whole number of `from` elements and `dst_bytes`
/// holds exactly as many `to` elements.
fn element_count(
    src_bytes: usize,
    from: Dtype,
    dst_bytes: usize,
    to: Dtype,
) -> Result<usize, KernelError> {
    let n = src_bytes / from.size();
    if n * from.size() == src_bytes && n.checked_mul(to.size()) == Some(dst_bytes) {
        Ok(n)
    } else {
        Err(KernelError::LengthMismatch {
            src_bytes,
            dst_bytes,
            from,
            to,
        })
    }
}

/// Decodes `out.len()` elements of float dtype `from` from `src` (exactly `out.len() * size`
/// bytes). `f64_round_odd` selects round-to-odd for F64 sources (the value will be rounded
/// again); otherwise F64 is rounded to f32 with RNE.
#[inline]
fn decode_chunk(from: Dtype, src: &[u8], out: &mut [f32], f64_round_odd: bool) {
    debug_assert!(out.len() <= CHUNK && src.len() == out.len() * from.size());
    match from {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::F64 => {
            let words = src
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
            if f64_round_odd {
                for (o, x) in out.iter_mut().zip(words) {
                    *o = f64_to_f32_round_odd(x);
                }
            } else {
                for (o, x) in out.iter_mut().zip(words) {
                    *o = x as f32;
                }
            }
        }
        Dtype::F16 => {
            let mut tmp = [0u16; CHUNK];
            let tmp = &mut tmp[..out.len()];
            for (t, c) in tmp.iter_mut().zip(src.chunks_exact(2)) {
                *t = u16::from_le_bytes([c[0], c[1]]);
            }
            f16_to_f32(tmp, out);
        }
        Dtype::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        Dtype::F8E4M3 => f8::f8e4m3_to_f32(src, out),
        Dtype::F8E5M2 => f8::f8e5m2_to_f32(src, out),
        other => unreachable!("decode_chunk: {other} is not a float dtype (checked by callers)"),
    }
}

/// Encodes `inp` as float dtype `to` into `dst` (exactly `inp.len() * size` bytes).
#[inline]
fn encode_chunk(to: Dtype, inp: &[f32], dst: &mut [u8]) {
    debug_assert!(inp.len() <= CHUNK && dst.len() == inp.len() * to.size());
    match to {
        Dtype::F32 => {
            for (d, &x) in dst.chunks_exact_mut(4).zip(inp) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        Dtype::F64 => {
            for (d, &x) in dst.chunks_exact_mut(8).zip(inp) {
                d.copy_from_slice(&(x as f64).to_le_bytes());
            }
        }
        Dtype::F16 => {
            let mut tmp = [0u16; CHUNK];
            let tmp = &mut tmp[..inp.len()];
            f32_to_f16(inp, tmp);
            for (d, &h) in dst.chunks_exact_mut(2).zip(tmp.iter()) {
                d.copy_from_slice(&h.to_le_bytes());
            }
        }
        Dtype::BF16 => {
            for (d, &x) in dst.chunks_exact_mut(2).zip(inp) {
                d.copy_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
            }
        }
        Dtype::F8E4M3 => f8::f32_to_f8e4m3(inp, dst),
        Dtype::F8E5M2 => f8::f32_to_f8e5m2(inp, dst),
        other => unreachable!("encode_chunk: {other} is not a float dtype (checked by callers)"),
    }
}

/// Converts `src` (little-endian `from` elements) into `dst` (little-endian `to` elements).
/// Both slices may have any alignment.
///
/// - `from == to` (any dtype, integers included): a byte copy.
/// - Between the floats F64, F32, F16, BF16, F8E4M3, F8E5M2, in every direction, with the
///   rounding rules in the [module docs](self): exact widening, one round-to-nearest-even
///   rounding when narrowing, saturation for FP8.
///
/// # Errors
/// - [`KernelError::Unsupported`] for any other pair (checked first).
/// - [`KernelError::LengthMismatch`] unless `src` holds a whole number of `from` elements and
///   `dst` exactly as many `to` elements. Nothing is written on error.
pub fn cast_bytes(src: &[u8], from: Dtype, dst: &mut [u8], to: Dtype) -> Result<(), KernelError> {
    if from != to && !(from.is_float() && to.is_float()) {
        return Err(KernelError::Unsupported { from, to });
    }
    element_count(src.len(), from, dst.len(), to)?;
    if from == to {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let f64_round_odd = from == Dtype::F64 && to != Dtype::F32;
    let mut buf = [0f32; CHUNK];
    for (s, d) in src
        .chunks(CHUNK * from.size())
        .zip(dst.chunks_mut(CHUNK * to.size()))
    {
        let buf = &mut buf[..s.len() / from.size()];
        decode_chunk(from, s, buf, f64_round_odd);
        encode_chunk(to, buf, d);
    }
    Ok(())
}

/// Decodes little-endian float elements of dtype `from` (any alignment) into f32: exact for every
/// float dtype but F64, which is rounded to nearest even.
///
/// # Errors
/// [`KernelError::NotFloat`] if `from` is not a float dtype; [`KernelError::LengthMismatch`]
/// (with `to: F32`) unless `src.len() == dst.len() * from.size()`.
pub fn decode_f32(src: &[u8], from: Dtype, dst: &mut [f32]) -> Result<(), KernelError> {
    if !from.is_float() {
        return Err(KernelError::NotFloat(from));
    }
    if Some(src.len()) != dst.len().checked_mul(from.size()) {
        return Err(KernelError::LengthMismatch {
            src_bytes: src.len(),
            dst_bytes: dst.len().saturating_mul(4),
            from,
            to: Dtype::F32,
        });
    }
    for (s, d) in src.chunks(CHUNK * from.size()).zip(dst.chunks_mut(CHUNK)) {
        decode_chunk(from, s, d, false);
    }
    Ok(())
}

/// Encodes f32 values as little-endian elements of float dtype `to` (any alignment), with the
/// rounding rules in the [module docs](self) (exact for F32/F64).
///
/// # Errors
/// [`KernelError::NotFloat`] if `to` is not a float dtype; [`KernelError::LengthMismatch`]
/// (with `from: F32`) unless `dst.len() == src.len() * to.size()`.
pub fn encode_f32(src: &[f32], to: Dtype, dst: &mut [u8]) -> Result<(), KernelError> {
    if !to.is_float() {
        return Err(KernelError::NotFloat(to));
    }
    if Some(dst.len()) != src.len().checked_mul(to.size()) {
        return Err(KernelError::LengthMismatch {
            src_bytes: src.len().saturating_mul(4),
            dst_bytes: dst.len(),
            from: Dtype::F32,
            to,
        });
    }
    for (s, d) in src.chunks(CHUNK).zip(dst.chunks_mut(CHUNK * to.size())) {
        encode_chunk(to, s, d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_odd_basics() {
        assert_eq!(f64_to_f32_round_odd(1.0), 1.0);
        assert_eq!(f64_to_f32_round_odd(f64::INFINITY), f32::INFINITY);
        assert_eq!(f64_to_f32_round_odd(1e300), f32::MAX);
        assert_eq!(f64_to_f32_round_odd(-1e300), -f32::MAX);
        assert_eq!(f64_to_f32_round_odd(1e-300).to_bits(), 1);
        assert_eq!(f64_to_f32_round_odd(-1e-300).to_bits(), 0x8000_0001);
        // 1 + 2^-30: truncates to 1.0, inexact -> last bit set.
        assert_eq!(
            f64_to_f32_round_odd(1.0 + 2f64.powi(-30)).to_bits(),
            1f32.to_bits() | 1
        );
        // Just below 2.0 rounds (RNE) up to 2.0; round-to-odd gives the odd value below.
        assert_eq!(
            f64_to_f32_round_odd(2.0 - 2f64.powi(-40)).to_bits(),
            0x3FFF_FFFF
        );
        let n = f64_to_f32_round_odd(-f64::NAN);
        assert!(n.is_nan() && n.is_sign_negative());
    }

    #[test]
    fn bf16_low_payload_nan_stays_nan() {
        let x = f32::from_bits(0x7F80_0001);
        assert!(x.is_nan());
        assert_eq!(f32_to_bf16_bits(x), 0x7FC0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xFF80_0001)), 0xFFC0);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80);
        assert_eq!(f32_to_bf16_bits(1.0), 0x3F80);
    }
}
