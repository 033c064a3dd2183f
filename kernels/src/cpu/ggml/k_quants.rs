//! The K-quant super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256 elements per block).
//!
//! Ported from llama.cpp `ggml/src/ggml-quants.c`: without importance weights each function is
//! `quantize_row_qX_K_ref`; with them it is `quantize_row_qX_K_impl` (the imatrix path that
//! `quantize_qX_K` takes when `quant_weights` is non-null). Dequantizers are
//! `dequantize_row_qX_K`, whose f32 arithmetic gguf-py's `dequantize_blocks` repeats.
//!
//! Layouts (ggml-common.h, little-endian, fp16 `d`/`dmin`):
//! - q2_K (84 B): scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin.
//! - q3_K (110 B): hmask[32] (bit 2 of each level), qs[64] (low 2 bits), scales[12] (16 six-bit
//!   scales: low nibbles in bytes 0-7, high 2 bits in bytes 8-11), d.
//! - q4_K (144 B): d, dmin, scales[12] (8 six-bit scales + 8 six-bit mins, `get_scale_min_k4`),
//!   qs[128] (nibbles: chunk c of 32 bytes holds sub-block 2c low, 2c+1 high).
//! - q5_K (176 B): d, dmin, scales[12], qh[32] (bit 4 of sub-block s in bit s), qs[128].
//! - q6_K (210 B): ql[128], qh[64], scales: i8[16], d.

// Index loops mirror ggml-quants.c line for line, which keeps the port reviewable against it.
#![allow(clippy::needless_range_loop)]

use super::search::{
    make_q3_quants, make_qkx2_quants, make_qkx3_quants, make_qp_quants, make_qx_quants, nearest_int,
};
use super::{get_f16, put_f16, QK_K};

const Q2K: usize = 84;
const Q3K: usize = 110;
const Q4K: usize = 144;
const Q5K: usize = 176;
const Q6K: usize = 210;

/// Packs 2-bit levels: byte l of each 32-byte chunk holds elements l, l+32, l+64, l+96 of the
/// chunk's 128 elements at bits 0, 2, 4, 6.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] =
                l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

// ---------------------------------------------------------------- Q2_K

/// Q2_K: `quantize_row_q2_K_ref`, or `quantize_row_q2_K_impl` with importance weights
/// (`qw`: one row's weights; `src` is then that one row).
pub fn quantize_q2_k(src: &[f32], dst: &mut [u8], qw: Option<&[f32]>) {
    for (i, (x, y)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q2K))
        .enumerate()
    {
        match qw {
            None => q2_k_ref_block(x, y),
            Some(w) => q2_k_weighted_block(x, y, &w[i * QK_K..(i + 1) * QK_K]),
        }
    }
}

/// Requantizes each 16-element group against the stored (fp16, 4-bit) scale and min, then packs.
fn q2_k_finish(x: &[f32], y: &mut [u8], l: &mut [u8; QK_K]) {
    let (d_all, m_all) = (get_f16(y, 80), get_f16(y, 82));
    for j in 0..QK_K / 16 {
        let d = d_all * (y[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * (y[j] >> 4) as f32;
        for ii in 0..16 {
            let q = nearest_int((x[16 * j + ii] + dm) / d);
            l[16 * j + ii] = q.clamp(0, 3) as u8;
        }
    }
    pack_2bit(l, &mut y[16..80]);
}

fn q2_k_ref_block(x: &[f32], y: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut weights = [0f32; 16];
    let (mut mins, mut scales) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for k in 0..16 {
            weights[k] = xs[k].abs();
        }
        let (s, m) = make_qkx2_quants(
            3,
            xs,
            &weights,
            &mut l[16 * j..16 * j + 16],
            -0.5,
            0.1,
            15,
            true,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..16 {
            y[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_f16(y, 80, max_scale / Q4SCALE);
    } else {
        y[..16].fill(0);
        put_f16(y, 80, 0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..16 {
            let q = nearest_int(iscale * mins[j]);
            y[j] |= (q << 4) as u8;
        }
        put_f16(y, 82, max_min / Q4SCALE);
    } else {
        put_f16(y, 82, 0.0);
    }
    q2_k_finish(x, y, &mut l);
}

fn q2_k_weighted_block(x: &[f32], y: &mut [u8], qw: &[f32]) {
    let mut l = [0u8; QK_K];
    let mut weight = [0f32; 16];
    let (mut mins, mut scales, mut sw) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for k in 0..16 {
            weight[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
        }
        for &w in &weight {
            sw[j] += w;
        }
        let (s, m) = make_qkx3_quants(
            3,
            xs,
            Some(&weight),
            &mut l[16 * j..16 * j + 16],
            -0.9,
            0.05,
            36,
            false,
        );
        scales[j] = s;
        mins[j] = m;
    }
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    put_f16(y, 80, dm);
    put_f16(y, 82, mm);
    for j in 0..16 {
        y[j] = ls[j] | (lm[j] << 4);
    }
    q2_k_finish(x, y, &mut l);
}

pub fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q2K).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(b, 80), get_f16(b, 82));
        let (scales, qs) = (&b[..16], &b[16..80]);
        // Element 128h + 32s + l (h: half, s: shift) is bits 2s of qs[32h + l]; its group is
        // element / 16.
        for (e, out) in y.iter_mut().enumerate() {
            let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
            let q = (qs[32 * h + l] >> (2 * s)) & 3;
            let sc = scales[e / 16];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            *out = dl * q as f32 - ml;
        }
    }
}

// ---------------------------------------------------------------- Q3_K

/// Q3_K: `quantize_row_q3_K_ref`, or `quantize_row_q3_K_impl` with importance weights.
pub fn quantize_q3_k(src: &[f32], dst: &mut [u8], qw: Option<&[f32]>) {
    for (i, (x, y)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q3K))
        .enumerate()
    {
        match qw {
            None => q3_k_ref_block(x, y),
            Some(w) => q3_k_weighted_block(x, y, &w[i * QK_K..(i + 1) * QK_K]),
        }
    }
}

/// Stores 16 six-bit scale levels (0..63) in Q3_K's 12-byte packing.
fn q3_k_pack_scales(levels: &[i32; 16], scales: &mut [u8]) {
    scales.fill(0);
    for (j, &lv) in levels.iter().enumerate() {
        if j < 8 {
            scales[j] = (lv & 0xF) as u8;
        } else {
            scales[j - 8] |= ((lv & 0xF) << 4) as u8;
        }
        let hi = lv >> 4;
        scales[j % 4 + 8] |= (hi << (2 * (j / 4))) as u8;
    }
}

/// Signed scale of group j (`sc - 32`) from the 12-byte packing.
fn q3_k_scale(scales: &[u8], j: usize) -> i32 {
    let low = if j < 8 {
        scales[j] & 0xF
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// Requantizes against the stored scales, then packs hmask and the low 2 bits.
fn q3_k_finish(x: &[f32], y: &mut [u8], l: &mut [i8; QK_K]) {
    let d_all = get_f16(y, 108);
    for j in 0..QK_K / 16 {
        let d = d_all * q3_k_scale(&y[96..108], j) as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            l[16 * j + ii] = (q + 4) as i8;
        }
    }
    // The high bit of the first 32 levels goes to bit 0 of hmask[0..32], the next 32 to bit 1...
    let hmask = &mut y[..32];
    hmask.fill(0);
    let mut lu = [0u8; QK_K];
    for j in 0..QK_K {
        let mut v = l[j] as u8;
        if v > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        lu[j] = v;
    }
    pack_2bit(&lu, &mut y[32..96]);
}

fn q3_k_ref_block(x: &[f32], y: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for j in 0..QK_K / 16 {
        scales[j] = make_q3_quants(
            4,
            &x[16 * j..16 * j + 16],
            &mut l[16 * j..16 * j + 16],
            true,
        );
        let s = scales[j].abs();
        if s > amax {
            amax = s;
            max_scale = scales[j];
        }
    }
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        let mut levels = [0i32; 16];
        for j in 0..16 {
            // `int8_t l = nearest_int(...)`: the store truncates to 8 bits before clamping.
            let q = nearest_int(iscale * scales[j]) as i8 as i32;
            levels[j] = q.clamp(-32, 31) + 32;
        }
        q3_k_pack_scales(&levels, &mut y[96..108]);
        put_f16(y, 108, 1.0 / iscale);
    } else {
        y[96..108].fill(0);
        put_f16(y, 108, 0.0);
    }
    q3_k_finish(x, y, &mut l);
}

fn q3_k_weighted_block(x: &[f32], y: &mut [u8], qw: &[f32]) {
    let mut l = [0i8; QK_K];
    let (mut scales, mut weight, mut sw) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let mut ls = [0i8; 16];
    let mut sumx2 = 0f32;
    for &v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for k in 0..16 {
            weight[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
        }
        let mut sumw = 0f32;
        for &w in &weight {
            sumw += w;
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants(4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
    }
    let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
    q3_k_pack_scales(&ls.map(|v| v as i32), &mut y[96..108]);
    put_f16(y, 108, d_block);
    q3_k_finish(x, y, &mut l);
}

pub fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q3K).zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = get_f16(b, 108);
        let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
        for (e, out) in y.iter_mut().enumerate() {
            let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = ((qs[32 * h + l] >> (2 * s)) & 3) as i32;
            let high = if hmask[l] & (1 << (e / 32)) != 0 {
                0
            } else {
                4
            };
            let dl = d_all * q3_k_scale(scales, e / 16) as f32;
            *out = dl * (low - high) as f32;
        }
    }
}

// ---------------------------------------------------------------- Q4_K and Q5_K

/// `get_scale_min_k4`: six-bit scale and min of sub-block j from the 12-byte packing.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The inverse of [`scale_min_k4`] for eight (scale, min) six-bit pairs.
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], q: &mut [u8]) {
    q.fill(0);
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
}

/// The per-sub-block search shared by Q4_K and Q5_K (`nmax` 15 or 31), producing the six-bit
/// scale/min levels, `d`/`dmin` (written at bytes 0 and 2) and the final levels `l`.
fn k4_search(x: &[f32], y: &mut [u8], nmax: i32, qw: Option<&[f32]>, l: &mut [u8; QK_K]) {
    let mut weights = [0f32; 32];
    let (mut mins, mut scales) = ([0f32; 8], [0f32; 8]);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    match qw {
        None => {
            // quantize_row_q{4,5}_K_ref: per-sub-block weights av_x + |x|, make_qkx2_quants.
            let (rmin, rdelta, nstep) = if nmax == 15 {
                (-1.0, 0.1, 20)
            } else {
                (-0.5, 0.1, 15)
            };
            let (mut max_scale, mut max_min) = (0f32, 0f32);
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                let mut sum_x2 = 0f32;
                for &v in xs {
                    sum_x2 += v * v;
                }
                let av_x = (sum_x2 / 32.0).sqrt();
                for k in 0..32 {
                    weights[k] = av_x + xs[k].abs();
                }
                let (s, m) = make_qkx2_quants(
                    nmax,
                    xs,
                    &weights,
                    &mut l[32 * j..32 * j + 32],
                    rmin,
                    rdelta,
                    nstep,
                    false,
                );
                scales[j] = s;
                mins[j] = m;
                if s > max_scale {
                    max_scale = s;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            let inv_scale = if max_scale > 0.0 {
                63.0 / max_scale
            } else {
                0.0
            };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                // `uint8_t ls = nearest_int(...)` truncates to 8 bits, then MIN(63, ls).
                ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
            }
            put_f16(y, 0, max_scale / 63.0);
            put_f16(y, 2, max_min / 63.0);
        }
        Some(qw) => {
            // quantize_row_q{4,5}_K_impl: imatrix weights, make_qkx3_quants, make_qp_quants.
            let mut sw = [0f32; 8];
            let mut sum_x2 = 0f32;
            for &v in x {
                sum_x2 += v * v;
            }
            let sigma2 = 2.0 * sum_x2 / QK_K as f32;
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                for k in 0..32 {
                    weights[k] = qw[32 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
                }
                let mut sumw = 0f32;
                for &w in &weights {
                    sumw += w;
                }
                sw[j] = sumw;
                let (s, m) = make_qkx3_quants(
                    nmax,
                    xs,
                    Some(&weights),
                    &mut l[32 * j..32 * j + 32],
                    -0.9,
                    0.05,
                    36,
                    false,
                );
                scales[j] = s;
                mins[j] = m;
            }
            let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
            let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
            if nmax == 31 {
                // Only the q5_K impl clamps here (ggml-quants.c); q4_K stores Ls as they are.
                ls = ls.map(|v| v.min(63));
                lm = lm.map(|v| v.min(63));
            }
            put_f16(y, 0, d_block);
            put_f16(y, 2, m_block);
        }
    }
    pack_scale_min_k4(&ls, &lm, &mut y[4..16]);
    let (d_all, m_all) = (get_f16(y, 0), get_f16(y, 2));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &y[4..16]);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
}

/// Q4_K: `quantize_row_q4_K_ref`, or `quantize_row_q4_K_impl` with importance weights.
pub fn quantize_q4_k(src: &[f32], dst: &mut [u8], qw: Option<&[f32]>) {
    let mut l = [0u8; QK_K];
    for (i, (x, y)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q4K))
        .enumerate()
    {
        let w = qw.map(|w| &w[i * QK_K..(i + 1) * QK_K]);
        k4_search(x, y, 15, w, &mut l);
        let q = &mut y[16..];
        for (c, j) in (0..QK_K).step_by(64).enumerate() {
            for k in 0..32 {
                q[32 * c + k] = l[j + k] | (l[j + k + 32] << 4);
            }
        }
    }
}

pub fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q4K).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(b, 0), get_f16(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..]);
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (chunk, shift) = (s / 2, 4 * (s % 2));
            for k in 0..32 {
                let q = (qs[32 * chunk + k] >> shift) & 0xF;
                y[32 * s + k] = d1 * q as f32 - m1;
            }
        }
    }
}

/// Q5_K: `quantize_row_q5_K_ref`, or `quantize_row_q5_K_impl` with importance weights.
pub fn quantize_q5_k(src: &[f32], dst: &mut [u8], qw: Option<&[f32]>) {
    let mut l = [0u8; QK_K];
    for (i, (x, y)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q5K))
        .enumerate()
    {
        let w = qw.map(|w| &w[i * QK_K..(i + 1) * QK_K]);
        k4_search(x, y, 31, w, &mut l);
        let (qh, ql) = y[16..].split_at_mut(32);
        qh.fill(0);
        for (c, n) in (0..QK_K).step_by(64).enumerate() {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * c + j] = l1 | (l2 << 4);
            }
        }
    }
}

pub fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q5K).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (get_f16(b, 0), get_f16(b, 2));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..]);
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (chunk, shift) = (s / 2, 4 * (s % 2));
            for k in 0..32 {
                let low = (qs[32 * chunk + k] >> shift) & 0xF;
                let high = if qh[k] & (1 << s) != 0 { 16 } else { 0 };
                y[32 * s + k] = d1 * (low + high) as f32 - m1;
            }
        }
    }
}

// ---------------------------------------------------------------- Q6_K

/// Q6_K: `quantize_row_q6_K_ref`, or `quantize_row_q6_K_impl` with importance weights (which
/// passes the raw imatrix to `make_qx_quants`, without the sigma² term of the other types).
pub fn quantize_q6_k(src: &[f32], dst: &mut [u8], qw: Option<&[f32]>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    for (i, (x, y)) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q6K))
        .enumerate()
    {
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..16 {
            let w = qw.map(|w| &w[i * QK_K + 16 * ib..i * QK_K + 16 * ib + 16]);
            let scale = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
                1,
                w,
            );
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        y.fill(0);
        if max_abs_scale < 1e-15 {
            // GROUP_MAX_EPS: an all-zero block (d = 0).
            continue;
        }
        let iscale = -128.0 / max_scale;
        put_f16(y, 208, 1.0 / iscale);
        for ib in 0..16 {
            y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let d_all = get_f16(y, 208);
        for j in 0..16 {
            let d = d_all * (y[192 + j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        let (ql, rest) = y.split_at_mut(128);
        let qh = &mut rest[..64];
        for (c, j) in (0..QK_K).step_by(128).enumerate() {
            for k in 0..32 {
                let v = |o: usize| l[j + k + o] as u8;
                ql[64 * c + k] = (v(0) & 0xF) | ((v(64) & 0xF) << 4);
                ql[64 * c + k + 32] = (v(32) & 0xF) | ((v(96) & 0xF) << 4);
                qh[32 * c + k] =
                    (v(0) >> 4) | ((v(32) >> 4) << 2) | ((v(64) >> 4) << 4) | ((v(96) >> 4) << 6);
            }
        }
    }
}

pub fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q6K).zip(dst.chunks_exact_mut(QK_K)) {
        let d = get_f16(b, 208);
        let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
        for (e, out) in y.iter_mut().enumerate() {
            // Element 128h + 32r + l: ql nibble r/2 of ql[64h + 32(r%2) + l], qh bits 2r of
            // qh[32h + l] (FORMATS.md 3.2).
            let (h, r, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = (ql[64 * h + 32 * (r % 2) + l] >> (4 * (r / 2))) & 0xF;
            let high = (qh[32 * h + l] >> (2 * r)) & 3;
            let q = (low | (high << 4)) as i32 - 32;
            *out = d * (sc[e / 16] as i8) as f32 * q as f32;
        }
    }
}
