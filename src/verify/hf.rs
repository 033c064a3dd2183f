//! Hugging Face folder (or single safetensors file): the index and its shards, `config.json`
//! against every tensor, `quantization_config` against the scale tensors, scales finite; a
//! MIXED_PRECISION folder's modules against their own algos ([`super::hf_mixed`]).

use super::finite::first_non_finite;
use super::{hf_mixed, Findings, VerifyOptions};
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::model::ModelConfig;
use std::collections::HashMap;
use std::path::Path;

/// Tensors a quantized HF export adds beside a linear's weight (modelopt's unified HF layout,
/// `modelopt/torch/export/unified_export_hf.py`; transformers' FP8/AWQ loaders).
const SCALE_SUFFIXES: [&str; 9] = [
    ".weight_scale",
    ".weight_scale_2",
    ".input_scale",
    ".pre_quant_scale",
    ".k_scale",
    ".v_scale",
    ".weight_zero_point",
    ".weight_scale_inv",
    // AutoAWQ GEMM (`WQLinear_GEMM`): f16 `scales` beside `qweight` / `qzeros`.
    ".scales",
];

/// AutoAWQ GEMM tensors that stand for a linear's `weight`: `qweight` I32 `[in, out / 8]`,
/// `qzeros` I32 `[in / group, out / 8]`.
const AWQ_PACKED_SUFFIXES: [&str; 2] = [".qweight", ".qzeros"];

pub(super) fn check(path: &Path, opts: &VerifyOptions) -> Findings {
    let mut f = Findings::default();
    let ckpt = match Checkpoint::open(path) {
        Ok(Checkpoint::Safetensors(m)) => Checkpoint::Safetensors(m),
        Ok(_) => {
            f.file(path, "not a safetensors checkpoint");
            return f;
        }
        Err(e) => {
            f.problems.push(e.to_string());
            return f;
        }
    };
    f.files = ckpt.file_count();
    let tensors = ckpt.tensors();
    f.tensors = tensors.len();
    let by_name: HashMap<&str, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let file_of = |i: usize| ckpt.file_paths()[tensors[i].file].clone();
    let is_scale = |n: &str| SCALE_SUFFIXES.iter().any(|s| n.ends_with(s));
    let has_scales = tensors.iter().any(|t| is_scale(&t.name));
    let cfg_path = path.join("config.json");
    if path.is_dir() {
        match ModelConfig::load(path) {
            Err(e) => f.problems.push(e.to_string()),
            Ok(cfg) => {
                let quantized = cfg.raw.get("quantization_config").is_some();
                if quantized && !has_scales {
                    f.file(
                        &cfg_path,
                        "has a quantization_config but no tensor holds a scale",
                    );
                }
                if !quantized && has_scales {
                    f.file(
                        &cfg_path,
                        "has no quantization_config but the checkpoint holds quantization scales",
                    );
                }
                if let Some(layers) = hf_mixed::quantized_layers(path, &cfg.raw) {
                    match layers {
                        Ok(layers) => {
                            let shapes = cfg
                                .expected_tensors()
                                .into_iter()
                                .map(|w| (w.name, w.shape))
                                .collect();
                            let file_of = |t: &SourceTensor| ckpt.file_paths()[t.file].clone();
                            hf_mixed::check(&mut f, &layers, &tensors, &file_of, &shapes);
                        }
                        Err(why) => f.problems.push(why),
                    }
                }
                let mut expected = std::collections::HashSet::new();
                for want in cfg.expected_tensors() {
                    expected.insert(want.name.clone());
                    let Some(&i) = by_name.get(want.name.as_str()) else {
                        let tied_head = want.name == "lm_head.weight" && cfg.tie_word_embeddings;
                        let module = want.name.strip_suffix(".weight").unwrap_or(&want.name);
                        if let Some(&q) = by_name.get(format!("{module}.qweight").as_str()) {
                            let packed = match want.shape[..] {
                                [out, cols] => vec![cols, out / 8],
                                _ => want.shape.clone(),
                            };
                            if tensors[q].shape != packed {
                                f.tensor(
                                    file_of(q),
                                    &tensors[q].name,
                                    format!(
                                        "shape {:?}, config.json implies {packed:?} (AWQ GEMM)",
                                        tensors[q].shape
                                    ),
                                );
                            }
                        } else if !tied_head {
                            f.tensor(path, &want.name, "missing (config.json expects it)");
                        }
                        continue;
                    };
                    let module = want.name.strip_suffix(".weight").unwrap_or(&want.name);
                    // Packed quantized weights (int4) have their own shape; fp8/int8 keep it.
                    let packed = by_name.contains_key(format!("{module}.weight_scale").as_str())
                        && tensors[i].shape != want.shape
                        && tensors[i].shape.len() == want.shape.len();
                    if tensors[i].shape != want.shape && !packed {
                        f.tensor(
                            file_of(i),
                            &want.name,
                            format!(
                                "shape {:?}, config.json implies {:?}",
                                tensors[i].shape, want.shape
                            ),
                        );
                    }
                }
                for t in &tensors {
                    let known = expected.contains(&t.name)
                        || (quantized && is_scale(&t.name))
                        || (quantized && AWQ_PACKED_SUFFIXES.iter().any(|s| t.name.ends_with(s)))
                        || crate::model::names::is_skipped_hf_tensor(&t.name);
                    if !known {
                        f.tensor(
                            ckpt.file_paths()[t.file].clone(),
                            &t.name,
                            "not a tensor of this architecture per config.json",
                        );
                    }
                }
            }
        }
    }
    for t in &tensors {
        let scale = is_scale(&t.name);
        if !(scale || opts.deep) {
            continue;
        }
        let Some(dtype) = t.ty.dense() else { continue };
        if let Some(e) = first_non_finite(dtype, ckpt.bytes(t)) {
            let what = if scale { "scale" } else { "weight" };
            f.tensor(
                ckpt.file_paths()[t.file].clone(),
                &t.name,
                format!("{what} element {e} is NaN or Inf"),
            );
        }
        // Deep reads stay within bounded memory: drop the pages behind each tensor.
        ckpt.mapped(t.file).release(t.start, t.len);
    }
    f
}
