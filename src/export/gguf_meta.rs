//! GGUF `general.*` and `<arch>.*` metadata for the Llama family, as llama.cpp's
//! `convert_hf_to_gguf.py` writes it: same keys, same value types, same order.
//!
//! Order (convert_hf_to_gguf.py `ModelBase.prepare_metadata`, `TextModel.prepare_metadata`):
//! 1. `general.architecture` (string) — `GGUFWriter.__init__` calls `add_architecture()`;
//! 2. `general.type` = "model" (string) — `ModelBase.set_type`;
//! 3. `general.name` (string) — `Metadata.set_gguf_meta_model` (it also writes `general.basename`,
//!    `general.size_label`, `general.finetune`, ... guessed from the model card and directory name;
//!    those heuristics are not reproduced here);
//! 4. `TextModel.set_gguf_parameters`: `block_count`, `context_length`, `embedding_length`,
//!    `feed_forward_length`, `attention.head_count`, `attention.head_count_kv`, rope scaling keys,
//!    `rope.freq_base`, `attention.layer_norm_rms_epsilon`, `attention.key_length` +
//!    `attention.value_length` (only when `head_dim` is in the hparams), `general.file_type`;
//!    then `LlamaModel.set_gguf_parameters` appends `llama.vocab_size` and `llama.rope.dimension_count`
//!    (`Qwen2Model` appends nothing for a plain causal LM);
//! 5. `general.quantization_version` (u32 = 2) — end of `ModelBase.prepare_metadata`;
//! 6. tokenizer keys (`set_vocab`), appended by the tokenizer module, not here.
//!
//! Value types are those of `gguf-py/gguf/gguf_writer.py`: every count/length `add_uint32`,
//! `add_layer_norm_rms_eps`/`add_rope_freq_base`/`add_rope_scaling_factor` `add_float32`,
//! `add_rope_scaling_type` `add_string`, `add_file_type`/`add_quantization_version` `add_uint32`.

use formats::gguf::MetadataValue;
use serde_json::Value;

use crate::model::{Architecture, ModelConfig};

/// `LlamaFileType` (gguf-py/gguf/constants.py).
pub const FILE_TYPE_F32: u32 = 0;
pub const FILE_TYPE_F16: u32 = 1;
pub const FILE_TYPE_Q4_0: u32 = 2;
pub const FILE_TYPE_Q8_0: u32 = 7;
pub const FILE_TYPE_Q4_K_M: u32 = 15;
pub const FILE_TYPE_Q6_K: u32 = 18;
pub const FILE_TYPE_BF16: u32 = 32;

/// `GGML_QUANT_VERSION` (gguf-py/gguf/constants.py).
pub const GGML_QUANT_VERSION: u32 = 2;

/// Counts and lengths are written with `add_uint32`; [`ModelConfig::from_json`] rejects values that
/// do not fit, so the saturation here only affects hand-built configs.
fn u32v(v: u64) -> MetadataValue {
    MetadataValue::U32(u32::try_from(v).unwrap_or(u32::MAX))
}

fn s(v: &str) -> MetadataValue {
    MetadataValue::String(v.to_string())
}

/// The `rope_scaling` object of the original config.json (after `TextModel.__init__` mirrors
/// `type` into `rope_type`).
fn raw_rope(cfg: &ModelConfig) -> Option<&serde_json::Map<String, Value>> {
    cfg.raw.get("rope_scaling").and_then(Value::as_object)
}

fn raw_rope_f64(cfg: &ModelConfig, key: &str) -> Option<f64> {
    raw_rope(cfg)
        .and_then(|r| r.get(key))
        .and_then(Value::as_f64)
}

/// Rope scaling keys, `TextModel.set_gguf_parameters`: `linear` and `yarn` need a `factor`;
/// `llama3` writes nothing here (its `rope_freqs.weight` tensor comes from
/// [`crate::model::llama3_rope_freqs`]); `su`/`longrope` write only the type; others nothing.
fn rope_scaling_keys(cfg: &ModelConfig, arch: &str, out: &mut Vec<(String, MetadataValue)>) {
    let Some(rs) = &cfg.rope_scaling else { return };
    let factor = raw_rope_f64(cfg, "factor");
    let kind = rs.kind.as_str();
    match (kind, factor) {
        ("linear", Some(f)) => {
            out.push((format!("{arch}.rope.scaling.type"), s("linear")));
            out.push((
                format!("{arch}.rope.scaling.factor"),
                MetadataValue::F32(f as f32),
            ));
        }
        ("yarn", Some(f)) => {
            out.push((format!("{arch}.rope.scaling.type"), s("yarn")));
            out.push((
                format!("{arch}.rope.scaling.factor"),
                MetadataValue::F32(f as f32),
            ));
            // The converter indexes rope_params["original_max_position_embeddings"] (KeyError if absent).
            if let Some(orig) = rs.original_max_position_embeddings {
                out.push((
                    format!("{arch}.rope.scaling.original_context_length"),
                    u32v(orig),
                ));
            }
            let attn =
                raw_rope_f64(cfg, "attention_factor").or_else(|| raw_rope_f64(cfg, "attn_factor"));
            for (key, v) in [
                ("yarn_ext_factor", raw_rope_f64(cfg, "extrapolation_factor")),
                ("yarn_attn_factor", attn),
                ("yarn_beta_fast", raw_rope_f64(cfg, "beta_fast")),
                ("yarn_beta_slow", raw_rope_f64(cfg, "beta_slow")),
            ] {
                if let Some(v) = v {
                    out.push((
                        format!("{arch}.rope.scaling.{key}"),
                        MetadataValue::F32(v as f32),
                    ));
                }
            }
        }
        ("su" | "longrope", _) => {
            out.push((format!("{arch}.rope.scaling.type"), s("longrope")));
        }
        _ => {}
    }
}

/// Whether the converter's hparams hold `head_dim`, which makes `TextModel.set_gguf_parameters`
/// write `attention.key_length`/`value_length`. The converter loads hparams with
/// `AutoConfig.from_pretrained(...).to_dict()`; `LlamaConfig` and `MistralConfig` always set
/// `head_dim` (defaulting to hidden_size / heads), `Qwen2Config` has no such argument, so for Qwen2
/// only an explicit `head_dim` in config.json gets there.
fn hparams_have_head_dim(cfg: &ModelConfig) -> bool {
    match cfg.architecture {
        Architecture::Llama | Architecture::Mistral => true,
        Architecture::Qwen2 => cfg.raw.get("head_dim").is_some_and(|v| !v.is_null()),
    }
}

/// The parameter-count label the converter writes as `general.size_label` ("1.6M", "8.0B"):
/// gguf-py `utility.py` `model_weight_count_rounded_notation(n, min_digits=2)` (dense models).
pub fn size_label(parameters: u64) -> String {
    let n = parameters as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    // Python: len(str(round(scaled)).lstrip('0')), with round() rounding half to even.
    let whole = scaled.round_ties_even() as u64;
    let digits = if whole == 0 {
        0
    } else {
        whole.to_string().len()
    };
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

/// `general.name` as the converter derives it when no model card names the model: from
/// config.json's `_name_or_path` when it is a Hub id (at most one `/`), else from the folder
/// name; the part after the organisation, title-cased (gguf-py `metadata.py`
/// `Metadata.load` → `get_model_id_components`, `id_to_title`). The converter's further
/// guesses (`general.basename`, `finetune`, `version` split out of the name) are not made.
pub fn model_name_from_id(cfg: &ModelConfig, folder_name: &str) -> String {
    let id = cfg
        .raw
        .get("_name_or_path")
        .and_then(|v| v.as_str())
        .filter(|id| !id.is_empty() && id.matches('/').count() <= 1)
        .unwrap_or(folder_name);
    let full_name = id.rsplit('/').next().unwrap_or(id);
    id_to_title(full_name)
}

/// gguf-py `Metadata.id_to_title`: words split on `-` and spaces; an all-lowercase word is
/// title-cased unless it is a version (`v1.2`) or starts with a digit.
fn id_to_title(id: &str) -> String {
    id.replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let is_lower = w.chars().any(char::is_alphabetic)
                && !w.chars().any(|c| c.is_alphabetic() && !c.is_lowercase());
            let is_version = w.starts_with(|c: char| c.is_ascii_digit())
                || (w.starts_with('v')
                    && w.len() > 1
                    && w[1..]
                        .split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())));
            if is_lower && !is_version {
                python_title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.title()`: a letter is upper-cased after a non-letter, lower-cased otherwise.
fn python_title(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut after_letter = false;
    for c in word.chars() {
        if after_letter {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        after_letter = c.is_alphabetic();
    }
    out
}

/// The GGUF metadata for `cfg` in the converter's order, without tokenizer keys.
/// `general.architecture` is `llama` for Llama and Mistral, `qwen2` (with `qwen2.*` keys) for Qwen2.
pub fn llama_metadata(
    cfg: &ModelConfig,
    model_name: &str,
    parameter_count: u64,
    file_type: u32,
) -> Vec<(String, MetadataValue)> {
    let arch = cfg.architecture.gguf_arch();
    let mut out: Vec<(String, MetadataValue)> = Vec::with_capacity(24);
    let push =
        |out: &mut Vec<(String, MetadataValue)>, key: String, v: MetadataValue| out.push((key, v));

    push(&mut out, "general.architecture".into(), s(arch));
    push(&mut out, "general.type".into(), s("model"));
    push(&mut out, "general.name".into(), s(model_name));
    if parameter_count > 0 {
        push(
            &mut out,
            "general.size_label".into(),
            s(&size_label(parameter_count)),
        );
    }

    // TextModel.set_gguf_parameters
    push(
        &mut out,
        format!("{arch}.block_count"),
        u32v(cfg.num_hidden_layers),
    );
    push(
        &mut out,
        format!("{arch}.context_length"),
        u32v(cfg.max_position_embeddings),
    );
    push(
        &mut out,
        format!("{arch}.embedding_length"),
        u32v(cfg.hidden_size),
    );
    push(
        &mut out,
        format!("{arch}.feed_forward_length"),
        u32v(cfg.intermediate_size),
    );
    push(
        &mut out,
        format!("{arch}.attention.head_count"),
        u32v(cfg.num_attention_heads),
    );
    push(
        &mut out,
        format!("{arch}.attention.head_count_kv"),
        u32v(cfg.num_key_value_heads),
    );
    rope_scaling_keys(cfg, arch, &mut out);
    push(
        &mut out,
        format!("{arch}.rope.freq_base"),
        MetadataValue::F32(cfg.rope_theta as f32),
    );
    push(
        &mut out,
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        MetadataValue::F32(cfg.rms_norm_eps as f32),
    );
    if hparams_have_head_dim(cfg) {
        push(
            &mut out,
            format!("{arch}.attention.key_length"),
            u32v(cfg.head_dim),
        );
        push(
            &mut out,
            format!("{arch}.attention.value_length"),
            u32v(cfg.head_dim),
        );
    }
    push(
        &mut out,
        "general.file_type".into(),
        MetadataValue::U32(file_type),
    );

    // LlamaModel.set_gguf_parameters (not for Qwen2Model)
    if cfg.architecture.gguf_arch() == "llama" {
        push(&mut out, format!("{arch}.vocab_size"), u32v(cfg.vocab_size));
        push(
            &mut out,
            format!("{arch}.rope.dimension_count"),
            u32v(cfg.head_dim),
        );
    }

    // ModelBase.prepare_metadata, after set_gguf_parameters
    push(
        &mut out,
        "general.quantization_version".into(),
        MetadataValue::U32(GGML_QUANT_VERSION),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::gguf::ValueType;
    use std::path::Path;

    fn cfg(json: &str) -> ModelConfig {
        ModelConfig::from_json(Path::new("config.json"), json).unwrap()
    }

    fn listing(md: &[(String, MetadataValue)]) -> Vec<(&str, ValueType)> {
        md.iter()
            .map(|(k, v)| (k.as_str(), v.value_type()))
            .collect()
    }

    fn get<'a>(md: &'a [(String, MetadataValue)], key: &str) -> &'a MetadataValue {
        &md.iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key}"))
            .1
    }

    #[test]
    fn llama_keys_types_and_order() {
        let c = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":14336,
            "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
            "max_position_embeddings":131072,"rms_norm_eps":1e-05,"rope_theta":500000.0,
            "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
        );
        let md = llama_metadata(&c, "Meta Llama 3.1 8B", 0, FILE_TYPE_BF16);
        use ValueType::*;
        // Derived from convert_hf_to_gguf.py (prepare_metadata, TextModel/LlamaModel.set_gguf_parameters)
        // and gguf_writer.py add_* value types.
        let expected: Vec<(&str, ValueType)> = vec![
            ("general.architecture", String),
            ("general.type", String),
            ("general.name", String),
            ("llama.block_count", U32),
            ("llama.context_length", U32),
            ("llama.embedding_length", U32),
            ("llama.feed_forward_length", U32),
            ("llama.attention.head_count", U32),
            ("llama.attention.head_count_kv", U32),
            ("llama.rope.freq_base", F32),
            ("llama.attention.layer_norm_rms_epsilon", F32),
            ("llama.attention.key_length", U32),
            ("llama.attention.value_length", U32),
            ("general.file_type", U32),
            ("llama.vocab_size", U32),
            ("llama.rope.dimension_count", U32),
            ("general.quantization_version", U32),
        ];
        assert_eq!(listing(&md), expected);
        assert_eq!(get(&md, "general.architecture"), &s("llama"));
        assert_eq!(get(&md, "general.type"), &s("model"));
        assert_eq!(get(&md, "general.name"), &s("Meta Llama 3.1 8B"));
        assert_eq!(get(&md, "llama.block_count"), &MetadataValue::U32(32));
        assert_eq!(
            get(&md, "llama.context_length"),
            &MetadataValue::U32(131072)
        );
        assert_eq!(
            get(&md, "llama.attention.head_count_kv"),
            &MetadataValue::U32(8)
        );
        assert_eq!(
            get(&md, "llama.rope.freq_base"),
            &MetadataValue::F32(500000.0)
        );
        assert_eq!(
            get(&md, "llama.attention.layer_norm_rms_epsilon"),
            &MetadataValue::F32(1e-5)
        );
        assert_eq!(
            get(&md, "llama.rope.dimension_count"),
            &MetadataValue::U32(128)
        );
        assert_eq!(get(&md, "llama.vocab_size"), &MetadataValue::U32(128256));
        assert_eq!(get(&md, "general.file_type"), &MetadataValue::U32(32));
        assert_eq!(
            get(&md, "general.quantization_version"),
            &MetadataValue::U32(2)
        );
    }

    #[test]
    fn names_are_title_cased_like_gguf_py() {
        let c = cfg(r#"{"architectures":["LlamaForCausalLM"]}"#);
        assert_eq!(model_name_from_id(&c, "llama-gqa"), "Llama Gqa");
        assert_eq!(model_name_from_id(&c, "qwen2-bias"), "Qwen2 Bias");
        assert_eq!(model_name_from_id(&c, "my-model-v1.5"), "My Model v1.5");
        assert_eq!(model_name_from_id(&c, "Llama-3.2-1B"), "Llama 3.2 1B");
        assert_eq!(python_title("abc2def"), "Abc2Def");
        let hub = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"_name_or_path":"meta-llama/Llama-2-7b-hf"}"#,
        );
        assert_eq!(model_name_from_id(&hub, "whatever"), "Llama 2 7b Hf");
        let local = cfg(r#"{"architectures":["LlamaForCausalLM"],"_name_or_path":"/home/x/ckpt"}"#);
        assert_eq!(model_name_from_id(&local, "folder"), "Folder");
    }

    #[test]
    fn size_labels_match_gguf_py() {
        // Values from the converter's outputs on our fixtures and well-known models.
        assert_eq!(size_label(1_627_392), "1.6M");
        assert_eq!(size_label(617_216), "617K");
        assert_eq!(size_label(8_030_261_248), "8.0B");
        assert_eq!(size_label(494_032_768), "494M");
        assert_eq!(size_label(70_553_706_496), "71B");
        assert_eq!(size_label(999), "1.0K");
    }

    #[test]
    fn mistral_is_llama_in_gguf() {
        let md = llama_metadata(
            &cfg(r#"{"architectures":["MistralForCausalLM"]}"#),
            "m",
            0,
            FILE_TYPE_F16,
        );
        assert_eq!(get(&md, "general.architecture"), &s("llama"));
        assert_eq!(
            get(&md, "llama.attention.head_count_kv"),
            &MetadataValue::U32(8)
        );
        assert!(md
            .iter()
            .all(|(k, _)| k.starts_with("general.") || k.starts_with("llama.")));
    }

    #[test]
    fn qwen2_keys_types_and_order() {
        let c = cfg(
            r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
            "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,
            "max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
            "tie_word_embeddings":true}"#,
        );
        let md = llama_metadata(&c, "Qwen2.5 0.5B", 0, FILE_TYPE_F16);
        use ValueType::*;
        let expected: Vec<(&str, ValueType)> = vec![
            ("general.architecture", String),
            ("general.type", String),
            ("general.name", String),
            ("qwen2.block_count", U32),
            ("qwen2.context_length", U32),
            ("qwen2.embedding_length", U32),
            ("qwen2.feed_forward_length", U32),
            ("qwen2.attention.head_count", U32),
            ("qwen2.attention.head_count_kv", U32),
            ("qwen2.rope.freq_base", F32),
            ("qwen2.attention.layer_norm_rms_epsilon", F32),
            ("general.file_type", U32),
            ("general.quantization_version", U32),
        ];
        assert_eq!(listing(&md), expected);
        assert_eq!(get(&md, "general.architecture"), &s("qwen2"));
        assert_eq!(
            get(&md, "qwen2.rope.freq_base"),
            &MetadataValue::F32(1_000_000.0)
        );
    }

    #[test]
    fn rope_scaling_linear_and_yarn() {
        let c = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"rope_scaling":{"type":"linear","factor":4.0}}"#,
        );
        let md = llama_metadata(&c, "x", 0, FILE_TYPE_F32);
        let keys: Vec<_> = md.iter().map(|(k, _)| k.as_str()).collect();
        let i = keys
            .iter()
            .position(|k| *k == "llama.rope.scaling.type")
            .unwrap();
        assert_eq!(keys[i - 1], "llama.attention.head_count_kv");
        assert_eq!(keys[i + 1], "llama.rope.scaling.factor");
        assert_eq!(keys[i + 2], "llama.rope.freq_base");
        assert_eq!(get(&md, "llama.rope.scaling.type"), &s("linear"));
        assert_eq!(
            get(&md, "llama.rope.scaling.factor"),
            &MetadataValue::F32(4.0)
        );

        let q = cfg(
            r#"{"architectures":["Qwen2ForCausalLM"],"rope_scaling":{"type":"yarn","factor":4.0,
            "original_max_position_embeddings":32768}}"#,
        );
        let md = llama_metadata(&q, "x", 0, FILE_TYPE_F32);
        assert_eq!(get(&md, "qwen2.rope.scaling.type"), &s("yarn"));
        assert_eq!(
            get(&md, "qwen2.rope.scaling.original_context_length"),
            &MetadataValue::U32(32768)
        );

        let l3 = cfg(
            r#"{"architectures":["LlamaForCausalLM"],"rope_scaling":{"rope_type":"llama3","factor":8.0}}"#,
        );
        let md = llama_metadata(&l3, "x", 0, FILE_TYPE_F32);
        assert!(md.iter().all(|(k, _)| !k.contains("scaling")));
    }

    #[test]
    fn qwen2_with_explicit_head_dim_writes_key_length() {
        let c = cfg(r#"{"architectures":["Qwen2ForCausalLM"],"head_dim":128}"#);
        let md = llama_metadata(&c, "x", 0, FILE_TYPE_F32);
        assert_eq!(
            get(&md, "qwen2.attention.key_length"),
            &MetadataValue::U32(128)
        );
        assert_eq!(
            get(&md, "qwen2.attention.value_length"),
            &MetadataValue::U32(128)
        );
    }
}
