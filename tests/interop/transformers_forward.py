#!/usr/bin/env python3
"""Manual check (not in CI: needs torch + transformers, e.g. /work/llama-ref/venv):

    transformers_forward.py ORIGINAL_DIR EXPORT_DIR TEXT [WINDOWS]

transformers' own LlamaForCausalLM run on an `--hf-format transformers` export whose packed
tensors are dequantized in numpy (AWQ GEMM order / FP8 blocks, from check_quantized_hf.py),
against the original model on WINDOWS (default 24) consecutive 128-token windows of TEXT:
prints the export's perplexity and KL(original || export) per token. Loading the export with
`from_pretrained` itself needs autoawq (AWQ) or accelerate and a GPU of compute capability
>= 8.9 (FP8), so the dequantization is done here instead.
"""
import json, sys, os
import numpy as np, torch, safetensors.torch as st
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_quantized_hf import unpack_awq, e4m3
from transformers import LlamaForCausalLM, LlamaConfig
from tokenizers import Tokenizer

orig, quant, text = sys.argv[1], sys.argv[2], sys.argv[3]
windows = int(sys.argv[4]) if len(sys.argv) > 4 else 24
cfg = json.load(open(os.path.join(orig, "config.json")))
def load(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(st.load_file(os.path.join(d, f)))
    return out
q = load(quant)
sd = {}
for name, t in q.items():
    if name.endswith(".qweight"):
        m = name[: -len(".qweight")]
        qw = unpack_awq(t.numpy()).T
        z = unpack_awq(q[m + ".qzeros"].numpy()).T
        s = q[m + ".scales"].float().numpy().T
        g = qw.shape[1] // s.shape[1]
        sd[m + ".weight"] = torch.tensor((qw - np.repeat(z, g, 1)) * np.repeat(s, g, 1), dtype=torch.float32)
    elif name.endswith(".weight_scale_inv"):
        m = name[: -len(".weight_scale_inv")]
        w = q[m + ".weight"].view(torch.uint8).numpy()
        inv = t.numpy()
        per = np.repeat(np.repeat(inv, 128, 0), 128, 1)[: w.shape[0], : w.shape[1]]
        sd[m + ".weight"] = torch.tensor(e4m3(w) * per, dtype=torch.float32)
    elif name.endswith((".qzeros", ".scales")) or (name + "_scale_inv") in q:
        continue
    else:
        sd[name] = t.float()
c = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("quantization_config",)})
c.torch_dtype = torch.float32
student = LlamaForCausalLM(c).float().eval()
missing, unexpected = student.load_state_dict(sd, strict=False)
teacher = LlamaForCausalLM.from_pretrained(orig, dtype=torch.float32).eval()
tok = Tokenizer.from_file(os.path.join(orig, "tokenizer.json"))
ids = tok.encode(open(text).read()).ids[: windows * 128]
x = torch.tensor(ids).view(windows, 128)
with torch.no_grad():
    lt = torch.log_softmax(teacher(x).logits.float(), -1)
    ls = torch.log_softmax(student(x).logits.float(), -1)
kl = (lt.exp() * (lt - ls)).sum(-1).mean().item()
nll = -ls[:, :-1].gather(-1, x[:, 1:, None]).mean().item()
print(json.dumps({"quant": quant, "missing": missing, "unexpected": unexpected, "kl_vs_original": kl,
                  "ppl": float(np.exp(nll)), "teacher_ppl": float(np.exp(-lt[:, :-1].gather(-1, x[:, 1:, None]).mean().item()))}))
