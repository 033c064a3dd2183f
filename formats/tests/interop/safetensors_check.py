"""Interop helper for formats/tests/safetensors_interop.rs: the official `safetensors` package
(and huggingface_hub's shard splitter) on the other side of our reader and writer.

  check <file> <expect.json>   read <file> with safetensors; compare with the expectation
  write <file>                 write <file> with safetensors; print the expectation JSON
  shards <max> <sizes.json>    print huggingface_hub's split for [[name, size], ...]
"""
import ctypes
import inspect
import json
import sys

import numpy as np
from safetensors import TensorSpec, deserialize, safe_open, serialize_file
from safetensors.numpy import save

# safetensors dtype -> numpy dtype, for the dtypes numpy has.
NUMPY = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32, "F64": np.float64,
    "I64": np.int64, "U64": np.uint64,
}
# dtypes numpy lacks, written through TensorSpec with the names the bindings accept.
RAW = {"BF16": ("bfloat16", 2), "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1)}


def check(path, expect_path):
    with open(expect_path) as f:
        expect = json.load(f)
    with open(path, "rb") as f:
        raw = f.read()
    got = {name: info for name, info in deserialize(raw)}
    assert sorted(got) == sorted(expect["tensors"]), (sorted(got), sorted(expect["tensors"]))
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == expect["metadata"], (f.metadata(), expect["metadata"])
        for name, e in expect["tensors"].items():
            g = got[name]
            assert g["dtype"] == e["dtype"] and list(g["shape"]) == e["shape"], (name, g, e)
            assert bytes(g["data"]) == bytes.fromhex(e["hex"]), name
            if e["dtype"] in NUMPY:
                arr = f.get_tensor(name)
                want = np.frombuffer(bytes.fromhex(e["hex"]), dtype=NUMPY[e["dtype"]])
                assert arr.dtype == want.dtype and list(arr.shape) == e["shape"], name
                assert np.array_equal(arr.reshape(-1), want, equal_nan=e["dtype"].startswith("F")), name
    print("ok", len(got))


def write(path):
    rng = np.random.default_rng(7)
    arrays = {}
    for i, (st, npt) in enumerate(NUMPY.items()):
        shape = [(2, 3), (5,), (), (0, 4)][i % 4]
        if npt is np.bool_:
            a = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(npt, np.floating):
            a = rng.standard_normal(size=shape).astype(npt)
        else:
            a = rng.integers(0, 100, size=shape).astype(npt)
        arrays[f"np.{st.lower()}"] = a
    metadata = {"format": "pt"}
    # numpy's save handles the numpy dtypes; bf16/f8 go through the raw TensorSpec path, as
    # torch's save does, so one file holds every dtype.
    blob = save(arrays, metadata=metadata)
    keep = []
    specs = {}
    for name, info in deserialize(blob):
        buf = ctypes.create_string_buffer(bytes(info["data"]), max(1, len(info["data"])))
        keep.append(buf)
        specs[name] = TensorSpec(dtype=arrays[name].dtype.name, shape=list(info["shape"]),
                                 data_ptr=ctypes.addressof(buf), data_len=len(info["data"]))
    for st, (pyname, size) in RAW.items():
        data = rng.integers(0, 256, size=6 * size, dtype=np.uint8).tobytes()
        buf = ctypes.create_string_buffer(data, len(data))
        keep.append(buf)
        specs[f"raw.{st.lower()}"] = TensorSpec(dtype=pyname, shape=[2, 3], data_ptr=ctypes.addressof(buf), data_len=len(data))
    serialize_file(specs, path, metadata=metadata)
    with open(path, "rb") as f:
        raw = f.read()
    tensors = {n: {"dtype": i["dtype"], "shape": list(i["shape"]), "hex": bytes(i["data"]).hex()} for n, i in deserialize(raw)}
    print(json.dumps({"metadata": metadata, "tensors": tensors}))


def shards(max_size, sizes_path):
    from huggingface_hub.serialization import split_state_dict_into_shards_factory

    with open(sizes_path) as f:
        sizes = json.load(f)
    state = {name: size for name, size in sizes}
    # huggingface_hub renamed get_tensor_size to get_storage_size and made the pattern required.
    params = inspect.signature(split_state_dict_into_shards_factory).parameters
    size_arg = "get_storage_size" if "get_storage_size" in params else "get_tensor_size"
    kwargs = {size_arg: lambda s: s, "max_shard_size": int(max_size),
              "filename_pattern": "model{suffix}.safetensors"}
    split = split_state_dict_into_shards_factory(state, **kwargs)
    print(json.dumps({"files": split.filename_to_tensors, "total_size": split.metadata["total_size"]}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"check": check, "write": write, "shards": shards}[cmd](*sys.argv[2:])
