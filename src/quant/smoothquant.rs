//! SmoothQuant (Xiao et al. 2023) W8A8: migrate activation outliers into the weights with a
//! per-input-channel factor `s_j = max|X_j|^α / max|W_:,j|^(1−α)` (paper eq. 4; modelopt
//! `model_calib.py` `smoothquant` computes the reciprocal as the activation multiplier),
//! `X' = X · diag(1/s)`, `W' = W · diag(s)`, so `X' W'ᵀ = X Wᵀ` exactly before rounding.
//!
//! Where a norm precedes (q/k/v after `input_layernorm`, gate/up after
//! `post_attention_layernorm`) `1/s` is folded into the norm weight (TensorRT-LLM
//! `smooth_llama_model`, AutoAWQ `scale_ln_fcs`); the linears of one site share `s`, with
//! `max|W_:,j|` taken over all of them. o_proj and down_proj keep `1/s` as a pre-quant scale
//! (TensorRT-LLM's `smoother`). The INT8 activation scale is per tensor:
//! `max_j(max|X_j| / s_j) / 127`.

/// Bounds on a smoothing factor, so that dead channels (zero activations or weights) stay
/// finite and unchanged relative to their neighbours.
const S_MIN: f32 = 1e-5;
const S_MAX: f32 = 1e5;

/// `s_j` for activation maxima `act` and weight column maxima `w`; 1 where either is zero.
pub fn smoothing_factors(act: &[f32], w: &[f32], alpha: f32) -> Vec<f32> {
    act.iter()
        .zip(w)
        .map(|(&a, &w)| {
            if a > 0.0 && w > 0.0 {
                (a.powf(alpha) / w.powf(1.0 - alpha)).clamp(S_MIN, S_MAX)
            } else {
                1.0
            }
        })
        .collect()
}

/// `max_j |w[i, j]|` over rows, accumulated into `acc` (`cols` wide).
pub fn accumulate_column_absmax(w: &[f32], cols: usize, acc: &mut [f32]) {
    for row in w.chunks_exact(cols) {
        acc.iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m = m.max(v.abs()));
    }
}

/// Per-tensor INT8 activation scale after smoothing: `max_j(act_j / s_j) / 127`, floored.
pub fn smoothed_input_scale(act: &[f32], s: &[f32]) -> f32 {
    let m = act.iter().zip(s).fold(0.0f32, |m, (&a, &s)| m.max(a / s));
    kernels::cpu::scale::scale_for(m, kernels::cpu::int8::INT8_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_exact_up_to_rounding() {
        // y = x · Wᵀ equals (x / s) · (W · diag(s))ᵀ.
        let x = [3.0f32, -0.5, 20.0, 0.1];
        let w = [0.2f32, 0.4, -0.01, 1.0, -0.3, 0.05, 0.02, 0.7];
        let mut col = [0.0f32; 4];
        accumulate_column_absmax(&w, 4, &mut col);
        assert_eq!(col, [0.3, 0.4, 0.02, 1.0]);
        let s = smoothing_factors(&x.map(f32::abs), &col, 0.5);
        for r in 0..2 {
            let plain: f32 = (0..4).map(|j| x[j] * w[r * 4 + j]).sum();
            let smoothed: f32 = (0..4).map(|j| (x[j] / s[j]) * (w[r * 4 + j] * s[j])).sum();
            assert!((plain - smoothed).abs() <= 1e-5 * plain.abs().max(1.0));
        }
        // Outlier channel 2 (|x| = 20, weights small) is scaled down the most on the input.
        assert!(s[2] > s[0] && s[2] > s[1]);
        assert_eq!(smoothing_factors(&[0.0], &[1.0], 0.5), vec![1.0]);
    }

    #[test]
    fn folding_into_the_norm_keeps_the_layer_output() {
        // linear(rms_norm(x, g)) == linear'(rms_norm(x, g / s)) with W' = W · diag(s).
        let cols = 8;
        let x: Vec<f32> = (0..2 * cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * if i % cols == 2 { 30.0 } else { 1.0 })
            .collect();
        let g: Vec<f32> = (0..cols).map(|j| 0.5 + j as f32 / 10.0).collect();
        let w: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let h = crate::forward::ops::rms_norm(&x, &g, 1e-6);
        let act: Vec<f32> = (0..cols)
            .map(|j| h.chunks(cols).map(|r| r[j].abs()).fold(0.0, f32::max))
            .collect();
        let mut col = vec![0.0f32; cols];
        accumulate_column_absmax(&w, cols, &mut col);
        let s = smoothing_factors(&act, &col, 0.5);
        let g2: Vec<f32> = g.iter().zip(&s).map(|(g, s)| g / s).collect();
        let w2: Vec<f32> = w
            .chunks(cols)
            .flat_map(|r| r.iter().zip(&s).map(|(v, s)| v * s).collect::<Vec<_>>())
            .collect();
        let y = crate::forward::ops::linear(&h, &w, None, 2, cols, false);
        let h2 = crate::forward::ops::rms_norm(&x, &g2, 1e-6);
        let y2 = crate::forward::ops::linear(&h2, &w2, None, 2, cols, false);
        for (a, b) in y.iter().zip(&y2) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn input_scale_after_smoothing() {
        let s = smoothed_input_scale(&[127.0, 254.0], &[1.0, 4.0]);
        assert_eq!(s, 1.0);
    }
}
