//! modelopt's unified Hugging Face layout with mixed precision: `quantization_config` (or
//! `hf_quant_config.json`'s `quantization`) says `"quant_algo": "MIXED_PRECISION"` and lists
//! `"quantized_layers": {"model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"}, …}` (modelopt
//! `export/quant_utils.py` `process_layer_quant_config`, `export/unified_export_hf.py`;
//! `export/convert_hf_config.py` `convert_hf_quant_config_format` keeps `quantized_layers` in
//! config.json beside its compressed-tensors `config_groups`). Each
//! module holding a `weight_scale` is checked against the tensors of its own quant_algo (the
//! table of `quant::hf`); a scaled module no key matches, a listed linear without scales and a
//! key naming no module are problems. Keys match as TensorRT-LLM matches them (`fnmatch`,
//! first key wins, [`crate::model::trtllm_quant`]).

use super::Findings;
use crate::checkpoint::SourceTensor;
use crate::model::trtllm_quant::{self, QuantizedLayers};
use formats::Dtype;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `quantized_layers` of a mixed-precision folder: from config.json's
/// `quantization_config`, else from `hf_quant_config.json`'s `quantization`. `None` when the
/// folder is not MIXED_PRECISION; a problem when it is and lists no layers.
pub(super) fn quantized_layers(
    dir: &Path,
    config: &Value,
) -> Option<Result<QuantizedLayers, String>> {
    let cfg_path = dir.join("config.json");
    let qc = config.get("quantization_config");
    let side_path = dir.join("hf_quant_config.json");
    let side: Option<Value> = std::fs::read_to_string(&side_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let side_q = side.as_ref().and_then(|v| v.get("quantization"));
    if !trtllm_quant::is_mixed(qc) && !trtllm_quant::is_mixed(side_q) {
        return None;
    }
    let (path, layers) = match qc.and_then(|q| q.get("quantized_layers")) {
        Some(l) => (cfg_path, Some(l)),
        None => (side_path, side_q.and_then(|q| q.get("quantized_layers"))),
    };
    Some(QuantizedLayers::parse(&path, layers).map_err(|e| e.to_string()))
}

/// Checks every quantized module of `tensors` against `layers`; `shapes` are config.json's
/// unquantized `[out, in]` by weight name.
pub(super) fn check(
    f: &mut Findings,
    layers: &QuantizedLayers,
    tensors: &[SourceTensor],
    file_of: &dyn Fn(&SourceTensor) -> PathBuf,
    shapes: &HashMap<String, Vec<u64>>,
) {
    let by_name: HashMap<&str, &SourceTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    f.problems
        .extend(layers.keys_naming_no_module(tensors.iter().map(|t| t.name.as_str())));
    let modules = tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".weight"));
    for module in modules {
        let scale = by_name.get(format!("{module}.weight_scale").as_str());
        let listed = layers.find(module);
        match (scale, listed) {
            (Some(s), None) => f.tensor(
                file_of(s),
                &s.name,
                format!(
                    "{module} holds quantization scales but no quantized_layers key of {} matches it",
                    layers.path.display()
                ),
            ),
            (None, Some((key, block))) if module.ends_with("_proj") => f.tensor(
                file_of(by_name[format!("{module}.weight").as_str()]),
                &format!("{module}.weight_scale"),
                format!(
                    "missing: quantized_layers key `{key}` gives {module} quant_algo {}",
                    trtllm_quant::algo_of(block)
                ),
            ),
            (Some(s), Some((_, block))) => {
                let weight = by_name[format!("{module}.weight").as_str()];
                let Some(shape) = shapes.get(&weight.name) else {
                    continue;
                };
                let get = |suffix: &str| by_name.get(format!("{module}.{suffix}").as_str());
                for why in problems(block, weight, s, get("input_scale"), get("pre_quant_scale"), shape) {
                    f.tensor(file_of(weight), &weight.name, why);
                }
            }
            _ => {}
        }
    }
}

/// What is wrong with one quantized linear for its block's quant_algo (`[out, in]` = `shape`).
fn problems(
    block: &Value,
    weight: &SourceTensor,
    scale: &SourceTensor,
    input_scale: Option<&&SourceTensor>,
    pre_quant_scale: Option<&&SourceTensor>,
    shape: &[u64],
) -> Vec<String> {
    let algo = trtllm_quant::algo_of(block);
    let [out, inp] = shape[..] else {
        return vec![];
    };
    let group = block
        .get("group_size")
        .and_then(Value::as_u64)
        .unwrap_or(64)
        .max(1);
    let per_tensor = |t: &SourceTensor| t.numel() == 1;
    let (dtypes, weight_shape, scale_ok, scale_want, needs_input): (&[Dtype], Vec<u64>, bool, String, bool) =
        match algo {
            "FP8" => (&[Dtype::F8E4M3], vec![out, inp], per_tensor(scale), "one value".into(), true),
            "W8A16" => (&[Dtype::I8], vec![out, inp], scale.shape == [out], format!("[{out}]"), false),
            "W8A8_SQ_PER_CHANNEL" => (&[Dtype::I8], vec![out, inp], scale.shape == [out], format!("[{out}]"), true),
            "W4A16_AWQ" => (
                &[Dtype::U8, Dtype::I8],
                vec![out / 2, inp],
                scale.shape == [out, inp / group],
                format!("[{out}, {}]", inp / group),
                false,
            ),
            other => return vec![format!("quantized_layers gives quant_algo {other}, which verify does not know (FP8, W8A16, W8A8_SQ_PER_CHANNEL, W4A16_AWQ)")],
        };
    let mut out_problems = Vec::new();
    let dense = weight.ty.dense();
    if !dense.is_some_and(|d| dtypes.contains(&d)) || weight.shape != weight_shape {
        out_problems.push(format!(
            "{} {:?}, quantized_layers gives quant_algo {algo}: expected {} {weight_shape:?}",
            weight.ty.name(),
            weight.shape,
            dtypes[0].name()
        ));
    }
    if !scale_ok {
        out_problems.push(format!(
            "weight_scale {:?}, {algo} expects {scale_want}",
            scale.shape
        ));
    }
    if needs_input && input_scale.is_none_or(|t| !per_tensor(t)) {
        out_problems.push(format!("{algo} needs a per-tensor input_scale"));
    }
    let wants_pqs =
        algo == "W4A16_AWQ" && block.get("pre_quant_scale").and_then(Value::as_bool) == Some(true);
    if wants_pqs && pre_quant_scale.is_none_or(|t| t.shape != [inp]) {
        out_problems.push(format!(
            "pre_quant_scale true: expected a pre_quant_scale [{inp}]"
        ));
    }
    out_problems
}
