#!/usr/bin/env python3
"""Writes a one-layer llama GGUF whose `blk.0.ffn_down.weight` is block-quantized (the rest F32):
Q8_0 (quantized by gguf-py), or with `IQ4_NL` random IQ4_NL blocks, a type the forward pass has
no kernel for, to check that it names the tensor.

Usage: make_q8_gguf.py OUT.gguf [IQ4_NL]
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType, quants

out = sys.argv[1]
hidden, ff, heads, kv, vocab = 32, 64, 2, 1, 64
rng = np.random.default_rng(0)


def r(*shape):
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


w = gguf.GGUFWriter(out, "llama")
w.add_context_length(128)
w.add_embedding_length(hidden)
w.add_feed_forward_length(ff)
w.add_block_count(1)
w.add_head_count(heads)
w.add_head_count_kv(kv)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(10000.0)
w.add_vocab_size(vocab)
w.add_tokenizer_model("gpt2")
w.add_token_list([f"t{i}" for i in range(vocab)])
w.add_token_merges([])
w.add_tensor("token_embd.weight", r(vocab, hidden))
w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
w.add_tensor("output.weight", r(vocab, hidden))
w.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, np.float32))
w.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, np.float32))
w.add_tensor("blk.0.attn_q.weight", r(hidden, hidden))
w.add_tensor("blk.0.attn_k.weight", r(hidden // heads * kv, hidden))
w.add_tensor("blk.0.attn_v.weight", r(hidden // heads * kv, hidden))
w.add_tensor("blk.0.attn_output.weight", r(hidden, hidden))
w.add_tensor("blk.0.ffn_gate.weight", r(ff, hidden))
w.add_tensor("blk.0.ffn_up.weight", r(ff, hidden))
if len(sys.argv) > 2 and sys.argv[2] == "IQ4_NL":
    down = rng.integers(0, 256, size=(hidden, ff // 32 * 18), dtype=np.uint8)
    w.add_tensor("blk.0.ffn_down.weight", down, raw_dtype=GGMLQuantizationType.IQ4_NL)
else:
    down = quants.quantize(r(hidden, ff), GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn_down.weight", down, raw_dtype=GGMLQuantizationType.Q8_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
