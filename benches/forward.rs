//! The two halves of a Llama decoder layer on one 128-token window at TinyLlama-1.1B geometry
//! (hidden 2048, 16 query / 4 kv heads of 128, ffn 5632), f32, through `ckpt_opt::forward::ops`.
//! Throughput is tokens per second of one window; gemm uses the whole rayon pool (as `eval` does
//! for a single sequence).
//!
//! Quick run: `cargo bench --bench forward -- --warm-up-time 1 --measurement-time 3`.

use ckpt_opt::forward::ops::{self, RopeTable};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const HIDDEN: usize = 2048;
const HEADS: usize = 16;
const KV_HEADS: usize = 4;
const HEAD_DIM: usize = 128;
const FFN: usize = 5632;
const SEQ: usize = 128;

/// Deterministic values in a weight-like range.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
        })
        .collect()
}

fn blocks(c: &mut Criterion) {
    let x = values(SEQ * HIDDEN, 1);
    let norm = vec![1.0f32; HIDDEN];
    let wq = values(HEADS * HEAD_DIM * HIDDEN, 2);
    let wk = values(KV_HEADS * HEAD_DIM * HIDDEN, 3);
    let wv = values(KV_HEADS * HEAD_DIM * HIDDEN, 4);
    let wo = values(HIDDEN * HEADS * HEAD_DIM, 5);
    let wg = values(FFN * HIDDEN, 6);
    let wu = values(FFN * HIDDEN, 7);
    let wd = values(HIDDEN * FFN, 8);
    let inv_freq: Vec<f64> = (0..HEAD_DIM / 2)
        .map(|i| 1.0 / 10000f64.powf((2 * i) as f64 / HEAD_DIM as f64))
        .collect();
    let rope = RopeTable::new(&inv_freq, SEQ);

    let mut g = c.benchmark_group("llama_block");
    g.throughput(Throughput::Elements(SEQ as u64));
    g.sample_size(10);
    let size = format!("seq{SEQ}_hidden{HIDDEN}");
    g.bench_function(BenchmarkId::new("attention", &size), |b| {
        b.iter(|| {
            let h = ops::rms_norm(black_box(&x), &norm, 1e-5);
            let mut q = ops::linear(&h, &wq, None, SEQ, HIDDEN, true);
            let mut k = ops::linear(&h, &wk, None, SEQ, HIDDEN, true);
            let v = ops::linear(&h, &wv, None, SEQ, HIDDEN, true);
            ops::apply_rope(&mut q, HEADS, &rope);
            ops::apply_rope(&mut k, KV_HEADS, &rope);
            let a = ops::causal_attention(&q, &k, &v, SEQ, HEADS, KV_HEADS, HEAD_DIM);
            ops::linear(&a, &wo, None, SEQ, HEADS * HEAD_DIM, true)
        })
    });
    g.bench_function(BenchmarkId::new("mlp", &size), |b| {
        b.iter(|| {
            let h = ops::rms_norm(black_box(&x), &norm, 1e-5);
            let mut gate = ops::linear(&h, &wg, None, SEQ, HIDDEN, true);
            let up = ops::linear(&h, &wu, None, SEQ, HIDDEN, true);
            ops::swiglu(&mut gate, &up);
            ops::linear(&gate, &wd, None, SEQ, FFN, true)
        })
    });
    g.finish();
}

criterion_group!(benches, blocks);
criterion_main!(benches);
