//! `ckpt-opt eval` through the binary: perplexity figures, teacher = student, and each error.

mod common;

use common::{ckpt_opt, fails, fixture, ok, run_python, s};
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

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).expect("eval --json prints JSON")
}

#[test]
fn perplexity_report_follows_the_protocol() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    let m = fixture("llama-gqa");
    let r = json(&ok(&[
        "eval",
        s(&m),
        "--data",
        s(&data),
        "--ctx",
        "64",
        "--max-windows",
        "3",
        "--json",
    ]));
    assert_eq!(r["windows"], 3);
    assert_eq!(r["tokens_scored"], 3 * 63);
    let nll = r["nll"].as_f64().expect("nll");
    let ppl = r["perplexity"].as_f64().expect("perplexity");
    assert!((nll.exp() - ppl).abs() < 1e-9 * ppl);
    // A random-weight model is close to uniform over 1000 tokens.
    assert!(ppl > 100.0 && ppl < 10_000.0, "perplexity {ppl}");
    assert!(r["teacher"].is_null());
    // Batching does not change the figures.
    let r1 = json(&ok(&[
        "eval",
        s(&m),
        "--data",
        s(&data),
        "--ctx",
        "64",
        "--max-windows",
        "3",
        "--batch",
        "1",
        "--json",
        "-j",
        "1",
    ]));
    assert!((r1["nll"].as_f64().expect("nll") - nll).abs() < 1e-9);
    // Text output too.
    let text = ok(&[
        "eval",
        s(&m),
        "--data",
        s(&data),
        "--ctx",
        "32",
        "--max-windows",
        "2",
        "--quiet",
    ]);
    assert!(
        text.contains("perplexity") && text.contains("tokens_scored 62"),
        "{text}"
    );
}

#[test]
fn teacher_equal_to_student_gives_zero_kl_and_full_agreement() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    for name in ["llama-gqa", "qwen2-bias"] {
        let m = fixture(name);
        let r = json(&ok(&[
            "eval",
            s(&m),
            "--data",
            s(&data),
            "--ctx",
            "48",
            "--max-windows",
            "4",
            "--teacher",
            s(&m),
            "--json",
        ]));
        let t = &r["teacher"];
        assert!(t["kl"].as_f64().expect("kl") <= 1e-9, "{name}: {t}");
        assert_eq!(t["top1_agreement"].as_f64(), Some(1.0), "{name}");
        let cos = t["layer_cosine"].as_array().expect("layer cosine");
        assert!(!cos.is_empty());
        assert!(
            cos.iter()
                .all(|c| (c.as_f64().expect("cos") - 1.0).abs() < 1e-9),
            "{name}: {t}"
        );
    }
}

#[test]
fn teacher_differs_from_student() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    // Same vocabulary and tokenizer family, different weights and layer counts.
    let r = json(&ok(&[
        "eval",
        s(&fixture("llama-gqa")),
        "--data",
        s(&data),
        "--ctx",
        "32",
        "--max-windows",
        "2",
        "--teacher",
        s(&fixture("qwen2-bias")),
        "--temperature",
        "2",
        "--json",
    ]));
    let t = &r["teacher"];
    assert!(t["kl"].as_f64().expect("kl") > 1e-6);
    assert!(t["top1_agreement"].as_f64().expect("agreement") < 1.0);
    assert!(
        t["layer_cosine"].is_null(),
        "2 vs 1 layers: no per-layer cosine"
    );
    assert_eq!(t["temperature"].as_f64(), Some(2.0));
}

#[test]
fn gguf_model_evaluates_like_its_hf_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = text_file(dir.path());
    let gguf = dir.path().join("m.gguf");
    ok(&[
        "convert",
        s(&fixture("llama-gqa")),
        s(&gguf),
        "--format",
        "gguf",
        "--quiet",
    ]);
    let args = |m: &Path| {
        json(&ok(&[
            "eval",
            s(m),
            "--data",
            s(&data),
            "--ctx",
            "32",
            "--max-windows",
            "2",
            "--json",
        ]))
    };
    let (a, b) = (args(&fixture("llama-gqa")), args(&gguf));
    assert_eq!(a["tokens_scored"], b["tokens_scored"]);
    assert!((a["nll"].as_f64().expect("nll") - b["nll"].as_f64().expect("nll")).abs() < 1e-6);
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let ms = s(&m);

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let e = fails(&["eval", ms, "--data", s(&empty)], 1);
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"hello \xff\xfe world").expect("write");
    let e = fails(&["eval", ms, "--data", s(&bad)], 1);
    assert!(e.contains("bad.txt") && e.contains("UTF-8"), "{e}");

    let short = dir.path().join("short.txt");
    std::fs::write(&short, "just a few words").expect("write");
    let e = fails(&["eval", ms, "--data", s(&short)], 1);
    assert!(
        e.contains("short.txt") && e.contains("fewer than one window"),
        "{e}"
    );

    let missing = dir.path().join("nope.txt");
    let e = fails(&["eval", ms, "--data", s(&missing)], 1);
    assert!(e.contains("nope.txt"), "{e}");

    // A model whose vocab_size (500) is smaller than its tokenizer's (1000).
    let small = dir.path().join("small");
    run_python("make_tiny_model.py", &[s(&small), "500"]);
    std::fs::copy(m.join("tokenizer.json"), small.join("tokenizer.json")).expect("copy tokenizer");
    let data = text_file(dir.path());
    let e = fails(&["eval", s(&small), "--data", s(&data)], 1);
    assert!(
        e.contains("tokenizer.json") && e.contains("vocab_size 500"),
        "{e}"
    );

    // A teacher with another vocabulary.
    let e = fails(&["eval", ms, "--data", s(&data), "--teacher", s(&small)], 1);
    assert!(e.contains("small") && e.contains("vocab_size 500"), "{e}");

    // A block type without a dequantization kernel (IQ4_NL) is named.
    let iq = dir.path().join("iq4nl.gguf");
    run_python("make_q8_gguf.py", &[s(&iq), "IQ4_NL"]);
    let e = fails(&["eval", s(&iq), "--data", s(&data)], 1);
    assert!(
        e.contains("iq4nl.gguf") && e.contains("blk.0.ffn_down.weight") && e.contains("IQ4_NL"),
        "{e}"
    );

    // Bad options are usage errors (exit 2).
    let e = fails(&["eval", ms, "--data", s(&data), "--ctx", "1"], 2);
    assert!(e.contains("--ctx"), "{e}");
    let e = fails(&["eval", ms, "--data", s(&data), "--temperature", "0"], 2);
    assert!(e.contains("--temperature"), "{e}");
    assert!(
        !ckpt_opt(&["eval", ms]).status.success(),
        "--data is required"
    );
}

#[test]
fn trained_fixture_perplexity_matches_pytorch() {
    // fixtures/trained-llama/TRAINING.md: PyTorch (transformers LlamaForCausalLM, f32 compute on
    // the bf16 weights) scores the held-out text at 49.2583253 over 213 windows, 27051 tokens,
    // with this same protocol. Our forward pass must agree, from the HF folder and from GGUF.
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("trained.gguf");
    ok(&[
        "-q",
        "convert",
        s(&fixture("trained-llama")),
        s(&gguf),
        "--format",
        "gguf",
    ]);
    for model in [fixture("trained-llama"), gguf] {
        let report = json(&ok(&[
            "--json",
            "eval",
            s(&model),
            "--data",
            s(&fixture("heldout.txt")),
        ]));
        assert_eq!(report["windows"], 213);
        assert_eq!(report["tokens_scored"], 27051);
        let ppl = report["perplexity"].as_f64().unwrap();
        assert!(
            (ppl - 49.2583253).abs() / 49.2583253 < 1e-5,
            "{}: perplexity {ppl}, PyTorch 49.2583253",
            model.display()
        );
    }
}
