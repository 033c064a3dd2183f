//! GGUF file or split set: every split present and in bounds (the reader checks both), tensor
//! names and shapes against the `<arch>.*` metadata, `general.file_type` against the tensor
//! types, norms finite; with `deep`, every float tensor and every block's `d` scale finite.

use super::finite::first_non_finite;
use super::{Findings, VerifyOptions};
use crate::checkpoint::{Checkpoint, ElementType};
use crate::model::ModelConfig;
use formats::gguf::GgmlType;
use formats::Dtype;
use std::collections::HashMap;
use std::path::Path;

pub(super) fn check(path: &Path, opts: &VerifyOptions) -> Findings {
    let mut f = Findings::default();
    let model = match Checkpoint::open(path) {
        Ok(Checkpoint::Gguf(m)) => m,
        Ok(_) => {
            f.file(path, "not a GGUF file");
            return f;
        }
        Err(e) => {
            f.problems.push(e.to_string());
            return f;
        }
    };
    let ckpt = Checkpoint::Gguf(model);
    let Checkpoint::Gguf(model) = &ckpt else {
        return f;
    };
    f.files = model.files().len();
    let tensors = ckpt.tensors();
    f.tensors = tensors.len();
    let by_name: HashMap<&str, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let file_of = |i: usize| ckpt.file_paths()[tensors[i].file].clone();
    match crate::import::hf_config::config_from_gguf_with_tensors(model.metadata(), &names, path)
        .and_then(|v| ModelConfig::from_json(path, &v.to_string()))
    {
        Err(e) => f.problems.push(e.to_string()),
        Ok(cfg) => {
            let mut expected = std::collections::HashSet::new();
            for want in cfg.expected_tensors() {
                let Some(name) = crate::model::names::hf_to_gguf_name(&want.name) else {
                    continue;
                };
                expected.insert(name.clone());
                let Some(&i) = by_name.get(name.as_str()) else {
                    if !(name == "output.weight" && cfg.tie_word_embeddings) {
                        f.tensor(path, &name, "missing (the metadata implies it)");
                    }
                    continue;
                };
                if tensors[i].shape != want.shape {
                    f.tensor(
                        file_of(i),
                        &name,
                        format!(
                            "shape {:?} (numpy order), the metadata implies {:?}",
                            tensors[i].shape, want.shape
                        ),
                    );
                }
            }
            for (i, t) in tensors.iter().enumerate() {
                // rope_freqs is llama.cpp's optional rope-scaling table.
                if !expected.contains(&t.name) && t.name != "rope_freqs.weight" {
                    f.tensor(file_of(i), &t.name, "not a tensor of this architecture");
                }
            }
        }
    }
    check_file_type(&mut f, model, &tensors, path);
    for (i, t) in tensors.iter().enumerate() {
        let cheap = t.shape.len() == 1;
        if !(cheap || opts.deep) {
            continue;
        }
        let bytes = ckpt.bytes(t);
        let bad = match t.ty {
            ElementType::Dense(d) => first_non_finite(d, bytes),
            ElementType::Ggml(g) => first_bad_block_scale(g, bytes),
        };
        if let Some(e) = bad {
            f.tensor(
                file_of(i),
                &t.name,
                format!("element or block {e} is NaN or Inf"),
            );
        }
        // Deep reads stay within bounded memory: drop the pages behind each tensor.
        ckpt.mapped(t.file).release(t.start, t.len);
    }
    f
}

/// `general.file_type` (llama.cpp `llama_ftype`) against the tensors: the type a file type is
/// named for must be among them, and quantized tensors need `general.quantization_version`.
fn check_file_type(
    f: &mut Findings,
    model: &formats::gguf::GgufModel,
    tensors: &[crate::checkpoint::SourceTensor],
    path: &Path,
) {
    let quantized = tensors.iter().any(|t| matches!(t.ty, ElementType::Ggml(_)));
    if quantized && model.get("general.quantization_version").is_none() {
        f.file(
            path,
            "quantized tensors but no `general.quantization_version`",
        );
    }
    let Some(ft) = model.get("general.file_type") else {
        if quantized {
            f.file(path, "quantized tensors but no `general.file_type`");
        }
        return;
    };
    let Some(ft) = ft.as_u64() else {
        f.file(path, "`general.file_type` is not an integer");
        return;
    };
    let Some(main) = main_type(ft) else { return };
    let present = tensors.iter().any(|t| match (t.ty, main) {
        (ElementType::Ggml(g), Main::Ggml(m)) => g == m,
        (ElementType::Dense(d), Main::Dense(m)) => d == m,
        _ => false,
    });
    if !present {
        f.file(
            path,
            format!("`general.file_type` {ft} names {main:?} but no tensor has that type"),
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Main {
    Dense(Dtype),
    Ggml(GgmlType),
}

/// The type `llama_ftype` is named for (llama.cpp `include/llama.h` `enum llama_ftype`).
fn main_type(ftype: u64) -> Option<Main> {
    Some(match ftype {
        0 => Main::Dense(Dtype::F32),
        1 => Main::Dense(Dtype::F16),
        2 => Main::Ggml(GgmlType::Q4_0),
        3 => Main::Ggml(GgmlType::Q4_1),
        7 => Main::Ggml(GgmlType::Q8_0),
        8 => Main::Ggml(GgmlType::Q5_0),
        9 => Main::Ggml(GgmlType::Q5_1),
        10 => Main::Ggml(GgmlType::Q2K),
        11..=13 => Main::Ggml(GgmlType::Q3K),
        14 | 15 => Main::Ggml(GgmlType::Q4K),
        16 | 17 => Main::Ggml(GgmlType::Q5K),
        18 => Main::Ggml(GgmlType::Q6K),
        32 => Main::Dense(Dtype::BF16),
        _ => return None,
    })
}

/// Offset of the f16 super-scale `d` in a block (FORMATS.md 3.2; ggml-common.h block structs).
fn d_offset(t: GgmlType) -> Option<usize> {
    Some(match t {
        GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::Q8_0
        | GgmlType::Q4K
        | GgmlType::Q5K => 0,
        GgmlType::Q2K => 16 + 64,
        GgmlType::Q3K => 32 + 64 + 12,
        GgmlType::Q6K => 128 + 64 + 16,
        _ => return None,
    })
}

/// Index of the first block whose `d` is NaN or Inf.
fn first_bad_block_scale(t: GgmlType, bytes: &[u8]) -> Option<usize> {
    let at = d_offset(t)?;
    bytes
        .chunks_exact(t.type_size() as usize)
        .position(|b| !half::f16::from_le_bytes([b[at], b[at + 1]]).is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_scale_offsets_fit_their_blocks() {
        for t in [
            GgmlType::Q8_0,
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q6K,
            GgmlType::Q4K,
        ] {
            assert!(d_offset(t).unwrap() + 2 <= t.type_size() as usize, "{t:?}");
        }
        let mut block = vec![0u8; 210];
        assert_eq!(first_bad_block_scale(GgmlType::Q6K, &block), None);
        block[208..210].copy_from_slice(&half::f16::NAN.to_le_bytes());
        assert_eq!(first_bad_block_scale(GgmlType::Q6K, &block), Some(0));
    }
}
