//! Header parser throughput. `cargo bench -p formats --bench parsers`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use formats::safetensors::{header, plan_file, TensorSpec};
use formats::Dtype;

/// A file with `n` small tensors named like a llama checkpoint; data is zeros.
fn safetensors_file(n: usize) -> Vec<u8> {
    let specs = (0..n)
        .map(|i| TensorSpec {
            name: format!("model.layers.{}.self_attn.proj_{}.weight", i / 8, i % 8),
            dtype: [Dtype::F32, Dtype::BF16, Dtype::BF16][i % 3],
            shape: vec![4, 2],
        })
        .collect();
    let layout = plan_file(specs, None).expect("plan");
    let mut bytes = layout.header;
    bytes.resize(layout.total_size as usize, 0);
    bytes
}

fn safetensors_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("safetensors_header_parse");
    for n in [100usize, 1000] {
        let bytes = safetensors_file(n);
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        group.throughput(Throughput::Bytes(header_len + 8));
        group.bench_with_input(
            BenchmarkId::new("tensors", format!("{n}_{}KiB", (header_len + 8) / 1024)),
            &bytes,
            |b, bytes| b.iter(|| header::parse(black_box(bytes)).expect("valid")),
        );
    }
    group.finish();
}

// gguf: the GGUF header bench goes here (fn gguf_header), and into criterion_group! below.

criterion_group!(benches, safetensors_header);
criterion_main!(benches);
