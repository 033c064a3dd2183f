//! `gguf::header::parse` on a realistic header: ~500 tensor infos (a 24-layer llama with
//! Q4_K weights) and a 32k-token vocabulary as string, f32 and i32 arrays.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use formats::gguf::{header, plan_file, GgmlType, GgufTensorSpec, MetadataValue, ValueType};

fn llama_header() -> Vec<u8> {
    let n_vocab = 32_000;
    let md = vec![
        (
            "general.architecture".to_string(),
            MetadataValue::String("llama".into()),
        ),
        ("llama.block_count".to_string(), MetadataValue::U32(24)),
        (
            "tokenizer.ggml.model".to_string(),
            MetadataValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetadataValue::Array(
                ValueType::String,
                (0..n_vocab)
                    .map(|i| MetadataValue::String(format!("▁tok{i}")))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.scores".to_string(),
            MetadataValue::Array(
                ValueType::F32,
                (0..n_vocab)
                    .map(|i| MetadataValue::F32(-(i as f32)))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetadataValue::Array(
                ValueType::I32,
                (0..n_vocab).map(|_| MetadataValue::I32(1)).collect(),
            ),
        ),
    ];
    let mut specs = Vec::new();
    for l in 0..55 {
        for (name, dims, ty) in [
            ("attn_norm", vec![256u64], GgmlType::F32),
            ("attn_q", vec![256, 256], GgmlType::Q4K),
            ("attn_k", vec![256, 64], GgmlType::Q4K),
            ("attn_v", vec![256, 64], GgmlType::Q6K),
            ("attn_output", vec![256, 256], GgmlType::Q4K),
            ("ffn_norm", vec![256], GgmlType::F32),
            ("ffn_gate", vec![256, 512], GgmlType::Q4K),
            ("ffn_up", vec![256, 512], GgmlType::Q4K),
            ("ffn_down", vec![512, 256], GgmlType::Q6K),
        ] {
            specs.push(GgufTensorSpec::new(
                format!("blk.{l}.{name}.weight"),
                dims,
                ty,
            ));
        }
    }
    let layout = plan_file(&md, specs).expect("valid plan");
    // Tensor data is part of the parse input (ranges are checked); zeros are fine.
    let mut bytes = layout.header;
    bytes.resize(layout.total_size as usize, 0);
    bytes
}

fn bench(c: &mut Criterion) {
    let bytes = llama_header();
    let h = header::parse(&bytes).expect("parses");
    let header_len = h.data_start;
    let mut g = c.benchmark_group("gguf_parse");
    g.throughput(Throughput::Bytes(header_len));
    g.bench_function(
        format!(
            "header_{}tensors_32k_vocab_{}KiB",
            h.tensors.len(),
            header_len / 1024
        ),
        |b| b.iter(|| header::parse(black_box(&bytes)).expect("parses")),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
