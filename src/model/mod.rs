//! Model knowledge for the Llama family (Llama, Mistral, Qwen2): `config.json` parsing, tensor roles,
//! HF⇄GGUF tensor names and the Q/K row permutation that llama.cpp's converter applies.
//!
//! Everything here follows llama.cpp's `convert_hf_to_gguf.py` (`TextModel`, `LlamaModel`,
//! `Qwen2Model`) and `gguf-py/gguf/constants.py` (`TENSOR_NAMES`); the comments say which function.

pub mod config;
pub mod names;
pub mod permute;
pub mod trtllm_quant;

/// The linears of one decoder layer (Llama, Mistral, Qwen2), by the suffix of their Hugging
/// Face module name after `model.layers.N.`.
pub const LAYER_LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

pub use config::{Architecture, ExpectedTensor, ModelConfig, RopeScaling, TensorRole};
pub use names::{
    gguf_keeps_f32, gguf_to_hf_name, hf_to_gguf_name, is_skipped_hf_tensor, role_of_hf_name,
    ROPE_FREQS_GGUF_NAME,
};
pub use permute::{llama3_rope_freqs, permute_qk_rows, qk_permutation_heads};
