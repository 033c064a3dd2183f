//! GGUF → GGUF: merge or re-split a set (as llama.cpp's gguf-split does) and optionally change
//! the dtype of dense 2-D tensors, or quantize them (`--quant`, llama-quantize's job).
//! Block-quantized tensors are copied as they are (requantizing is refused).

use super::{cast_op, gguf_files, ConvertOptions, Recipes};
use crate::checkpoint::{Checkpoint, ElementType};
use crate::error::{Error, Result};
use crate::export::gguf_meta;
use crate::plan::{Op, OutputLayout, Plan};
use crate::quant::gguf::QuantPlanner;
use formats::gguf::{self, GgmlType, GgufTensorSpec, MetadataValue};
use formats::Dtype;
use std::collections::HashMap;
use std::path::Path;

pub fn plan(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    let Checkpoint::Gguf(model) = input else {
        return Err(Error::Usage("expected a GGUF input".into()));
    };
    let sources = input.tensors();
    let mut metadata: Vec<(String, MetadataValue)> = model
        .metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .cloned()
        .collect();
    let file_type = match (opts.quant, opts.dtype) {
        (Some(q), _) => Some(q.file_type()),
        (None, Some(Dtype::F32)) => Some(gguf_meta::FILE_TYPE_F32),
        (None, Some(Dtype::BF16)) => Some(gguf_meta::FILE_TYPE_BF16),
        (None, Some(_)) => Some(gguf_meta::FILE_TYPE_F16),
        (None, None) => None,
    };
    if let Some(file_type) = file_type {
        set_key(
            &mut metadata,
            "general.file_type",
            MetadataValue::U32(file_type),
        );
    }
    let quantizer = match opts.quant {
        Some(q) => {
            set_key(
                &mut metadata,
                "general.quantization_version",
                MetadataValue::U32(2),
            );
            let path = input.display_path();
            let names: Vec<&str> = sources.iter().map(|t| t.name.as_str()).collect();
            let json = crate::import::hf_config::config_from_gguf_with_tensors(
                model.metadata(),
                &names,
                &path,
            )?;
            let cfg = crate::model::ModelConfig::from_json(&path, &json.to_string())?;
            let tied = !names.contains(&"output.weight");
            Some(QuantPlanner::new(q, &cfg, tied, opts.imatrix.as_deref())?)
        }
        None => None,
    };

    let mut recipes = Recipes::with_capacity(sources.len());
    let mut specs = Vec::with_capacity(sources.len());
    for (index, src) in sources.iter().enumerate() {
        let dims: Vec<u64> = src.shape.iter().rev().copied().collect();
        let (ggml_type, ops): (GgmlType, Vec<Op>) = match (src.ty, opts.dtype, &quantizer) {
            (ElementType::Dense(from), _, Some(qp)) if from.is_float() => {
                let path = &input.file_paths()[src.file];
                let tq = qp.tensor(&src.name, &dims, from, (path, &src.name))?;
                (tq.ggml_type, tq.ops)
            }
            (ElementType::Ggml(_), _, Some(_)) if src.shape.len() >= 2 => {
                return Err(crate::checkpoint::unsupported_type(
                    input,
                    src,
                    "requantized (convert from the F16/F32 GGUF or the Hugging Face model)",
                ))
            }
            (ElementType::Dense(from), Some(to), _) if src.shape.len() >= 2 && from.is_float() => (
                GgmlType::from_dtype(to).unwrap_or(GgmlType::F16),
                cast_op(from, to).into_iter().collect(),
            ),
            (ElementType::Dense(d), _, _) => (
                GgmlType::from_dtype(d).ok_or_else(|| {
                    crate::checkpoint::unsupported_type(input, src, "written to GGUF")
                })?,
                Vec::new(),
            ),
            (ElementType::Ggml(t), _, _) => (t, Vec::new()),
        };
        specs.push(GgufTensorSpec {
            name: src.name.clone(),
            dims,
            ggml_type,
        });
        recipes.insert(src.name.clone(), (index, ops));
    }

    let layouts = gguf::plan_split(&metadata, specs, &opts.split)?;
    let (dir, files) = gguf_files(layouts, output, &recipes, &HashMap::new(), &sources);
    Ok(Plan {
        job: "convert gguf -> gguf".into(),
        target: dir,
        layout: OutputLayout::Files,
        files,
        side_files: Vec::new(),
    })
}

/// Replaces `key`'s value, or appends it.
fn set_key(metadata: &mut Vec<(String, MetadataValue)>, key: &str, value: MetadataValue) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => metadata.push((key.to_string(), value)),
    }
}
