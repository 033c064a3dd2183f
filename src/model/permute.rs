//! The Q/K row permutation between HF (rotate-half rope) and llama.cpp (interleaved-pair rope), and
//! the llama3 `rope_freqs` tensor.
//!
//! llama.cpp `convert_hf_to_gguf.py` `LlamaModel.permute`:
//! ```text
//! def permute(weights, n_head, n_head_kv):
//!     if n_head_kv is not None and n_head != n_head_kv:
//!         n_head = n_head_kv
//!     return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
//!                   .swapaxes(1, 2).reshape(weights.shape)
//! ```
//! `LlamaModel.modify_tensors` applies it to `q_proj.{weight,bias}` with `(n_head, n_head)` and to
//! `k_proj.{weight,bias}` with `(n_head, n_kv_head)` (so K uses `n_kv_head`). `Qwen2Model` does not
//! permute at all. The inverse is `_reverse_hf_permute` (LLaMA-era converters) / `undo_permute`.

use super::config::{ModelConfig, TensorRole};

/// Reorders whole rows (of `row_bytes` bytes each) the way `LlamaModel.permute` does; with
/// `inverse` it undoes that. Rows are opaque bytes, so this works on F32/F16/BF16 rows and on rows
/// of GGML blocks alike (blocks run along the row). A bias is `rows` rows of one element each.
///
/// Within each of the `n_head` groups of `r = rows / n_head` rows, forward maps
/// `dst[2j + t] = src[t * r/2 + j]` for `j < r/2`, `t ∈ {0, 1}`.
pub fn permute_qk_rows(
    src: &[u8],
    dst: &mut [u8],
    rows: usize,
    row_bytes: usize,
    n_head: usize,
    inverse: bool,
) -> Result<(), String> {
    if n_head == 0 {
        return Err("n_head must be positive".into());
    }
    let group = n_head
        .checked_mul(2)
        .ok_or_else(|| format!("n_head {n_head} overflows"))?;
    if !rows.is_multiple_of(group) {
        return Err(format!(
            "rows {rows} is not divisible by 2 * n_head = {group}"
        ));
    }
    let total = rows
        .checked_mul(row_bytes)
        .ok_or_else(|| format!("rows {rows} * row_bytes {row_bytes} overflows"))?;
    if src.len() != total {
        return Err(format!(
            "source has {} bytes, expected {rows} rows * {row_bytes} = {total}",
            src.len()
        ));
    }
    if dst.len() != total {
        return Err(format!(
            "destination has {} bytes, expected {total}",
            dst.len()
        ));
    }
    let per_head = rows / n_head;
    let half = per_head / 2;
    for h in 0..n_head {
        let base = h * per_head;
        for j in 0..half {
            for t in 0..2 {
                let interleaved = base + 2 * j + t;
                let rotate_half = base + t * half + j;
                let (d, s) = if inverse {
                    (rotate_half, interleaved)
                } else {
                    (interleaved, rotate_half)
                };
                dst[d * row_bytes..(d + 1) * row_bytes]
                    .copy_from_slice(&src[s * row_bytes..(s + 1) * row_bytes]);
            }
        }
    }
    Ok(())
}

/// The head count to pass to [`permute_qk_rows`] for a tensor of `role` when converting to GGUF:
/// `Q`/`QBias` → `num_attention_heads`, `K`/`KBias` → `num_key_value_heads` (as
/// `LlamaModel.modify_tensors` does), `None` for other roles and for Qwen2 (no permutation).
pub fn qk_permutation_heads(cfg: &ModelConfig, role: TensorRole) -> Option<usize> {
    if !cfg.architecture.permutes_qk() {
        return None;
    }
    let heads = match role {
        TensorRole::Q | TensorRole::QBias => cfg.num_attention_heads,
        TensorRole::K | TensorRole::KBias => cfg.num_key_value_heads,
        _ => return None,
    };
    usize::try_from(heads).ok()
}

/// The `rope_freqs.weight` tensor (`head_dim / 2` F32 values) that convert_hf_to_gguf.py
/// `LlamaModel.generate_extra_tensors` writes when `rope_scaling.rope_type == "llama3"`; `None`
/// otherwise (and for Qwen2, whose converter class has no such step).
///
/// Arithmetic as the converter does it in torch float32:
/// `freqs = 1 / (base ** (arange(0, dim, 2, f32) / dim))`, `wavelen = 2π / freq`, defaults
/// `factor = 8`, `low_freq_factor = 1`, `high_freq_factor = 4`. Note the converter reads
/// `original_max_position_embeddings` from the top level of `config.json`
/// (`self.hparams.get("original_max_position_embeddings", 8192)`), not from `rope_scaling`; we do
/// the same so the bytes match (Llama 3.x has 8192 in `rope_scaling` either way). `base ** x` may
/// differ from torch's vectorised `pow` in the last bit.
pub fn llama3_rope_freqs(cfg: &ModelConfig) -> Option<Vec<f32>> {
    if !cfg.architecture.permutes_qk() {
        return None;
    }
    let rs = cfg.rope_scaling.as_ref()?;
    if !rs.kind.eq_ignore_ascii_case("llama3") {
        return None;
    }
    let base = cfg.rope_theta as f32;
    let dim = cfg.head_dim;
    // factor was defaulted to 1.0 by the parser when absent; the converter's default is 8.0.
    let factor = match cfg.raw.get("rope_scaling").and_then(|r| r.get("factor")) {
        Some(v) if v.is_number() => rs.factor,
        _ => 8.0,
    };
    let low = rs.low_freq_factor.unwrap_or(1.0);
    let high = rs.high_freq_factor.unwrap_or(4.0);
    let old_ctx = cfg
        .raw
        .get("original_max_position_embeddings")
        .and_then(|v| v.as_f64())
        .unwrap_or(8192.0);
    // Python floats (f64) first, then each enters a float32 tensor op as f32.
    let low_wavelen = (old_ctx / low) as f32;
    let high_wavelen = (old_ctx / high) as f32;
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let (factor32, low32, span32, old32) = (
        factor as f32,
        low as f32,
        (high - low) as f32,
        old_ctx as f32,
    );
    let out = (0..dim)
        .step_by(2)
        .map(|i| {
            let freq = 1.0f32 / base.powf(i as f32 / dim as f32);
            let wavelen = two_pi / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor32
            } else {
                let smooth = (old32 / wavelen - low32) / span32;
                1.0 / ((1.0 - smooth) / factor32 + smooth)
            }
        })
        .collect();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    /// numpy `W.reshape(n_head, 2, rows//n_head//2, *rest).swapaxes(1, 2).reshape(W.shape)` written
    /// as index arithmetic: output row index o = ((h * half) + j) * 2 + t, in C order over the
    /// swapped shape (n_head, half, 2); it reads input row ((h * 2) + t) * half + j.
    fn numpy_reference(w: &[u8], rows: usize, row_bytes: usize, n_head: usize) -> Vec<u8> {
        let half = rows / n_head / 2;
        let mut out = vec![0u8; w.len()];
        for o in 0..rows {
            let t = o % 2;
            let j = (o / 2) % half;
            let h = o / 2 / half;
            let i = (h * 2 + t) * half + j;
            out[o * row_bytes..(o + 1) * row_bytes]
                .copy_from_slice(&w[i * row_bytes..(i + 1) * row_bytes]);
        }
        out
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn small_known_case() {
        // 1 head, 4 rows [0,1,2,3] (rotate-half halves [0,1] and [2,3]) -> interleaved [0,2,1,3].
        let src = [0u8, 1, 2, 3];
        let mut dst = [0u8; 4];
        permute_qk_rows(&src, &mut dst, 4, 1, 1, false).unwrap();
        assert_eq!(dst, [0, 2, 1, 3]);
        // 2 heads of 4 rows each.
        let src: Vec<u8> = (0..8).collect();
        let mut dst = vec![0u8; 8];
        permute_qk_rows(&src, &mut dst, 8, 1, 2, false).unwrap();
        assert_eq!(dst, [0, 2, 1, 3, 4, 6, 5, 7]);
    }

    #[test]
    fn errors() {
        let mut d = vec![0u8; 12];
        assert!(permute_qk_rows(&[0; 12], &mut d, 6, 2, 2, false)
            .unwrap_err()
            .contains("divisible"));
        assert!(permute_qk_rows(&[0; 12], &mut d, 4, 3, 0, false)
            .unwrap_err()
            .contains("n_head"));
        assert!(permute_qk_rows(&[0; 11], &mut d, 4, 3, 1, false)
            .unwrap_err()
            .contains("source"));
        let mut short = vec![0u8; 11];
        assert!(permute_qk_rows(&[0; 12], &mut short, 4, 3, 1, false)
            .unwrap_err()
            .contains("destination"));
    }

    proptest! {
        #[test]
        fn matches_numpy_and_inverse_undoes_it(n_head in 1usize..9, half in 1usize..9, row_bytes in 1usize..19, seed: u64) {
            let rows = n_head * half * 2;
            let src = bytes(rows * row_bytes, seed);
            let mut fwd = vec![0u8; src.len()];
            permute_qk_rows(&src, &mut fwd, rows, row_bytes, n_head, false).unwrap();
            prop_assert_eq!(&fwd, &numpy_reference(&src, rows, row_bytes, n_head));
            let mut back = vec![0u8; src.len()];
            permute_qk_rows(&fwd, &mut back, rows, row_bytes, n_head, true).unwrap();
            prop_assert_eq!(&back, &src);
            // and forward ∘ inverse as well
            let mut inv = vec![0u8; src.len()];
            permute_qk_rows(&src, &mut inv, rows, row_bytes, n_head, true).unwrap();
            let mut again = vec![0u8; src.len()];
            permute_qk_rows(&inv, &mut again, rows, row_bytes, n_head, false).unwrap();
            prop_assert_eq!(&again, &src);
        }
    }

    fn cfg(json: &str) -> ModelConfig {
        ModelConfig::from_json(Path::new("config.json"), json).unwrap()
    }

    #[test]
    fn heads_per_role() {
        let l = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"num_attention_heads":32,"num_key_value_heads":8}"#,
        );
        assert_eq!(qk_permutation_heads(&l, TensorRole::Q), Some(32));
        assert_eq!(qk_permutation_heads(&l, TensorRole::QBias), Some(32));
        assert_eq!(qk_permutation_heads(&l, TensorRole::K), Some(8));
        assert_eq!(qk_permutation_heads(&l, TensorRole::KBias), Some(8));
        assert_eq!(qk_permutation_heads(&l, TensorRole::V), None);
        assert_eq!(qk_permutation_heads(&l, TensorRole::AttnOutput), None);
        let m = cfg(r#"{"architectures":["MistralForCausalLM"]}"#);
        assert_eq!(qk_permutation_heads(&m, TensorRole::K), Some(8));
        let q = cfg(r#"{"architectures":["Qwen2ForCausalLM"]}"#);
        for role in [
            TensorRole::Q,
            TensorRole::K,
            TensorRole::QBias,
            TensorRole::KBias,
        ] {
            assert_eq!(qk_permutation_heads(&q, role), None);
        }
    }

    #[test]
    fn llama3_rope_freqs_llama31_8b() {
        let c = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"rope_theta":500000.0,"rope_scaling":{"factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
        );
        let f = llama3_rope_freqs(&c).unwrap();
        assert_eq!(f.len(), 64);
        // High-frequency dims are unscaled, low-frequency dims get the full factor, with a smooth band.
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.iter().all(|&x| (1.0..=8.0).contains(&x)));
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        let smooth: Vec<_> = f.iter().filter(|&&x| x > 1.0 && x < 8.0).collect();
        assert!(!smooth.is_empty());
        // Independent f64 evaluation of the same formula agrees to f32 precision.
        for (k, &got) in f.iter().enumerate() {
            let freq = 1.0 / 500000f64.powf((2 * k) as f64 / 128.0);
            let wl = 2.0 * std::f64::consts::PI / freq;
            let want = if wl < 2048.0 {
                1.0
            } else if wl > 8192.0 {
                8.0
            } else {
                let s = (8192.0 / wl - 1.0) / 3.0;
                1.0 / ((1.0 - s) / 8.0 + s)
            };
            assert!(
                (got as f64 - want).abs() <= 1e-5 * want,
                "{k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn no_rope_freqs_without_llama3() {
        assert_eq!(
            llama3_rope_freqs(&cfg(r#"{"architectures":["LlamaForCausalLM"]}"#)),
            None
        );
        let lin = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"rope_scaling":{"type":"linear","factor":2.0}}"#,
        );
        assert_eq!(llama3_rope_freqs(&lin), None);
    }
}
