//! Loading `config.json` from a model folder, end to end through the public API.

use std::path::Path;

use ckpt_opt::export::gguf_meta::{llama_metadata, FILE_TYPE_BF16};
use ckpt_opt::import::hf_config::config_from_gguf_with_tensors;
use ckpt_opt::model::{hf_to_gguf_name, Architecture, ModelConfig, TensorRole};
use ckpt_opt::Error;

fn write_config(json: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), json).unwrap();
    dir
}

const LLAMA32_1B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256
}"#;

#[test]
fn loads_from_dir_and_from_file() {
    let dir = write_config(LLAMA32_1B);
    let a = ModelConfig::load(dir.path()).unwrap();
    let b = ModelConfig::load(&dir.path().join("config.json")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.architecture, Architecture::Llama);
    assert_eq!(
        (a.num_attention_heads, a.num_key_value_heads, a.head_dim),
        (32, 8, 64)
    );
    assert!(a.tie_word_embeddings);
    assert_eq!(a.raw["transformers_version"], "4.45.0.dev0");
    let t = a.expected_tensors();
    assert_eq!(t.len(), 2 + 16 * 9);
    assert!(t.iter().all(|e| e.role != TensorRole::LmHead));
    assert!(t.iter().all(|e| hf_to_gguf_name(&e.name).is_some()));
    let rf = ckpt_opt::model::llama3_rope_freqs(&a).unwrap();
    assert_eq!(rf.len(), 32);
}

#[test]
fn qwen2_and_mistral_from_dirs() {
    let q = write_config(
        r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":1536,"intermediate_size":8960,
        "num_hidden_layers":28,"num_attention_heads":12,"num_key_value_heads":2,"vocab_size":151936,
        "max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
        "tie_word_embeddings":true,"use_sliding_window":false,"sliding_window":32768}"#,
    );
    let c = ModelConfig::load(q.path()).unwrap();
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert!(c.attention_bias);
    assert_eq!(c.head_dim, 128);
    let biases = c
        .expected_tensors()
        .iter()
        .filter(|t| t.name.ends_with(".bias"))
        .count();
    assert_eq!(biases, 28 * 3);

    let m = write_config(
        r#"{"architectures":["MistralForCausalLM"],"hidden_size":4096,"num_hidden_layers":32,
        "sliding_window":4096,"rope_theta":10000.0}"#,
    );
    let c = ModelConfig::load(m.path()).unwrap();
    assert_eq!(c.architecture, Architecture::Mistral);
    assert_eq!(c.num_key_value_heads, 8);
    assert_eq!(c.intermediate_size, 14336);
}

#[test]
fn hf_gguf_hf_round_trip_through_files() {
    let dir = write_config(LLAMA32_1B);
    let a = ModelConfig::load(dir.path()).unwrap();
    let md = llama_metadata(&a, "Llama 3.2 1B", 0, FILE_TYPE_BF16);
    let back =
        config_from_gguf_with_tensors(&md, &["token_embd.weight"], Path::new("x.gguf")).unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        out.path().join("config.json"),
        serde_json::to_string_pretty(&back).unwrap(),
    )
    .unwrap();
    let b = ModelConfig::load(out.path()).unwrap();
    assert_eq!(a.expected_tensors(), b.expected_tensors());
    assert_eq!(
        (a.rms_norm_eps, a.rope_theta),
        (b.rms_norm_eps, b.rope_theta)
    );
    // llama3 rope scaling lives in the rope_freqs tensor, not in metadata.
    assert_eq!(b.rope_scaling, None);
}

#[test]
fn missing_and_bad_configs() {
    let empty = tempfile::tempdir().unwrap();
    match ModelConfig::load(empty.path()) {
        Err(Error::Config { path, reason }) => {
            assert!(path.ends_with("config.json"));
            assert!(reason.contains("cannot read"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let bad = write_config(r#"{"architectures":["LlamaForCausalLM"],"num_key_value_heads":3}"#);
    match ModelConfig::load(bad.path()) {
        Err(e @ Error::Config { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("config.json") && msg.contains("num_key_value_heads"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    let unknown = write_config(r#"{"architectures":["FalconForCausalLM"]}"#);
    assert!(matches!(
        ModelConfig::load(unknown.path()),
        Err(Error::UnknownArchitecture { .. })
    ));
}
