//! Conversion kernels against independent references: exhaustive round trips, brute-force
//! nearest-value references for every narrowing, unaligned byte slices and every error variant.

use formats::Dtype;
use kernels::cpu::cast::{
    bf16_to_f32, cast_bytes, decode_f32, encode_f32, f16_to_f32, f32_to_bf16, f32_to_f16,
    f32_to_f8e4m3, f32_to_f8e5m2, f8e4m3_to_f32, f8e5m2_to_f32,
};
use kernels::KernelError;
use proptest::prelude::*;

const FLOATS: [Dtype; 6] = [
    Dtype::F64,
    Dtype::F32,
    Dtype::F16,
    Dtype::BF16,
    Dtype::F8E4M3,
    Dtype::F8E5M2,
];

// ----------------------------------------------------------------------------------------------
// References, written from the definitions and sharing no code with the kernels.
// ----------------------------------------------------------------------------------------------

/// Value of a positive IEEE-style code with `m` mantissa bits and exponent bias `bias`
/// (no special cases: the all-ones exponent is treated as an ordinary binade).
fn ieee_value(code: u32, m: u32, bias: i32) -> f64 {
    let e = (code >> m) as i32;
    let f = (code & ((1 << m) - 1)) as f64 / (1u64 << m) as f64;
    if e == 0 {
        f * 2f64.powi(1 - bias)
    } else {
        (1.0 + f) * 2f64.powi(e - bias)
    }
}

/// Round-to-nearest-even of `ax >= 0` onto the ascending grid `vals` (index = code); ties go to
/// the even code. Beyond the last value, the last code.
fn nearest_on_grid(ax: f64, vals: &[f64]) -> usize {
    let i = vals.partition_point(|&v| v <= ax);
    let lo = i - 1;
    if lo + 1 == vals.len() {
        return lo;
    }
    let (dl, dh) = (ax - vals[lo], vals[lo + 1] - ax);
    if dl < dh || (dl == dh && lo % 2 == 0) {
        lo
    } else {
        lo + 1
    }
}

/// Positive codes 0..=inf_code of an IEEE binary format, the Inf code valued at max + ulp (the
/// value RNE compares against to decide overflow: ties there go to the even Inf code).
fn ieee_grid(m: u32, bias: i32, inf_code: u32) -> Vec<f64> {
    (0..=inf_code).map(|c| ieee_value(c, m, bias)).collect()
}

/// Reference IEEE RNE of `x` to a 16-bit format (returns bits; `None` for NaN input).
fn ref_ieee16(x: f64, grid: &[f64]) -> Option<u16> {
    if x.is_nan() {
        return None;
    }
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    Some(sign | nearest_on_grid(x.abs(), grid) as u16)
}

fn f16_grid() -> Vec<f64> {
    ieee_grid(10, 15, 0x7C00)
}
fn bf16_grid() -> Vec<f64> {
    ieee_grid(7, 127, 0x7F80)
}

/// Brute-force FP8 reference: scan all 128 non-negative codes for the finite value nearest to
/// |x| (ties to the even code), then apply the sign. Overflow therefore saturates to the largest
/// finite value, which is the documented SATFINITE behaviour; Inf/NaN handled as documented.
fn ref_f8(x: f64, e4m3: bool) -> u8 {
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let (m, bias, max) = if e4m3 {
        (3, 7, 448.0)
    } else {
        (2, 15, 57344.0)
    };
    if x.is_nan() {
        return sign | if e4m3 { 0x7F } else { 0x7E };
    }
    if x.is_infinite() {
        return sign | if e4m3 { 0x7E } else { 0x7C };
    }
    // Clamping keeps the nearest code unchanged and all differences below exact.
    let ax = x.abs().min(2.0 * max);
    let mut best: Option<(f64, u8)> = None;
    for code in 0u8..0x80 {
        let v = ieee_value(code as u32, m, bias);
        if v > max {
            continue; // NaN (E4M3 0x7F) or Inf/NaN (E5M2 0x7C..=0x7F)
        }
        let d = (ax - v).abs();
        best = match best {
            Some((bd, bc)) if bd < d || (bd == d && bc % 2 == 0) => Some((bd, bc)),
            _ => Some((d, code)),
        };
    }
    sign | best.unwrap().1
}

fn f8_encode(x: f32, e4m3: bool) -> u8 {
    let mut out = [0u8];
    if e4m3 {
        f32_to_f8e4m3(&[x], &mut out);
    } else {
        f32_to_f8e5m2(&[x], &mut out);
    }
    out[0]
}

fn f8_decode(b: u8, e4m3: bool) -> f32 {
    let mut out = [0f32];
    if e4m3 {
        f8e4m3_to_f32(&[b], &mut out);
    } else {
        f8e5m2_to_f32(&[b], &mut out);
    }
    out[0]
}

fn enc_f16(x: f32) -> u16 {
    let mut o = [0u16];
    f32_to_f16(&[x], &mut o);
    o[0]
}

fn enc_bf16(x: f32) -> u16 {
    let mut o = [0u16];
    f32_to_bf16(&[x], &mut o);
    o[0]
}

/// Checks a 16-bit encode of `x` against the reference (NaN: quiet NaN, sign kept).
fn check16(x: f32, got: u16, grid: &[f64], exp_mask: u16, quiet: u16, what: &str) {
    match ref_ieee16(x as f64, grid) {
        Some(want) => assert_eq!(
            got,
            want,
            "{what}({x:e} = {:#010x}): got {got:#06x}, want {want:#06x}",
            x.to_bits()
        ),
        None => {
            let nan = got & exp_mask == exp_mask && got & !(exp_mask | 0x8000) != 0;
            assert!(
                nan && got & quiet != 0,
                "{what}(NaN {:#010x}) = {got:#06x}",
                x.to_bits()
            );
            assert_eq!(got >> 15, (x.to_bits() >> 31) as u16, "{what}: NaN sign");
        }
    }
}

/// Interesting f32 inputs around every midpoint of a grid: the midpoint itself and one f32 ulp
/// either side, both signs.
fn around_midpoints(grid: &[f64]) -> Vec<f32> {
    let mut out = Vec::new();
    for w in grid.windows(2) {
        let mid = ((w[0] + w[1]) / 2.0) as f32; // exact: midpoints need one more bit
        for x in [
            mid,
            f32::from_bits(mid.to_bits() + 1),
            f32::from_bits(mid.to_bits().saturating_sub(1)),
            w[0] as f32,
        ] {
            out.push(x);
            out.push(-x);
        }
    }
    out
}

fn special_f32() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::EPSILON,
        f32::from_bits(1),
        f32::from_bits(0x7F80_0001), // signalling NaN, payload only in the low bits
        f32::from_bits(0xFF80_0001),
        f32::from_bits(0x7FBF_FFFF),
        f32::from_bits(0x7F80_FFFF),
        65504.0,
        65519.99,
        65520.0,
        65536.0,
        448.0,
        464.0,
        463.99,
        464.01,
        480.0,
        57344.0,
        61440.0,
        61439.0,
        2f32.powi(-9),
        2f32.powi(-10),
        3.0 * 2f32.powi(-11),
        2f32.powi(-6),
        2f32.powi(-6) - 2f32.powi(-10),
        2f32.powi(-14),
        2f32.powi(-16),
        2f32.powi(-17),
        2f32.powi(-24),
        2f32.powi(-25),
        2f32.powi(-133),
    ];
    let neg: Vec<f32> = v.iter().map(|x| -x).collect();
    v.extend(neg);
    v
}

// ----------------------------------------------------------------------------------------------
// Exhaustive round trips.
// ----------------------------------------------------------------------------------------------

#[test]
fn f16_all_bit_patterns_round_trip() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut wide = vec![0f32; all.len()];
    f16_to_f32(&all, &mut wide);
    let mut back = vec![0u16; all.len()];
    f32_to_f16(&wide, &mut back);
    for (&h, (&w, &b)) in all.iter().zip(wide.iter().zip(&back)) {
        assert_eq!(
            half::f16::from_bits(h).to_f32().to_bits(),
            w.to_bits(),
            "{h:#06x}"
        );
        if half::f16::from_bits(h).is_nan() {
            assert!(
                half::f16::from_bits(b).is_nan() && b >> 15 == h >> 15,
                "{h:#06x}"
            );
        } else {
            assert_eq!(b, h, "{h:#06x} -> {w:e} -> {b:#06x}");
        }
    }
}

#[test]
fn bf16_all_bit_patterns_round_trip() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut wide = vec![0f32; all.len()];
    bf16_to_f32(&all, &mut wide);
    let mut back = vec![0u16; all.len()];
    f32_to_bf16(&wide, &mut back);
    for (&h, (&w, &b)) in all.iter().zip(wide.iter().zip(&back)) {
        assert_eq!(w.to_bits(), (h as u32) << 16, "bf16 widening is a shift");
        if w.is_nan() {
            assert!(
                bf16_to_f32_one(b).is_nan() && b >> 15 == h >> 15,
                "{h:#06x}"
            );
        } else {
            assert_eq!(b, h, "{h:#06x} -> {w:e} -> {b:#06x}");
        }
    }
}

fn bf16_to_f32_one(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[test]
fn f8_all_bit_patterns_round_trip() {
    for e4m3 in [true, false] {
        for b in 0..=255u8 {
            let x = f8_decode(b, e4m3);
            let want = ieee_value(
                (b & 0x7F) as u32,
                if e4m3 { 3 } else { 2 },
                if e4m3 { 7 } else { 15 },
            );
            let nan = if e4m3 {
                b & 0x7F == 0x7F
            } else {
                b & 0x7F > 0x7C
            };
            if nan {
                assert!(
                    x.is_nan() && x.is_sign_negative() == (b >= 0x80),
                    "{b:#04x}"
                );
                let back = f8_encode(x, e4m3);
                assert_eq!(back, (b & 0x80) | if e4m3 { 0x7F } else { 0x7E });
                continue;
            }
            if !e4m3 && b & 0x7F == 0x7C {
                assert!(x.is_infinite());
            } else {
                assert_eq!(x.abs() as f64, want, "e4m3={e4m3} {b:#04x}");
            }
            assert_eq!(x.is_sign_negative(), b >= 0x80);
            assert_eq!(f8_encode(x, e4m3), b, "e4m3={e4m3} {b:#04x} -> {x:e}");
            // Through every wider float dtype and back, at the byte level.
            let from = if e4m3 { Dtype::F8E4M3 } else { Dtype::F8E5M2 };
            for mid in [Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16] {
                let mut wide = vec![0u8; mid.size()];
                cast_bytes(&[b], from, &mut wide, mid).unwrap();
                let mut back = [0u8];
                cast_bytes(&wide, mid, &mut back, from).unwrap();
                assert_eq!(back[0], b, "{from} -> {mid} -> {from} of {b:#04x}");
            }
        }
    }
}

#[test]
fn f16_bf16_through_every_wider_dtype_round_trip() {
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    for (from, mids) in [
        (Dtype::F16, vec![Dtype::F32, Dtype::F64]),
        (Dtype::BF16, vec![Dtype::F32, Dtype::F64]),
    ] {
        for mid in mids {
            let mut wide = vec![0u8; 65536 * mid.size()];
            cast_bytes(&bytes, from, &mut wide, mid).unwrap();
            let mut back = vec![0u8; bytes.len()];
            cast_bytes(&wide, mid, &mut back, from).unwrap();
            for (i, (a, b)) in bytes.chunks(2).zip(back.chunks(2)).enumerate() {
                let exp = if from == Dtype::F16 { 0x7C00 } else { 0x7F80 };
                let (a, b) = (
                    u16::from_le_bytes([a[0], a[1]]),
                    u16::from_le_bytes([b[0], b[1]]),
                );
                if a & exp == exp && a & !(exp | 0x8000) != 0 {
                    assert!(b & exp == exp && b & !(exp | 0x8000) != 0 && a >> 15 == b >> 15);
                } else {
                    assert_eq!(a, b, "{from} -> {mid} -> {from} at {i:#06x}");
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Narrowing from f32 against the references.
// ----------------------------------------------------------------------------------------------

#[test]
fn f32_to_f16_and_bf16_at_every_midpoint() {
    let (g16, gb16) = (f16_grid(), bf16_grid());
    for x in around_midpoints(&g16).into_iter().chain(special_f32()) {
        let got = enc_f16(x);
        if !x.is_nan() {
            assert_eq!(got, half::f16::from_f32(x).to_bits(), "{x:e}");
        }
        check16(x, got, &g16, 0x7C00, 0x0200, "f32_to_f16");
    }
    for x in around_midpoints(&gb16).into_iter().chain(special_f32()) {
        check16(x, enc_bf16(x), &gb16, 0x7F80, 0x0040, "f32_to_bf16");
    }
}

#[test]
fn f32_to_f8_at_every_midpoint_and_edge() {
    for e4m3 in [true, false] {
        let grid: Vec<f64> = (0..0x7B + e4m3 as u32 * 3)
            .map(|c| ieee_value(c, if e4m3 { 3 } else { 2 }, if e4m3 { 7 } else { 15 }))
            .collect();
        for x in around_midpoints(&grid).into_iter().chain(special_f32()) {
            assert_eq!(
                f8_encode(x, e4m3),
                ref_f8(x as f64, e4m3),
                "e4m3={e4m3} x={x:e} ({:#010x})",
                x.to_bits()
            );
        }
    }
    // The documented choices, spelled out.
    assert_eq!(
        f8_encode(464.0, true),
        0x7E,
        "464 (the RNE tie 448|480) saturates to 448"
    );
    assert_eq!(f8_encode(1e30, true), 0x7E);
    assert_eq!(f8_encode(f32::NEG_INFINITY, true), 0xFE);
    assert_eq!(f8_encode(f32::NAN, true), 0x7F);
    assert_eq!(f8_encode(61440.0, false), 0x7B, "finite overflow saturates");
    assert_eq!(f8_encode(f32::INFINITY, false), 0x7C, "Inf stays Inf");
    assert_eq!(
        f8_encode(2f32.powi(-10), true),
        0x00,
        "half the min subnormal ties to 0"
    );
    assert_eq!(
        f8_encode(3.0 * 2f32.powi(-10), true),
        0x02,
        "1.5 * min subnormal ties up to even"
    );
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<u32>().prop_map(f32::from_bits),
        // Magnitudes where the narrow formats live (2^-30 .. 2^20), uniformly in bits.
        (0x3080_0000u32..0x4980_0000, any::<bool>())
            .prop_map(|(b, s)| f32::from_bits(b | (s as u32) << 31)),
        // NaNs with arbitrary payloads.
        (1u32..0x0080_0000, any::<bool>())
            .prop_map(|(p, s)| f32::from_bits(0x7F80_0000 | p | (s as u32) << 31)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn f32_to_f16_matches_half_and_reference(x in any_f32()) {
        let got = enc_f16(x);
        let h = half::f16::from_f32(x);
        if x.is_nan() {
            prop_assert!(h.is_nan() && half::f16::from_bits(got).is_nan());
        } else {
            prop_assert_eq!(got, h.to_bits());
        }
        check16(x, got, f16_grid_cached(), 0x7C00, 0x0200, "f32_to_f16");
    }

    #[test]
    fn f32_to_bf16_matches_reference(x in any_f32()) {
        check16(x, enc_bf16(x), bf16_grid_cached(), 0x7F80, 0x0040, "f32_to_bf16");
    }

    #[test]
    fn f32_to_f8_matches_brute_force(x in any_f32()) {
        prop_assert_eq!(f8_encode(x, true), ref_f8(x as f64, true));
        prop_assert_eq!(f8_encode(x, false), ref_f8(x as f64, false));
    }

    #[test]
    fn f64_narrowing_rounds_once(bits in any::<u64>(), near in 0x3E00_0000_0000_0000u64..0x4130_0000_0000_0000, pick in any::<bool>()) {
        // Either any f64 or one in the narrow formats' range (2^-31 .. 2^20).
        let x = f64::from_bits(if pick { bits } else { near | (bits & (1 << 63)) });
        check_f64_narrowing(x);
    }
}

fn f16_grid_cached() -> &'static [f64] {
    static G: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    G.get_or_init(f16_grid)
}
fn bf16_grid_cached() -> &'static [f64] {
    static G: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    G.get_or_init(bf16_grid)
}

/// F64 -> F16 / BF16 / F8 through `cast_bytes` against the references applied to the f64 itself.
fn check_f64_narrowing(x: f64) {
    let src = x.to_le_bytes();
    let mut d2 = [0u8; 2];
    cast_bytes(&src, Dtype::F64, &mut d2, Dtype::F16).unwrap();
    let got = u16::from_le_bytes(d2);
    match ref_ieee16(x, f16_grid_cached()) {
        Some(want) => assert_eq!(got, want, "F64->F16 of {x:e} ({:#018x})", x.to_bits()),
        None => assert!(half::f16::from_bits(got).is_nan()),
    }
    cast_bytes(&src, Dtype::F64, &mut d2, Dtype::BF16).unwrap();
    let got = u16::from_le_bytes(d2);
    match ref_ieee16(x, bf16_grid_cached()) {
        Some(want) => assert_eq!(got, want, "F64->BF16 of {x:e} ({:#018x})", x.to_bits()),
        None => assert!(bf16_to_f32_one(got).is_nan()),
    }
    for (to, e4m3) in [(Dtype::F8E4M3, true), (Dtype::F8E5M2, false)] {
        let mut d1 = [0u8];
        cast_bytes(&src, Dtype::F64, &mut d1, to).unwrap();
        assert_eq!(d1[0], ref_f8(x, e4m3), "F64->{to} of {x:e}");
    }
    let mut d4 = [0u8; 4];
    cast_bytes(&src, Dtype::F64, &mut d4, Dtype::F32).unwrap();
    let got = f32::from_le_bytes(d4);
    assert!(got.to_bits() == (x as f32).to_bits() || (x.is_nan() && got.is_nan()));
}

#[test]
fn f64_narrowing_does_not_double_round() {
    // Just above / below every f16 and bf16 midpoint by far less than an f32 ulp: rounding
    // through an RNE f32 would land on the midpoint and tie to even.
    for grid in [f16_grid_cached(), bf16_grid_cached()] {
        for w in grid.windows(2).step_by(7) {
            let mid = (w[0] + w[1]) / 2.0;
            for x in [
                mid,
                mid * (1.0 + 2f64.powi(-40)),
                mid * (1.0 - 2f64.powi(-40)),
            ] {
                check_f64_narrowing(x);
                check_f64_narrowing(-x);
            }
        }
    }
    // A concrete witness: 1 + 2^-11 + 2^-40 must round up to the next f16 (0x3C01).
    let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
    let mut d = [0u8; 2];
    cast_bytes(&x.to_le_bytes(), Dtype::F64, &mut d, Dtype::F16).unwrap();
    assert_eq!(u16::from_le_bytes(d), 0x3C01);
    for e in [-1100, -200, -30, 0, 15, 16, 200, 1000] {
        check_f64_narrowing(2f64.powi(e));
        check_f64_narrowing(f64::MAX);
        check_f64_narrowing(f64::MIN_POSITIVE);
        check_f64_narrowing(f64::NEG_INFINITY);
    }
}

// ----------------------------------------------------------------------------------------------
// Byte-level entry points.
// ----------------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), so NaNs, Infs and subnormals all occur.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn cast_bytes_unaligned_equals_aligned_for_every_pair() {
    // Not a multiple of the chunk size, so the tail path runs too.
    let n = 2 * kernels::cpu::cast::CHUNK + 37;
    for from in FLOATS {
        let raw = random_bytes(n * from.size() + 1, from.size() as u64 * 7919);
        for to in FLOATS {
            let mut src_store = Vec::new();
            let aligned_src = aligned(&mut src_store, n * from.size(), 0);
            aligned_src.copy_from_slice(&raw[..n * from.size()]);
            let aligned_src = &*aligned_src;
            let mut dst_store = Vec::new();
            let aligned_dst = aligned(&mut dst_store, n * to.size(), 0);
            cast_bytes(aligned_src, from, aligned_dst, to).unwrap();

            let mut un_src_store = Vec::new();
            let un_src = aligned(&mut un_src_store, n * from.size(), 1);
            un_src.copy_from_slice(aligned_src);
            let un_src = &*un_src;
            let mut un_dst_store = Vec::new();
            let un_dst = aligned(&mut un_dst_store, n * to.size(), 1);
            cast_bytes(un_src, from, un_dst, to).unwrap();
            assert_eq!(&un_dst[..], &aligned_dst[..], "{from} -> {to}");

            // decode_f32 / encode_f32 agree with cast_bytes through F32 on unaligned input.
            let mut wide = vec![0f32; n];
            decode_f32(un_src, from, &mut wide).unwrap();
            let mut via = vec![0u8; n * 4];
            cast_bytes(aligned_src, from, &mut via, Dtype::F32).unwrap();
            let wide_bytes: Vec<u8> = wide.iter().flat_map(|x| x.to_le_bytes()).collect();
            if from != Dtype::F64 {
                assert_eq!(wide_bytes, via, "decode_f32 {from}");
            }
            let mut enc = vec![0u8; n * to.size() + 1];
            encode_f32(&wide, to, &mut enc[1..]).unwrap();
            let mut want = vec![0u8; n * to.size()];
            cast_bytes(&wide_bytes, Dtype::F32, &mut want, to).unwrap();
            assert_eq!(&enc[1..], &want[..], "encode_f32 {to}");
        }
    }
}

/// A `len`-byte window of `store` starting `skew` bytes past an 8-byte boundary.
fn aligned(store: &mut Vec<u8>, len: usize, skew: usize) -> &mut [u8] {
    *store = vec![0u8; len + 16];
    let off = (8 - store.as_ptr() as usize % 8) % 8 + skew;
    &mut store[off..off + len]
}

#[test]
fn cast_bytes_matches_typed_kernels() {
    let n = 5000;
    let xs: Vec<f32> = random_bytes(n * 4, 42)
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let src: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut h = vec![0u16; n];
    f32_to_f16(&xs, &mut h);
    let mut b = vec![0u8; n * 2];
    cast_bytes(&src, Dtype::F32, &mut b, Dtype::F16).unwrap();
    assert_eq!(
        b,
        h.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
    );
    f32_to_bf16(&xs, &mut h);
    cast_bytes(&src, Dtype::F32, &mut b, Dtype::BF16).unwrap();
    assert_eq!(
        b,
        h.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
    );
    let mut q = vec![0u8; n];
    let mut c = vec![0u8; n];
    f32_to_f8e4m3(&xs, &mut q);
    cast_bytes(&src, Dtype::F32, &mut c, Dtype::F8E4M3).unwrap();
    assert_eq!(q, c);
    f32_to_f8e5m2(&xs, &mut q);
    cast_bytes(&src, Dtype::F32, &mut c, Dtype::F8E5M2).unwrap();
    assert_eq!(q, c);
}

#[test]
fn f16_to_bf16_is_correctly_rounded() {
    // Every f16 -> BF16 equals the reference rounding of the exact f16 value.
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let mut out = vec![0u8; bytes.len()];
    cast_bytes(&bytes, Dtype::F16, &mut out, Dtype::BF16).unwrap();
    for (h, o) in (0..=u16::MAX).zip(out.chunks(2)) {
        let x = half::f16::from_bits(h).to_f64();
        let got = u16::from_le_bytes([o[0], o[1]]);
        match ref_ieee16(x, bf16_grid_cached()) {
            Some(want) => assert_eq!(got, want, "f16 {h:#06x}"),
            None => assert!(bf16_to_f32_one(got).is_nan()),
        }
    }
    // And BF16 -> F16 (overflow to Inf, subnormals, ties).
    cast_bytes(&bytes, Dtype::BF16, &mut out, Dtype::F16).unwrap();
    for (h, o) in (0..=u16::MAX).zip(out.chunks(2)) {
        let x = bf16_to_f32_one(h) as f64;
        let got = u16::from_le_bytes([o[0], o[1]]);
        match ref_ieee16(x, f16_grid_cached()) {
            Some(want) => assert_eq!(got, want, "bf16 {h:#06x}"),
            None => assert!(half::f16::from_bits(got).is_nan()),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Errors: one test per variant.
// ----------------------------------------------------------------------------------------------

#[test]
fn length_mismatch_is_reported() {
    let mut dst = [0u8; 6];
    // 7 bytes is not a whole number of F16 elements.
    let err = cast_bytes(&[0u8; 7], Dtype::F16, &mut dst[..4], Dtype::F8E4M3).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            src_bytes: 7,
            dst_bytes: 4,
            from: Dtype::F16,
            to: Dtype::F8E4M3
        }
    ));
    // 2 F32 elements do not fit 6 bytes of BF16.
    let err = cast_bytes(&[0u8; 8], Dtype::F32, &mut dst, Dtype::BF16).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            src_bytes: 8,
            dst_bytes: 6,
            ..
        }
    ));
    assert_eq!(dst, [0; 6], "nothing written on error");
    // Same dtype: still checked.
    let err = cast_bytes(&[0u8; 4], Dtype::I32, &mut dst, Dtype::I32).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { .. }));
    let err = decode_f32(&[0u8; 6], Dtype::F16, &mut [0f32; 2]).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            src_bytes: 6,
            dst_bytes: 8,
            from: Dtype::F16,
            to: Dtype::F32
        }
    ));
    let err = encode_f32(&[0f32; 2], Dtype::BF16, &mut [0u8; 3]).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            src_bytes: 8,
            dst_bytes: 3,
            from: Dtype::F32,
            to: Dtype::BF16
        }
    ));
    assert!(err.to_string().contains("F32 -> BF16"), "{err}");
}

#[test]
fn unsupported_pairs_are_reported() {
    for (from, to) in [
        (Dtype::I32, Dtype::F32),
        (Dtype::F32, Dtype::U8),
        (Dtype::Bool, Dtype::F16),
        (Dtype::I8, Dtype::U8),
        (Dtype::BF16, Dtype::I64),
    ] {
        // Checked before lengths.
        let err = cast_bytes(&[0u8; 3], from, &mut [0u8; 5], to).unwrap_err();
        assert!(
            matches!(err, KernelError::Unsupported { from: f, to: t } if f == from && t == to),
            "{from} -> {to}: {err:?}"
        );
        assert!(err.to_string().contains("unsupported"));
    }
    // Same dtype is a copy for every dtype, integers included.
    let src: Vec<u8> = (0..16).collect();
    let mut dst = [0u8; 16];
    cast_bytes(&src[..], Dtype::I64, &mut dst, Dtype::I64).unwrap();
    assert_eq!(&dst[..], &src[..]);
}

#[test]
fn not_float_is_reported() {
    let err = decode_f32(&[0u8; 4], Dtype::I32, &mut [0f32; 1]).unwrap_err();
    assert!(matches!(err, KernelError::NotFloat(Dtype::I32)));
    let err = encode_f32(&[0f32; 1], Dtype::U8, &mut [0u8; 1]).unwrap_err();
    assert!(matches!(err, KernelError::NotFloat(Dtype::U8)));
    assert_eq!(err.to_string(), "dtype U8 is not a floating-point type");
}
