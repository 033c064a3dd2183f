//! Bad input through the binary: a one-line error naming the file (and tensor), exit 1 (2 for
//! usage), no panic, and nothing left at the output path.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A safetensors file from a raw JSON header and data bytes.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A folder holding a valid config/tokenizer (from a fixture) and `weights` as model.safetensors.
fn model_dir(root: &Path, weights: &[u8]) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("llama-tied").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    dir
}

/// Runs a conversion that must fail; checks the message and that nothing was left behind.
fn convert_fails(input: &Path, must_mention: &[&str]) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.gguf");
    let err = fails(&["-q", "convert", s(input), s(&out), "--format", "gguf"], 1);
    for m in must_mention {
        assert!(err.contains(m), "error should mention `{m}`: {err}");
    }
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "output folder not empty after a failed run"
    );
    err
}

fn single_file(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("w.safetensors");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(fixture("qwen2-bias/model.safetensors")).unwrap();
    let model = model_dir(dir.path(), &full[..full.len() / 2]);
    convert_fails(&model, &["model.safetensors"]);
}

#[test]
fn header_length_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    convert_fails(&single_file(dir.path(), &bytes), &["w.safetensors"]);
}

#[test]
fn invalid_utf8_and_invalid_json_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 4u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x7b, 0x7d]);
    convert_fails(&single_file(dir.path(), &bytes), &["w.safetensors"]);
    let bytes = safetensors_bytes("{\"a\": [", &[]);
    convert_fails(&single_file(dir.path(), &bytes), &["w.safetensors"]);
}

#[test]
fn offsets_out_of_range_or_overlapping() {
    let dir = tempfile::tempdir().unwrap();
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
    convert_fails(
        &single_file(dir.path(), &safetensors_bytes(h, &[0; 8])),
        &["w.safetensors"],
    );
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    convert_fails(
        &single_file(dir.path(), &safetensors_bytes(h, &[0; 12])),
        &["w.safetensors"],
    );
}

#[test]
fn size_shape_mismatch_and_unknown_dtype_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let h = r#"{"weird":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    convert_fails(
        &single_file(dir.path(), &safetensors_bytes(h, &[0; 8])),
        &["w.safetensors", "weird"],
    );
    let h = r#"{"weird":{"dtype":"F4","shape":[2],"data_offsets":[0,8]}}"#;
    convert_fails(
        &single_file(dir.path(), &safetensors_bytes(h, &[0; 8])),
        &["w.safetensors", "weird"],
    );
}

#[test]
fn duplicate_tensor_names() {
    let dir = tempfile::tempdir().unwrap();
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    convert_fails(
        &single_file(dir.path(), &safetensors_bytes(h, &[0; 8])),
        &["w.safetensors", "`a`"],
    );
}

#[test]
fn index_naming_a_missing_shard() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(fixture("llama-gqa")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(model.join("model-00002-of-00002.safetensors")).unwrap();
    convert_fails(&model, &["model-00002-of-00002.safetensors"]);
}

fn gguf_with(magic: &[u8; 4], version: u32, rest: &[u8]) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

#[test]
fn gguf_bad_magic_version_counts_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let zero_counts = [0u8; 16];
    for bytes in [
        gguf_with(b"GGUX", 3, &zero_counts),
        gguf_with(b"GGUF", 99, &zero_counts),
        // 2^40 tensors declared in a tiny file.
        gguf_with(
            b"GGUF",
            3,
            &[&(1u64 << 40).to_le_bytes()[..], &0u64.to_le_bytes()[..]].concat(),
        ),
        // one KV whose key length runs past the end.
        gguf_with(
            b"GGUF",
            3,
            &[
                &0u64.to_le_bytes()[..],
                &1u64.to_le_bytes()[..],
                &(1u64 << 50).to_le_bytes()[..],
            ]
            .concat(),
        ),
        // general.alignment = 3
        gguf_with(b"GGUF", 3, &{
            let mut b = 0u64.to_le_bytes().to_vec();
            b.extend_from_slice(&1u64.to_le_bytes());
            let key = b"general.alignment";
            b.extend_from_slice(&(key.len() as u64).to_le_bytes());
            b.extend_from_slice(key);
            b.extend_from_slice(&4u32.to_le_bytes()); // U32
            b.extend_from_slice(&3u32.to_le_bytes());
            b
        }),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let out = dir.path().join("out");
        fails(&["-q", "convert", s(&path), s(&out), "--format", "hf"], 1);
        assert!(!out.exists());
        let err = fails(&["inspect", s(&path)], 1);
        assert!(err.contains("m.gguf"), "{err}");
    }
}

#[test]
fn unsupported_ggml_type_for_the_operation() {
    // A valid GGUF whose weight is Q4_0: converting it to safetensors needs dequantization.
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("m.gguf");
    use formats::gguf::{write_file, GgmlType, GgufTensorSpec, MetadataValue};
    let meta = vec![(
        "general.architecture".to_string(),
        MetadataValue::String("llama".into()),
    )];
    let data = [0u8; 18 * 8];
    write_file(
        &gguf,
        &meta,
        &[(
            GgufTensorSpec {
                name: "blk.0.attn_q.weight".into(),
                dims: vec![256, 1],
                ggml_type: GgmlType::Q4_0,
            },
            &data[..],
        )],
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = fails(&["-q", "convert", s(&gguf), s(&out), "--format", "hf"], 1);
    assert!(err.contains("m.gguf"), "{err}");
    assert!(!out.exists());
}

#[test]
fn missing_or_inconsistent_config_and_unknown_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        fixture("llama-tied/model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        fixture("llama-tied/tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    convert_fails(&model, &["config.json"]);

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama-tied/config.json")).unwrap())
            .unwrap();
    let mut bad = cfg.clone();
    bad["num_attention_heads"] = 3.into();
    bad["num_key_value_heads"] = 2.into();
    std::fs::write(model.join("config.json"), bad.to_string()).unwrap();
    convert_fails(&model, &["config.json"]);

    let mut other = cfg.clone();
    other["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    std::fs::write(model.join("config.json"), other.to_string()).unwrap();
    let err = convert_fails(&model, &["config.json", "GPT2LMHeadModel"]);
    assert!(
        err.contains("LlamaForCausalLM"),
        "should list what is supported: {err}"
    );

    let mut wrong_shape = cfg;
    wrong_shape["intermediate_size"] = 512.into();
    std::fs::write(model.join("config.json"), wrong_shape.to_string()).unwrap();
    convert_fails(&model, &["mlp"]);
}

#[test]
fn output_folder_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("sub").join("m.gguf");
    fails(
        &[
            "-q",
            "convert",
            s(&fixture("llama-tied")),
            s(&out),
            "--format",
            "gguf",
        ],
        1,
    );
    let out = blocker.join("hf");
    fails(
        &[
            "-q",
            "convert",
            s(&fixture("llama-tied")),
            s(&out),
            "--format",
            "hf",
        ],
        1,
    );
}

#[test]
fn existing_output_needs_force_and_survives_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    std::fs::write(&out, b"keep me").unwrap();
    let err = fails(
        &[
            "-q",
            "convert",
            s(&fixture("llama-tied")),
            s(&out),
            "--format",
            "gguf",
        ],
        2,
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-tied")),
        s(&out),
        "--format",
        "gguf",
        "--force",
    ]);
    assert_eq!(&std::fs::read(&out).unwrap()[..4], b"GGUF");
}

#[test]
fn disk_full_mid_write_leaves_nothing() {
    // A file-size limit makes the kernel refuse to grow the output past 256 KiB (EFBIG), the
    // same path a full disk takes (ENOSPC): the allocation or a write fails.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f 256; exec '{}' -q convert '{}' '{}' --format gguf",
            env!("CARGO_BIN_EXE_ckpt-opt"),
            s(&fixture("mistral-spm")),
            s(&out)
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("m.gguf"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn usage_errors_exit_2() {
    fails(&["convert", "a", "b", "--format", "onnx"], 2);
    fails(
        &[
            "convert",
            s(&fixture("llama-tied")),
            "/tmp/x",
            "--format",
            "hf",
            "--split-max-tensors",
            "3",
        ],
        2,
    );
}

#[test]
fn forced_folder_output_is_replaced_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("marker"), b"old").unwrap();
    // A failing run leaves the old folder as it was.
    let truncated = dir.path().join("bad.safetensors");
    let full = std::fs::read(fixture("llama-tied/model.safetensors")).unwrap();
    std::fs::write(&truncated, &full[..full.len() - 10]).unwrap();
    fails(
        &[
            "-q",
            "convert",
            s(&truncated),
            s(&out),
            "--format",
            "hf",
            "--force",
        ],
        1,
    );
    assert_eq!(std::fs::read(out.join("marker")).unwrap(), b"old");
    // A successful one replaces it whole, with nothing staged left beside it.
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-tied")),
        s(&out),
        "--format",
        "hf",
        "--force",
    ]);
    assert!(!out.join("marker").exists());
    assert!(out.join("model.safetensors").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "only bad.safetensors and hf"
    );
}
