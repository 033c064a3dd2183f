//! `--quant auto --target T`: the scheme for a deployment target, from its hardware support
//! and the model's shapes, in the spirit of NeMo's quantizer defaults (NeMo
//! `nemo/collections/llm/modelopt/quantization/quantizer.py`: FP8 where the GPU has FP8 tensor
//! cores, INT4 AWQ where it does not).
//!
//! | target | architecture | scheme | why |
//! |---|---|---|---|
//! | h100, h200 | Hopper (sm_90) | fp8 | FP8 tensor cores; ~2× weight memory saving, near-lossless |
//! | l40s, rtx4090 | Ada (sm_89) | fp8 | FP8 tensor cores |
//! | a100 | Ampere (sm_80) | int4_awq (group 128) | no FP8; W4A16 kernels; int8_sq when a linear's input width is not a multiple of the group size |
//! | cpu | — | GGUF q4_k_m | llama.cpp's default; made by `convert --format gguf --quant q4_k_m` |

use super::scheme::QuantScheme;
use crate::error::{Error, Result};
use crate::model::ModelConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    H100,
    H200,
    A100,
    L40s,
    Rtx4090,
    Cpu,
}

/// The scheme `auto` picks for `target` and a model of config `cfg` (INT4 group size `group`).
pub fn choose(target: Target, cfg: &ModelConfig, group: u64) -> Result<QuantScheme> {
    match target {
        Target::H100 | Target::H200 | Target::L40s | Target::Rtx4090 => Ok(QuantScheme::Fp8),
        Target::A100 => {
            let widths = [
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.num_attention_heads * cfg.head_dim,
            ];
            if widths.iter().all(|w| w.is_multiple_of(group.max(1))) {
                Ok(QuantScheme::Int4Awq)
            } else {
                Ok(QuantScheme::Int8Sq)
            }
        }
        Target::Cpu => Err(Error::Usage(
            "--target cpu selects GGUF q4_k_m: run `ckpt-opt convert IN OUT.gguf --format gguf --quant q4_k_m`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(hidden: u64) -> ModelConfig {
        let json = format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":{hidden},"intermediate_size":512,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":10}}"#
        );
        ModelConfig::from_json(std::path::Path::new("config.json"), &json).expect("valid config")
    }

    #[test]
    fn table() {
        let c = cfg(256);
        for t in [Target::H100, Target::H200, Target::L40s, Target::Rtx4090] {
            assert_eq!(choose(t, &c, 128).ok(), Some(QuantScheme::Fp8));
        }
        assert_eq!(
            choose(Target::A100, &c, 128).ok(),
            Some(QuantScheme::Int4Awq)
        );
        assert_eq!(
            choose(Target::A100, &cfg(320), 128).ok(),
            Some(QuantScheme::Int8Sq)
        );
        let e = choose(Target::Cpu, &c, 128).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("q4_k_m")));
    }
}
