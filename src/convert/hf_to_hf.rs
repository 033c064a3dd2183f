//! Hugging Face → Hugging Face: dtype change and resharding by size. Model-agnostic (any
//! safetensors checkpoint works, with or without config.json); small files beside the
//! weights (config, tokenizer, generation config) are carried over.

use super::gguf_to_hf::torch_dtype_name;
use super::{cast_op, safetensors_files, ConvertOptions, Recipes};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::plan::{OutputLayout, Plan, SideFile};
use formats::safetensors::{self, TensorSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// Files copied from the input folder when present.
pub(crate) const CARRIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
];

/// The [`CARRIED_FILES`] present in `root`, as side files of a plan.
pub(crate) fn carried_files(root: &Path) -> Result<Vec<SideFile>> {
    let mut files = Vec::new();
    for name in CARRIED_FILES {
        let path = root.join(name);
        if path.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| formats::FormatError::io(&path, "read", e))?;
            files.push(SideFile {
                name: (*name).into(),
                bytes,
            });
        }
    }
    Ok(files)
}

pub fn plan(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    let Checkpoint::Safetensors(model) = input else {
        return Err(Error::Usage("expected a safetensors input".into()));
    };
    let sources = input.tensors();
    let mut specs = Vec::with_capacity(sources.len());
    let mut recipes = Recipes::with_capacity(sources.len());
    for (index, src) in sources.iter().enumerate() {
        // A safetensors input only holds dense tensors.
        let dtype = src.ty.dense().unwrap_or(formats::Dtype::U8);
        // Only floating-point tensors change dtype; integer and bool tensors are copied.
        let to = match opts.dtype {
            Some(to) if dtype.is_float() => to,
            _ => dtype,
        };
        specs.push(TensorSpec {
            name: src.name.clone(),
            dtype: to,
            shape: src.shape.clone(),
        });
        recipes.insert(
            src.name.clone(),
            (index, cast_op(dtype, to).into_iter().collect()),
        );
    }
    let metadata: Option<BTreeMap<String, String>> = model.files()[0].header().metadata.clone();
    let shards = safetensors::plan_shards(specs, opts.max_shard_size, metadata.as_ref())?;
    let files = safetensors_files(shards.files, &recipes, &sources);

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
    side_files.extend(carried_files(&root)?);
    Ok(Plan {
        job: "convert safetensors -> safetensors".into(),
        target: output.to_path_buf(),
        layout: OutputLayout::Folder,
        files,
        side_files,
    })
}
