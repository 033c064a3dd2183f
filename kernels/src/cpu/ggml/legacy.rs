//! The 32-element ggml block types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
//!
//! Unweighted quantizers reproduce gguf-py's `gguf/quants.py` byte for byte (which reproduces
//! ggml-quants.c's `quantize_row_*_ref`): the same f32 operations in the same order, truncation
//! where ggml casts to an int (`(int8_t)(x + 8.5f)`) and round-half-away-from-zero for Q8_0
//! (`roundf`; gguf-py's `np_roundf`). No fused multiply-add is used anywhere, since numpy never
//! fuses. One deliberate choice: the "signed max" of Q4_0/Q5_0 is the *first* element of largest
//! magnitude (numpy's `argmax`, and ggml's strict `<`); for an all-zero block it is element 0,
//! as in numpy, so a block of zeros starting with -0.0 gets d = +0.0 like gguf-py.
//!
//! Layouts (ggml-common.h): q4_0 = {d: f16, qs[16]}, q4_1 = {d, m: f16, qs[16]},
//! q5_0 = {d, qh: u32 LE, qs[16]}, q5_1 = {d, m, qh, qs[16]}, q8_0 = {d, qs: i8[32]}.
//! Nibbles: low nibble of qs[j] is element j, high nibble element j + 16; bit j of qh is bit 4
//! of element j.

// Index loops mirror ggml-quants.c line for line, which keeps the port reviewable against it.
#![allow(clippy::needless_range_loop)]

use super::search::{make_qkx3_quants, make_qx_quants};
use super::{get_f16, put_f16, QK};

/// Largest magnitude of a block. Eight running maxima let the loop vectorise; the result is
/// the same as a left-to-right fold because blocks are finite (checked before quantizing).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let max = |a: f32, b: f32| if a > b { a } else { b };
    let mut lanes = [0f32; 8];
    let blocks = x.chunks_exact(8);
    let tail = blocks.remainder().iter().fold(0f32, |a, v| max(a, v.abs()));
    for c in blocks {
        for i in 0..8 {
            lanes[i] = max(lanes[i], c[i].abs());
        }
    }
    lanes.iter().fold(tail, |a, &v| max(a, v))
}

/// The signed value of the first element of largest magnitude (element 0 of an all-zero block).
#[inline(always)]
fn signed_max(x: &[f32]) -> f32 {
    let amax = abs_max(x);
    x.iter().copied().find(|v| v.abs() == amax).unwrap_or(x[0])
}

/// `roundf` (half away from zero) for |v| < 2^23, the range of every quantized value here,
/// in integer steps the compiler vectorises (`f32::round` is a libm call): truncate, then step
/// away from zero when the dropped fraction, which `v - trunc(v)` gives exactly, is at least 1/2.
#[inline(always)]
fn round_half_away(v: f32) -> i32 {
    let t = v as i32;
    let frac = v - t as f32;
    t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Packs 32 five-bit values: low nibbles into `qs`, bit 4 of element j into bit j of `qh`.
fn pack_q5(l: &[u8; QK], qh: &mut [u8], qs: &mut [u8]) {
    let mut bits = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (l[j], l[j + QK / 2]);
        qs[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        bits |= (((a & 0x10) >> 4) as u32) << j;
        bits |= (((b & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh.copy_from_slice(&bits.to_le_bytes());
}

fn unpack_q5(qh: &[u8], qs: &[u8], j: usize) -> (u8, u8) {
    let bits = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let h0 = (((bits >> j) << 4) & 0x10) as u8;
    let h1 = ((bits >> (j + 12)) & 0x10) as u8;
    ((qs[j] & 0x0F) | h0, (qs[j] >> 4) | h1)
}

/// `quantize_row_q8_0_ref`: d = absmax / 127, q = roundf(x / d).
///
/// A block of tiny subnormals has a d whose inverse overflows to infinity; llama.cpp then
/// converts ±Inf / NaN to `int8_t` (undefined in C; 0 on x86, where `cvttss2si` gives
/// 0x80000000), and its f16 d is 0. We write those zero codes on purpose (id = 0), and so does
/// the CUDA twin.
pub fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let x: &[f32; QK] = x.try_into().expect("chunks_exact gives whole blocks");
        let d = abs_max(x) / 127.0;
        let id = Some(inverse(d)).filter(|id| id.is_finite()).unwrap_or(0.0);
        put_f16(y, 0, d);
        // Fixed-size arrays: no bounds checks, so the loop vectorises.
        let mut q = [0u8; QK];
        for j in 0..QK {
            q[j] = round_half_away(x[j] * id) as i8 as u8;
        }
        y[2..].copy_from_slice(&q);
    }
}

pub fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(b, 0);
        for j in 0..QK {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

/// `quantize_row_q4_0_ref`: d = max / -8 (max = signed value of largest magnitude),
/// q = min(15, trunc(x / d + 8.5)).
pub fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let x: &[f32; QK] = x.try_into().expect("chunks_exact gives whole blocks");
        let d = signed_max(x) / -8.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        let mut q = [0u8; QK];
        for j in 0..QK {
            q[j] = ((x[j] * id + 8.5) as u8).min(15);
        }
        let mut packed = [0u8; QK / 2];
        for j in 0..QK / 2 {
            packed[j] = q[j] | (q[j + QK / 2] << 4);
        }
        y[2..].copy_from_slice(&packed);
    }
}

pub fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(b, 0);
        for j in 0..QK / 2 {
            y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// `quantize_row_q4_1_ref`: d = (max - min) / 15, m = min, q = min(15, trunc((x - m) / d + 0.5)).
pub fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        put_f16(y, 2, min);
        for j in 0..QK / 2 {
            let q0 = (((x[j] - min) * id + 0.5) as u8).min(15);
            let q1 = (((x[j + QK / 2] - min) * id + 0.5) as u8).min(15);
            y[4 + j] = q0 | (q1 << 4);
        }
    }
}

pub fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (get_f16(b, 0), get_f16(b, 2));
        for j in 0..QK / 2 {
            y[j] = d * (b[4 + j] & 0x0F) as f32 + m;
            y[j + QK / 2] = d * (b[4 + j] >> 4) as f32 + m;
        }
    }
}

/// `quantize_row_q5_0_ref`: d = max / -16, q = min(31, trunc(x / d + 16.5)).
pub fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        let d = signed_max(x) / -16.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        let mut l = [0u8; QK];
        for j in 0..QK {
            l[j] = ((x[j] * id + 16.5) as u8).min(31);
        }
        let (qh, qs) = y[2..].split_at_mut(4);
        pack_q5(&l, qh, qs);
    }
}

pub fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = get_f16(b, 0);
        for j in 0..QK / 2 {
            let (q0, q1) = unpack_q5(&b[2..6], &b[6..], j);
            y[j] = (q0 as i32 - 16) as f32 * d;
            y[j + QK / 2] = (q1 as i32 - 16) as f32 * d;
        }
    }
}

/// `quantize_row_q5_1_ref`: d = (max - min) / 31, m = min, q = min(31, trunc((x - m) / d + 0.5)).
pub fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(24)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        put_f16(y, 0, d);
        put_f16(y, 2, min);
        let mut l = [0u8; QK];
        for j in 0..QK {
            l[j] = (((x[j] - min) * id + 0.5) as u8).min(31);
        }
        let (qh, qs) = y[4..].split_at_mut(4);
        pack_q5(&l, qh, qs);
    }
}

pub fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (get_f16(b, 0), get_f16(b, 2));
        for j in 0..QK / 2 {
            let (q0, q1) = unpack_q5(&b[4..8], &b[8..], j);
            y[j] = d * q0 as f32 + m;
            y[j + QK / 2] = d * q1 as f32 + m;
        }
    }
}

/// The imatrix weight of one element (`quantize_row_q4_0_impl` and siblings):
/// `qw[j] * sqrt(sigma2 + x[j]^2)` with sigma2 the mean square of the whole row.
fn row_weights(x: &[f32], qw: &[f32], sigma2: f32, out: &mut [f32]) {
    for j in 0..x.len() {
        out[j] = qw[j] * (sigma2 + x[j] * x[j]).sqrt();
    }
}

fn row_sigma2(row: &[f32]) -> f32 {
    let mut sum_x2 = 0f32;
    for &v in row {
        sum_x2 += v * v;
    }
    sum_x2 / row.len() as f32
}

/// `quantize_row_q4_0_impl` (one row, importance weights `qw` of the row's length).
pub fn quantize_q4_0_weighted(row: &[f32], dst: &mut [u8], qw: &[f32]) {
    let sigma2 = row_sigma2(row);
    let (mut weight, mut l) = ([0f32; QK], [0i8; QK]);
    for ((x, y), w) in row
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(18))
        .zip(qw.chunks_exact(QK))
    {
        row_weights(x, w, sigma2, &mut weight);
        let d = make_qx_quants(8, x, &mut l, 1, Some(&weight));
        put_f16(y, 0, d);
        for j in 0..QK / 2 {
            y[2 + j] = (l[j] as u8) | ((l[j + QK / 2] as u8) << 4);
        }
    }
}

/// `quantize_row_q4_1_impl`.
pub fn quantize_q4_1_weighted(row: &[f32], dst: &mut [u8], qw: &[f32]) {
    let sigma2 = row_sigma2(row);
    let (mut weight, mut l) = ([0f32; QK], [0u8; QK]);
    for ((x, y), w) in row
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(20))
        .zip(qw.chunks_exact(QK))
    {
        row_weights(x, w, sigma2, &mut weight);
        let (d, min) = make_qkx3_quants(15, x, Some(&weight), &mut l, -0.9, 0.05, 36, false);
        put_f16(y, 0, d);
        put_f16(y, 2, -min);
        for j in 0..QK / 2 {
            y[4 + j] = l[j] | (l[j + QK / 2] << 4);
        }
    }
}

/// `quantize_row_q5_0_impl`.
pub fn quantize_q5_0_weighted(row: &[f32], dst: &mut [u8], qw: &[f32]) {
    let sigma2 = row_sigma2(row);
    let (mut weight, mut l) = ([0f32; QK], [0i8; QK]);
    for ((x, y), w) in row
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(22))
        .zip(qw.chunks_exact(QK))
    {
        row_weights(x, w, sigma2, &mut weight);
        let d = make_qx_quants(16, x, &mut l, 1, Some(&weight));
        put_f16(y, 0, d);
        let lu: [u8; QK] = l.map(|v| v as u8);
        let (qh, qs) = y[2..].split_at_mut(4);
        pack_q5(&lu, qh, qs);
    }
}

/// `quantize_row_q5_1_impl`.
pub fn quantize_q5_1_weighted(row: &[f32], dst: &mut [u8], qw: &[f32]) {
    let sigma2 = row_sigma2(row);
    let (mut weight, mut l) = ([0f32; QK], [0u8; QK]);
    for ((x, y), w) in row
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(24))
        .zip(qw.chunks_exact(QK))
    {
        row_weights(x, w, sigma2, &mut weight);
        let (d, min) = make_qkx3_quants(31, x, Some(&weight), &mut l, -0.9, 0.05, 36, false);
        put_f16(y, 0, d);
        put_f16(y, 2, -min);
        let (qh, qs) = y[4..].split_at_mut(4);
        pack_q5(&l, qh, qs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn q8_0_of_tiny_subnormals_is_zero_codes_and_scale() {
        // amax / 127 is a subnormal whose inverse overflows: every code must be 0 (what
        // llama.cpp writes on x86), for either sign, without overflow in the rounding.
        let x: Vec<f32> = (0..QK)
            .map(|j| f32::from_bits(1 + 1000 * j as u32) * if j % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut y = [0xAAu8; 34];
        quantize_q8_0(&x, &mut y);
        assert_eq!(y, [0u8; 34]);
    }

    #[test]
    fn rounding_matches_roundf_at_ties_and_just_below_them() {
        let below_half = 0.5f32 - f32::EPSILON / 4.0; // 0.49999997: `x + 0.5` would round up
        for v in [
            0.0,
            -0.0,
            below_half,
            -below_half,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            126.5,
            -127.5,
            127.0,
            1e-30,
            8_388_607.5,
        ] {
            assert_eq!(round_half_away(v), v.round() as i32, "{v}");
        }
    }

    proptest! {
        #[test]
        fn rounding_matches_roundf(v in -8_388_607.0f32..8_388_607.0) {
            prop_assert_eq!(round_half_away(v), v.round() as i32);
        }

        #[test]
        fn block_maxima_match_a_left_to_right_scan(x in prop::collection::vec(-1e6f32..1e6, 32)) {
            let mut best = 0;
            for j in 1..x.len() {
                if x[j].abs() > x[best].abs() {
                    best = j;
                }
            }
            prop_assert_eq!(signed_max(&x).to_bits(), x[best].to_bits());
            prop_assert_eq!(abs_max(&x), x[best].abs());
        }
    }
}
