#!/usr/bin/env python3
"""Checks tensor-parallel rank files against an independent numpy computation from the
Hugging Face weights.

    check_trtllm_qkv.py HF_DIR OUT_DIR trtllm|megatron

Rank files are read with the official `safetensors` package (`safetensors.deserialize`) and
compared bit for bit (as unsigned integers) with what the reference converters compute:

- trtllm (TensorRT-LLM `models/llama/convert.py` `convert_layer`, `models/convert_utils.py`
  `dup_kv_weight`, `split_matrix_tp`): KV heads repeated in place `tp / n_kv` times when
  n_kv < tp, q, k and v chunked by tp on dim 0, then `cat([q_r, k_r, v_r])`; biases alike;
  `mlp.fc` = chunk of gate_proj, `mlp.gate` = chunk of up_proj, dense/proj chunked on dim 1;
  embedding and lm_head zero-padded to a multiple of tp and chunked on dim 0.
- megatron (Megatron-LM `tools/checkpoint/loader_llama_mistral.py` `set_attn_state`): the
  global linear_qkv is `cat([q.reshape(ng, hpg*d, -1), k.reshape(ng, d, -1),
  v.reshape(ng, d, -1)], dim=1).reshape(-1, hidden)`, chunked by tp on dim 0; linear_fc1 per
  rank is `cat([gate_r, up_r])`.

Prints "ok: N tensors" or exits 1 naming the first mismatch. pp must be 1.
"""
import json
import os
import sys

import numpy as np
import safetensors

INT = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32}


def load_file(path):
    with open(path, "rb") as f:
        out = {}
        for name, t in safetensors.deserialize(f.read()):
            a = np.frombuffer(bytes(t["data"]), dtype=INT[t["dtype"]])
            out[name] = a.reshape(t["shape"])
        return out


def load_hf(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, name)))
    return out


def chunk(a, tp, r, axis=0):
    return np.split(a, tp, axis=axis)[r]


def main():
    hf_dir, out_dir, layout = sys.argv[1:4]
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    hf = load_hf(hf_dir)
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hidden = cfg["hidden_size"]
    d = cfg.get("head_dim") or hidden // heads
    layers, vocab = cfg["num_hidden_layers"], cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", False)
    if layout == "trtllm":
        tl = json.load(open(os.path.join(out_dir, "config.json")))
        tp = tl["mapping"]["tp_size"]
        assert tl["mapping"]["pp_size"] == 1
        files = [os.path.join(out_dir, f"rank{r}.safetensors") for r in range(tp)]
    else:
        tp = len([n for n in os.listdir(out_dir) if n.startswith("mp_rank_")])
        files = [os.path.join(out_dir, f"mp_rank_{r:02}", "model.safetensors") for r in range(tp)]

    padded = -(-vocab // tp) * tp
    emb = hf["model.embed_tokens.weight"]
    head = emb if tied else hf["lm_head.weight"]

    def pad(a):
        return np.concatenate([a, np.zeros((padded - vocab, a.shape[1]), a.dtype)])

    checked = 0
    for r, path in enumerate(files):
        got = load_file(path)
        want = {}
        for l in range(layers):
            p = f"model.layers.{l}."
            for suffix in ["weight", "bias"]:
                qn = p + "self_attn.q_proj." + suffix
                if qn not in hf:
                    continue
                q = hf[qn].reshape(heads, d, -1)
                k = hf[p + "self_attn.k_proj." + suffix].reshape(kv, d, -1)
                v = hf[p + "self_attn.v_proj." + suffix].reshape(kv, d, -1)
                if layout == "trtllm":
                    if kv < tp:
                        k, v = np.repeat(k, tp // kv, axis=0), np.repeat(v, tp // kv, axis=0)
                    parts = [chunk(x, tp, r).reshape(-1, x.shape[2]) for x in (q, k, v)]
                    fused = np.concatenate(parts)
                    name = f"transformer.layers.{l}.attention.qkv.{suffix}"
                else:
                    hpg = heads // kv
                    g = np.concatenate(
                        [q.reshape(kv, hpg * d, -1), k.reshape(kv, d, -1), v.reshape(kv, d, -1)], axis=1
                    ).reshape(-1, q.shape[2])
                    fused = chunk(g, tp, r)
                    name = f"decoder.layers.{l}.self_attention.linear_qkv.{suffix}"
                want[name] = fused.reshape(-1) if suffix == "bias" else fused
            gate, up = hf[p + "mlp.gate_proj.weight"], hf[p + "mlp.up_proj.weight"]
            o, down = hf[p + "self_attn.o_proj.weight"], hf[p + "mlp.down_proj.weight"]
            if layout == "trtllm":
                t = f"transformer.layers.{l}."
                want[t + "attention.dense.weight"] = chunk(o, tp, r, 1)
                want[t + "mlp.fc.weight"] = chunk(gate, tp, r)
                want[t + "mlp.gate.weight"] = chunk(up, tp, r)
                want[t + "mlp.proj.weight"] = chunk(down, tp, r, 1)
                want[t + "input_layernorm.weight"] = hf[p + "input_layernorm.weight"]
            else:
                t = f"decoder.layers.{l}."
                want[t + "self_attention.linear_proj.weight"] = chunk(o, tp, r, 1)
                want[t + "mlp.linear_fc1.weight"] = np.concatenate([chunk(gate, tp, r), chunk(up, tp, r)])
                want[t + "mlp.linear_fc2.weight"] = chunk(down, tp, r, 1)
                want[t + "pre_mlp_layernorm.weight"] = hf[p + "post_attention_layernorm.weight"]
        if layout == "trtllm":
            want["transformer.vocab_embedding.weight"] = chunk(pad(emb), tp, r)
            want["lm_head.weight"] = chunk(pad(head), tp, r)
        else:
            want["embedding.word_embeddings.weight"] = chunk(pad(emb), tp, r)
            want["output_layer.weight"] = chunk(pad(head), tp, r)
        for name, w in want.items():
            if name not in got:
                sys.exit(f"{path}: {name} missing")
            g = got[name]
            if g.shape != w.shape or not np.array_equal(g, w):
                sys.exit(f"{path}: {name} differs (shape {g.shape} vs {w.shape})")
            checked += 1
    print(f"ok: {checked} tensors in {len(files)} {layout} ranks")


if __name__ == "__main__":
    main()
