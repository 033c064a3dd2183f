//! Quantize throughput of the GGML block kernels, in MB/s of f32 input (4 MiB per iteration,
//! one thread: the executor runs one kernel call per row chunk per worker).
//!
//! Quick run: `cargo bench -p kernels --bench ggml_quant -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use formats::gguf::GgmlType;
use kernels::cpu::ggml;

const INPUT_BYTES: usize = 4 << 20;
const ROW: usize = 4096;

/// Gaussian-ish weights (sum of uniforms), σ ≈ 0.02, like a real linear layer.
fn input() -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..INPUT_BYTES / 4)
        .map(|_| (u() + u() + u() + u() - 2.0) * 0.035)
        .collect()
}

fn quantize(c: &mut Criterion) {
    let x = input();
    let imatrix: Vec<f32> = (0..ROW).map(|i| 0.5 + (i % 13) as f32 * 0.1).collect();
    let mut g = c.benchmark_group("ggml_quantize_4MiB_f32");
    g.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    g.sample_size(10);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::Q2K,
    ] {
        let mut dst = vec![0u8; ggml::quantized_len(ty, x.len()).unwrap()];
        g.bench_function(BenchmarkId::new(ty.name(), "ref"), |b| {
            b.iter(|| ggml::quantize(ty, black_box(&x), &mut dst, None).unwrap())
        });
    }
    let mut dst = vec![0u8; ggml::quantized_len(GgmlType::Q4K, x.len()).unwrap()];
    g.bench_function(BenchmarkId::new("Q4_K", "imatrix"), |b| {
        b.iter(|| ggml::quantize(GgmlType::Q4K, black_box(&x), &mut dst, Some(&imatrix)).unwrap())
    });
    g.finish();
}

fn dequantize(c: &mut Criterion) {
    let x = input();
    let mut g = c.benchmark_group("ggml_dequantize_4MiB_f32_out");
    g.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    g.sample_size(10);
    for ty in [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
        let mut q = vec![0u8; ggml::quantized_len(ty, x.len()).unwrap()];
        ggml::quantize(ty, &x, &mut q, None).unwrap();
        let mut y = vec![0f32; x.len()];
        g.bench_function(BenchmarkId::new(ty.name(), "ref"), |b| {
            b.iter(|| ggml::dequantize(ty, black_box(&q), &mut y).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, quantize, dequantize);
criterion_main!(benches);
