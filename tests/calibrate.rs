//! `ckpt-opt calibrate` through the binary: every statistic against an independent float64 numpy
//! computation (`tests/interop/reference_calibrate.py`), determinism, reading the file back, and
//! each error.

mod common;

use ckpt_opt::calibrate::{load_stats, load_stats_for, Dims};
use ckpt_opt::model::ModelConfig;
use common::{fails, fixture, ok, run_python, s};
use std::path::{Path, PathBuf};

/// A text of a few thousand tokens (calibration text when present).
fn text_file(dir: &Path) -> PathBuf {
    let text: String = std::fs::read_to_string(common::sample_text())
        .expect("fixtures/heldout.txt")
        .chars()
        .take(20_000)
        .collect();
    let p = dir.join("text.txt");
    std::fs::write(&p, text).expect("write text");
    p
}

fn calibrate(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "calibrate",
        s(model),
        "--data",
        s(data),
        "-o",
        s(out),
        "--calib-samples",
        "3",
        "--calib-seq-len",
        "32",
    ];
    if !extra.contains(&"--seed") {
        args.extend_from_slice(&["--seed", "1"]);
    }
    args.extend_from_slice(extra);
    ok(&args)
}

#[test]
fn statistics_match_float64_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    for name in ["llama-gqa", "qwen2-bias"] {
        let m = fixture(name);
        let out = dir.path().join(format!("{name}.safetensors"));
        let windows = dir.path().join(format!("{name}.json"));
        let report = calibrate(&m, &data, &out, &["--json", "--dump-windows", s(&windows)]);
        let r: serde_json::Value = serde_json::from_str(&report).expect("--json prints JSON");
        assert_eq!(r["windows"], 3);
        assert_eq!(r["tokens"], 96);
        let cmp = run_python("reference_calibrate.py", &[s(&m), s(&windows), s(&out)]);
        let j: serde_json::Value = serde_json::from_str(cmp.trim()).expect("JSON report");
        let rel = j["max_rel_err"].as_f64().expect("max_rel_err");
        let elem = j["max_elementwise_rel_err"].as_f64().expect("elementwise");
        println!(
            "{name}: {} tensors, max rel err {rel:.3e} ({}), max elementwise rel err {elem:.3e}",
            j["tensors"], j["worst"]
        );
        assert!(rel < 1e-4 && elem < 1e-4, "{name}: {cmp}");
        assert_eq!(j["tokens"], 96);
    }
}

#[test]
fn same_seed_same_bytes_whatever_batch_and_threads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    let m = fixture("llama-gqa");
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    let c = dir.path().join("c.safetensors");
    calibrate(&m, &data, &a, &["--quiet"]);
    calibrate(&m, &data, &b, &["--quiet", "--batch", "1", "-j", "1"]);
    let bytes = std::fs::read(&a).expect("read a");
    assert_eq!(bytes, std::fs::read(&b).expect("read b"));
    calibrate(&m, &data, &c, &["--quiet", "--seed", "2"]);
    assert_ne!(bytes, std::fs::read(&c).expect("read c"));
}

#[test]
fn stats_read_back_and_are_checked_against_the_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    let m = fixture("llama-gqa");
    let out = dir.path().join("stats.safetensors");
    calibrate(&m, &data, &out, &["--quiet"]);
    let cfg = ModelConfig::load(&m).expect("config");
    let st = load_stats_for(&out, &cfg).expect("stats load");
    assert_eq!(st.dims, Dims::of(&cfg));
    assert_eq!((st.windows, st.tokens), (3, 96));
    assert_eq!(st.metadata["seed"], "1");
    assert_eq!(st.metadata["seq_len"], "32");
    assert_eq!(st.metadata["samples"], "3");
    assert!(st.metadata["data"].ends_with("text.txt"));
    assert_eq!(st.head_importance(1).len(), 8);
    assert_eq!(st.query_group_importance(1).len(), 2);
    assert_eq!(st.ffn_importance(0).len(), 512);
    assert_eq!(st.hidden_importance().len(), 256);
    assert_eq!(st.block_influence().len(), 2);
    let q = st
        .input_absmax("model.layers.0.self_attn.q_proj")
        .expect("q");
    assert_eq!(Some(q), st.input_absmax("model.layers.0.self_attn.v_proj"));
    assert!(st.block_influence().iter().all(|b| (0.0..=2.0).contains(b)));
    // Rewriting gives the same file.
    let again = dir.path().join("again.safetensors");
    st.write(&again).expect("write");
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(&again).expect("read")
    );
    assert_eq!(load_stats(&again).expect("load"), st);

    // Statistics of another model: the first mismatching tensor is named.
    let other = ModelConfig::load(&fixture("qwen2-bias")).expect("config");
    let e = load_stats_for(&out, &other).unwrap_err().to_string();
    assert!(
        e.contains("stats.safetensors")
            && e.contains("stats.model.layers.0.mlp.down_proj.input_absmax")
            && e.contains("another model"),
        "{e}"
    );
    // Not a statistics file at all.
    let e = load_stats(&fixture("llama-gqa/model-00001-of-00002.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a calibration statistics file"), "{e}");
}

#[test]
fn errors_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let ms = s(&m);
    let out = dir.path().join("stats.safetensors");
    let os = s(&out);

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let e = fails(&["calibrate", ms, "--data", s(&empty), "-o", os], 1);
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");

    let short = dir.path().join("short.txt");
    std::fs::write(&short, "just a few words").expect("write");
    let e = fails(&["calibrate", ms, "--data", s(&short), "-o", os], 1);
    assert!(
        e.contains("short.txt") && e.contains("shorter than one window of 128"),
        "{e}"
    );

    let data = text_file(dir.path());
    let e = fails(
        &[
            "calibrate",
            ms,
            "--data",
            s(&data),
            "-o",
            os,
            "--calib-samples",
            "100000",
        ],
        1,
    );
    assert!(e.contains("non-overlapping windows"), "{e}");

    let missing = dir.path().join("no/such/folder/stats.safetensors");
    let e = fails(&["calibrate", ms, "--data", s(&data), "-o", s(&missing)], 1);
    assert!(e.contains("no/such/folder"), "{e}");

    let e = fails(
        &[
            "calibrate",
            ms,
            "--data",
            s(&data),
            "-o",
            os,
            "--calib-samples",
            "0",
        ],
        2,
    );
    assert!(e.contains("--calib-samples"), "{e}");

    // Nothing was written, not even a temp file.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains("stats"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!dir.path().join("no").exists());
}

#[test]
fn gguf_model_gives_the_same_statistics_as_its_hf_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = text_file(dir.path());
    let gguf = dir.path().join("m.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("llama-gqa")),
        s(&gguf),
        "--format",
        "gguf",
    ]);
    let (from_hf, from_gguf) = (dir.path().join("hf.st"), dir.path().join("gguf.st"));
    let args = ["--seed", "3"];
    calibrate(&fixture("llama-gqa"), &data, &from_hf, &args);
    calibrate(&gguf, &data, &from_gguf, &args);
    // Same weights (GGUF q/k rows are un-permuted on load), same tokenizer, same windows.
    let (a, b) = (
        load_stats(&from_hf).unwrap(),
        load_stats(&from_gguf).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors);
}
