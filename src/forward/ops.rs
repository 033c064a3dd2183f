//! The numeric steps of the Llama block on f32 rows: matmul (via `gemm`), RMSNorm, rotate-half
//! RoPE, softmax, SwiGLU and causal grouped-query attention. Layout is row-major `[rows, cols]`.

use gemm::Parallelism;

/// `out[m, n] = x[m, k] · wᵀ` (+ `bias[n]`), where `w` is a row-major `[n, k]` weight as stored by
/// PyTorch's `nn.Linear`. `par` chooses whether gemm itself spreads over the rayon pool.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    par: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "linear: input is not [m, k]");
    assert!(
        k > 0 && w.len().is_multiple_of(k),
        "linear: weight is not [n, k]"
    );
    let n = w.len() / k;
    let mut out = vec![0.0f32; m * n];
    matmul_strided(&mut out, n, x, k, 1, w, 1, k, m, n, k, par);
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear: bias length");
        for row in out.chunks_exact_mut(n) {
            row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
        }
    }
    out
}

/// `dst[i, j] = Σ_l lhs[i, l] · rhs[l, j]` with explicit strides (`*_rs` row, `*_cs` column), for
/// views into larger buffers (one head of q/k/v, a column block of the logits).
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    m: usize,
    n: usize,
    k: usize,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The last element each view touches must lie inside its slice: gemm takes raw pointers.
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "matmul: dst view out of bounds"
    );
    if k > 0 {
        assert!(
            (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
            "matmul: lhs view out of bounds"
        );
        assert!(
            (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
            "matmul: rhs view out of bounds"
        );
    }
    let parallelism = if par {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm computes from these strides in bounds, the
    // three slices are distinct borrows, and `read_dst = false` means dst need not be initialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// RMSNorm of each row of `x` (width `w.len()`), scaled by `w`; statistics in f64 so a wide row
/// does not lose the small terms.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f64) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0.0f32; x.len()];
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
            *o = (f64::from(v) * inv) as f32 * g;
        }
    }
    out
}

/// Rotary tables for positions `0..seq`: `cos`/`sin` of `pos · inv_freq[i]`, `[seq, head_dim/2]`.
pub struct RopeTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
}

impl RopeTable {
    pub fn new(inv_freq: &[f64], seq: usize) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for &f in inv_freq {
                let a = p as f64 * f;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable { cos, sin, half }
    }
}

/// Applies Hugging Face's rotate-half RoPE in place to `x` = `[seq, heads * head_dim]`:
/// for each head, `(x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin)` where `x1`/`x2` are its halves.
pub fn apply_rope(x: &mut [f32], heads: usize, table: &RopeTable) {
    let half = table.half;
    let hd = 2 * half;
    for (p, row) in x.chunks_exact_mut(heads * hd).enumerate() {
        let cos = &table.cos[p * half..(p + 1) * half];
        let sin = &table.sin[p * half..(p + 1) * half];
        for head in row.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// Softmax in place, max-subtracted; the sum in f64.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `log Σ exp(x)`, computed stably in f64.
pub fn log_sum_exp(x: &[f32]) -> f64 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln()
}

/// SwiGLU: `gate ← silu(gate) · up`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Causal grouped-query attention for one sequence. `q` is `[seq, heads * hd]`, `k` and `v` are
/// `[seq, kv_heads * hd]` (rope already applied); query head `h` reads kv head `h / (heads /
/// kv_heads)`. Scores are scaled by `1/sqrt(hd)`, masked so position `i` sees `0..=i`, and
/// softmaxed in f32. Returns `[seq, heads * hd]`.
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seq: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
) -> Vec<f32> {
    let qd = heads * hd;
    let kd = kv_heads * hd;
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0.0f32; seq * qd];
    if seq == 0 {
        return out;
    }
    let mut scores = vec![0.0f32; seq * seq];
    for h in 0..heads {
        let kvh = h / group;
        // scores[i, j] = q_h[i] · k_kvh[j]
        matmul_strided(
            &mut scores,
            seq,
            &q[h * hd..],
            qd,
            1,
            &k[kvh * hd..],
            1,
            kd,
            seq,
            seq,
            hd,
            false,
        );
        for i in 0..seq {
            let row = &mut scores[i * seq..(i + 1) * seq];
            row[..=i].iter_mut().for_each(|s| *s *= scale);
            // Masked positions get exactly zero weight (as exp(-inf) would give).
            softmax(&mut row[..=i]);
            row[i + 1..].iter_mut().for_each(|s| *s = 0.0);
        }
        // out_h[i] = Σ_j p[i, j] · v_kvh[j]
        matmul_strided(
            &mut out[h * hd..],
            qd,
            &scores,
            seq,
            1,
            &v[kvh * hd..],
            kd,
            1,
            seq,
            hd,
            seq,
            false,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_naive() {
        let (m, k, n) = (3, 5, 4);
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let y = linear(&x, &w, Some(&b), m, k, false);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| x[i * k + l] * w[j * k + l]).sum::<f32>() + b[j];
                assert!((y[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn rms_norm_unit_rms_then_scaled() {
        let x = [3.0f32, -4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let w = [1.0f32, 2.0, 1.0, 1.0];
        let y = rms_norm(&x, &w, 0.0);
        // Row 0: rms = sqrt(25/4) = 2.5.
        assert!((y[0] - 1.2).abs() < 1e-6 && (y[1] + 3.2).abs() < 1e-6);
        assert_eq!(&y[4..], &[1.0, 2.0, 1.0, 1.0]);
        // eps keeps a zero row finite.
        assert!(rms_norm(&[0.0; 4], &w, 1e-6).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn rope_rotates_pairs_across_halves() {
        // head_dim 4: pairs (0, 2) and (1, 3); inv_freq [1, 0.5].
        let table = RopeTable::new(&[1.0, 0.5], 2);
        let mut x = vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        apply_rope(&mut x, 1, &table);
        // Position 0 is the identity.
        assert_eq!(&x[..4], &[1.0, 0.0, 0.0, 1.0]);
        // Position 1: pair 0 (1, 0) rotated by 1 rad; pair 1 (0, 1) by 0.5 rad.
        let want = [1f32.cos(), -(0.5f32.sin()), 1f32.sin(), 0.5f32.cos()];
        for (a, b) in x[4..].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", &x[4..]);
        }
        // Rotation preserves each pair's norm.
        let n: f32 = x[4..].iter().map(|v| v * v).sum();
        assert!((n - 2.0).abs() < 1e-6);
    }

    #[test]
    fn attention_is_causal_and_grouped() {
        let (seq, heads, kv, hd) = (4, 2, 1, 2);
        let q: Vec<f32> = (0..seq * heads * hd)
            .map(|i| (i as f32 * 0.3).sin())
            .collect();
        let k: Vec<f32> = (0..seq * kv * hd).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut v: Vec<f32> = (0..seq * kv * hd).map(|i| i as f32).collect();
        let a = causal_attention(&q, &k, &v, seq, heads, kv, hd);
        // Position 0 sees only itself: its output is v[0] for every head.
        assert_eq!(&a[..4], &[v[0], v[1], v[0], v[1]]);
        // Changing the last position's value changes nothing before it.
        v[(seq - 1) * hd] = 1e6;
        let b = causal_attention(&q, &k, &v, seq, heads, kv, hd);
        assert_eq!(&a[..(seq - 1) * heads * hd], &b[..(seq - 1) * heads * hd]);
        assert_ne!(a[(seq - 1) * heads * hd], b[(seq - 1) * heads * hd]);
        // Each output is a convex combination of visible values.
        let i = 2;
        let vis: Vec<f32> = (0..=i).map(|j| v[j * hd]).collect();
        let o = b[i * heads * hd];
        assert!(o >= vis.iter().copied().fold(f32::MAX, f32::min) - 1e-4);
        assert!(o <= vis.iter().copied().fold(f32::MIN, f32::max) + 1e-4);
    }

    #[test]
    fn softmax_and_lse() {
        let mut x = [1.0f32, 2.0, 3.0];
        let lse = log_sum_exp(&x);
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(((x[2] as f64).ln() - (3.0 - lse)).abs() < 1e-6);
    }
}
