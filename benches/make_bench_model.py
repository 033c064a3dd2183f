#!/usr/bin/env python3
"""Generates a large sharded bf16 Llama checkpoint for whole-job benchmarks (not committed).

    make_bench_model.py OUT_DIR --layers 12      # about 1.1 GB
    make_bench_model.py OUT_DIR --layers 24      # about 2.2 GB

Shape: hidden 2048, ffn 5632, 16 heads / 4 KV heads (TinyLlama-1.1B's geometry), vocab from the
fixture BPE tokenizer, which is copied in so the model converts to GGUF. Shards of at most
500 MB with a transformers-style index. Deterministic (seeded), written tensor by tensor so
the generator itself never holds more than one tensor.
"""
import argparse
import json
import os
import shutil

import numpy as np
import safetensors

HIDDEN, FFN, HEADS, KV_HEADS = 2048, 5632, 16, 4
HEAD_DIM = HIDDEN // HEADS
SHARD_BYTES = 500_000_000


def bf16_bits(rng, shape, scale=0.02, around=0.0):
    x = (rng.standard_normal(shape, dtype=np.float32) * scale + around).astype(np.float32)
    bits = x.view(np.uint32)
    # round to nearest even, as torch does when casting to bfloat16
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return np.ascontiguousarray(bits.astype(np.uint16))


def tensor_list(layers, vocab):
    yield "model.embed_tokens.weight", (vocab, HIDDEN), 0.0
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (HIDDEN,), 1.0
        yield p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN), 0.0
        yield p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.0
        yield p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.0
        yield p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM), 0.0
        yield p + "post_attention_layernorm.weight", (HIDDEN,), 1.0
        yield p + "mlp.gate_proj.weight", (FFN, HIDDEN), 0.0
        yield p + "mlp.up_proj.weight", (FFN, HIDDEN), 0.0
        yield p + "mlp.down_proj.weight", (HIDDEN, FFN), 0.0
    yield "model.norm.weight", (HIDDEN,), 1.0
    yield "lm_head.weight", (vocab, HIDDEN), 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizer-bpe"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tok = json.load(open(os.path.join(args.tokenizer, "tokenizer.json")))
    vocab = len(tok["model"]["vocab"]) + len(
        [t for t in tok.get("added_tokens", []) if t["id"] >= len(tok["model"]["vocab"])]
    )
    rng = np.random.default_rng(1234)

    shards, current, size = [], [], 0
    for name, shape, around in tensor_list(args.layers, vocab):
        nbytes = int(np.prod(shape)) * 2
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape, around))
        size += nbytes
    shards.append(current)

    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        # serialize_file reads the buffers through data_ptr, so the arrays are kept alive until
        # it returns (the same low-level call safetensors' save_file makes).
        arrays, specs = [], {}
        for name, shape, around in shard:
            bits = bf16_bits(rng, shape, 0.02 if around == 0.0 else 0.05, around)
            arrays.append(bits)
            specs[name] = safetensors.TensorSpec(dtype="bfloat16", shape=list(shape),
                                                 data_ptr=bits.ctypes.data, data_len=bits.nbytes)
            weight_map[name] = fname
            total += bits.nbytes
        safetensors.serialize_file(specs, os.path.join(args.out, fname), metadata={"format": "pt"})
        del arrays, specs
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": args.layers, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": vocab,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "hidden_act": "silu", "bos_token_id": tok["added_tokens"][0]["id"], "eos_token_id": tok["added_tokens"][0]["id"],
        "attention_bias": False, "mlp_bias": False,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(args.tokenizer, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))
    print(f"{args.out}: {len(shards)} shards, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
