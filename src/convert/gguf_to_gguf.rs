//! GGUF → GGUF: merge or re-split a set (as llama.cpp's gguf-split does) and optionally change
//! the dtype of dense 2-D tensors. Block-quantized tensors are copied as they are.

use super::{cast_op, gguf_files, ConvertOptions, Recipes};
use crate::checkpoint::{Checkpoint, ElementType};
use crate::error::{Error, Result};
use crate::export::gguf_meta;
use crate::plan::{Op, OutputLayout, Plan};
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
    if let Some(to) = opts.dtype {
        let file_type = match to {
            Dtype::F32 => gguf_meta::FILE_TYPE_F32,
            Dtype::BF16 => gguf_meta::FILE_TYPE_BF16,
            _ => gguf_meta::FILE_TYPE_F16,
        };
        for (k, v) in metadata.iter_mut() {
            if k == "general.file_type" {
                *v = MetadataValue::U32(file_type);
            }
        }
    }

    let mut recipes = Recipes::with_capacity(sources.len());
    let mut specs = Vec::with_capacity(sources.len());
    for (index, src) in sources.iter().enumerate() {
        let (ggml_type, ops): (GgmlType, Vec<Op>) = match (src.ty, opts.dtype) {
            (ElementType::Dense(from), Some(to)) if src.shape.len() >= 2 && from.is_float() => (
                GgmlType::from_dtype(to).unwrap_or(GgmlType::F16),
                cast_op(from, to).into_iter().collect(),
            ),
            (ElementType::Dense(d), _) => (
                GgmlType::from_dtype(d).ok_or_else(|| {
                    crate::checkpoint::unsupported_type(input, src, "written to GGUF")
                })?,
                Vec::new(),
            ),
            (ElementType::Ggml(t), _) => (t, Vec::new()),
        };
        specs.push(GgufTensorSpec {
            name: src.name.clone(),
            dims: src.shape.iter().rev().copied().collect(),
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
