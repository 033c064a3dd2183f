//! `config.json` of the Llama family, parsed with the defaults transformers uses
//! (`LlamaConfig`, `MistralConfig`, `Qwen2Config` `__init__` arguments) and checked for consistency.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The HF architecture, from `config.json` `"architectures"[0]` (or `"model_type"` when that is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// `LlamaForCausalLM`
    Llama,
    /// `MistralForCausalLM` (converted by llama.cpp's `LlamaModel`, GGUF architecture `llama`)
    Mistral,
    /// `Qwen2ForCausalLM` (llama.cpp `Qwen2Model`, GGUF architecture `qwen2`, NEOX rope, q/k/v biases)
    Qwen2,
}

const SUPPORTED: &str = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

impl Architecture {
    /// The `architectures` entry transformers writes.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The `model_type` transformers writes.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// `general.architecture` in GGUF. Mistral HF checkpoints are converted by `LlamaModel`
    /// (convert_hf_to_gguf.py registers `MistralForCausalLM` on `LlamaModel`), so they are `llama`.
    pub fn gguf_arch(self) -> &'static str {
        match self {
            Architecture::Llama | Architecture::Mistral => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }

    pub fn from_hf_class(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Architecture::Llama),
            "MistralForCausalLM" => Some(Architecture::Mistral),
            "Qwen2ForCausalLM" => Some(Architecture::Qwen2),
            _ => None,
        }
    }

    pub fn from_model_type(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "mistral" => Some(Architecture::Mistral),
            "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        }
    }

    /// Whether llama.cpp's converter applies `LlamaModel.permute` to q/k (rows reordered from HF's
    /// rotate-half to ggml's interleaved rope). `Qwen2Model` does not: llama.cpp runs qwen2 with NEOX
    /// rope, which is HF's layout (convert_hf_to_gguf.py `Qwen2Model.modify_tensors` only renames).
    pub fn permutes_qk(self) -> bool {
        match self {
            Architecture::Llama | Architecture::Mistral => true,
            Architecture::Qwen2 => false,
        }
    }
}

/// `rope_scaling` of `config.json`. `kind` is `rope_type` (or the older `type`) as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub kind: String,
    pub factor: f64,
    pub original_max_position_embeddings: Option<u64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
}

/// What a tensor is for. GGUF and TensorRT-LLM layouts are decided per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TensorRole {
    Embedding,
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    AttnOutput,
    FfnNorm,
    Gate,
    Up,
    Down,
    OutputNorm,
    LmHead,
}

/// One tensor an HF checkpoint of this config must contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTensor {
    /// HF name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub name: String,
    /// Row-major (PyTorch) shape, e.g. `[n_head * head_dim, hidden_size]` for q_proj.
    pub shape: Vec<u64>,
    pub role: TensorRole,
    pub layer: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    pub max_position_embeddings: u64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases: always true for Qwen2, `attention_bias` for Llama (only
    /// `false` is supported there, see [`ModelConfig::from_json`]), false for Mistral.
    pub attention_bias: bool,
    pub torch_dtype: Option<String>,
    pub bos_token_id: Option<u64>,
    /// The first id when `config.json` lists several (Llama 3.1 does); `raw` keeps the list.
    pub eos_token_id: Option<u64>,
    /// The whole `config.json`, for fields this struct does not model.
    pub raw: Value,
}

/// transformers defaults (`configuration_<arch>.py` `__init__` keyword defaults).
struct Defaults {
    vocab_size: u64,
    hidden_size: u64,
    intermediate_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    /// `None`: defaults to `num_attention_heads`.
    num_key_value_heads: Option<u64>,
    max_position_embeddings: u64,
    rms_norm_eps: f64,
    rope_theta: f64,
    bos_token_id: Option<u64>,
    eos_token_id: Option<u64>,
}

fn defaults(arch: Architecture) -> Defaults {
    match arch {
        // transformers LlamaConfig
        Architecture::Llama => Defaults {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        },
        // transformers MistralConfig
        Architecture::Mistral => Defaults {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 14336,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            max_position_embeddings: 4096 * 32,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        },
        // transformers Qwen2Config (bos/eos are not arguments: PretrainedConfig's None)
        Architecture::Qwen2 => Defaults {
            vocab_size: 151936,
            hidden_size: 4096,
            intermediate_size: 22016,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: Some(32),
            max_position_embeddings: 32768,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            bos_token_id: None,
            eos_token_id: None,
        },
    }
}

/// Largest value a GGUF `u32` key can hold; the converter writes these sizes with `add_uint32`.
const U32_MAX: u64 = u32::MAX as u64;

struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, reason: String) -> Error {
        Error::config(self.path, reason)
    }

    /// A present, non-null value.
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.err(format!(
                    "field `{key}` must be a non-negative integer, found {v}"
                ))
            }),
        }
    }

    fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self.u64_opt(key)?.unwrap_or(default))
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("field `{key}` must be a number, found {v}"))),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("field `{key}` must be a boolean, found {v}"))),
        }
    }

    /// A token id, or the first of a list of them (`eos_token_id: [128001, 128008, 128009]`).
    fn token_id(&self, key: &str, default: Option<u64>) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Array(items)) => match items.first() {
                None => Ok(None),
                Some(first) => first.as_u64().map(Some).ok_or_else(|| {
                    self.err(format!(
                        "field `{key}` must hold non-negative integers, found {first}"
                    ))
                }),
            },
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.err(format!(
                    "field `{key}` must be a non-negative integer or a list of them, found {v}"
                ))
            }),
        }
    }
}

fn parse_rope_scaling(f: &Fields<'_>) -> Result<Option<RopeScaling>> {
    let Some(v) = f.get("rope_scaling") else {
        return Ok(None);
    };
    let obj = v.as_object().ok_or_else(|| {
        f.err(format!(
            "field `rope_scaling` must be an object or null, found {v}"
        ))
    })?;
    let rs = Fields { path: f.path, obj };
    // transformers accepts the older `type` spelling and mirrors it into `rope_type`
    // (convert_hf_to_gguf.py `TextModel.__init__` does the same).
    let kind = match rs.get("rope_type").or_else(|| rs.get("type")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(f.err(format!(
                "field `rope_scaling.rope_type` must be a string, found {other}"
            )))
        }
        None => return Err(f.err("field `rope_scaling` has neither `rope_type` nor `type`".into())),
    };
    let factor = rs
        .f64_or("factor", 1.0)
        .map_err(|_| f.err("field `rope_scaling.factor` must be a number".to_string()))?;
    if !(factor.is_finite() && factor > 0.0) {
        return Err(f.err(format!(
            "field `rope_scaling.factor` must be positive, found {factor}"
        )));
    }
    let num = |key: &str| -> Result<Option<f64>> {
        match rs.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                f.err(format!(
                    "field `rope_scaling.{key}` must be a number, found {v}"
                ))
            }),
        }
    };
    let original = match rs.get("original_max_position_embeddings") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            f.err(format!(
                "field `rope_scaling.original_max_position_embeddings` must be a non-negative integer, found {v}"
            ))
        })?),
    };
    Ok(Some(RopeScaling {
        kind,
        factor,
        original_max_position_embeddings: original,
        low_freq_factor: num("low_freq_factor")?,
        high_freq_factor: num("high_freq_factor")?,
    }))
}

impl ModelConfig {
    /// Parses `config.json` text. `path` is used only in error messages.
    ///
    /// Missing fields take transformers' defaults for the architecture. Errors (`Error::Config`,
    /// naming the field): zero sizes; `num_attention_heads` not divisible by `num_key_value_heads`;
    /// `hidden_size` not divisible by `num_attention_heads` when `head_dim` is not given (Llama and
    /// Mistral accept an explicit `head_dim` with `head_dim * heads != hidden_size`); odd `head_dim`
    /// (rope pairs); sizes over `u32::MAX` (GGUF stores them as u32); non-positive `rms_norm_eps` or
    /// `rope_theta`; Llama `attention_bias` or `mlp_bias` = true (the o_proj/MLP biases that brings
    /// have no role here). An unknown architecture is `Error::UnknownArchitecture`.
    pub fn from_json(path: &Path, json: &str) -> Result<Self> {
        let raw: Value = serde_json::from_str(json)
            .map_err(|e| Error::config(path, format!("config.json is not valid JSON: {e}")))?;
        let obj = raw
            .as_object()
            .ok_or_else(|| Error::config(path, "config.json must be a JSON object"))?;
        let f = Fields { path, obj };

        let architecture = match f.get("architectures") {
            Some(Value::Array(list)) => {
                let first = list.first().and_then(Value::as_str).ok_or_else(|| {
                    f.err("field `architectures` must be a non-empty list of strings".into())
                })?;
                Architecture::from_hf_class(first).ok_or_else(|| Error::UnknownArchitecture {
                    path: path.to_path_buf(),
                    architecture: first.to_string(),
                    supported: SUPPORTED.to_string(),
                })?
            }
            Some(other) => {
                return Err(f.err(format!(
                    "field `architectures` must be a list, found {other}"
                )))
            }
            None => match f.get("model_type").and_then(Value::as_str) {
                Some(mt) => {
                    Architecture::from_model_type(mt).ok_or_else(|| Error::UnknownArchitecture {
                        path: path.to_path_buf(),
                        architecture: mt.to_string(),
                        supported: SUPPORTED.to_string(),
                    })?
                }
                None => {
                    return Err(
                        f.err("field `architectures` is missing (and no `model_type`)".into())
                    )
                }
            },
        };
        let d = defaults(architecture);

        let hidden_size = f.u64_or("hidden_size", d.hidden_size)?;
        let intermediate_size = f.u64_or("intermediate_size", d.intermediate_size)?;
        let num_hidden_layers = f.u64_or("num_hidden_layers", d.num_hidden_layers)?;
        let num_attention_heads = f.u64_or("num_attention_heads", d.num_attention_heads)?;
        let num_key_value_heads = f
            .u64_opt("num_key_value_heads")?
            .or(d.num_key_value_heads)
            .unwrap_or(num_attention_heads);
        let vocab_size = f.u64_or("vocab_size", d.vocab_size)?;
        let max_position_embeddings =
            f.u64_or("max_position_embeddings", d.max_position_embeddings)?;

        for (key, v) in [
            ("hidden_size", hidden_size),
            ("intermediate_size", intermediate_size),
            ("num_hidden_layers", num_hidden_layers),
            ("num_attention_heads", num_attention_heads),
            ("num_key_value_heads", num_key_value_heads),
            ("vocab_size", vocab_size),
            ("max_position_embeddings", max_position_embeddings),
        ] {
            if v == 0 {
                return Err(f.err(format!("field `{key}` must be positive, found 0")));
            }
            if v > U32_MAX {
                return Err(f.err(format!(
                    "field `{key}` = {v} does not fit in u32 (GGUF stores it as u32)"
                )));
            }
        }
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(format!(
                "field `num_key_value_heads` = {num_key_value_heads} does not divide `num_attention_heads` = {num_attention_heads}"
            )));
        }
        let head_dim = match f.u64_opt("head_dim")? {
            Some(0) => return Err(f.err("field `head_dim` must be positive, found 0".into())),
            Some(hd) => hd,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.err(format!(
                        "field `hidden_size` = {hidden_size} is not divisible by `num_attention_heads` = {num_attention_heads} (and no `head_dim` is given)"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(f.err(format!(
                "field `head_dim` = {head_dim} must be even (rope rotates pairs)"
            )));
        }
        if head_dim
            .checked_mul(num_attention_heads)
            .is_none_or(|v| v > U32_MAX)
        {
            return Err(f.err(format!(
                "field `head_dim` = {head_dim} times `num_attention_heads` = {num_attention_heads} does not fit in u32"
            )));
        }

        let rms_norm_eps = f.f64_or("rms_norm_eps", d.rms_norm_eps)?;
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(f.err(format!(
                "field `rms_norm_eps` must be positive, found {rms_norm_eps}"
            )));
        }
        let rope_theta = f.f64_or("rope_theta", d.rope_theta)?;
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(f.err(format!(
                "field `rope_theta` must be positive, found {rope_theta}"
            )));
        }
        let rope_scaling = parse_rope_scaling(&f)?;
        let tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;

        let attention_bias = match architecture {
            // Qwen2Attention: q/k/v Linear(bias=True), o_proj bias=False, regardless of config.
            Architecture::Qwen2 => true,
            Architecture::Mistral => false,
            Architecture::Llama => {
                if f.bool_or("attention_bias", false)? {
                    return Err(f.err(
                        "field `attention_bias` = true is not supported (LlamaAttention then also has an o_proj bias)"
                            .into(),
                    ));
                }
                if f.bool_or("mlp_bias", false)? {
                    return Err(f.err("field `mlp_bias` = true is not supported".into()));
                }
                false
            }
        };

        let torch_dtype = match f.get("torch_dtype").or_else(|| f.get("dtype")) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(f.err(format!(
                    "field `torch_dtype` must be a string, found {other}"
                )))
            }
        };
        let bos_token_id = f.token_id("bos_token_id", d.bos_token_id)?;
        let eos_token_id = f.token_id("eos_token_id", d.eos_token_id)?;

        Ok(ModelConfig {
            architecture,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings,
            attention_bias,
            torch_dtype,
            bos_token_id,
            eos_token_id,
            raw,
        })
    }

    /// Reads `<dir>/config.json`, or the file itself when given a file.
    pub fn load(dir_or_file: &Path) -> Result<Self> {
        let path = if dir_or_file.is_dir() {
            dir_or_file.join("config.json")
        } else {
            dir_or_file.to_path_buf()
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::config(&path, format!("cannot read config: {e}")))?;
        Self::from_json(&path, &text)
    }

    /// `head_dim * num_attention_heads`: rows of q_proj.
    pub fn q_rows(&self) -> u64 {
        self.head_dim * self.num_attention_heads
    }

    /// `head_dim * num_key_value_heads`: rows of k_proj and v_proj.
    pub fn kv_rows(&self) -> u64 {
        self.head_dim * self.num_key_value_heads
    }

    /// Every HF tensor of the checkpoint, in transformers' module order, with its row-major shape.
    /// `lm_head.weight` only when the embeddings are untied; q/k/v biases only for Qwen2.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        let h = self.hidden_size;
        let ff = self.intermediate_size;
        let q = self.q_rows();
        let kv = self.kv_rows();
        let t =
            |name: String, shape: Vec<u64>, role: TensorRole, layer: Option<u64>| ExpectedTensor {
                name,
                shape,
                role,
                layer,
            };
        let mut out = Vec::with_capacity(2 + 12 * self.num_hidden_layers as usize + 2);
        out.push(t(
            "model.embed_tokens.weight".into(),
            vec![self.vocab_size, h],
            TensorRole::Embedding,
            None,
        ));
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let l = Some(i);
            out.push(t(
                format!("{p}.input_layernorm.weight"),
                vec![h],
                TensorRole::AttnNorm,
                l,
            ));
            out.push(t(
                format!("{p}.self_attn.q_proj.weight"),
                vec![q, h],
                TensorRole::Q,
                l,
            ));
            if self.attention_bias {
                out.push(t(
                    format!("{p}.self_attn.q_proj.bias"),
                    vec![q],
                    TensorRole::QBias,
                    l,
                ));
            }
            out.push(t(
                format!("{p}.self_attn.k_proj.weight"),
                vec![kv, h],
                TensorRole::K,
                l,
            ));
            if self.attention_bias {
                out.push(t(
                    format!("{p}.self_attn.k_proj.bias"),
                    vec![kv],
                    TensorRole::KBias,
                    l,
                ));
            }
            out.push(t(
                format!("{p}.self_attn.v_proj.weight"),
                vec![kv, h],
                TensorRole::V,
                l,
            ));
            if self.attention_bias {
                out.push(t(
                    format!("{p}.self_attn.v_proj.bias"),
                    vec![kv],
                    TensorRole::VBias,
                    l,
                ));
            }
            out.push(t(
                format!("{p}.self_attn.o_proj.weight"),
                vec![h, q],
                TensorRole::AttnOutput,
                l,
            ));
            out.push(t(
                format!("{p}.post_attention_layernorm.weight"),
                vec![h],
                TensorRole::FfnNorm,
                l,
            ));
            out.push(t(
                format!("{p}.mlp.gate_proj.weight"),
                vec![ff, h],
                TensorRole::Gate,
                l,
            ));
            out.push(t(
                format!("{p}.mlp.up_proj.weight"),
                vec![ff, h],
                TensorRole::Up,
                l,
            ));
            out.push(t(
                format!("{p}.mlp.down_proj.weight"),
                vec![h, ff],
                TensorRole::Down,
                l,
            ));
        }
        out.push(t(
            "model.norm.weight".into(),
            vec![h],
            TensorRole::OutputNorm,
            None,
        ));
        if !self.tie_word_embeddings {
            out.push(t(
                "lm_head.weight".into(),
                vec![self.vocab_size, h],
                TensorRole::LmHead,
                None,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig> {
        ModelConfig::from_json(Path::new("/m/config.json"), json)
    }

    fn config_err(json: &str) -> String {
        match parse(json) {
            Err(Error::Config { reason, .. }) => reason,
            other => panic!("expected Error::Config, got {other:?}"),
        }
    }

    #[test]
    fn llama_defaults_match_transformers() {
        let c = parse(r#"{"architectures":["LlamaForCausalLM"]}"#).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!(c.hidden_size, 4096);
        assert_eq!(c.intermediate_size, 11008);
        assert_eq!(c.num_hidden_layers, 32);
        assert_eq!(c.num_attention_heads, 32);
        assert_eq!(c.num_key_value_heads, 32); // None -> num_attention_heads
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.vocab_size, 32000);
        assert_eq!(c.max_position_embeddings, 2048);
        assert_eq!(c.rms_norm_eps, 1e-6);
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.rope_scaling, None);
        assert!(!c.tie_word_embeddings);
        assert!(!c.attention_bias);
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
        assert_eq!(c.torch_dtype, None);
    }

    #[test]
    fn mistral_defaults_match_transformers() {
        let c = parse(r#"{"architectures":["MistralForCausalLM"]}"#).unwrap();
        assert_eq!(c.architecture, Architecture::Mistral);
        assert_eq!(c.intermediate_size, 14336);
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.max_position_embeddings, 131072);
        assert!(!c.attention_bias);
        assert_eq!(c.architecture.gguf_arch(), "llama");
    }

    #[test]
    fn qwen2_defaults_match_transformers() {
        let c = parse(r#"{"architectures":["Qwen2ForCausalLM"]}"#).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
        assert_eq!(c.vocab_size, 151936);
        assert_eq!(c.intermediate_size, 22016);
        assert_eq!(c.num_key_value_heads, 32);
        assert_eq!(c.max_position_embeddings, 32768);
        assert!(c.attention_bias);
        assert_eq!((c.bos_token_id, c.eos_token_id), (None, None));
        assert!(!c.architecture.permutes_qk());
    }

    #[test]
    fn llama3_config_parses_fully() {
        let c = parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":8192,
            "num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"head_dim":64,
            "vocab_size":128256,"max_position_embeddings":131072,"rms_norm_eps":1e-05,
            "rope_theta":500000.0,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,
            "low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
            "tie_word_embeddings":true,"torch_dtype":"bfloat16","bos_token_id":128000,
            "eos_token_id":[128001,128008,128009]}"#,
        )
        .unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.eos_token_id, Some(128001));
        assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
        let rs = c.rope_scaling.as_ref().unwrap();
        assert_eq!(rs.kind, "llama3");
        assert_eq!(rs.factor, 32.0);
        assert_eq!(rs.original_max_position_embeddings, Some(8192));
        assert_eq!(rs.low_freq_factor, Some(1.0));
        assert_eq!(rs.high_freq_factor, Some(4.0));
        let names: Vec<_> = c.expected_tensors().into_iter().map(|t| t.name).collect();
        assert!(!names.contains(&"lm_head.weight".to_string()));
        assert_eq!(names.len(), 1 + 16 * 9 + 1);
    }

    #[test]
    fn old_rope_scaling_type_spelling() {
        let c = parse(
            r#"{"architectures":["LlamaForCausalLM"],"rope_scaling":{"type":"linear","factor":4.0}}"#,
        )
        .unwrap();
        let rs = c.rope_scaling.unwrap();
        assert_eq!((rs.kind.as_str(), rs.factor), ("linear", 4.0));
    }

    #[test]
    fn model_type_used_when_architectures_missing() {
        let c = parse(r#"{"model_type":"qwen2"}"#).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
    }

    #[test]
    fn unknown_architecture() {
        match parse(r#"{"architectures":["GPT2LMHeadModel"]}"#) {
            Err(Error::UnknownArchitecture { architecture, .. }) => {
                assert_eq!(architecture, "GPT2LMHeadModel")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"model_type":"gpt2"}"#),
            Err(Error::UnknownArchitecture { .. })
        ));
    }

    #[test]
    fn each_config_error_names_its_field() {
        let a = r#""architectures":["LlamaForCausalLM"]"#;
        let cases: &[(&str, &str)] = &[
            ("{}", "architectures"),
            (r#"{"architectures":[]}"#, "architectures"),
            (r#"{"architectures":"LlamaForCausalLM"}"#, "architectures"),
            ("[1]", "JSON object"),
            ("{", "not valid JSON"),
        ];
        for (json, needle) in cases {
            let r = config_err(json);
            assert!(r.contains(needle), "{json}: {r}");
        }
        let field_cases: &[(&str, &str)] = &[
            (r#""hidden_size":0"#, "hidden_size"),
            (r#""intermediate_size":0"#, "intermediate_size"),
            (r#""num_hidden_layers":0"#, "num_hidden_layers"),
            (r#""num_attention_heads":0"#, "num_attention_heads"),
            (r#""num_key_value_heads":0"#, "num_key_value_heads"),
            (r#""vocab_size":0"#, "vocab_size"),
            (r#""max_position_embeddings":0"#, "max_position_embeddings"),
            (r#""num_key_value_heads":5"#, "num_key_value_heads"),
            (
                r#""hidden_size":4000,"num_attention_heads":48"#,
                "hidden_size",
            ),
            (r#""head_dim":0"#, "head_dim"),
            (r#""head_dim":63"#, "head_dim"),
            (r#""hidden_size":-1"#, "hidden_size"),
            (r#""hidden_size":4096.5"#, "hidden_size"),
            (r#""vocab_size":5000000000"#, "vocab_size"),
            (r#""rms_norm_eps":0"#, "rms_norm_eps"),
            (r#""rms_norm_eps":"small""#, "rms_norm_eps"),
            (r#""rope_theta":-1"#, "rope_theta"),
            (r#""rope_scaling":3"#, "rope_scaling"),
            (r#""rope_scaling":{"factor":2.0}"#, "rope_scaling"),
            (
                r#""rope_scaling":{"type":"linear","factor":0}"#,
                "rope_scaling.factor",
            ),
            (r#""tie_word_embeddings":"yes""#, "tie_word_embeddings"),
            (r#""attention_bias":true"#, "attention_bias"),
            (r#""mlp_bias":true"#, "mlp_bias"),
            (r#""eos_token_id":"x""#, "eos_token_id"),
            (r#""torch_dtype":5"#, "torch_dtype"),
        ];
        for (extra, field) in field_cases {
            let json = format!("{{{a},{extra}}}");
            let r = config_err(&json);
            assert!(r.contains(&format!("`{field}`")), "{json}: {r}");
        }
    }

    #[test]
    fn explicit_head_dim_may_differ_from_hidden_over_heads() {
        // Mistral-Nemo style: hidden 5120, 32 heads, head_dim 128.
        let c = parse(
            r#"{"architectures":["MistralForCausalLM"],"hidden_size":5120,"num_attention_heads":32,"head_dim":128}"#,
        )
        .unwrap();
        assert_eq!(c.q_rows(), 4096);
        let t = c.expected_tensors();
        let o = t.iter().find(|t| t.role == TensorRole::AttnOutput).unwrap();
        assert_eq!(o.shape, vec![5120, 4096]);
    }

    #[test]
    fn null_fields_take_defaults() {
        let c = parse(r#"{"architectures":["LlamaForCausalLM"],"num_key_value_heads":null,"rope_scaling":null}"#)
            .unwrap();
        assert_eq!(c.num_key_value_heads, 32);
        assert_eq!(c.rope_scaling, None);
    }

    #[test]
    fn expected_tensors_qwen2_has_biases_and_lm_head() {
        let c = parse(
            r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100}"#,
        )
        .unwrap();
        let t = c.expected_tensors();
        assert_eq!(t.len(), 1 + 2 * 12 + 2);
        let find = |n: &str| t.iter().find(|x| x.name == n).unwrap();
        assert_eq!(find("model.layers.1.self_attn.q_proj.bias").shape, vec![64]);
        assert_eq!(find("model.layers.1.self_attn.k_proj.bias").shape, vec![32]);
        assert_eq!(
            find("model.layers.1.self_attn.k_proj.weight").shape,
            vec![32, 64]
        );
        assert_eq!(
            find("model.layers.1.mlp.down_proj.weight").shape,
            vec![64, 128]
        );
        assert_eq!(find("lm_head.weight").shape, vec![100, 64]);
        assert_eq!(find("model.layers.1.self_attn.v_proj.bias").layer, Some(1));
        for e in &t {
            assert_eq!(
                crate::model::role_of_hf_name(&e.name),
                Some((e.role, e.layer)),
                "{}",
                e.name
            );
        }
    }
}
