//! Hugging Face → Hugging Face: dtype change and resharding by size. Model-agnostic (any
//! safetensors checkpoint works, with or without config.json); small files beside the
//! weights (config, tokenizer, generation config) are carried over.

use super::gguf_to_hf::torch_dtype_name;
use super::{cast_op, from_source, ConvertOptions};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::plan::{Op, OutputLayout, Plan, PlannedFile, SideFile};
use formats::safetensors::{self, TensorSpec};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Files copied from the input folder when present.
const CARRIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
];

pub fn plan(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    let Checkpoint::Safetensors(model) = input else {
        return Err(Error::Usage("expected a safetensors input".into()));
    };
    let sources = input.tensors();
    let mut made = Vec::with_capacity(sources.len());
    for (index, src) in sources.iter().enumerate() {
        let dtype = src.ty.dense().unwrap_or(formats::Dtype::U8);
        // Only floating-point tensors change dtype; integer and bool tensors are copied.
        let to = match opts.dtype {
            Some(to) if dtype.is_float() => to,
            _ => dtype,
        };
        made.push((
            index,
            to,
            cast_op(dtype, to).into_iter().collect::<Vec<Op>>(),
        ));
    }
    let specs = made
        .iter()
        .map(|(index, to, _)| TensorSpec {
            name: sources[*index].name.clone(),
            dtype: *to,
            shape: sources[*index].shape.clone(),
        })
        .collect();
    let metadata: Option<BTreeMap<String, String>> = model.files()[0].header().metadata.clone();
    let shards = safetensors::plan_shards(specs, opts.max_shard_size, metadata.as_ref())?;
    let by_name: HashMap<&str, &(usize, formats::Dtype, Vec<Op>)> = made
        .iter()
        .map(|m| (sources[m.0].name.as_str(), m))
        .collect();
    let files = shards
        .files
        .into_iter()
        .map(|(name, layout)| PlannedFile {
            name,
            size: layout.total_size,
            tensors: layout
                .tensors
                .iter()
                .map(|t| {
                    let (index, to, ops) = by_name[t.spec.name.as_str()];
                    from_source(
                        &t.spec.name,
                        to.name().into(),
                        t.spec.shape.clone(),
                        t.start,
                        t.len,
                        *index,
                        &sources[*index],
                        ops.clone(),
                    )
                })
                .collect(),
            header: layout.header,
        })
        .collect();

    let root = input.root();
    let mut side_files = Vec::new();
    if let Some(index) = shards.index_json {
        side_files.push(SideFile {
            name: "model.safetensors.index.json".into(),
            bytes: index,
        });
    }
    let config_path = root.join("config.json");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| formats::FormatError::io(&config_path, "read", e))?;
        let mut config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&config_path, format!("invalid JSON: {e}")))?;
        if let (Some(to), Some(obj)) = (opts.dtype, config.as_object_mut()) {
            obj.insert(
                "torch_dtype".into(),
                serde_json::Value::String(torch_dtype_name(to).into()),
            );
        }
        side_files.push(SideFile::json("config.json", &config));
    }
    for name in CARRIED_FILES {
        let path = root.join(name);
        if path.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| formats::FormatError::io(&path, "read", e))?;
            side_files.push(SideFile {
                name: (*name).into(),
                bytes,
            });
        }
    }
    Ok(Plan {
        job: "convert safetensors -> safetensors".into(),
        target: output.to_path_buf(),
        layout: OutputLayout::Folder,
        files,
        side_files,
    })
}
