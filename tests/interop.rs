//! Our outputs checked by readers we did not write: the Python `gguf` package (against digests
//! of llama.cpp's own `convert_hf_to_gguf.py` outputs for the same fixtures, see
//! tests/interop/reference/README.md) and the Python `safetensors` package.

mod common;

use common::*;

#[test]
fn gguf_output_equals_llama_cpp_converter_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for model in MODELS {
        for dtype in ["f32", "f16", "bf16"] {
            let reference = root()
                .join("tests/interop/reference")
                .join(format!("{model}.{dtype}.json"));
            assert!(
                reference.exists(),
                "missing reference digest {}",
                reference.display()
            );
            let ours = dir.path().join(format!("{model}.{dtype}.gguf"));
            ok(&[
                "-q",
                "convert",
                s(&fixture(model)),
                s(&ours),
                "--format",
                "gguf",
                "--dtype",
                dtype,
            ]);
            // Metadata (keys, types, values, order-insensitive) and every tensor's name, shape,
            // type and data hash must be identical. Tensor order is ours: the converter's
            // follows Python dict iteration over the shards.
            run_python(
                "compare_gguf.py",
                &[s(&ours), s(&reference), "--ignore-tensor-order"],
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
}

#[test]
fn split_gguf_members_are_read_by_the_gguf_package() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("qwen2-bias")),
        s(&out),
        "--format",
        "gguf",
        "--split-max-tensors",
        "4",
    ]);
    let mut members: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| s(&e.unwrap().path()).to_string())
        .filter(|m| m.ends_with(".gguf")) // not the ckpt-opt.json manifest beside them
        .collect();
    members.sort();
    assert!(members.len() >= 3, "{members:?}");
    let reference = root().join("tests/interop/reference/qwen2-bias.f16.json");
    let mut args: Vec<&str> = members.iter().map(String::as_str).collect();
    args.extend([
        s(&reference),
        "--ignore-tensor-order",
        "--ignore",
        "split.no",
        "--ignore",
        "split.count",
        "--ignore",
        "split.tensors.count",
    ]);
    run_python("compare_gguf.py", &args);
}

#[test]
fn hf_output_is_read_by_the_safetensors_package() {
    let dir = tempfile::tempdir().unwrap();
    for model in MODELS {
        let gguf = dir.path().join(format!("{model}.gguf"));
        let back = dir.path().join(format!("{model}-hf"));
        let sharded = dir.path().join(format!("{model}-sharded"));
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&gguf),
            "--format",
            "gguf",
        ]);
        ok(&["-q", "convert", s(&gguf), s(&back), "--format", "hf"]);
        run_python("check_hf_output.py", &[s(&back), s(&fixture(model))]);
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&sharded),
            "--format",
            "hf",
            "--max-shard-size",
            "700KB",
        ]);
        run_python("check_hf_output.py", &[s(&sharded), s(&fixture(model))]);
    }
}
