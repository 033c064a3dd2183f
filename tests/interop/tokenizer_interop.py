"""Interop checks for ckpt-opt's tokenizer conversion (driven by tests/tokenizer_interop.rs).

  make KIND DIR CALIB          train a tiny tokenizer (KIND = bpe | spm) into DIR
  expect DIR VOCAB_SIZE OUT    write the tokenizer.* GGUF metadata that llama.cpp's
                               convert_hf_to_gguf.py would write, as JSON
  compare EXPECTED ACTUAL      compare two metadata JSON dumps key by key, in order
  roundtrip ORIG NEW CALIB     encode calib paragraphs with both tokenizer.json files; ids must match

convert_hf_to_gguf.py needs torch and transformers, so the few lines it runs for the vocabulary are
re-implemented here with the `tokenizers` package (cited per function). `SpecialVocab` (merges,
special ids, add_* flags, chat template) is the real one from the `gguf` package, recorded through a
real `GGUFWriter`, so key order and value types are the converter's.
"""

import json
import re
import sys
from pathlib import Path

import gguf
from gguf.constants import GGUFValueType
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, normalizers

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "string",
    GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64", GGUFValueType.FLOAT64: "f64",
}


def paragraphs(calib, n=40):
    text = Path(calib).read_text(encoding="utf-8", errors="replace")
    paras = [p for p in text.split("\n\n") if p.strip()]
    return paras[:n]


def make(kind, out, calib):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paras = paragraphs(calib, 400)
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tr = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(paras, tr)
        tok.add_tokens(["[FOO]"])  # a non-special added token: USER_DEFINED
        tok.add_special_tokens(["<|im_start|>"])
        cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False,
               "chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}"}
        tok.save(str(out / "tokenizer.json"))
    elif kind == "spm":
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        tr = trainers.BpeTrainer(vocab_size=900, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens)
        tok.train_from_iterator(paras, tr)
        tok.save(str(out / "tokenizer.json"))
        # Byte tokens live in the model vocab only, as in Llama's tokenizer.json.
        j = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
        j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] not in byte_tokens]
        (out / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
        cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False}
    else:
        raise SystemExit(f"unknown kind {kind}")
    (out / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")


def does_token_look_special(t):
    # convert_hf_to_gguf.py ModelBase.does_token_look_special
    return (t in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (t.startswith("<|") and t.endswith("|>"))
            or (t.startswith("<\uff5c") and t.endswith("\uff5c>"))
            or (t.startswith("<unused") and t.endswith(">")))


def get_vocab_base(d, vocab_size):
    # convert_hf_to_gguf.py TextModel.get_vocab_base (AutoTokenizer replaced by tokenizers +
    # the added_tokens list of tokenizer.json); tokpre decided by structure as ckpt-opt does.
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    assert max(vocab.values()) < vocab_size
    j = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    added = {a["content"]: a["id"] for a in j["added_tokens"]}
    added_special = {a["id"]: a["special"] for a in j["added_tokens"]}
    reverse = {i: t for t, i in vocab.items()}
    tokens, toktypes = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        else:
            t = reverse[i]
            if t in added:
                if added_special[i] or does_token_look_special(t):
                    toktypes.append(gguf.TokenType.CONTROL)
                else:
                    t = t.replace("\u2581", " ")
                    toktypes.append(gguf.TokenType.USER_DEFINED)
            else:
                toktypes.append(gguf.TokenType.NORMAL)
            tokens.append(t)
    pre = j["pre_tokenizer"]
    assert pre["type"] == "ByteLevel" and not pre["add_prefix_space"] and pre["use_regex"]
    return tokens, toktypes, "gpt-2"


def llama_hf_tokens(d):
    # gguf-py vocab.py LlamaHfVocab (AutoTokenizer replaced by tokenizers + tokenizer_config.json)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    base = tok.get_vocab_size(with_added_tokens=False)
    vocab = tok.get_vocab(with_added_tokens=True)
    specials = [cfg[f"{t}_token"] for t in ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
                if isinstance(cfg.get(f"{t}_token"), str)]
    special_ids = {vocab[s] for s in specials if s in vocab}
    reverse = {i: t for t, i in vocab.items()}
    out = []
    for i in range(base):
        t = reverse[i]
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t):
            ty = gguf.TokenType.BYTE
        else:
            ty = gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL
        out.append((t, -1000.0, ty))
    for t, i in sorted(((t, i) for t, i in vocab.items() if i >= base), key=lambda x: x[1]):
        out.append((t, -1000.0, gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.USER_DEFINED))
    return out


def sentencepiece_pieces(path):
    """(piece, score, type) of a SentencePiece ModelProto: sentencepiece.SentencePieceProcessor when
    installed, else a small pure-Python protobuf decoder (the test venv has no sentencepiece; this
    is an independent second implementation of what src/export/sentencepiece.rs reads)."""
    try:
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        out = []
        for i in range(sp.vocab_size()):
            ty = (2 if sp.IsUnknown(i) else 3 if sp.IsControl(i) else 5 if sp.IsUnused(i)
                  else 6 if sp.IsByte(i) else 1)
            out.append((sp.IdToPiece(i), sp.GetScore(i), ty))
        return out
    except ImportError:
        pass
    import struct
    buf = Path(path).read_bytes()

    def varint(b, i):
        v = shift = 0
        while True:
            v |= (b[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not b[i - 1] & 0x80:
                return v, i

    def fields(b):
        i = 0
        while i < len(b):
            tag, i = varint(b, i)
            wire = tag & 7
            if wire == 0:
                v, i = varint(b, i)
            elif wire == 1:
                v, i = b[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(b, i)
                v, i = b[i:i + n], i + n
            elif wire == 5:
                v, i = b[i:i + 4], i + 4
            else:
                raise ValueError(f"wire type {wire}")
            yield tag >> 3, v

    out = []
    for f, body in fields(buf):
        if f != 1:
            continue
        piece, score, ty = "", 0.0, 1
        for g, v in fields(body):
            if g == 1:
                piece = v.decode("utf-8")
            elif g == 2:
                score = struct.unpack("<f", v)[0]
            elif g == 3:
                ty = v
        # IsUnknown/IsControl/IsUnused/IsByte; USER_DEFINED (4) and the rest count as NORMAL
        out.append((piece, score, ty if ty in (2, 3, 5, 6) else 1))
    return out


def sentencepiece_tokens(d, vocab_size):
    # conversion/base.py TextModel._create_vocab_sentencepiece
    T = gguf.TokenType
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    toktypes = [T.UNUSED] * vocab_size
    for i, (piece, score, ty) in enumerate(sentencepiece_pieces(d / "tokenizer.model")[:vocab_size]):
        tokens[i], scores[i], toktypes[i] = piece, score, T(ty)
    f = d / "added_tokens.json"
    if f.is_file():
        for key, i in json.loads(f.read_text(encoding="utf-8")).items():
            if i < vocab_size:
                tokens[i], scores[i], toktypes[i] = key, -1000.0, T.USER_DEFINED
    f = d / "tokenizer_config.json"
    if f.is_file():
        for i, data in json.loads(f.read_text(encoding="utf-8")).get("added_tokens_decoder", {}).items():
            i = int(i)
            t = data["content"]
            if i >= vocab_size:
                continue
            if data.get("special") or does_token_look_special(t):
                toktypes[i] = T.CONTROL
            else:
                t = t.replace("\u2581", " ")
                toktypes[i] = T.USER_DEFINED
            scores[i] = -1000.0
            tokens[i] = t
    return list(zip(tokens, scores, toktypes))


def expect(d, vocab_size, out):
    d = Path(d)
    vocab_size = int(vocab_size)
    j = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    w = gguf.GGUFWriter(path=None, arch="llama")
    m = j["model"]
    if (d / "tokenizer.model").is_file():
        # convert_hf_to_gguf.py _set_vocab_sentencepiece (tried first by LlamaModel.set_vocab)
        toks = sentencepiece_tokens(d, vocab_size)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list([t for t, _, _ in toks])
        w.add_token_scores([s for _, s, _ in toks])
        w.add_token_types([ty for _, _, ty in toks])
        gguf.SpecialVocab(d, n_vocab=len(toks)).add_to_gguf(w, quiet=True)
    elif m["type"] == "BPE" and m.get("byte_fallback") and j["decoder"]["type"] == "Sequence":
        # convert_hf_to_gguf.py _set_vocab_llama_hf
        toks = llama_hf_tokens(d)
        n = len(toks)
        # ckpt-opt pads like _create_vocab_sentencepiece (the llama_hf path asserts instead)
        toks += [(f"[PAD{i}]", -1000.0, gguf.TokenType.UNUSED) for i in range(1, vocab_size - n + 1)]
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list([t for t, _, _ in toks])
        w.add_token_scores([s for _, s, _ in toks])
        w.add_token_types([ty for _, _, ty in toks])
        gguf.SpecialVocab(d, n_vocab=len(toks)).add_to_gguf(w, quiet=True)
    else:
        # convert_hf_to_gguf.py _set_vocab_gpt2
        tokens, toktypes, tokpre = get_vocab_base(d, vocab_size)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(tokpre)
        w.add_token_list(tokens)
        w.add_token_types(toktypes)
        gguf.SpecialVocab(d, load_merges=True).add_to_gguf(w, quiet=True)
    dump = []
    for k, v in w.kv_data[0].items():
        if not k.startswith("tokenizer."):
            continue
        if v.type == GGUFValueType.ARRAY:
            sub = v.sub_type or GGUFValueType.get_type(v.value[0])
            vals = [int(x) if sub == GGUFValueType.INT32 else x for x in v.value]
            dump.append([k, "array:" + TYPE_NAMES[sub], vals])
        else:
            dump.append([k, TYPE_NAMES[v.type], v.value])
    Path(out).write_text(json.dumps(dump, ensure_ascii=False), encoding="utf-8")


def compare(expected, actual):
    e = json.loads(Path(expected).read_text(encoding="utf-8"))
    a = json.loads(Path(actual).read_text(encoding="utf-8"))
    ek = [x[0] for x in e]
    ak = [x[0] for x in a]
    if ek != ak:
        raise SystemExit(f"key order differs:\n expected {ek}\n actual   {ak}")
    for (k, et, ev), (_, at, av) in zip(e, a):
        if et != at:
            raise SystemExit(f"{k}: type expected {et}, actual {at}")
        if ev != av:
            if isinstance(ev, list) and isinstance(av, list):
                if len(ev) != len(av):
                    raise SystemExit(f"{k}: {len(ev)} items expected, {len(av)} actual")
                i = next(i for i, (x, y) in enumerate(zip(ev, av)) if x != y)
                raise SystemExit(f"{k}[{i}]: expected {ev[i]!r}, actual {av[i]!r}")
            raise SystemExit(f"{k}: expected {ev!r}, actual {av!r}")
    print(f"metadata equal: {len(e)} keys")


def roundtrip(orig, new, calib):
    a = Tokenizer.from_file(str(Path(orig) / "tokenizer.json"))
    b = Tokenizer.from_str((Path(new) / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((Path(new) / "tokenizer_config.json").read_text(encoding="utf-8"))
    paras = paragraphs(calib, 300)
    # Include text the training never saw (bytes fallback, emoji, CJK) and an added token.
    paras += ["naïve café 🦙 我想在 \t tabs\n\nnewlines  two spaces", "x<|endoftext|>y [FOO] z"]
    n = 0
    for p in paras:
        ia = a.encode(p, add_special_tokens=False).ids
        ib = b.encode(p, add_special_tokens=False).ids
        if ia != ib:
            i = next((i for i, (x, y) in enumerate(zip(ia, ib)) if x != y), min(len(ia), len(ib)))
            raise SystemExit(f"ids differ for {p[:60]!r} at {i}: orig {ia[i:i+8]} ({a.encode(p).tokens[i:i+8]}), "
                             f"ours {ib[i:i+8]} ({b.encode(p).tokens[i:i+8]})")
        if b.decode(ib) != a.decode(ia):
            raise SystemExit(f"decode differs for {p[:60]!r}: {b.decode(ib)!r} vs {a.decode(ia)!r}")
        n += len(ia)
    # add_bos_token: our post-processor adds exactly the BOS the config asks for.
    with_special = b.encode("hello").ids
    plain = b.encode("hello", add_special_tokens=False).ids
    if cfg.get("add_bos_token"):
        bos = b.token_to_id(cfg["bos_token"])
        assert with_special == [bos] + plain, (with_special, plain)
    else:
        assert with_special == plain, (with_special, plain)
    print(f"roundtrip equal: {len(paras)} texts, {n} ids")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"make": make, "expect": expect, "compare": compare, "roundtrip": roundtrip}[cmd](*args)
