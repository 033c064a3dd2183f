//! FP8 element codecs: OCP/NVIDIA `float8_e4m3fn` and `float8_e5m2`.
//!
//! # Formats
//! - **E4M3FN** (`torch.float8_e4m3fn`, `__nv_fp8_e4m3`): sign, 4 exponent bits (bias 7), 3 mantissa
//!   bits. No infinities; the only NaN encodings are `S.1111.111` (`0x7F`, `0xFF`). Largest finite
//!   value 448 (`0x7E`), smallest normal 2^-6, smallest subnormal 2^-9.
//! - **E5M2** (`torch.float8_e5m2`, `__nv_fp8_e5m2`): sign, 5 exponent bits (bias 15), 2 mantissa
//!   bits; IEEE-like, with ±Inf (`0x7C`/`0xFC`) and NaNs (`S.11111.xx`, `xx != 0`). Largest finite
//!   value 57344 (`0x7B`), smallest normal 2^-14, smallest subnormal 2^-16.
//!
//! # Encoding (f32 -> f8)
//! Round to nearest, ties to even, with subnormals (no flush to zero). The sign of zero is kept,
//! so a negative value that rounds to zero encodes as `0x80`.
//! - E4M3FN **saturates**: every finite value whose magnitude is above 448 (including the tie
//!   464, which plain RNE would round up to the NaN slot 480) and ±Inf encode as ±448 — the
//!   behaviour of `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)` and of the clamp that
//!   modelopt / TensorRT-LLM apply before casting. NaN encodes as `0x7F` with its sign (`0xFF`).
//! - E5M2: finite values whose magnitude is above 57344 saturate to ±57344 (`__NV_SATFINITE`
//!   for finite overflow); **±Inf stays ±Inf** (`0x7C`/`0xFC`; note that PTX `.satfinite` would
//!   clamp Inf to max too — we keep Inf because E5M2 can represent it); NaN encodes as the quiet
//!   NaN `0x7E` with its sign (payload is not kept).
//!
//! # Decoding (f8 -> f32)
//! Exact: every FP8 value is an f32. NaN codes decode to a quiet f32 NaN with the same sign.
//!
//! The slice kernels are written branch-free (both the normal and the subnormal candidate are
//! computed, then selected) so that the compiler vectorises them; decoding is a 256-entry table.

/// Quiet f32 NaN, positive.
const F32_QNAN: u32 = 0x7FC0_0000;
const F32_INF: u32 = 0x7F80_0000;

/// Bits of 448.0f32, the largest finite E4M3FN value.
const E4M3_MAX_F32: u32 = 0x43E0_0000;
/// Bits of 2^-6, the smallest normal E4M3 value.
const E4M3_MIN_NORMAL_F32: u32 = 121 << 23;
/// Bits of 2^14: adding it to x < 2^-6 leaves x rounded (RNE) to a multiple of 2^-9 in the
/// low mantissa bits (the classic "magic number" trick, Giesen's `float_to_half_fast3`).
const E4M3_SUBNORMAL_MAGIC: u32 = (127 + 14) << 23;
/// Code of ±448.
pub const E4M3_MAX_CODE: u8 = 0x7E;
/// Code of the (positive) E4M3FN NaN.
pub const E4M3_NAN_CODE: u8 = 0x7F;

/// Bits of 57344.0f32, the largest finite E5M2 value.
const E5M2_MAX_F32: u32 = 0x4760_0000;
/// Bits of 2^-14, the smallest normal E5M2 value.
const E5M2_MIN_NORMAL_F32: u32 = 113 << 23;
/// Bits of 2^7 (= 2^-16 * 2^23), see [`E4M3_SUBNORMAL_MAGIC`].
const E5M2_SUBNORMAL_MAGIC: u32 = (127 + 7) << 23;
/// Code of ±57344.
pub const E5M2_MAX_CODE: u8 = 0x7B;
/// Code of +Inf.
pub const E5M2_INF_CODE: u8 = 0x7C;
/// Code of the canonical (positive, quiet) E5M2 NaN.
pub const E5M2_NAN_CODE: u8 = 0x7E;

/// f32 bits of every E4M3FN code (integer-only const evaluation).
static E4M3_TO_F32: [u32; 256] = build_e4m3_table();
/// f32 bits of every E5M2 code.
static E5M2_TO_F32: [u32; 256] = build_e5m2_table();

/// f32 bits of `m * 2^(exp_min)` for the subnormal mantissa `m` (`m != 0`), given
/// `exp_min` = exponent of the smallest subnormal.
const fn subnormal_bits(m: u32, exp_min: i32) -> u32 {
    // m = 1.f * 2^k with k = floor(log2 m).
    let k = 31 - m.leading_zeros();
    let exp = (k as i32 + exp_min + 127) as u32;
    let frac = (m - (1 << k)) << (23 - k);
    (exp << 23) | frac
}

const fn build_e4m3_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let sign = ((b as u32) >> 7) << 31;
        let e = ((b >> 3) & 0xF) as u32;
        let m = (b & 7) as u32;
        let mag = if e == 15 && m == 7 {
            F32_QNAN
        } else if e == 0 {
            if m == 0 {
                0
            } else {
                subnormal_bits(m, -9)
            }
        } else {
            ((e + 120) << 23) | (m << 20)
        };
        t[b] = sign | mag;
        b += 1;
    }
    t
}

const fn build_e5m2_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let sign = ((b as u32) >> 7) << 31;
        let e = ((b >> 2) & 0x1F) as u32;
        let m = (b & 3) as u32;
        let mag = if e == 31 {
            if m == 0 {
                F32_INF
            } else {
                F32_QNAN | (m << 21)
            }
        } else if e == 0 {
            if m == 0 {
                0
            } else {
                subnormal_bits(m, -16)
            }
        } else {
            ((e + 112) << 23) | (m << 21)
        };
        t[b] = sign | mag;
        b += 1;
    }
    t
}

/// Decodes one E4M3FN code to f32 (exact; `0x7F`/`0xFF` -> NaN).
#[inline]
pub fn e4m3_to_f32(b: u8) -> f32 {
    f32::from_bits(E4M3_TO_F32[b as usize])
}

/// Decodes one E5M2 code to f32 (exact; Inf -> Inf, NaN codes -> quiet NaN).
#[inline]
pub fn e5m2_to_f32(b: u8) -> f32 {
    f32::from_bits(E5M2_TO_F32[b as usize])
}

/// Encodes one f32 as E4M3FN: RNE, saturating to ±448 (finite overflow and ±Inf), NaN -> `0x7F`
/// with sign. See the [module docs](self).
#[inline]
pub fn f32_to_e4m3(x: f32) -> u8 {
    let bits = x.to_bits();
    let sign = ((bits >> 24) & 0x80) as u8;
    let abs = bits & 0x7FFF_FFFF;
    // Normal range: rebias the exponent (127 -> 7) and round the low 20 mantissa bits to even.
    // A carry out of the mantissa correctly bumps the exponent.
    let normal = abs
        .wrapping_sub(120 << 23)
        .wrapping_add(0x7_FFFF + ((abs >> 20) & 1))
        >> 20;
    // Subnormal range (abs < 2^-6): the FPU's own RNE does the rounding to a multiple of 2^-9;
    // the result 0..=8 is also the code (8 = 2^-6, the smallest normal).
    let sub = (f32::from_bits(abs) + f32::from_bits(E4M3_SUBNORMAL_MAGIC))
        .to_bits()
        .wrapping_sub(E4M3_SUBNORMAL_MAGIC);
    let mut code = if abs < E4M3_MIN_NORMAL_F32 {
        sub
    } else {
        normal
    };
    code = if abs >= E4M3_MAX_F32 {
        E4M3_MAX_CODE as u32
    } else {
        code
    };
    code = if abs > F32_INF {
        E4M3_NAN_CODE as u32
    } else {
        code
    };
    sign | code as u8
}

/// The f32 value of the E4M3FN code [`f32_to_e4m3`] gives `x` (so `e4m3_round(x) ==
/// e4m3_to_f32(f32_to_e4m3(x))` for every non-NaN `x`), computed with the same branch-free
/// rounding instead of a table lookup, so loops over it vectorise.
#[inline]
pub fn e4m3_round(x: f32) -> f32 {
    let bits = x.to_bits();
    let sign = bits & 0x8000_0000;
    let abs = bits & 0x7FFF_FFFF;
    // Normal range: keep 3 mantissa bits, rounding the low 20 to even.
    let normal = abs.wrapping_add(0x7_FFFF + ((abs >> 20) & 1)) & 0xFFF0_0000;
    let sub = ((f32::from_bits(abs) + f32::from_bits(E4M3_SUBNORMAL_MAGIC))
        - f32::from_bits(E4M3_SUBNORMAL_MAGIC))
    .to_bits();
    let mut mag = if abs < E4M3_MIN_NORMAL_F32 {
        sub
    } else {
        normal
    };
    mag = if abs >= E4M3_MAX_F32 {
        E4M3_MAX_F32
    } else {
        mag
    };
    f32::from_bits(sign | mag)
}

/// Encodes one f32 as E5M2: RNE, finite overflow saturates to ±57344, ±Inf stays ±Inf, NaN ->
/// `0x7E` with sign. See the [module docs](self).
#[inline]
pub fn f32_to_e5m2(x: f32) -> u8 {
    let bits = x.to_bits();
    let sign = ((bits >> 24) & 0x80) as u8;
    let abs = bits & 0x7FFF_FFFF;
    let normal = abs
        .wrapping_sub(112 << 23)
        .wrapping_add(0xF_FFFF + ((abs >> 21) & 1))
        >> 21;
    let sub = (f32::from_bits(abs) + f32::from_bits(E5M2_SUBNORMAL_MAGIC))
        .to_bits()
        .wrapping_sub(E5M2_SUBNORMAL_MAGIC);
    let mut code = if abs < E5M2_MIN_NORMAL_F32 {
        sub
    } else {
        normal
    };
    code = if abs >= E5M2_MAX_F32 {
        E5M2_MAX_CODE as u32
    } else {
        code
    };
    code = if abs >= F32_INF {
        E5M2_INF_CODE as u32
    } else {
        code
    };
    code = if abs > F32_INF {
        E5M2_NAN_CODE as u32
    } else {
        code
    };
    sign | code as u8
}

/// f32 -> E4M3FN over slices, element by element with [`f32_to_e4m3`].
///
/// Round to nearest even; finite overflow **and ±Inf saturate to ±448** (NVIDIA `__NV_SATFINITE`);
/// NaN -> `0x7F`/`0xFF`; subnormals kept.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f32_to_f8e4m3(src: &[f32], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f8e4m3: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_e4m3(s);
    }
}

/// E4M3FN -> f32 over slices: exact; `0x7F`/`0xFF` decode to NaN.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f8e4m3_to_f32(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f8e4m3_to_f32: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = e4m3_to_f32(s);
    }
}

/// f32 -> E5M2 over slices, element by element with [`f32_to_e5m2`].
///
/// Round to nearest even; finite overflow saturates to ±57344 (`__NV_SATFINITE`), **±Inf stays
/// ±Inf**; NaN -> `0x7E`/`0xFE`; subnormals kept.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f32_to_f8e5m2(src: &[f32], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f8e5m2: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_e5m2(s);
    }
}

/// E5M2 -> f32 over slices: exact (Inf -> Inf, NaN -> quiet NaN with sign).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn f8e5m2_to_f32(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f8e5m2_to_f32: length mismatch");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = e5m2_to_f32(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_round_is_the_decoded_code() {
        // Every 251st bit pattern (all exponents, both signs, many mantissas) plus the ties.
        let ties = [
            464.0f32,
            480.0,
            2f32.powi(-10),
            3.0 * 2f32.powi(-10),
            1.0625,
            1.1875,
        ];
        let sweep = (0..=u32::MAX / 251).map(|i| f32::from_bits(i * 251));
        for x in sweep.chain(ties).filter(|x| !x.is_nan()) {
            let want = e4m3_to_f32(f32_to_e4m3(x));
            let got = e4m3_round(x);
            assert_eq!(got.to_bits(), want.to_bits(), "{x:e}: {got:e} vs {want:e}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f32_to_e4m3(1.0), 0x38);
        assert_eq!(f32_to_e4m3(448.0), 0x7E);
        assert_eq!(f32_to_e4m3(464.0), 0x7E);
        assert_eq!(f32_to_e4m3(f32::INFINITY), 0x7E);
        assert_eq!(f32_to_e4m3(f32::NEG_INFINITY), 0xFE);
        assert_eq!(f32_to_e4m3(f32::NAN), 0x7F);
        assert_eq!(f32_to_e4m3(-f32::NAN), 0xFF);
        assert_eq!(f32_to_e4m3(2f32.powi(-9)), 0x01);
        assert_eq!(f32_to_e4m3(2f32.powi(-10)), 0x00); // tie -> even (0)
        assert_eq!(f32_to_e4m3(-0.0), 0x80);
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert!(e4m3_to_f32(0xFF).is_nan());

        assert_eq!(f32_to_e5m2(1.0), 0x3C);
        assert_eq!(f32_to_e5m2(57344.0), 0x7B);
        assert_eq!(f32_to_e5m2(1e9), 0x7B);
        assert_eq!(f32_to_e5m2(-1e9), 0xFB);
        assert_eq!(f32_to_e5m2(f32::INFINITY), 0x7C);
        assert_eq!(f32_to_e5m2(f32::NEG_INFINITY), 0xFC);
        assert_eq!(f32_to_e5m2(f32::NAN), 0x7E);
        assert_eq!(f32_to_e5m2(2f32.powi(-16)), 0x01);
        assert_eq!(e5m2_to_f32(0x7B), 57344.0);
        assert_eq!(e5m2_to_f32(0xFC), f32::NEG_INFINITY);
        assert!(e5m2_to_f32(0x7D).is_nan());
    }
}
