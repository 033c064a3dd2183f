//! Throughput of the CUDA twins over 64 MiB of f32 input (16 Mi values, rows of 4096), in GB/s of
//! f32 input: `host/*` includes the host -> device copy, the kernel and the device -> host copy
//! of the result (what a `Quantizer` call costs the executor per chunk); `kernel/*` runs on
//! input already resident on the device.
//!
//! Without the `cuda` feature or without a GPU it prints why and measures nothing.
//! Quick run: `cargo bench -p kernels --features cuda --bench cuda_quant -- --warm-up-time 1
//! --measurement-time 2`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::cuda::{Op, Quantizer};

const VALUES: usize = 16 << 20;
const COLS: usize = 4096;

fn input() -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..VALUES)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

const OPS: [(&str, Op); 14] = [
    ("f16", Op::F16),
    ("bf16", Op::Bf16),
    ("f8e4m3", Op::F8E4M3),
    ("q8_0", Op::Q8_0),
    ("q4_0", Op::Q4_0),
    ("q4_1", Op::Q4_1),
    ("q5_0", Op::Q5_0),
    ("q5_1", Op::Q5_1),
    ("q4_k", Op::Q4K),
    ("q5_k", Op::Q5K),
    ("q6_k", Op::Q6K),
    ("fp8_per_tensor", Op::Fp8PerTensor),
    ("int8_per_channel", Op::Int8PerChannel { cols: COLS }),
    (
        "int4_group128",
        Op::Int4Groupwise {
            cols: COLS,
            group: 128,
        },
    ),
];

/// One host-slice call of `op` (copies in, kernel, copies out). The output buffers are
/// allocated once, so page faults of fresh buffers are not timed.
fn host_call(
    q: &Quantizer,
    op: Op,
    x: &[f32],
    bytes: &mut [u8],
    words: &mut [u16],
    codes: &mut [i8],
    scales: &mut [f32],
) {
    let r = match op {
        Op::F16 => q.f32_to_f16(x, words),
        Op::Bf16 => q.f32_to_bf16(x, words),
        Op::F8E4M3 => q.f32_to_f8e4m3(x, &mut bytes[..x.len()]),
        Op::Q8_0 => q.q8_0(x, &mut bytes[..x.len() / 32 * 34]),
        Op::Q4_0 => q.q4_0(x, &mut bytes[..x.len() / 32 * 18]),
        Op::Q4_1 => q.q4_1(x, &mut bytes[..x.len() / 32 * 20]),
        Op::Q5_0 => q.q5_0(x, &mut bytes[..x.len() / 32 * 22]),
        Op::Q5_1 => q.q5_1(x, &mut bytes[..x.len() / 32 * 24]),
        Op::Q4K => q.q4_k(x, &mut bytes[..x.len() / 256 * 144]),
        Op::Q5K => q.q5_k(x, &mut bytes[..x.len() / 256 * 176]),
        Op::Q6K => q.q6_k(x, &mut bytes[..x.len() / 256 * 210]),
        Op::Fp8PerTensor => q.fp8_e4m3_per_tensor(x, &mut bytes[..x.len()]).map(drop),
        Op::Int8PerChannel { cols } => {
            q.int8_per_channel(x, cols, codes, &mut scales[..x.len() / cols])
        }
        Op::Int4Groupwise { cols, group } => {
            q.int4_groupwise(x, cols, group, codes, &mut scales[..x.len() / group])
        }
    };
    r.expect("CUDA twin failed");
}

fn cuda_quant(c: &mut Criterion) {
    let q = match Quantizer::new() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("cuda_quant: SKIPPED, {e}");
            return;
        }
    };
    eprintln!("cuda_quant: device {}", q.device_name());
    let x = input();
    let (mut bytes, mut words) = (vec![0u8; VALUES / 32 * 34], vec![0u16; VALUES]);
    let (mut codes, mut scales) = (vec![0i8; VALUES], vec![0f32; VALUES / 32]);
    let resident = q.upload(&x).expect("upload");
    let mut g = c.benchmark_group("cuda_quant_64MiB");
    g.throughput(Throughput::Bytes((VALUES * 4) as u64));
    g.sample_size(10);
    for (name, op) in OPS {
        g.bench_function(format!("host/{name}"), |b| {
            b.iter(|| host_call(&q, op, &x, &mut bytes, &mut words, &mut codes, &mut scales))
        });
        g.bench_function(format!("kernel/{name}"), |b| {
            b.iter(|| q.run_resident(op, &resident).expect("kernel"))
        });
    }
    g.finish();
}

criterion_group!(benches, cuda_quant);
criterion_main!(benches);
