//! Rebuilding an HF `config.json` from GGUF metadata: the inverse of
//! [`crate::export::gguf_meta::llama_metadata`], so HF → GGUF → HF gives a config that
//! [`crate::model::ModelConfig::from_json`] reads back with the same sizes, heads, eps, rope theta
//! and linear/yarn rope scaling.
//!
//! What cannot round-trip through GGUF metadata alone:
//! - Mistral: the converter writes Mistral as `llama`, so it comes back as `LlamaForCausalLM`
//!   (the same network; Mistral's `sliding_window` is not in GGUF and llama.cpp ignores it).
//! - `tie_word_embeddings`: decided by whether the file has an `output.weight` tensor; use
//!   [`config_from_gguf_with_tensors`]. [`config_from_gguf`] writes `false`, transformers' default.
//! - llama3 rope scaling: the converter stores it only as the `rope_freqs.weight` tensor, so
//!   `rope_scaling` comes back `null` (the factors are not recoverable from metadata).
//! - `rms_norm_eps`, `rope_theta` and rope factors pass through f32; we write the shortest decimal
//!   that reads back as the same f32 (1e-05 stays 1e-05), which equals the original for every
//!   value written with ≤ 7 significant digits.
//! - `torch_dtype` only for F32/F16/BF16 files; `bos_token_id`/`eos_token_id` only when the tokenizer
//!   keys are present (a single eos id; Llama 3.1's list keeps its first entry).
//! - Anything else in the original config (`initializer_range`, `use_cache`, `_name_or_path`, ...).

use std::path::Path;

use formats::gguf::MetadataValue;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

struct Meta<'a> {
    items: &'a [(String, MetadataValue)],
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::config(
                    self.path,
                    format!("GGUF key `{key}` must be an unsigned integer, found {v:?}"),
                )
            }),
        }
    }

    fn u64_req(&self, key: &str) -> Result<u64> {
        self.u64_opt(key)?
            .ok_or_else(|| Error::config(self.path, format!("GGUF key `{key}` is missing")))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetadataValue::F32(v)) => Ok(Some(f32_to_decimal(*v))),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::config(
                    self.path,
                    format!("GGUF key `{key}` must be a number, found {v:?}"),
                )
            }),
        }
    }

    fn f64_req(&self, key: &str) -> Result<f64> {
        self.f64_opt(key)?
            .ok_or_else(|| Error::config(self.path, format!("GGUF key `{key}` is missing")))
    }
}

/// The f64 nearest the shortest decimal that reads back as `v` (so 1e-5f32 becomes 1e-5, not
/// 9.999999747378752e-06).
fn f32_to_decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// An HF `config.json` for the GGUF's architecture (`llama` → `LlamaForCausalLM`, `qwen2` →
/// `Qwen2ForCausalLM`). `path` is used only in error messages. See the module docs for what does
/// not round-trip; `tie_word_embeddings` is written as `false`.
pub fn config_from_gguf(metadata: &[(String, MetadataValue)], path: &Path) -> Result<Value> {
    build(metadata, None, path)
}

/// As [`config_from_gguf`], with `tie_word_embeddings` decided from the tensor names: tied when there
/// is no `output.weight` (llama.cpp then uses `token_embd.weight` as the output matrix).
pub fn config_from_gguf_with_tensors(
    metadata: &[(String, MetadataValue)],
    tensor_names: &[&str],
    path: &Path,
) -> Result<Value> {
    let tied = !tensor_names.contains(&"output.weight");
    build(metadata, Some(tied), path)
}

fn build(metadata: &[(String, MetadataValue)], tied: Option<bool>, path: &Path) -> Result<Value> {
    let m = Meta {
        items: metadata,
        path,
    };
    let arch = match m.get("general.architecture") {
        Some(MetadataValue::String(s)) => s.as_str(),
        Some(v) => {
            return Err(Error::config(
                path,
                format!("GGUF key `general.architecture` must be a string, found {v:?}"),
            ))
        }
        None => {
            return Err(Error::config(
                path,
                "GGUF key `general.architecture` is missing",
            ))
        }
    };
    let (class, model_type) = match arch {
        "llama" => ("LlamaForCausalLM", "llama"),
        "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
        other => {
            return Err(Error::UnknownArchitecture {
                path: path.to_path_buf(),
                architecture: other.to_string(),
                supported: "llama, qwen2".to_string(),
            })
        }
    };
    let k = |suffix: &str| format!("{arch}.{suffix}");

    let hidden = m.u64_req(&k("embedding_length"))?;
    let ff = m.u64_req(&k("feed_forward_length"))?;
    let layers = m.u64_req(&k("block_count"))?;
    let heads = m.u64_req(&k("attention.head_count"))?;
    if heads == 0 {
        return Err(Error::config(
            path,
            format!("GGUF key `{}` is 0", k("attention.head_count")),
        ));
    }
    let kv_heads = m.u64_opt(&k("attention.head_count_kv"))?.unwrap_or(heads);
    let ctx = m.u64_req(&k("context_length"))?;
    let eps = m.f64_req(&k("attention.layer_norm_rms_epsilon"))?;
    // llama.cpp's default freq_base when the key is absent is 10000, transformers' too.
    let theta = m.f64_opt(&k("rope.freq_base"))?.unwrap_or(10000.0);
    let head_dim = match m.u64_opt(&k("attention.key_length"))? {
        Some(v) => Some(v),
        None => m.u64_opt(&k("rope.dimension_count"))?,
    };
    let vocab = match m.u64_opt(&k("vocab_size"))? {
        Some(v) => v,
        // qwen2 has no vocab_size key; the converter pads the token list to vocab_size.
        None => match m
            .get("tokenizer.ggml.tokens")
            .and_then(MetadataValue::as_array)
        {
            Some(tokens) => tokens.len() as u64,
            None => {
                return Err(Error::config(
                    path,
                    format!(
                        "GGUF has neither `{}` nor `tokenizer.ggml.tokens`",
                        k("vocab_size")
                    ),
                ))
            }
        },
    };

    let rope_scaling = match m
        .get(&k("rope.scaling.type"))
        .and_then(MetadataValue::as_str)
    {
        Some("linear") => {
            let factor = m.f64_req(&k("rope.scaling.factor"))?;
            json!({"rope_type": "linear", "factor": number(factor)})
        }
        Some("yarn") => {
            let mut o = Map::new();
            o.insert("rope_type".into(), json!("yarn"));
            o.insert(
                "factor".into(),
                number(m.f64_req(&k("rope.scaling.factor"))?),
            );
            if let Some(orig) = m.u64_opt(&k("rope.scaling.original_context_length"))? {
                o.insert("original_max_position_embeddings".into(), json!(orig));
            }
            for (gguf, hf) in [
                ("yarn_ext_factor", "extrapolation_factor"),
                ("yarn_attn_factor", "attention_factor"),
                ("yarn_beta_fast", "beta_fast"),
                ("yarn_beta_slow", "beta_slow"),
            ] {
                if let Some(v) = m.f64_opt(&k(&format!("rope.scaling.{gguf}")))? {
                    o.insert(hf.into(), number(v));
                }
            }
            Value::Object(o)
        }
        _ => Value::Null,
    };

    let torch_dtype = match m.u64_opt("general.file_type")? {
        Some(0) => Some("float32"),
        Some(1) => Some("float16"),
        Some(32) => Some("bfloat16"),
        _ => None,
    };

    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(ff));
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    if let Some(hd) = head_dim {
        // Qwen2Config has no head_dim argument; write it only when it is not the implied one.
        if arch == "llama" || hd * heads != hidden {
            c.insert("head_dim".into(), json!(hd));
        }
    }
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("max_position_embeddings".into(), json!(ctx));
    c.insert("rms_norm_eps".into(), number(eps));
    c.insert("rope_theta".into(), number(theta));
    c.insert("rope_scaling".into(), rope_scaling);
    c.insert("hidden_act".into(), json!("silu"));
    if arch == "llama" {
        c.insert("attention_bias".into(), json!(false));
        c.insert("mlp_bias".into(), json!(false));
    }
    c.insert("tie_word_embeddings".into(), json!(tied.unwrap_or(false)));
    for (gguf, hf) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        if let Some(id) = m.u64_opt(gguf)? {
            c.insert(hf.into(), json!(id));
        }
    }
    if let Some(dt) = torch_dtype {
        c.insert("torch_dtype".into(), json!(dt));
    }
    Ok(Value::Object(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::gguf_meta::{llama_metadata, FILE_TYPE_BF16, FILE_TYPE_F16, FILE_TYPE_Q8_0};
    use crate::model::{Architecture, ModelConfig};

    fn cfg(json: &str) -> ModelConfig {
        ModelConfig::from_json(Path::new("config.json"), json).unwrap()
    }

    /// The fields GGUF carries must come back equal.
    fn assert_equivalent(a: &ModelConfig, b: &ModelConfig) {
        assert_eq!(a.architecture.gguf_arch(), b.architecture.gguf_arch());
        assert_eq!(a.hidden_size, b.hidden_size);
        assert_eq!(a.intermediate_size, b.intermediate_size);
        assert_eq!(a.num_hidden_layers, b.num_hidden_layers);
        assert_eq!(a.num_attention_heads, b.num_attention_heads);
        assert_eq!(a.num_key_value_heads, b.num_key_value_heads);
        assert_eq!(a.head_dim, b.head_dim);
        assert_eq!(a.vocab_size, b.vocab_size);
        assert_eq!(a.max_position_embeddings, b.max_position_embeddings);
        assert_eq!(a.rms_norm_eps, b.rms_norm_eps);
        assert_eq!(a.rope_theta, b.rope_theta);
        assert_eq!(a.attention_bias, b.attention_bias);
        assert_eq!(a.expected_tensors(), b.expected_tensors());
    }

    fn round_trip(json: &str, ft: u32, tensors: &[&str]) -> (ModelConfig, ModelConfig) {
        let a = cfg(json);
        let md = llama_metadata(&a, "m", 0, ft);
        let v = config_from_gguf_with_tensors(&md, tensors, Path::new("m.gguf")).unwrap();
        let b = cfg(&v.to_string());
        (a, b)
    }

    #[test]
    fn llama_round_trip() {
        let (a, b) = round_trip(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":5632,
            "num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"vocab_size":32000,
            "max_position_embeddings":2048,"rms_norm_eps":1e-05,"rope_theta":10000.0,
            "rope_scaling":{"type":"linear","factor":2.0},"torch_dtype":"bfloat16"}"#,
            FILE_TYPE_BF16,
            &["token_embd.weight", "output.weight"],
        );
        assert_equivalent(&a, &b);
        assert_eq!(
            b.rope_scaling.as_ref().map(|r| (r.kind.as_str(), r.factor)),
            Some(("linear", 2.0))
        );
        assert_eq!(b.torch_dtype.as_deref(), Some("bfloat16"));
        assert!(!b.tie_word_embeddings);
        assert_eq!(b.rms_norm_eps, 1e-5);
    }

    #[test]
    fn mistral_comes_back_as_llama_with_explicit_head_dim() {
        let (a, b) = round_trip(
            r#"{"architectures":["MistralForCausalLM"],"hidden_size":5120,"head_dim":128,
            "num_hidden_layers":2,"vocab_size":131072,"rope_theta":1000000.0}"#,
            FILE_TYPE_Q8_0,
            &["output.weight"],
        );
        assert_equivalent(&a, &b);
        assert_eq!(b.architecture, Architecture::Llama);
        assert_eq!(b.torch_dtype, None);
    }

    #[test]
    fn qwen2_round_trip_uses_token_count_and_tensors() {
        let a = cfg(
            r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
            "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,
            "max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
            "tie_word_embeddings":true,"rope_scaling":{"type":"yarn","factor":4.0,"original_max_position_embeddings":32768}}"#,
        );
        let mut md = llama_metadata(&a, "q", 0, FILE_TYPE_F16);
        let tokens = vec![MetadataValue::String("t".into()); 151936];
        md.push((
            "tokenizer.ggml.tokens".into(),
            MetadataValue::Array(formats::gguf::ValueType::String, tokens),
        ));
        md.push((
            "tokenizer.ggml.eos_token_id".into(),
            MetadataValue::U32(151643),
        ));
        let v = config_from_gguf_with_tensors(&md, &["token_embd.weight"], Path::new("q.gguf"))
            .unwrap();
        assert!(v.get("head_dim").is_none());
        let b = cfg(&v.to_string());
        assert_equivalent(&a, &b);
        assert!(b.tie_word_embeddings);
        assert_eq!(b.eos_token_id, Some(151643));
        let rs = b.rope_scaling.unwrap();
        assert_eq!(
            (
                rs.kind.as_str(),
                rs.factor,
                rs.original_max_position_embeddings
            ),
            ("yarn", 4.0, Some(32768))
        );
    }

    #[test]
    fn errors() {
        let p = Path::new("x.gguf");
        assert!(matches!(
            config_from_gguf(&[], p),
            Err(Error::Config { .. })
        ));
        let gpt2 = vec![(
            "general.architecture".to_string(),
            MetadataValue::String("gpt2".into()),
        )];
        assert!(matches!(
            config_from_gguf(&gpt2, p),
            Err(Error::UnknownArchitecture { .. })
        ));
        let mut md = llama_metadata(&cfg(r#"{"architectures":["LlamaForCausalLM"]}"#), "m", 0, 0);
        md.retain(|(k, _)| k != "llama.block_count");
        match config_from_gguf(&md, p) {
            Err(Error::Config { reason, .. }) => {
                assert!(reason.contains("llama.block_count"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let mut md = llama_metadata(&cfg(r#"{"architectures":["Qwen2ForCausalLM"]}"#), "m", 0, 0);
        md.retain(|(k, _)| k != "tokenizer.ggml.tokens");
        match config_from_gguf(&md, p) {
            Err(Error::Config { reason, .. }) => {
                assert!(reason.contains("qwen2.vocab_size"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn f32_values_come_back_as_their_short_decimal() {
        assert_eq!(f32_to_decimal(1e-5f32), 1e-5);
        assert_eq!(f32_to_decimal(1e-6f32), 1e-6);
        assert_eq!(f32_to_decimal(500000.0), 500000.0);
    }
}
