//! End-to-end `verify` and manifest runs: every export we make verifies clean (and carries a
//! manifest whose checksums match the files), and each kind of damage is reported, naming the
//! file and tensor, with exit 1.

mod common;

use common::*;
use formats::safetensors::{SafetensorsFile, TensorSpec};
use formats::Dtype;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `verify PATH`: (exit code, stdout).
fn verify(path: &Path) -> (i32, String) {
    let out = ckpt_opt(&["verify", s(path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn verifies_clean(path: &Path) -> String {
    let (code, text) = verify(path);
    assert_eq!(code, 0, "verify {} found problems:\n{text}", path.display());
    assert!(text.starts_with("ok: "), "{text}");
    text
}

/// Verify must fail with a problem line containing every one of `needles`.
fn verify_finds(path: &Path, needles: &[&str]) -> String {
    let (code, text) = verify(path);
    assert_eq!(code, 1, "verify {} should fail:\n{text}", path.display());
    assert!(
        text.lines().any(|l| needles.iter().all(|n| l.contains(n))),
        "no problem line with {needles:?} in:\n{text}"
    );
    text
}

fn trtllm(tmp: &Path, name: &str, tp: &str, pp: &str, extra: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    let input = fixture("llama-gqa");
    let mut args = vec!["-q", "reshard", s(&input), s(&out), "--tp", tp, "--pp", pp];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

/// Rewrites a safetensors file through `edit(name, dtype, shape, bytes)`; `None` drops it.
fn rewrite(
    path: &Path,
    edit: impl Fn(&str, Dtype, Vec<u64>, Vec<u8>) -> Option<(Dtype, Vec<u64>, Vec<u8>)>,
    add: Vec<(String, Dtype, Vec<u64>, Vec<u8>)>,
) {
    let file = SafetensorsFile::open(path).unwrap();
    let mut owned: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
    for t in file.tensors() {
        if let Some((d, shape, bytes)) =
            edit(&t.name, t.dtype, t.shape.clone(), file.data(t).to_vec())
        {
            owned.push((TensorSpec::new(t.name.clone(), d, shape), bytes));
        }
    }
    for (name, d, shape, bytes) in add {
        owned.push((TensorSpec::new(name, d, shape), bytes));
    }
    let meta = file.header().metadata.clone();
    drop(file);
    let refs: Vec<(TensorSpec, &[u8])> = owned.iter().map(|(s, b)| (s.clone(), &b[..])).collect();
    formats::safetensors::write_file(path, &refs, meta.as_ref()).unwrap();
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn every_export_verifies_and_carries_a_matching_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for (name, tp, pp) in [("tl1", "1", "1"), ("tl22", "2", "2"), ("tl2", "2", "1")] {
        let out = trtllm(t, name, tp, pp, &[]);
        assert!(out.join("ckpt-opt.json").is_file());
        let text = verifies_clean(&out);
        assert!(
            text.contains("trtllm") && text.contains("checksums match"),
            "{text}"
        );
    }
    for model in MODELS {
        let hf = t.join(format!("hf-{model}"));
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&hf),
            "--format",
            "hf",
            "--dtype",
            "f16",
        ]);
        verifies_clean(&hf);
        let g = t.join(format!("{model}.gguf"));
        ok(&[
            "-q",
            "convert",
            s(&fixture(model)),
            s(&g),
            "--format",
            "gguf",
        ]);
        assert!(t.join(format!("{model}.gguf.ckpt-opt.json")).is_file());
        verifies_clean(&g);
    }
    let q = t.join("q4km.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&q),
        "--format",
        "gguf",
        "--quant",
        "q4_k_m",
        "--split-max-tensors",
        "8",
    ]);
    let second = t.join("q4km-00002-of-00003.gguf");
    let text = verifies_clean(&second);
    assert!(
        text.contains("3 files") && text.contains("checksums match"),
        "{text}"
    );
    let text_path = sample_text();
    let calib = [
        "--calib-data",
        s(&text_path),
        "--calib-samples",
        "2",
        "--calib-seq-len",
        "32",
    ];
    for scheme in ["fp8", "int8_wo", "int8_sq", "int4_awq", "int4_rtn"] {
        let out = t.join(format!("quant-{scheme}"));
        let input = fixture("llama-gqa");
        let mut args = vec!["-q", "quantize", s(&input), s(&out), "--quant", scheme];
        args.extend_from_slice(&calib);
        ok(&args);
        let text = verifies_clean(&out);
        assert!(text.contains("checksums match"), "{text}");
    }
    // Megatron ranks live in sub-folders: the manifest lists them, verify checks them.
    let mega = trtllm(t, "mega", "2", "1", &["--layout", "megatron"]);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(mega.join("ckpt-opt.json")).unwrap())
            .unwrap();
    let listed: Vec<&str> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(
        listed.iter().any(|p| p.starts_with("mp_rank_01")),
        "{listed:?}"
    );
    assert!(verifies_clean(&mega).contains("megatron"));
    std::fs::remove_file(mega.join(listed.iter().find(|p| p.starts_with("mp_rank_01")).unwrap()))
        .unwrap();
    let (code, text) = verify(&mega);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("mp_rank_01") && text.contains("missing"),
        "{text}"
    );
    // --no-manifest writes none, and verify then checks structure only.
    let bare = t.join("bare");
    ok(&[
        "-q",
        "--no-manifest",
        "convert",
        s(&fixture("llama-gqa")),
        s(&bare),
        "--format",
        "hf",
    ]);
    assert!(!bare.join("ckpt-opt.json").exists());
    assert!(!verifies_clean(&bare).contains("checksums"));
}

#[test]
fn manifest_records_the_job_and_checksums_by_an_independent_path() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "1", &[]);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ckpt-opt.json")).unwrap()).unwrap();
    assert_eq!(m["job"], "reshard");
    assert_eq!(m["tool"], "ckpt-opt");
    assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["options"]["tp"], 2);
    assert!(m["command"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "reshard"));
    let outputs = m["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rank0.safetensors") && names.contains(&"rank1.safetensors"));
    assert!(names.contains(&"config.json"));
    // The manifest hashes through windowed, parallel mmap updates; here: whole-file read and
    // one-shot hash (the Python `blake3` package is not installed in the interop venv).
    for o in outputs.iter().chain(m["inputs"].as_array().unwrap()) {
        let p = o["path"].as_str().unwrap();
        let path = if Path::new(p).is_absolute() || Path::new(p).exists() {
            PathBuf::from(p)
        } else {
            out.join(p)
        };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(o["size"], bytes.len() as u64, "{p}");
        assert_eq!(
            o["blake3"],
            blake3::hash(&bytes).to_hex().to_string(),
            "{p}"
        );
    }
    let inputs: Vec<&str> = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        inputs
            .iter()
            .any(|p| p.ends_with("model-00002-of-00002.safetensors")),
        "{inputs:?}"
    );
}

#[test]
fn missing_rank_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "2", &["--no-manifest"]);
    std::fs::remove_file(out.join("rank3.safetensors")).unwrap();
    verify_finds(&out, &["rank3.safetensors", "missing", "world_size 4"]);
}

#[test]
fn wrong_shape_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "1", &["--no-manifest"]);
    let target = "transformer.layers.1.mlp.proj.weight";
    rewrite(
        &out.join("rank1.safetensors"),
        |name, d, mut shape, bytes| {
            if name == target {
                shape[1] -= 1;
                let keep = bytes.len() / (shape[1] as usize + 1) * shape[1] as usize;
                return Some((d, shape, bytes[..keep].to_vec()));
            }
            Some((d, shape, bytes))
        },
        vec![],
    );
    verify_finds(
        &out,
        &["rank1.safetensors", target, "shape", "config.json implies"],
    );
}

#[test]
fn config_contradicting_the_tensors_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "1", &["--no-manifest"]);
    edit_json(&out.join("config.json"), |v| {
        v["intermediate_size"] = 1024.into()
    });
    verify_finds(
        &out,
        &["rank0.safetensors", "mlp.fc.weight", "config.json implies"],
    );
    let out = trtllm(tmp.path(), "tl-dtype", "1", "1", &["--no-manifest"]);
    edit_json(&out.join("config.json"), |v| v["dtype"] = "float16".into());
    verify_finds(
        &out,
        &["transformer.vocab_embedding.weight", "dtype BF16", "F16"],
    );
}

/// An FP8 TensorRT-LLM checkpoint made from the unquantized one (FORMATS.md 1.6): float8
/// weights plus scalar weight and activation scales per linear.
fn fake_fp8(out: &Path, nan_in: Option<&str>) {
    edit_json(&out.join("config.json"), |v| {
        v["quantization"]["quant_algo"] = "FP8".into();
        v["quantization"]["exclude_modules"] = serde_json::json!(["lm_head"]);
    });
    let path = out.join("rank0.safetensors");
    let file = SafetensorsFile::open(&path).unwrap();
    let linears: Vec<String> = file
        .tensors()
        .iter()
        .filter(|t| {
            ["qkv", "dense", "fc", "gate", "proj"]
                .iter()
                .any(|l| t.name.ends_with(&format!(".{l}.weight")))
        })
        .map(|t| t.name.clone())
        .collect();
    drop(file);
    let mut add = Vec::new();
    for w in &linears {
        let module = w.strip_suffix(".weight").unwrap();
        for s in ["weights_scaling_factor", "activation_scaling_factor"] {
            let name = format!("{module}.{s}");
            let v = if nan_in == Some(name.as_str()) {
                f32::NAN
            } else {
                0.01
            };
            add.push((name, Dtype::F32, vec![], f32_bytes(&[v])));
        }
    }
    rewrite(
        &path,
        |name, d, shape, bytes| {
            if linears.iter().any(|l| l == name) {
                let n = bytes.len() / 2;
                return Some((Dtype::F8E4M3, shape, vec![0x38; n]));
            }
            Some((d, shape, bytes))
        },
        add,
    );
}

#[test]
fn fp8_layout_verifies_and_a_nan_scale_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "fp8", "1", "1", &["--no-manifest"]);
    fake_fp8(&out, None);
    verifies_clean(&out);
    let bad = trtllm(tmp.path(), "fp8-nan", "1", "1", &["--no-manifest"]);
    let scale = "transformer.layers.1.attention.dense.weights_scaling_factor";
    fake_fp8(&bad, Some(scale));
    verify_finds(&bad, &["rank0.safetensors", scale, "NaN or Inf"]);
    // A scale left out is named too.
    rewrite(
        &out.join("rank0.safetensors"),
        |name, d, shape, bytes| (name != scale).then_some((d, shape, bytes)),
        vec![],
    );
    verify_finds(&out, &[scale, "missing"]);
}

#[test]
fn nan_scale_in_a_quantized_hf_export_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fp8");
    let text_path = sample_text();
    ok(&[
        "-q",
        "--no-manifest",
        "quantize",
        s(&fixture("llama-gqa")),
        s(&out),
        "--quant",
        "fp8",
        "--calib-data",
        s(&text_path),
        "--calib-samples",
        "2",
        "--calib-seq-len",
        "32",
    ]);
    let shard = out.join("model.safetensors");
    let target = "model.layers.0.mlp.down_proj.weight_scale";
    rewrite(
        &shard,
        |name, d, shape, bytes| {
            if name == target {
                assert_eq!(d, Dtype::F32);
                return Some((d, shape, f32_bytes(&vec![f32::INFINITY; bytes.len() / 4])));
            }
            Some((d, shape, bytes))
        },
        vec![],
    );
    verify_finds(&out, &["model.safetensors", target, "NaN or Inf"]);
}

#[test]
fn checksum_mismatch_against_the_manifest_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "1", &[]);
    verifies_clean(&out);
    // Flip one byte of tensor data: the header stays valid, only the checksum can tell.
    let path = out.join("rank1.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    verify_finds(
        &out,
        &["rank1.safetensors", "blake3 checksum", "does not match"],
    );
    std::fs::remove_file(out.join("config.json")).unwrap();
    let (code, _) = verify(&out);
    assert_eq!(code, 1);
}

#[test]
fn gguf_missing_split_and_hf_config_contradiction_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&g),
        "--format",
        "gguf",
        "--quant",
        "q8_0",
        "--split-max-tensors",
        "10",
    ]);
    let first = tmp.path().join("m-00001-of-00003.gguf");
    verifies_clean(&first);
    std::fs::remove_file(tmp.path().join("m-00003-of-00003.gguf")).unwrap();
    let (code, text) = verify(&first);
    assert_eq!(code, 1);
    assert!(text.contains("m-00003-of-00003.gguf"), "{text}");
    // An HF config contradicting its tensors: more KV heads than k_proj holds.
    let h = tmp.path().join("h");
    ok(&[
        "-q",
        "--no-manifest",
        "convert",
        s(&fixture("llama-gqa")),
        s(&h),
        "--format",
        "hf",
    ]);
    edit_json(&h.join("config.json"), |v| {
        v["num_key_value_heads"] = 4.into()
    });
    verify_finds(&h, &["k_proj.weight", "shape", "config.json implies"]);
}

#[test]
fn verify_json_lists_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let out = trtllm(tmp.path(), "tl", "2", "1", &[]);
    std::fs::remove_file(out.join("rank0.safetensors")).unwrap();
    let o = ckpt_opt(&["--json", "verify", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["kind"], "trtllm");
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rank0.safetensors") && p.contains("missing")),
        "{problems:?}"
    );
    // The manifest notices the missing file too.
    assert!(
        problems.iter().any(|p| p.contains("listed in")),
        "{problems:?}"
    );
}

/// `convert --format gguf --quant q4_k_m --split-max-size`: a split set the `gguf` package reads
/// member by member, with `general.file_type` 15 (MOSTLY_Q4_K_M) and
/// `general.quantization_version` 2, every tensor dequantizing to finite values — and `verify`
/// accepts it with its manifest.
#[test]
fn quantized_split_gguf_is_read_by_the_gguf_package() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("trained-llama")),
        s(&out),
        "--format",
        "gguf",
        "--quant",
        "q4_k_m",
        "--split-max-size",
        "400K",
    ]);
    let mut members: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| s(&e.unwrap().path()).to_string())
        .filter(|p| p.ends_with(".gguf"))
        .collect();
    members.sort();
    assert!(members.len() >= 3, "{members:?}");
    let mut args = vec!["15", "Q4_K,Q6_K,F32"];
    args.extend(members.iter().map(String::as_str));
    let text = run_python("check_gguf_split_quant.py", &args);
    assert!(text.starts_with("ok:"), "{text}");
    let verified = verifies_clean(Path::new(&members[0]));
    assert!(verified.contains("checksums match"), "{verified}");
}

/// llama-gqa quantized with `scheme`, calibrated on the sample text: a TensorRT-LLM tp 2
/// export (`convert --format trtllm`) when `trtllm`, else `quantize` (modelopt's HF layout).
fn quantized(tmp: &Path, scheme: &str, trtllm: bool) -> PathBuf {
    let out = tmp.join(format!("{scheme}-{}", if trtllm { "tl" } else { "hf" }));
    let (text, input) = (sample_text(), fixture("llama-gqa"));
    let mut args = vec!["-q", "--no-manifest"];
    if trtllm {
        args.extend_from_slice(&["convert", s(&input), s(&out), "--format", "trtllm"]);
        args.extend_from_slice(&["--tp", "2", "--group-size", "64"]);
    } else {
        args.extend_from_slice(&["quantize", s(&input), s(&out)]);
    }
    args.extend_from_slice(&["--quant", scheme, "--calib-data", s(&text)]);
    args.extend_from_slice(&["--calib-samples", "2"]);
    ok(&args);
    out
}

#[test]
fn mixed_precision_trtllm_splice_verifies_and_each_problem_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fp8 = quantized(tmp.path(), "fp8", true);
    let awq = quantized(tmp.path(), "int4_awq", true);
    let splice = |name: &str| {
        let out = tmp.path().join(name);
        splice_mixed("trtllm", &fp8, &awq, &out, &["transformer.layers.1.*"]);
        out
    };
    let text = verifies_clean(&splice("mix"));
    assert!(text.contains("trtllm"), "{text}");

    let out = splice("no-cfg");
    std::fs::remove_file(out.join("quant_cfg.json")).unwrap();
    verify_finds(&out, &["quant_cfg.json", "missing", "MIXED_PRECISION"]);

    // Listed as FP8, holding the AWQ tensors: each tensor named, on every rank.
    let out = splice("fp8-listed");
    let key = "transformer.layers.1.mlp.proj";
    edit_json(&out.join("quant_cfg.json"), |q| {
        q["quantized_layers"][key] = serde_json::json!({"quant_algo": "FP8"})
    });
    let text = verify_finds(
        &out,
        &[
            "rank1.safetensors",
            &format!("{key}.weight"),
            "dtype I8",
            "F8_E4M3",
        ],
    );
    assert!(
        text.contains(&format!("{key}.prequant_scaling_factor`: unexpected")),
        "{text}"
    );

    let out = splice("unknown");
    edit_json(&out.join("quant_cfg.json"), |q| {
        q["quantized_layers"][key] = serde_json::json!({"quant_algo": "NVFP4"})
    });
    verify_finds(&out, &["quant_cfg.json", key, "NVFP4"]);

    let out = splice("no-module");
    let stray = "transformer.layers.7.mlp.fc";
    edit_json(&out.join("quant_cfg.json"), |q| {
        q["quantized_layers"][stray] = serde_json::json!({"quant_algo": "FP8"})
    });
    verify_finds(&out, &["quant_cfg.json", stray, "names no module"]);
}

#[test]
fn mixed_precision_hf_splice_evaluates_verifies_and_each_problem_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fp8 = quantized(tmp.path(), "fp8", false);
    let int8 = quantized(tmp.path(), "int8_wo", false);
    let splice = |name: &str| {
        let out = tmp.path().join(name);
        splice_mixed("hf", &fp8, &int8, &out, &["model.layers.0.mlp.*"]);
        out
    };
    let mix = splice("mix");
    verifies_clean(&mix);
    // weights.rs decides per tensor from the scales present: the splice evaluates, and to
    // neither export's figure.
    let d = sample_text();
    let nll = |p: &Path| {
        let out = ok(&[
            "eval",
            s(p),
            "--data",
            s(&d),
            "--max-windows",
            "2",
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nll"].as_f64().unwrap()
    };
    let n = nll(&mix);
    assert!(n.is_finite() && n != nll(&fp8) && n != nll(&int8), "{n}");

    let edit = |out: &Path, f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        edit_json(&out.join("config.json"), |c| {
            f(c["quantization_config"]["quantized_layers"]
                .as_object_mut()
                .unwrap())
        });
    };
    // A module holding scales that no key lists.
    let out = splice("unlisted");
    let module = "model.layers.1.self_attn.o_proj";
    edit(&out, &|l| {
        l.remove(module);
    });
    verify_finds(
        &out,
        &[
            "model.safetensors",
            &format!("{module}.weight_scale"),
            "no quantized_layers key",
        ],
    );
    // Listed as W8A16, holding FP8 tensors.
    let out = splice("wrong-algo");
    edit(&out, &|l| {
        l.insert(module.into(), serde_json::json!({"quant_algo": "W8A16"}));
    });
    verify_finds(&out, &[&format!("{module}.weight"), "F8_E4M3", "W8A16"]);
    // A key naming no module.
    let out = splice("no-module");
    edit(&out, &|l| {
        l.insert(
            "model.layers.9.mlp.up_proj".into(),
            serde_json::json!({"quant_algo": "FP8"}),
        );
    });
    verify_finds(
        &out,
        &[
            "config.json",
            "model.layers.9.mlp.up_proj",
            "names no module",
        ],
    );
}
