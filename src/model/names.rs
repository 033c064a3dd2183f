//! HF ⇄ GGUF tensor names for Llama/Mistral/Qwen2.
//!
//! GGUF names are llama.cpp `gguf-py/gguf/constants.py` `TENSOR_NAMES` (`token_embd`, `output_norm`,
//! `output`, `rope_freqs`, `blk.{bid}.attn_norm`, `attn_q`, `attn_k`, `attn_v`, `attn_output`,
//! `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_down`); the HF side is `gguf-py/gguf/tensor_mapping.py`
//! (`model.embed_tokens`, `model.norm`, `lm_head`, `model.layers.{bid}.input_layernorm`, ...).
//! As in `TensorNameMap.get_name(try_suffixes=(".weight", ".bias"))`, the suffix is carried over.

use super::config::TensorRole;

/// The tensor llama.cpp's converter generates for llama3 rope scaling
/// (convert_hf_to_gguf.py `LlamaModel.generate_extra_tensors`); it has no HF counterpart.
pub const ROPE_FREQS_GGUF_NAME: &str = "rope_freqs.weight";

/// Per-layer stems: (HF module path inside `model.layers.{bid}.`, GGUF stem inside `blk.{bid}.`).
const LAYER_STEMS: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// Global stems: (HF module path, GGUF stem).
const GLOBAL_STEMS: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// HF tensors the converter drops: convert_hf_to_gguf.py `ModelBase.prepare_tensors`
/// (`if name.endswith((".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")): continue`).
pub fn is_skipped_hf_tensor(hf: &str) -> bool {
    hf.ends_with(".attention.masked_bias")
        || hf.ends_with(".attention.bias")
        || hf.ends_with(".rotary_emb.inv_freq")
}

/// Splits `name` into (stem, ".weight" | ".bias").
fn split_suffix(name: &str) -> Option<(&str, &str)> {
    for suffix in [".weight", ".bias"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return Some((stem, suffix));
        }
    }
    None
}

/// A canonical decimal layer index (no sign, no leading zeros), as Python's `str(int)` writes it.
fn parse_layer(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Splits `<prefix><bid>.<rest>` into (bid, rest).
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(u64, &'a str)> {
    let tail = name.strip_prefix(prefix)?;
    let (idx, rest) = tail.split_once('.')?;
    Some((parse_layer(idx)?, rest))
}

/// `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`. `None` for names we do not map
/// (including those [`is_skipped_hf_tensor`] drops).
pub fn hf_to_gguf_name(hf: &str) -> Option<String> {
    if is_skipped_hf_tensor(hf) {
        return None;
    }
    let (stem, suffix) = split_suffix(hf)?;
    if let Some((bid, rest)) = split_layer(stem, "model.layers.") {
        let (_, g) = LAYER_STEMS.iter().find(|(h, _)| *h == rest)?;
        return Some(format!("blk.{bid}.{g}{suffix}"));
    }
    let (_, g) = GLOBAL_STEMS.iter().find(|(h, _)| *h == stem)?;
    Some(format!("{g}{suffix}"))
}

/// Inverse of [`hf_to_gguf_name`]. `rope_freqs.weight` has no HF name (it is generated).
pub fn gguf_to_hf_name(gguf: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(gguf)?;
    if let Some((bid, rest)) = split_layer(stem, "blk.") {
        let (h, _) = LAYER_STEMS.iter().find(|(_, g)| *g == rest)?;
        return Some(format!("model.layers.{bid}.{h}{suffix}"));
    }
    let (h, _) = GLOBAL_STEMS.iter().find(|(_, g)| *g == stem)?;
    Some(format!("{h}{suffix}"))
}

/// The role and layer of an HF tensor name; `None` for names with no [`TensorRole`]
/// (for example `o_proj.bias`, which Llama/Mistral/Qwen2 do not have).
pub fn role_of_hf_name(hf: &str) -> Option<(TensorRole, Option<u64>)> {
    use TensorRole::*;
    let (stem, suffix) = split_suffix(hf)?;
    let weight = suffix == ".weight";
    if let Some((bid, rest)) = split_layer(stem, "model.layers.") {
        let role = match (rest, weight) {
            ("input_layernorm", true) => AttnNorm,
            ("self_attn.q_proj", true) => Q,
            ("self_attn.k_proj", true) => K,
            ("self_attn.v_proj", true) => V,
            ("self_attn.q_proj", false) => QBias,
            ("self_attn.k_proj", false) => KBias,
            ("self_attn.v_proj", false) => VBias,
            ("self_attn.o_proj", true) => AttnOutput,
            ("post_attention_layernorm", true) => FfnNorm,
            ("mlp.gate_proj", true) => Gate,
            ("mlp.up_proj", true) => Up,
            ("mlp.down_proj", true) => Down,
            _ => return None,
        };
        return Some((role, Some(bid)));
    }
    let role = match (stem, weight) {
        ("model.embed_tokens", true) => Embedding,
        ("model.norm", true) => OutputNorm,
        ("lm_head", true) => LmHead,
        _ => return None,
    };
    Some((role, None))
}

/// Whether llama.cpp's converter stores this GGUF tensor as F32 whatever the output type:
/// convert_hf_to_gguf.py `ModelBase.prepare_tensors` ("Most of the codebase that takes in 1D tensors
/// or norms only handles F32 tensors": `if n_dims <= 1 or new_name.endswith("_norm.weight")`).
/// For this family that is every norm, every bias and `rope_freqs`; 2-D weights (including
/// `token_embd` and `output`) follow the file type.
pub fn gguf_keeps_f32(gguf_name: &str, n_dims: usize) -> bool {
    n_dims <= 1 || gguf_name.ends_with("_norm.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &[(&str, &str, TensorRole, Option<u64>)] = &[
        (
            "model.embed_tokens.weight",
            "token_embd.weight",
            TensorRole::Embedding,
            None,
        ),
        (
            "model.norm.weight",
            "output_norm.weight",
            TensorRole::OutputNorm,
            None,
        ),
        ("lm_head.weight", "output.weight", TensorRole::LmHead, None),
        (
            "model.layers.0.input_layernorm.weight",
            "blk.0.attn_norm.weight",
            TensorRole::AttnNorm,
            Some(0),
        ),
        (
            "model.layers.3.self_attn.q_proj.weight",
            "blk.3.attn_q.weight",
            TensorRole::Q,
            Some(3),
        ),
        (
            "model.layers.3.self_attn.k_proj.weight",
            "blk.3.attn_k.weight",
            TensorRole::K,
            Some(3),
        ),
        (
            "model.layers.3.self_attn.v_proj.weight",
            "blk.3.attn_v.weight",
            TensorRole::V,
            Some(3),
        ),
        (
            "model.layers.10.self_attn.q_proj.bias",
            "blk.10.attn_q.bias",
            TensorRole::QBias,
            Some(10),
        ),
        (
            "model.layers.10.self_attn.k_proj.bias",
            "blk.10.attn_k.bias",
            TensorRole::KBias,
            Some(10),
        ),
        (
            "model.layers.10.self_attn.v_proj.bias",
            "blk.10.attn_v.bias",
            TensorRole::VBias,
            Some(10),
        ),
        (
            "model.layers.7.self_attn.o_proj.weight",
            "blk.7.attn_output.weight",
            TensorRole::AttnOutput,
            Some(7),
        ),
        (
            "model.layers.7.post_attention_layernorm.weight",
            "blk.7.ffn_norm.weight",
            TensorRole::FfnNorm,
            Some(7),
        ),
        (
            "model.layers.79.mlp.gate_proj.weight",
            "blk.79.ffn_gate.weight",
            TensorRole::Gate,
            Some(79),
        ),
        (
            "model.layers.79.mlp.up_proj.weight",
            "blk.79.ffn_up.weight",
            TensorRole::Up,
            Some(79),
        ),
        (
            "model.layers.79.mlp.down_proj.weight",
            "blk.79.ffn_down.weight",
            TensorRole::Down,
            Some(79),
        ),
    ];

    #[test]
    fn every_role_maps_both_ways() {
        for (hf, gg, role, layer) in PAIRS {
            assert_eq!(hf_to_gguf_name(hf).as_deref(), Some(*gg), "{hf}");
            assert_eq!(gguf_to_hf_name(gg).as_deref(), Some(*hf), "{gg}");
            assert_eq!(role_of_hf_name(hf), Some((*role, *layer)), "{hf}");
            let back = hf_to_gguf_name(&gguf_to_hf_name(gg).unwrap()).unwrap();
            assert_eq!(&back, gg);
        }
    }

    #[test]
    fn unmapped_and_skipped_names() {
        assert!(is_skipped_hf_tensor(
            "model.layers.0.self_attn.rotary_emb.inv_freq"
        ));
        assert_eq!(
            hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
        assert_eq!(
            hf_to_gguf_name("model.layers.0.self_attn.qkv_proj.weight"),
            None
        );
        assert_eq!(hf_to_gguf_name("model.layers.03.mlp.up_proj.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.-1.mlp.up_proj.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.1.mlp.up_proj"), None);
        assert_eq!(hf_to_gguf_name("model.embed_tokens.scale"), None);
        assert_eq!(gguf_to_hf_name(ROPE_FREQS_GGUF_NAME), None);
        assert_eq!(gguf_to_hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(gguf_to_hf_name("blk.1.attn_qkv.weight"), None);
        assert_eq!(
            role_of_hf_name("model.layers.0.self_attn.o_proj.bias"),
            None
        );
        assert_eq!(role_of_hf_name("model.norm.bias"), None);
        // Mapped like tensor_mapping.py's try_suffixes, but no role of ours.
        assert_eq!(
            hf_to_gguf_name("model.layers.2.self_attn.o_proj.bias").as_deref(),
            Some("blk.2.attn_output.bias")
        );
    }

    #[test]
    fn f32_rule_follows_prepare_tensors() {
        assert!(gguf_keeps_f32("blk.0.attn_norm.weight", 1));
        assert!(gguf_keeps_f32("output_norm.weight", 1));
        assert!(gguf_keeps_f32("blk.0.attn_q.bias", 1));
        assert!(gguf_keeps_f32(ROPE_FREQS_GGUF_NAME, 1));
        assert!(!gguf_keeps_f32("blk.0.attn_q.weight", 2));
        assert!(!gguf_keeps_f32("token_embd.weight", 2));
        assert!(!gguf_keeps_f32("output.weight", 2));
    }
}
