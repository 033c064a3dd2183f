#!/usr/bin/env python3
"""Writes a one-layer random f32 Llama with a chosen vocabulary size (for eval's vocab checks).

Usage: make_tiny_model.py OUT_DIR VOCAB
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

out, vocab = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
hidden, ff, heads, kv = 32, 64, 2, 1
hd = hidden // heads
rng = np.random.default_rng(0)


def r(*shape):
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


t = {
    "model.embed_tokens.weight": r(vocab, hidden),
    "model.norm.weight": np.ones(hidden, np.float32),
    "lm_head.weight": r(vocab, hidden),
    "model.layers.0.input_layernorm.weight": np.ones(hidden, np.float32),
    "model.layers.0.post_attention_layernorm.weight": np.ones(hidden, np.float32),
    "model.layers.0.self_attn.q_proj.weight": r(heads * hd, hidden),
    "model.layers.0.self_attn.k_proj.weight": r(kv * hd, hidden),
    "model.layers.0.self_attn.v_proj.weight": r(kv * hd, hidden),
    "model.layers.0.self_attn.o_proj.weight": r(hidden, heads * hd),
    "model.layers.0.mlp.gate_proj.weight": r(ff, hidden),
    "model.layers.0.mlp.up_proj.weight": r(ff, hidden),
    "model.layers.0.mlp.down_proj.weight": r(hidden, ff),
}
save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
(out / "config.json").write_text(
    json.dumps(
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": hidden,
            "intermediate_size": ff,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "vocab_size": vocab,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
        }
    )
)
