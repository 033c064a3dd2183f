//! The scale searches of ggml-quants.c, ported statement by statement so that the quantized
//! bytes match llama.cpp's reference quantizers: same f32 operations, same order, same
//! integer conversions (`uint8_t` stores truncate, as in C). No fused multiply-add.

// Index loops mirror ggml-quants.c line for line, which keeps the port reviewable against it.
#![allow(clippy::needless_range_loop)]

/// `GROUP_MAX_EPS` in ggml-quants.c: a group whose absmax is below this quantizes to zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round half to even through the float adder (valid for |x| <= 4194303, which
/// finite inputs respect; outside it returns garbage rather than panicking, like ggml).
#[inline]
pub(super) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff).wrapping_sub(0x0040_0000)
}

/// Signed value of largest magnitude (first one on ties) and its magnitude.
#[inline]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// `make_qx_quants`: symmetric levels `l + nmax` in `[0, 2 nmax)`, scale chosen among 19
/// candidate inverse scales by weighted least squares. `qw` overrides the weights that
/// `rmse_type` selects (1: x², 2: 1, 3: |x|, else sqrt|x|).
pub(super) fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l_out: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 {
        (-rmse_type, true)
    } else {
        (rmse_type, false)
    };
    let weight = |i: usize| -> f32 {
        match qw {
            Some(w) => w[i],
            None => match rmse_type {
                1 => x[i] * x[i],
                2 => 1.0,
                3 => x[i].abs(),
                _ => x[i].abs().sqrt(),
            },
        }
    };
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = weight(i);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1) as f32;
            let w = weight(i);
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants`: symmetric levels with an iterative per-element refinement (x² weights).
pub(super) fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l_out[i] = l as i8;
            let w = x[i] * x[i];
            sumlx += w * x[i] * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l_out[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l_out[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * x[i] * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l_out[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for v in l_out[..n].iter_mut() {
            *v += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
    }
    1.0 / iscale
}

/// `make_qkx2_quants`: asymmetric levels in `[0, nmax]` with a min, searching `nstep + 1`
/// inverse scales `(rmin + rdelta·is + nmax) / (max - min)` and refitting scale and min by
/// weighted least squares. Returns `(scale, -min)` (`the_min` is stored positive).
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let iscale = nmaxf / (max - min);
    let scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        let diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let steps = Steps {
        nmax,
        rmin,
        rdelta,
        nstep,
        use_mad,
        clamp_to_range: false,
    };
    steps.refine(
        x,
        weights,
        l_out,
        (max, sum_w, sum_x),
        (scale, min, best_error),
    )
}

/// `make_qkx3_quants`: as [`make_qkx2_quants`] with x² weights when none are given and a
/// guard against inf/NaN when the fitted min sits near max.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let weight = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let iscale = nmaxf / (max - min);
    let scale = 1.0 / iscale;
    let mut best_mad = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        let diff = if use_mad { diff.abs() } else { diff * diff };
        best_mad += weight(i) * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    // The weights the C code computes inline (x² when none are given), materialized once.
    let mut w = [0f32; MAX_GROUP];
    for i in 0..n {
        w[i] = weight(i);
    }
    let steps = Steps {
        nmax,
        rmin,
        rdelta,
        nstep,
        use_mad,
        clamp_to_range: true,
    };
    steps.refine(
        x,
        &w[..n],
        l_out,
        (max, sum_w, sum_x),
        (scale, min, best_mad),
    )
}

/// Largest group the searches see (Q4_K/Q5_K sub-blocks and the legacy blocks: 32).
const MAX_GROUP: usize = 32;
/// Candidate scales evaluated together (independent float chains for the CPU to overlap).
const LANES: usize = 4;

/// The candidate-scale loop shared by `make_qkx2_quants` and `make_qkx3_quants`:
/// for `is` in `0..=nstep`, levels at inverse scale `(rmin + rdelta·is + nmax) / (max - min)`,
/// a weighted least-squares fit of scale and min, kept when its error beats the best so far.
///
/// Evaluated [`LANES`] candidates at a time for speed, with results bit-identical to the
/// sequential C loop: each candidate's sums are accumulated in element order exactly as in C
/// (only different candidates are interleaved), and the candidates are then accepted or
/// rejected in order. A candidate's levels depend on `min`, which changes only when a candidate
/// is accepted; the candidates after an accepted one that changed `min` are discarded and
/// recomputed with the new `min`.
struct Steps {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    /// make_qkx3's guard: `v > 0 ? nearest_int(MIN(v, nmax)) : 0` instead of a clamp.
    clamp_to_range: bool,
}

impl Steps {
    /// Returns `(scale, -min)` from the initial `(scale, min, best_error)`.
    fn refine(
        &self,
        x: &[f32],
        w: &[f32],
        l_out: &mut [u8],
        (max, sum_w, sum_x): (f32, f32, f32),
        (mut scale, mut min, mut best): (f32, f32, f32),
    ) -> (f32, f32) {
        let n = x.len();
        let (x, w) = (&x[..n], &w[..n]);
        let nmaxf = self.nmax as f32;
        // Levels as f32, element-major: the LANES candidates of element i sit side by side, so
        // the sums below read one vector per element instead of gathering from LANES arrays.
        let mut lv = [[0f32; LANES]; MAX_GROUP];
        let mut is = 0;
        while is <= self.nstep {
            let lanes = ((self.nstep - is + 1) as usize).min(LANES);
            let mut iscale = [0f32; LANES];
            for (j, v) in iscale.iter_mut().enumerate() {
                *v = (self.rmin + self.rdelta * (is + j as i32) as f32 + nmaxf) / (max - min);
            }
            for i in 0..n {
                let xm = x[i] - min;
                for j in 0..LANES {
                    let l = if self.clamp_to_range {
                        // min is the best fit so far and can sit at or near max (make_qkx3).
                        let v = iscale[j] * xm;
                        if v > 0.0 {
                            nearest_int(if v < nmaxf { v } else { nmaxf })
                        } else {
                            0
                        }
                    } else {
                        nearest_int(iscale[j] * xm).clamp(0, self.nmax)
                    };
                    lv[i][j] = l as f32;
                }
            }
            let (mut sl, mut sl2, mut sxl) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
            for i in 0..n {
                let (wi, xi) = (w[i], x[i]);
                for j in 0..LANES {
                    let lf = lv[i][j];
                    sl[j] += wi * lf;
                    sl2[j] += wi * lf * lf;
                    sxl[j] += wi * lf * xi;
                }
            }
            let (mut ts, mut tm, mut ok) = ([0f32; LANES], [0f32; LANES], [false; LANES]);
            for j in 0..LANES {
                let d = sum_w * sl2[j] - sl[j] * sl[j];
                ok[j] = d > 0.0;
                ts[j] = (sum_w * sxl[j] - sum_x * sl[j]) / d;
                tm[j] = (sl2[j] * sum_x - sl[j] * sxl[j]) / d;
                if tm[j] > 0.0 {
                    tm[j] = 0.0;
                    ts[j] = sxl[j] / sl2[j];
                }
            }
            let mut err = [0f32; LANES];
            for i in 0..n {
                let (wi, xi) = (w[i], x[i]);
                for j in 0..LANES {
                    let diff = ts[j] * lv[i][j] + tm[j] - xi;
                    let diff = if self.use_mad {
                        diff.abs()
                    } else {
                        diff * diff
                    };
                    err[j] += wi * diff;
                }
            }
            let mut advanced = lanes;
            for j in 0..lanes {
                if ok[j] && err[j] < best {
                    for i in 0..n {
                        l_out[i] = lv[i][j] as u8;
                    }
                    best = err[j];
                    scale = ts[j];
                    let moved = tm[j].to_bits() != min.to_bits();
                    min = tm[j];
                    if moved {
                        advanced = j + 1;
                        break;
                    }
                }
            }
            is += advanced as i32;
        }
        (scale, -min)
    }
}

/// `make_qp_quants`: positive levels in `[0, nmax]` for the super-block's sub-scales, weighted
/// by `quant_weights`. `l_out` holds `uint8_t` stores as in C (a negative level wraps).
pub(super) fn make_qp_quants(nmax: i32, x: &[f32], l_out: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..n {
        l_out[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..n {
        let diff = x[i] - scale * l_out[i] as f32;
        best_mse += quant_weights[i] * diff * diff;
    }
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += quant_weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        let w = quant_weights[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = quant_weights[i];
            let li = l_out[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l_out[i] as i32 {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The sequential loops of ggml-quants.c as first ported (one candidate at a time), kept as
    // the reference the interleaved `Steps::refine` must reproduce bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn make_qkx2_quants_sequential(
        nmax: i32,
        x: &[f32],
        weights: &[f32],
        l_out: &mut [u8],
        laux: &mut [u8],
        rmin: f32,
        rdelta: f32,
        nstep: i32,
        use_mad: bool,
    ) -> (f32, f32) {
        let n = x.len();
        let (mut min, mut max) = (x[0], x[0]);
        let mut sum_w = weights[0];
        let mut sum_x = sum_w * x[0];
        for i in 1..n {
            if x[i] < min {
                min = x[i];
            }
            if x[i] > max {
                max = x[i];
            }
            let w = weights[i];
            sum_w += w;
            sum_x += w * x[i];
        }
        if min > 0.0 {
            min = 0.0;
        }
        if max == min {
            l_out[..n].fill(0);
            return (0.0, -min);
        }
        let nmaxf = nmax as f32;
        let mut iscale = nmaxf / (max - min);
        let mut scale = 1.0 / iscale;
        let mut best_error = 0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            l_out[i] = l as u8;
            let diff = scale * l as f32 + min - x[i];
            let diff = if use_mad { diff.abs() } else { diff * diff };
            best_error += weights[i] * diff;
        }
        if nstep < 1 {
            return (scale, -min);
        }
        for is in 0..=nstep {
            iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
            let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
            for i in 0..n {
                let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
                laux[i] = l as u8;
                let w = weights[i];
                let lf = l as f32;
                sum_l += w * lf;
                sum_l2 += w * lf * lf;
                sum_xl += w * lf * x[i];
            }
            let d = sum_w * sum_l2 - sum_l * sum_l;
            if d > 0.0 {
                let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
                let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
                if this_min > 0.0 {
                    this_min = 0.0;
                    this_scale = sum_xl / sum_l2;
                }
                let mut cur_error = 0f32;
                for i in 0..n {
                    let diff = this_scale * laux[i] as f32 + this_min - x[i];
                    let diff = if use_mad { diff.abs() } else { diff * diff };
                    cur_error += weights[i] * diff;
                }
                if cur_error < best_error {
                    l_out[..n].copy_from_slice(&laux[..n]);
                    best_error = cur_error;
                    scale = this_scale;
                    min = this_min;
                }
            }
        }
        (scale, -min)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_qkx3_quants_sequential(
        nmax: i32,
        x: &[f32],
        weights: Option<&[f32]>,
        l_out: &mut [u8],
        laux: &mut [u8],
        rmin: f32,
        rdelta: f32,
        nstep: i32,
        use_mad: bool,
    ) -> (f32, f32) {
        let n = x.len();
        let weight = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
        let (mut min, mut max) = (x[0], x[0]);
        let mut sum_w = weight(0);
        let mut sum_x = sum_w * x[0];
        for i in 1..n {
            if x[i] < min {
                min = x[i];
            }
            if x[i] > max {
                max = x[i];
            }
            let w = weight(i);
            sum_w += w;
            sum_x += w * x[i];
        }
        if min > 0.0 {
            min = 0.0;
        }
        if max <= min {
            l_out[..n].fill(0);
            return (0.0, -min);
        }
        let nmaxf = nmax as f32;
        let mut iscale = nmaxf / (max - min);
        let mut scale = 1.0 / iscale;
        let mut best_mad = 0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            l_out[i] = l as u8;
            let diff = scale * l as f32 + min - x[i];
            let diff = if use_mad { diff.abs() } else { diff * diff };
            best_mad += weight(i) * diff;
        }
        if nstep < 1 {
            return (scale, -min);
        }
        for is in 0..=nstep {
            iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
            let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
            for i in 0..n {
                let v = iscale * (x[i] - min);
                let l = if v > 0.0 {
                    nearest_int(if v < nmaxf { v } else { nmaxf })
                } else {
                    0
                };
                laux[i] = l as u8;
                let w = weight(i);
                let lf = l as f32;
                sum_l += w * lf;
                sum_l2 += w * lf * lf;
                sum_xl += w * lf * x[i];
            }
            let d = sum_w * sum_l2 - sum_l * sum_l;
            if d > 0.0 {
                let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
                let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
                if this_min > 0.0 {
                    this_min = 0.0;
                    this_scale = sum_xl / sum_l2;
                }
                let mut mad = 0f32;
                for i in 0..n {
                    let diff = this_scale * laux[i] as f32 + this_min - x[i];
                    let diff = if use_mad { diff.abs() } else { diff * diff };
                    mad += weight(i) * diff;
                }
                if mad < best_mad {
                    l_out[..n].copy_from_slice(&laux[..n]);
                    best_mad = mad;
                    scale = this_scale;
                    min = this_min;
                }
            }
        }
        (scale, -min)
    }

    fn data(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                match seed % 4 {
                    0 => u,
                    1 => u + 0.3, // all positive: min clamps to 0
                    2 => {
                        if i % 7 == 0 {
                            u * 30.0
                        } else {
                            u
                        }
                    }
                    _ => (u * 8.0).round() / 8.0, // ties and repeats
                }
            })
            .collect()
    }

    #[test]
    fn interleaved_search_equals_the_sequential_port() {
        for seed in 0..4000u64 {
            for (n, nmax, rmin, rdelta, nstep, mad) in [
                (32usize, 15, -1.0f32, 0.1f32, 20, false),
                (32, 31, -0.5, 0.1, 15, false),
                (16, 3, -0.5, 0.1, 15, true),
                (16, 3, -0.9, 0.05, 36, false),
                (32, 15, -0.9, 0.05, 36, false),
            ] {
                let x = data(seed, n);
                let w: Vec<f32> = x.iter().map(|v| 0.01 + v.abs()).collect();
                let (mut a, mut b, mut aux) = ([0u8; 32], [0u8; 32], [0u8; 32]);
                let fast = make_qkx2_quants(nmax, &x, &w, &mut a, rmin, rdelta, nstep, mad);
                let slow = make_qkx2_quants_sequential(
                    nmax, &x, &w, &mut b, &mut aux, rmin, rdelta, nstep, mad,
                );
                assert_eq!(
                    (fast.0.to_bits(), fast.1.to_bits()),
                    (slow.0.to_bits(), slow.1.to_bits()),
                    "qkx2 seed {seed} n {n}"
                );
                assert_eq!(a, b, "qkx2 levels seed {seed}");
                for weights in [None, Some(&w[..])] {
                    let fast =
                        make_qkx3_quants(nmax, &x, weights, &mut a, rmin, rdelta, nstep, mad);
                    let slow = make_qkx3_quants_sequential(
                        nmax, &x, weights, &mut b, &mut aux, rmin, rdelta, nstep, mad,
                    );
                    assert_eq!(
                        (fast.0.to_bits(), fast.1.to_bits()),
                        (slow.0.to_bits(), slow.1.to_bits()),
                        "qkx3 seed {seed} n {n}"
                    );
                    assert_eq!(a, b, "qkx3 levels seed {seed}");
                }
            }
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(3.49), 3);
        assert_eq!(nearest_int(-7.6), -8);
    }
}
