//! TensorRT-LLM `config.json` ⇄ Hugging Face `config.json`, for unquantized checkpoints.
//!
//! Only fields TensorRT-LLM documents are written: the table of
//! `docs/source/architecture/checkpoint.md` plus the ones modelopt's
//! `export/tensorrt_llm_utils.py` `convert_to_tensorrt_llm_config` adds (`head_size`,
//! `rotary_base`, `rotary_scaling`, `share_embedding_table`, `use_parallel_embedding`,
//! `embedding_sharding_dim`). They are enough to rebuild the Hugging Face config of a
//! Llama/Mistral/Qwen2 model; token ids live in `generation_config.json`, which is copied.

use super::layout::Parallel;
use crate::error::{Error, Result};
use crate::model::{Architecture, ModelConfig};
use formats::Dtype;
use serde_json::{json, Value};
use std::path::Path;

/// The key whose presence marks a TensorRT-LLM `config.json`.
pub const TRTLLM_MAPPING: &str = "mapping";

/// TensorRT-LLM's dtype names are torch's without the `torch.` prefix.
fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "float16",
        Dtype::F32 => "float32",
        _ => "bfloat16",
    }
}

/// The TensorRT-LLM config of `cfg` at `par`, whose weights are `dtype`.
pub fn trtllm_config(cfg: &ModelConfig, par: Parallel, dtype: Dtype) -> Value {
    let raw = &cfg.raw;
    json!({
        "architecture": cfg.architecture.hf_class(),
        "dtype": dtype_name(dtype),
        "logits_dtype": "float32",
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_size": cfg.head_dim,
        "hidden_act": raw.get("hidden_act").cloned().unwrap_or(json!("silu")),
        "intermediate_size": cfg.intermediate_size,
        "norm_epsilon": cfg.rms_norm_eps,
        "position_embedding_type": "rope_gpt_neox",
        "rotary_base": cfg.rope_theta,
        "rotary_scaling": raw.get("rope_scaling").cloned().unwrap_or(Value::Null),
        "share_embedding_table": cfg.tie_word_embeddings,
        "use_parallel_embedding": true,
        "embedding_sharding_dim": 0,
        "mapping": {
            "world_size": par.world(),
            "tp_size": par.tp,
            "pp_size": par.pp,
        },
        "quantization": {
            "quant_algo": null,
            "kv_cache_quant_algo": null,
        },
    })
}

/// Rebuilds the Hugging Face config from a TensorRT-LLM one, and reads its mapping; refuses a
/// quantized checkpoint (resharding moves unquantized rows only).
pub fn hf_config_from_trtllm(path: &Path, tl: &Value) -> Result<(Value, Parallel)> {
    if let Some(algo) = tl.pointer("/quantization/quant_algo") {
        if !algo.is_null() {
            return Err(Error::config(
                path,
                format!(
                    "quantization.quant_algo {algo}: only unquantized checkpoints can be resharded"
                ),
            ));
        }
    }
    model_config_from_trtllm(path, tl)
}

/// The Hugging Face config and mapping of any TensorRT-LLM config, quantized or not (its
/// `quantization` block is left to the caller).
pub fn model_config_from_trtllm(path: &Path, tl: &Value) -> Result<(Value, Parallel)> {
    let err = |why: String| Error::config(path, why);
    let int = |key: &str| -> Result<u64> {
        tl.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| err(format!("field `{key}` is missing or not an integer")))
    };
    let arch_name = tl
        .get("architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| err("field `architecture` is missing".into()))?;
    let arch =
        Architecture::from_hf_class(arch_name).ok_or_else(|| Error::UnknownArchitecture {
            path: path.to_path_buf(),
            architecture: arch_name.to_string(),
            supported: "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM".into(),
        })?;
    let mapping = tl
        .get(TRTLLM_MAPPING)
        .ok_or_else(|| err("field `mapping` is missing".into()))?;
    let size = |key: &str| mapping.get(key).and_then(Value::as_u64).unwrap_or(1);
    let par = Parallel {
        tp: size("tp_size"),
        pp: size("pp_size"),
    };
    if size("world_size") != par.world() {
        return Err(err(format!(
            "mapping.world_size {} is not tp_size {} × pp_size {}",
            size("world_size"),
            par.tp,
            par.pp
        )));
    }
    let heads = int("num_attention_heads")?;
    let hidden = int("hidden_size")?;
    let mut hf = json!({
        "architectures": [arch.hf_class()],
        "model_type": arch.model_type(),
        "hidden_size": hidden,
        "intermediate_size": int("intermediate_size")?,
        "num_hidden_layers": int("num_hidden_layers")?,
        "num_attention_heads": heads,
        "num_key_value_heads": tl.get("num_key_value_heads").and_then(Value::as_u64).unwrap_or(heads),
        "head_dim": tl.get("head_size").and_then(Value::as_u64).unwrap_or(hidden / heads.max(1)),
        "vocab_size": int("vocab_size")?,
        "hidden_act": tl.get("hidden_act").cloned().unwrap_or(json!("silu")),
        "rms_norm_eps": tl.get("norm_epsilon").cloned().unwrap_or(json!(1e-5)),
        "rope_theta": tl.get("rotary_base").cloned().unwrap_or(json!(10000.0)),
        "rope_scaling": tl.get("rotary_scaling").cloned().unwrap_or(Value::Null),
        "tie_word_embeddings": tl.get("share_embedding_table").and_then(Value::as_bool).unwrap_or(false),
        "torch_dtype": tl.get("dtype").cloned().unwrap_or(json!("bfloat16")),
    });
    if let Some(m) = tl.get("max_position_embeddings").filter(|v| !v.is_null()) {
        hf["max_position_embeddings"] = m.clone();
    }
    Ok((hf, par))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trtllm_config_round_trips_the_model() {
        let json = r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":96,
            "num_hidden_layers":2,"num_attention_heads":8,"num_key_value_heads":2,"vocab_size":10,
            "tie_word_embeddings":true,"torch_dtype":"float16","rope_theta":1000000.0,
            "rope_scaling":{"rope_type":"linear","factor":2.0}}"#;
        let cfg = ModelConfig::from_json(Path::new("c.json"), json).unwrap();
        let par = Parallel { tp: 2, pp: 2 };
        let tl = trtllm_config(&cfg, par, Dtype::F16);
        assert_eq!(tl["mapping"]["world_size"], 4);
        let (hf, back_par) = hf_config_from_trtllm(Path::new("config.json"), &tl).unwrap();
        assert_eq!(back_par, par);
        let back = ModelConfig::from_json(Path::new("c.json"), &hf.to_string()).unwrap();
        assert_eq!(back.architecture, cfg.architecture);
        assert_eq!(back.expected_tensors(), cfg.expected_tensors());
        assert_eq!(back.rope_theta, cfg.rope_theta);
        assert_eq!(back.rope_scaling, cfg.rope_scaling);
        assert_eq!(back.torch_dtype, cfg.torch_dtype);
        assert!(back.tie_word_embeddings);
    }

    #[test]
    fn quantized_or_inconsistent_mapping_is_refused() {
        let cfg = ModelConfig::from_json(
            Path::new("c.json"),
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_attention_heads":8}"#,
        )
        .unwrap();
        let mut tl = trtllm_config(&cfg, Parallel { tp: 2, pp: 1 }, Dtype::BF16);
        tl["mapping"]["world_size"] = json!(3);
        let e = hf_config_from_trtllm(Path::new("config.json"), &tl).unwrap_err();
        assert!(e.to_string().contains("world_size 3"), "{e}");
        let mut tl = trtllm_config(&cfg, Parallel { tp: 2, pp: 1 }, Dtype::BF16);
        tl["quantization"]["quant_algo"] = json!("FP8");
        let e = hf_config_from_trtllm(Path::new("config.json"), &tl).unwrap_err();
        assert!(e.to_string().contains("unquantized"), "{e}");
    }
}
