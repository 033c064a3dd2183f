//! Throughput of the dtype casts over 16 MiB of input, through the byte-level entry point the
//! executor uses (`cast_bytes`, unaligned-safe) and, for f32 -> f16, the typed kernel too.
//!
//! Quick run: `cargo bench -p kernels --bench dtype -- --warm-up-time 1 --measurement-time 2`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use formats::Dtype;
use kernels::cpu::cast::{cast_bytes, f32_to_f16};

const INPUT_BYTES: usize = 16 << 20;

/// Input of `n` bytes holding finite values of `dtype` in a realistic weight range, so the
/// common path (not NaN/overflow) is what gets timed.
fn input(dtype: Dtype) -> Vec<u8> {
    let n = INPUT_BYTES / dtype.size();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let vals: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let mut out = vec![0u8; INPUT_BYTES];
    kernels::cpu::cast::encode_f32(&vals, dtype, &mut out).unwrap();
    out
}

fn casts(c: &mut Criterion) {
    let mut g = c.benchmark_group("cast_bytes");
    g.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    g.sample_size(10);
    for (from, to) in [
        (Dtype::BF16, Dtype::F16),
        (Dtype::F32, Dtype::F16),
        (Dtype::BF16, Dtype::F32),
        (Dtype::F32, Dtype::BF16),
        (Dtype::F32, Dtype::F8E4M3),
    ] {
        let src = input(from);
        let mut dst = vec![0u8; INPUT_BYTES / from.size() * to.size()];
        let name = format!("{}_to_{}", from.name(), to.name()).to_lowercase();
        g.bench_function(BenchmarkId::new(name, "16MiB"), |b| {
            b.iter(|| cast_bytes(black_box(&src), from, black_box(&mut dst), to).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("typed");
    g.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    g.sample_size(10);
    let src: Vec<f32> = input(Dtype::F32)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut dst = vec![0u16; src.len()];
    g.bench_function(BenchmarkId::new("f32_to_f16", "16MiB"), |b| {
        b.iter(|| f32_to_f16(black_box(&src), black_box(&mut dst)))
    });
    g.finish();
}

criterion_group!(benches, casts);
criterion_main!(benches);
