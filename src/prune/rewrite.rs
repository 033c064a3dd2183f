//! The pruned model's description: `config.json` for Hugging Face folders, the `<arch>.*`
//! metadata for GGUF. `head_dim` is never pruned, so when `hidden_size / num_attention_heads`
//! no longer equals it, it is written explicitly (transformers reads `config.head_dim`;
//! llama.cpp reads `attention.key_length` / `value_length`, which convert_hf_to_gguf.py writes
//! from `head_dim`).

use super::select::Kept;
use crate::calibrate::Dims;
use formats::gguf::MetadataValue;
use serde_json::Value;

/// `config` (the input's `config.json`) with the pruned sizes.
pub fn config_json(mut config: Value, kept: &Kept) -> Value {
    let t = kept.target();
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    for (key, v) in [
        ("num_hidden_layers", t.layers),
        ("hidden_size", t.hidden),
        ("intermediate_size", t.ffn),
        ("num_attention_heads", t.heads),
        ("num_key_value_heads", t.kv_heads),
    ] {
        obj.insert(key.into(), Value::from(v));
    }
    if obj.contains_key("head_dim") || t.hidden != t.heads * t.head_dim {
        obj.insert("head_dim".into(), Value::from(t.head_dim));
    }
    // Per-layer lists (newer transformers' `layer_types`) follow the kept layers.
    if let Some(Value::Array(items)) = obj.get("layer_types") {
        if items.len() == kept.source.layers {
            let kept_items: Vec<Value> = kept.layers.iter().map(|&l| items[l].clone()).collect();
            obj.insert("layer_types".into(), Value::Array(kept_items));
        }
    }
    config
}

/// GGUF metadata with the pruned sizes (`split.*` keys dropped: the output is one file) and
/// `general.size_label` recomputed from `parameters` (gguf-py counts every tensor written).
/// Errors name a size key stored per layer (an array), which this rewrite does not handle.
pub fn gguf_metadata(
    metadata: &[(String, MetadataValue)],
    kept: &Kept,
    parameters: u64,
) -> Result<Vec<(String, MetadataValue)>, String> {
    let t: Dims = kept.target();
    let arch = metadata
        .iter()
        .find(|(k, _)| k == "general.architecture")
        .and_then(|(_, v)| v.as_str())
        .ok_or("general.architecture is missing")?
        .to_string();
    let sizes = [
        ("block_count", t.layers),
        ("embedding_length", t.hidden),
        ("feed_forward_length", t.ffn),
        ("attention.head_count", t.heads),
        ("attention.head_count_kv", t.kv_heads),
    ];
    let mut out: Vec<(String, MetadataValue)> = Vec::with_capacity(metadata.len() + 2);
    let mut has_key_length = false;
    for (k, v) in metadata.iter().filter(|(k, _)| !k.starts_with("split.")) {
        let short = k.strip_prefix(&format!("{arch}.")).unwrap_or("");
        let mut value = v.clone();
        if let Some((_, n)) = sizes.iter().find(|(s, _)| *s == short) {
            if v.as_array().is_some() {
                return Err(format!(
                    "{k} is stored per layer, which pruning does not rewrite"
                ));
            }
            value = MetadataValue::U32(*n as u32);
        }
        if k == "general.size_label" {
            value = MetadataValue::String(crate::export::gguf_meta::size_label(parameters));
        }
        if short == "attention.key_length" || short == "attention.value_length" {
            has_key_length = true;
        }
        out.push((k.clone(), value));
    }
    if !has_key_length && t.hidden != t.heads * t.head_dim {
        // Placed after head_count_kv, where convert_hf_to_gguf.py writes them.
        let at = out
            .iter()
            .position(|(k, _)| *k == format!("{arch}.attention.head_count_kv"))
            .map_or(out.len(), |i| i + 1);
        for (i, key) in ["attention.key_length", "attention.value_length"]
            .iter()
            .enumerate()
        {
            out.insert(
                at + i,
                (
                    format!("{arch}.{key}"),
                    MetadataValue::U32(t.head_dim as u32),
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        let mut k = Kept::all(Dims {
            layers: 3,
            hidden: 8,
            ffn: 6,
            heads: 4,
            kv_heads: 2,
            head_dim: 2,
        });
        k.layers = vec![0, 2];
        k.ffn = vec![vec![0, 1]; 2];
        k.heads = vec![vec![0, 2]; 2];
        k.query_groups = vec![vec![0, 1]; 2];
        k
    }

    #[test]
    fn config_gets_sizes_and_explicit_head_dim() {
        let cfg = serde_json::json!({"hidden_size": 8, "num_hidden_layers": 3, "layer_types": ["a", "b", "c"]});
        let out = config_json(cfg, &kept());
        assert_eq!(out["num_hidden_layers"], 2);
        assert_eq!(out["intermediate_size"], 2);
        assert_eq!(out["num_attention_heads"], 2);
        assert_eq!(out["head_dim"], 2); // 8 / 2 != 2
        assert_eq!(out["layer_types"], serde_json::json!(["a", "c"]));
    }

    #[test]
    fn gguf_sizes_and_key_length() {
        let md = vec![
            (
                "general.architecture".to_string(),
                MetadataValue::String("llama".into()),
            ),
            ("llama.block_count".to_string(), MetadataValue::U32(3)),
            (
                "llama.attention.head_count".to_string(),
                MetadataValue::U32(4),
            ),
            (
                "llama.attention.head_count_kv".to_string(),
                MetadataValue::U32(2),
            ),
            (
                "llama.rope.dimension_count".to_string(),
                MetadataValue::U32(2),
            ),
            ("split.count".to_string(), MetadataValue::U16(2)),
        ];
        let out = gguf_metadata(&md, &kept(), 10).unwrap();
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "general.architecture",
                "llama.block_count",
                "llama.attention.head_count",
                "llama.attention.head_count_kv",
                "llama.attention.key_length",
                "llama.attention.value_length",
                "llama.rope.dimension_count"
            ]
        );
        assert_eq!(out[1].1, MetadataValue::U32(2));
        assert_eq!(out[2].1, MetadataValue::U32(2));
        assert_eq!(out[4].1, MetadataValue::U32(2));
    }
}
