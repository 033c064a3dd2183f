//! End-to-end `convert` runs on the bundled fixtures: round trips must be bit-exact.

mod common;

use common::*;

#[test]
fn hf_to_gguf_to_hf_is_bit_exact_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for model in MODELS {
        let gguf = dir.path().join(format!("{model}.gguf"));
        let back = dir.path().join(format!("{model}-back"));
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&gguf),
            "--format",
            "gguf",
        ]);
        ok(&["-q", "convert", s(&gguf), s(&back), "--format", "hf"]);
        assert_same_tensors(&fixture(model), &back);
    }
}

#[test]
fn round_trip_through_f32_gguf_is_bit_exact() {
    // bf16 -> f32 widening is exact, so bf16 -> f32 GGUF -> bf16 must give the same bits.
    let dir = tempfile::tempdir().unwrap();
    for model in ["llama-gqa", "llama-tied"] {
        let gguf = dir.path().join(format!("{model}.gguf"));
        let back = dir.path().join(format!("{model}-back"));
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&gguf),
            "--format",
            "gguf",
            "--dtype",
            "f32",
        ]);
        let ins = ok(&["--json", "inspect", s(&gguf)]);
        let ins: serde_json::Value = serde_json::from_str(&ins).unwrap();
        assert_eq!(ins["metadata"]["general.file_type"], 0, "ALL_F32");
        ok(&[
            "-q",
            "convert",
            s(&gguf),
            s(&back),
            "--format",
            "hf",
            "--dtype",
            "bf16",
        ]);
        assert_same_tensors(&fixture(model), &back);
    }
}

#[test]
fn gguf_keeps_norms_f32_and_weights_in_the_output_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("qwen2-bias")),
        s(&gguf),
        "--format",
        "gguf",
        "--dtype",
        "bf16",
    ]);
    for (name, (dtype, shape, _)) in tensors(&gguf) {
        let expected = if shape.len() == 1 { "F32" } else { "BF16" };
        assert_eq!(dtype, expected, "{name} {shape:?}");
    }
}

#[test]
fn reshard_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let many = dir.path().join("many");
    let one = dir.path().join("one");
    ok(&[
        "-q",
        "convert",
        s(&fixture("mistral-spm")),
        s(&many),
        "--format",
        "hf",
        "--max-shard-size",
        "1MB",
    ]);
    let shards = std::fs::read_dir(&many)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        })
        .count();
    assert!(shards > 3, "expected several shards, got {shards}");
    assert!(many.join("model.safetensors.index.json").exists());
    assert!(many.join("tokenizer.json").exists() && many.join("config.json").exists());
    ok(&["-q", "convert", s(&many), s(&one), "--format", "hf"]);
    assert!(one.join("model.safetensors").exists());
    assert!(!one.join("model.safetensors.index.json").exists());
    assert_same_tensors(&fixture("mistral-spm"), &one);
    assert_same_tensors(&many, &one);
}

#[test]
fn dtype_change_then_back_is_exact_for_widening() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("f32");
    let back = dir.path().join("bf16");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&wide),
        "--format",
        "hf",
        "--dtype",
        "f32",
    ]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wide.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "float32");
    ok(&[
        "-q",
        "convert",
        s(&wide),
        s(&back),
        "--format",
        "hf",
        "--dtype",
        "bf16",
    ]);
    assert_same_tensors(&fixture("llama-gqa"), &back);
}

#[test]
fn gguf_split_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("m.gguf");
    let split = dir.path().join("split").join("m.gguf");
    let merged = dir.path().join("merged.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&single),
        "--format",
        "gguf",
    ]);
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&split),
        "--format",
        "gguf",
        "--split-max-tensors",
        "7",
    ]);
    let members: Vec<_> = std::fs::read_dir(dir.path().join("split"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|m| m.ends_with(".gguf")) // not the ckpt-opt.json manifest beside them
        .collect();
    assert!(members.len() >= 3, "{members:?}");
    assert!(
        members.iter().all(|m| m.contains("-of-0000")),
        "{members:?}"
    );
    // Any member opens the whole set.
    let second = dir
        .path()
        .join("split")
        .join("m-00002-of-0000".to_string() + &members.len().to_string() + ".gguf");
    assert_same_tensors(&single, &second);
    ok(&["-q", "convert", s(&second), s(&merged), "--format", "gguf"]);
    assert_same_tensors(&single, &merged);
    // Splitting by size too.
    let by_size = dir.path().join("bysize").join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&by_size),
        "--format",
        "gguf",
        "--split-max-size",
        "1MB",
    ]);
    assert!(
        std::fs::read_dir(dir.path().join("bysize"))
            .unwrap()
            .count()
            > 2
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let plan = ok(&[
        "convert",
        s(&fixture("llama-gqa")),
        s(&out),
        "--format",
        "gguf",
        "--dry-run",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let tensors = plan["plan"]["files"][0]["tensors"].as_array().unwrap();
    let q = tensors
        .iter()
        .find(|t| t["name"] == "blk.0.attn_q.weight")
        .unwrap();
    assert_eq!(
        q["recipe"]["source"],
        "model.layers.0.self_attn.q_proj.weight"
    );
    assert_eq!(q["recipe"]["ops"][0]["op"], "permute_qk");
    assert!(plan["estimated_peak_bytes"].as_u64().unwrap() > 0);
    assert_eq!(plan["tensors"].as_u64().unwrap() as usize, tensors.len());
}

#[test]
fn inspect_reports_every_input_kind() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&gguf),
        "--format",
        "gguf",
    ]);
    let hf: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "inspect", s(&fixture("llama-gqa"))])).unwrap();
    assert_eq!(hf["format"], "safetensors");
    assert_eq!(hf["files"].as_array().unwrap().len(), 2);
    assert_eq!(hf["architecture"], "LlamaForCausalLM");
    assert_eq!(hf["config"]["num_key_value_heads"], 2);
    let g: serde_json::Value = serde_json::from_str(&ok(&["--json", "inspect", s(&gguf)])).unwrap();
    assert_eq!(g["format"], "gguf");
    assert_eq!(g["architecture"], "llama");
    assert_eq!(hf["parameters"], g["parameters"]);
    let text = ok(&["inspect", s(&fixture("qwen2-bias"))]);
    assert!(
        text.contains("Qwen2ForCausalLM") && text.contains("model.layers.0.self_attn.q_proj.bias")
    );
}
