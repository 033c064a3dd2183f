//! GGUF → Hugging Face folder: the inverse of `hf_to_gguf`. Names mapped back, q/k rows
//! un-permuted, `config.json` and tokenizer files rebuilt from the metadata, weights written
//! as safetensors shards in one dtype (GGUF keeps norms in F32; they are cast back, which is
//! exact when they were widened from the same dtype).

use super::{cast_op, dense_dtype, safetensors_files, ConvertOptions, Recipes};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{self, ModelConfig};
use crate::plan::{Op, OutputLayout, Plan, SideFile};
use formats::safetensors::{self, TensorSpec};
use formats::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub fn plan(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    let Checkpoint::Gguf(model) = input else {
        return Err(Error::Usage("expected a GGUF input".into()));
    };
    let path = input.display_path();
    let metadata = model.metadata();
    let sources = input.tensors();
    let names: Vec<&str> = sources.iter().map(|t| t.name.as_str()).collect();
    let mut config =
        crate::import::hf_config::config_from_gguf_with_tensors(metadata, &names, &path)?;
    let tokenizer = crate::import::tokenizer::tokenizer_from_gguf(metadata, &path)?;
    let cfg = ModelConfig::from_json(&path, &config.to_string())?;

    let out_dtype = match opts.dtype {
        Some(d) => d,
        None => super::weight_dtype(&sources).unwrap_or(Dtype::F16),
    };
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "torch_dtype".into(),
            serde_json::Value::String(torch_dtype_name(out_dtype).into()),
        );
    }

    let mut by_hf_name = HashMap::new();
    for (index, src) in sources.iter().enumerate() {
        // llama.cpp derives rope_freqs from the config; Hugging Face has no such tensor.
        if src.name == model::ROPE_FREQS_GGUF_NAME {
            continue;
        }
        let hf = model::gguf_to_hf_name(&src.name).ok_or_else(|| {
            Error::tensor(
                &input.file_paths()[src.file],
                &src.name,
                "no Hugging Face name for this tensor",
            )
        })?;
        by_hf_name.insert(hf, index);
    }

    // Hugging Face order (the model's module order), which also checks completeness.
    let mut specs = Vec::new();
    let mut recipes = Recipes::new();
    for expected in cfg.expected_tensors() {
        let Some(&index) = by_hf_name.get(&expected.name) else {
            return Err(Error::tensor(
                &path,
                &expected.name,
                "missing (the metadata implies it)",
            ));
        };
        let src = &sources[index];
        if src.shape != expected.shape {
            return Err(Error::tensor(
                &input.file_paths()[src.file],
                &src.name,
                format!(
                    "shape {:?} does not match the metadata (expected {:?})",
                    src.shape, expected.shape
                ),
            ));
        }
        let from = dense_dtype(
            input,
            src,
            "converted to safetensors (dequantization is not supported yet)",
        )?;
        let mut ops = Vec::new();
        if let Some(n_head) = model::qk_permutation_heads(&cfg, expected.role) {
            ops.push(Op::PermuteQk {
                n_head: n_head as u64,
                inverse: true,
            });
        }
        ops.extend(cast_op(from, out_dtype));
        specs.push(TensorSpec {
            name: expected.name.clone(),
            dtype: out_dtype,
            shape: src.shape.clone(),
        });
        recipes.insert(expected.name, (index, ops));
    }
    if recipes.len() != by_hf_name.len() {
        let extra = by_hf_name
            .keys()
            .find(|k| !recipes.contains_key(k.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(Error::tensor(
            &path,
            extra,
            "not part of the model the metadata describes",
        ));
    }

    let st_meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let shards = safetensors::plan_shards(specs, opts.max_shard_size, Some(&st_meta))?;
    let files = safetensors_files(shards.files, &recipes, &sources);

    let mut side_files = vec![
        SideFile::json("config.json", &config),
        SideFile::json("tokenizer.json", &tokenizer.tokenizer_json),
        SideFile::json("tokenizer_config.json", &tokenizer.tokenizer_config),
    ];
    if let Some(index) = shards.index_json {
        side_files.push(SideFile {
            name: "model.safetensors.index.json".into(),
            bytes: index,
        });
    }
    Ok(Plan {
        job: "convert gguf -> safetensors".into(),
        target: output.to_path_buf(),
        layout: OutputLayout::Folder,
        files,
        side_files,
    })
}

/// The `torch_dtype` spelling transformers writes in config.json.
pub(super) fn torch_dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "float32",
        Dtype::BF16 => "bfloat16",
        Dtype::F64 => "float64",
        _ => "float16",
    }
}
