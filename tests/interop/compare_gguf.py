#!/usr/bin/env python3
"""Compare a GGUF file against a reference digest (or a reference GGUF).

Usage:
    compare_gguf.py OURS.gguf [MORE-SPLIT-MEMBERS...] REFERENCE
        [--ref-gguf REF.gguf [--ref-gguf REF-00002.gguf ...]]
        [--ignore KEY ...] [--ignore-tensor-order] [--atol X]

REFERENCE is a digest JSON written by gguf_digest.py, or a .gguf file (it is
digested on the fly).  Every difference is printed:
  * metadata keys missing from ours / extra in ours, value-type and value
    differences (for summarised arrays: length and sha256, plus the first
    differing index when both files are at hand);
  * tensors missing / extra, shape, ggml type and data differences.  For a
    tensor whose sha256 differs, both are dequantized with gguf.quants and the
    max |ours - ref| is printed when the reference GGUF is available (REFERENCE
    is a .gguf, or --ref-gguf is given); with only a digest, the difference of
    the stored value statistics is printed instead.
  * a different tensor order (ignorable with --ignore-tensor-order).

--ignore KEY drops a metadata key from the comparison (repeatable; a KEY ending
in '*' is a prefix).  Ignored keys that do differ are still listed, marked
"ignored", so nothing is hidden.  Exit status: 0 when there are no
(non-ignored) differences, 1 otherwise, 2 on usage errors.
--atol X: a tensor whose data differ but whose max abs diff is <= X is reported
but not counted as a failure (default: exact match required).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_digest  # noqa: E402
from gguf import GGUFReader  # noqa: E402


def is_ignored(key: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.endswith("*") and key.startswith(p[:-1]):
            return True
        if key == p:
            return True
    return False


def short(v: Any, n: int = 200) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


class Readers:
    """Open GGUF files lazily, find a tensor's reader by name."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self._readers: list[GGUFReader] | None = None

    def readers(self) -> list[GGUFReader]:
        if self._readers is None:
            self._readers = [GGUFReader(p, "r") for p in self.paths]
        return self._readers

    def tensor(self, name: str):
        for r in self.readers():
            for t in r.tensors:
                if t.name == name:
                    return r, t
        return None, None

    def field(self, key: str):
        for r in self.readers():
            if key in r.fields:
                return r.fields[key]
        return None


def first_array_diff(ours: Readers, ref: Readers, key: str) -> str:
    fo, fr = ours.field(key), ref.field(key)
    if fo is None or fr is None:
        return ""
    # re-decode the full arrays (the digest only keeps a hash of long ones)
    def items(f):
        e = gguf_digest.ARRAY_INLINE_MAX
        gguf_digest.ARRAY_INLINE_MAX = 1 << 62
        try:
            return gguf_digest.field_entry(f).get("value")
        finally:
            gguf_digest.ARRAY_INLINE_MAX = e
    ia, ib = items(fo), items(fr)
    if ia is None or ib is None:
        return ""
    n = min(len(ia), len(ib))
    for i in range(n):
        if ia[i] != ib[i]:
            return f" first difference at [{i}]: ours={short(ia[i], 80)} ref={short(ib[i], 80)}"
    if len(ia) != len(ib):
        return f" common prefix of {n} items equal; lengths {len(ia)} vs {len(ib)}"
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="OURS.gguf [split members...] REFERENCE(.json|.gguf)")
    ap.add_argument("--ref-gguf", action="append", default=[], help="reference GGUF (for numeric diffs); repeat for split members")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY", help="metadata key to leave out of the verdict (repeatable, 'prefix*' allowed)")
    ap.add_argument("--ignore-tensor-order", action="store_true")
    ap.add_argument("--atol", type=float, default=None, help="accept tensor data differences up to this max abs diff")
    ap.add_argument("--quiet", action="store_true", help="only print differences and the verdict")
    args = ap.parse_args(argv)
    if len(args.paths) < 2:
        ap.error("need OURS.gguf and REFERENCE")
    ours_paths, ref_arg = args.paths[:-1], args.paths[-1]

    ours_d = gguf_digest.digest(ours_paths, stats=True)
    ref_paths = list(args.ref_gguf)
    if ref_arg.endswith(".gguf"):
        ref_paths = [ref_arg] + ref_paths
        ref_d = gguf_digest.digest(ref_paths, stats=True)
    else:
        with open(ref_arg, encoding="utf-8") as f:
            ref_d = json.load(f)
        if ref_d.get("format") != gguf_digest.DIGEST_FORMAT:
            print(f"warning: reference digest format {ref_d.get('format')!r} != {gguf_digest.DIGEST_FORMAT!r}")
    ours_r = Readers(ours_paths)
    ref_r = Readers(ref_paths) if ref_paths else None

    failures = 0
    ignored = 0

    def report(kind: str, msg: str, key: str | None = None, fail: bool = True) -> None:
        nonlocal failures, ignored
        if key is not None and is_ignored(key, args.ignore):
            ignored += 1
            print(f"[ignored] {kind}: {msg}")
        elif fail:
            failures += 1
            print(f"DIFF {kind}: {msg}")
        else:
            print(f"[accepted] {kind}: {msg}")

    if ours_d.get("gguf_version") != ref_d.get("gguf_version"):
        report("gguf_version", f"ours={ours_d.get('gguf_version')} ref={ref_d.get('gguf_version')}")

    # ---- metadata
    om, rm = ours_d["metadata"], ref_d["metadata"]
    for key in sorted(set(om) | set(rm)):
        if key not in om:
            report("metadata missing in ours", f"{key} (ref: {short(rm[key])})", key)
            continue
        if key not in rm:
            report("metadata extra in ours", f"{key} (ours: {short(om[key])})", key)
            continue
        a, b = om[key], rm[key]
        if a == b:
            continue
        if a.get("type") != b.get("type") or a.get("elem_type") != b.get("elem_type"):
            report("metadata type", f"{key}: ours={a.get('type')}[{a.get('elem_type', '')}] ref={b.get('type')}[{b.get('elem_type', '')}]"
                   f"; values ours={short(a.get('value', a.get('sha256')))} ref={short(b.get('value', b.get('sha256')))}", key)
            continue
        if a.get("type") == "ARRAY":
            extra = ""
            if ref_r is not None:
                extra = first_array_diff(ours_r, ref_r, key)
            elif "value" in a and "value" in b:
                for i, (x, y) in enumerate(zip(a["value"], b["value"])):
                    if x != y:
                        extra = f" first difference at [{i}]: ours={short(x, 80)} ref={short(y, 80)}"
                        break
            report("metadata value", f"{key}: len ours={a.get('len')} ref={b.get('len')}; "
                   f"ours={short(a.get('value', a.get('sha256')))} ref={short(b.get('value', b.get('sha256')))}{extra}", key)
        else:
            report("metadata value", f"{key} ({a.get('type')}): ours={short(a.get('value'))} ref={short(b.get('value'))}", key)

    # ---- tensors
    ot = {t["name"]: t for t in ours_d["tensors"]}
    rt = {t["name"]: t for t in ref_d["tensors"]}
    for name in [t["name"] for t in ref_d["tensors"] if t["name"] not in ot]:
        t = rt[name]
        report("tensor missing in ours", f"{name} {t['type']} {t['shape']}")
    for name in [t["name"] for t in ours_d["tensors"] if t["name"] not in rt]:
        t = ot[name]
        report("tensor extra in ours", f"{name} {t['type']} {t['shape']}")
    n_equal = 0
    for name in [t["name"] for t in ref_d["tensors"] if t["name"] in ot]:
        a, b = ot[name], rt[name]
        problems = []
        if a["shape"] != b["shape"]:
            problems.append(f"shape ours={a['shape']} ref={b['shape']}")
        if a["type"] != b["type"]:
            problems.append(f"type ours={a['type']} ref={b['type']}")
        if a["sha256"] == b["sha256"] and not problems:
            n_equal += 1
            continue
        numeric = ""
        max_abs = None
        if a["sha256"] != b["sha256"]:
            if ref_r is not None and a["shape"] == b["shape"]:
                ro, to = ours_r.tensor(name)
                rr, tr = ref_r.tensor(name)
                try:
                    vo = np.asarray(gguf_digest.tensor_values(ro, to), dtype=np.float64)
                    vr = np.asarray(gguf_digest.tensor_values(rr, tr), dtype=np.float64)
                    d = np.abs(vo - vr)
                    max_abs = float(np.nanmax(d)) if d.size else 0.0
                    n_diff = int((vo != vr).sum())
                    numeric = f"; max_abs_diff={max_abs:.6g} ({n_diff}/{vo.size} values differ)"
                except Exception as e:  # noqa: BLE001
                    numeric = f"; dequantize failed: {e}"
            else:
                sa, sb = a.get("stats", {}), b.get("stats", {})
                if "sum" in sa and "sum" in sb:
                    numeric = (f"; (no reference GGUF: stats only) sum ours={sa['sum']:.9g} ref={sb['sum']:.9g} "
                               f"sumsq ours={sa['sumsq']:.9g} ref={sb['sumsq']:.9g} absmax ours={sa['absmax']:.6g} ref={sb['absmax']:.6g}")
            problems.append(f"data sha256 differs{numeric}")
        accept = (not [p for p in problems if not p.startswith("data")] and args.atol is not None
                  and max_abs is not None and max_abs <= args.atol)
        report("tensor", f"{name}: " + "; ".join(problems), fail=not accept)

    if True:  # tensor order (llama.cpp itself does not care; reported, ignorable)
        o_order = [t["name"] for t in ours_d["tensors"] if t["name"] in rt]
        r_order = [t["name"] for t in ref_d["tensors"] if t["name"] in ot]
        if o_order != r_order:
            i = next(i for i, (x, y) in enumerate(zip(o_order, r_order)) if x != y)
            msg = f"first difference at position {i}: ours={o_order[i]} ref={r_order[i]}"
            if args.ignore_tensor_order:
                print(f"[ignored] tensor order: {msg}")
                ignored += 1
            else:
                report("tensor order", msg)

    summary = {
        "ours": ours_d["files"], "reference": os.path.basename(ref_arg),
        "metadata_keys": {"ours": len(om), "ref": len(rm)},
        "tensors": {"ours": len(ot), "ref": len(rt), "identical": n_equal},
        "differences": failures, "ignored_differences": ignored,
        "result": "MATCH" if failures == 0 else "DIFFERENT",
    }
    print(json.dumps(summary))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
