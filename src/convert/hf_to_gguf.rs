//! Hugging Face safetensors → GGUF, as llama.cpp's `convert_hf_to_gguf.py` does it: llama.cpp
//! tensor names, q/k rows permuted for llama.cpp's rotary layout, 1-D tensors in F32, the
//! `general.*`/`<arch>.*` metadata and the tokenizer as `tokenizer.ggml.*`.

use super::{cast_op, dense_dtype, folder_name, gguf_files, weight_dtype};
use super::{ConvertOptions, Recipes};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::export::gguf_meta;
use crate::model::{self, ModelConfig};
use crate::plan::{Op, OutputLayout, Plan};
use crate::quant::gguf::QuantPlanner;
use formats::gguf::{self, GgmlType, GgufTensorSpec, MetadataValue};
use formats::Dtype;
use std::collections::HashMap;
use std::path::Path;

pub fn plan(input: &Checkpoint, output: &Path, opts: &ConvertOptions) -> Result<Plan> {
    let root = input.root();
    let cfg = ModelConfig::load(&root)?;
    let sources = input.tensors();
    check_against_config(input, &cfg, &sources)?;

    let out_dtype = match opts.dtype {
        Some(d) => d,
        None => match weight_dtype(&sources) {
            Some(d @ (Dtype::F32 | Dtype::F16 | Dtype::BF16)) => d,
            _ => Dtype::F16,
        },
    };
    let file_type = match (opts.quant, out_dtype) {
        (Some(q), _) => q.file_type(),
        (None, Dtype::F32) => gguf_meta::FILE_TYPE_F32,
        (None, Dtype::BF16) => gguf_meta::FILE_TYPE_BF16,
        (None, _) => gguf_meta::FILE_TYPE_F16,
    };
    let quantizer = match opts.quant {
        Some(q) => {
            // llama.cpp treats the model as tied when the file has no output.weight.
            let tied = !sources.iter().any(|t| {
                !model::is_skipped_hf_tensor(&t.name)
                    && model::hf_to_gguf_name(&t.name).as_deref() == Some("output.weight")
            });
            Some(QuantPlanner::new(q, &cfg, tied, opts.imatrix.as_deref())?)
        }
        None => None,
    };
    // gguf-py counts the parameters of every tensor it writes (`get_total_parameter_count`).
    let parameters = sources
        .iter()
        .filter(|t| !model::is_skipped_hf_tensor(&t.name))
        .map(|t| t.numel())
        .sum::<u64>()
        + model::llama3_rope_freqs(&cfg).map_or(0, |f| f.len() as u64);
    let mut metadata = gguf_meta::llama_metadata(
        &cfg,
        &gguf_model_name(input, &cfg, opts),
        parameters,
        file_type,
    );
    if cfg.architecture.permutes_qk() {
        // conversion/llama.py `LlamaModel.set_vocab`: tokenizer_config.json's add_prefix_space,
        // when set, is written before the vocabulary.
        if let Some(flag) = add_prefix_space(&root)? {
            metadata.push((
                "tokenizer.ggml.add_space_prefix".into(),
                MetadataValue::Bool(flag),
            ));
        }
    }
    let vocab = crate::export::tokenizer::vocab_from_hf(&root, cfg.vocab_size)?;
    metadata.extend(vocab.metadata);

    let mut specs = Vec::with_capacity(sources.len() + 1);
    let mut recipes = Recipes::new();
    let mut inline = HashMap::new();
    if let Some(freqs) = model::llama3_rope_freqs(&cfg) {
        specs.push(GgufTensorSpec {
            name: model::ROPE_FREQS_GGUF_NAME.into(),
            dims: vec![freqs.len() as u64],
            ggml_type: GgmlType::F32,
        });
        let bytes = freqs.iter().flat_map(|f| f.to_le_bytes()).collect();
        inline.insert(model::ROPE_FREQS_GGUF_NAME.to_string(), bytes);
    }
    for (index, src) in sources.iter().enumerate() {
        if model::is_skipped_hf_tensor(&src.name) {
            continue;
        }
        let name = model::hf_to_gguf_name(&src.name).ok_or_else(|| {
            Error::tensor(
                &input.file_paths()[src.file],
                &src.name,
                "no llama.cpp name for this tensor",
            )
        })?;
        let from = dense_dtype(input, src, "converted to GGUF")?;
        let to = if model::gguf_keeps_f32(&name, src.shape.len()) {
            Dtype::F32
        } else {
            out_dtype
        };
        let mut ops = Vec::new();
        if let Some((role, _)) = model::role_of_hf_name(&src.name) {
            if let Some(n_head) = model::qk_permutation_heads(&cfg, role) {
                ops.push(Op::PermuteQk {
                    n_head: n_head as u64,
                    inverse: false,
                });
            }
        }
        let dims: Vec<u64> = src.shape.iter().rev().copied().collect();
        let ggml_type = match &quantizer {
            Some(qp) => {
                let path = &input.file_paths()[src.file];
                let tq = qp.tensor(&name, &dims, from, (path, &src.name))?;
                ops.extend(tq.ops);
                tq.ggml_type
            }
            None => {
                ops.extend(cast_op(from, to));
                GgmlType::from_dtype(to).unwrap_or(GgmlType::F32)
            }
        };
        specs.push(GgufTensorSpec {
            name: name.clone(),
            dims,
            ggml_type,
        });
        recipes.insert(name, (index, ops));
    }

    let layouts = gguf::plan_split(&metadata, specs, &opts.split)?;
    let (dir, files) = gguf_files(layouts, output, &recipes, &inline, &sources);
    Ok(Plan {
        job: "convert safetensors -> gguf".into(),
        target: dir,
        layout: OutputLayout::Files,
        files,
        side_files: Vec::new(),
    })
}

/// Every tensor the config implies must be present with its shape, and nothing unknown.
pub(super) fn check_against_config(
    input: &Checkpoint,
    cfg: &ModelConfig,
    sources: &[crate::checkpoint::SourceTensor],
) -> Result<()> {
    let present: HashMap<&str, &crate::checkpoint::SourceTensor> =
        sources.iter().map(|t| (t.name.as_str(), t)).collect();
    let path = input.display_path();
    for expected in cfg.expected_tensors() {
        match present.get(expected.name.as_str()) {
            None => {
                return Err(Error::tensor(
                    &path,
                    &expected.name,
                    "missing (config.json implies it)",
                ))
            }
            Some(t) if t.shape != expected.shape => {
                return Err(Error::tensor(
                    &input.file_paths()[t.file],
                    &t.name,
                    format!(
                        "shape {:?} does not match config.json (expected {:?})",
                        t.shape, expected.shape
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `add_prefix_space` from tokenizer_config.json, when present and not null.
fn add_prefix_space(root: &Path) -> Result<Option<bool>> {
    let path = root.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| formats::FormatError::io(&path, "read", e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::tokenizer(&path, format!("invalid JSON: {e}")))?;
    Ok(json.get("add_prefix_space").and_then(|v| v.as_bool()))
}

/// `--name`, else the name llama.cpp's converter would derive.
fn gguf_model_name(input: &Checkpoint, cfg: &ModelConfig, opts: &ConvertOptions) -> String {
    opts.model_name
        .clone()
        .unwrap_or_else(|| gguf_meta::model_name_from_id(cfg, &folder_name(input)))
}
