//! Interop of the tokenizer conversion with the Python `tokenizers` and `gguf` packages
//! (driver: `tests/interop/tokenizer_interop.py`).
//!
//! 1. HF → GGUF: our `tokenizer.*` metadata equals, key by key and in order, what the converter's
//!    logic (re-implemented in Python, with gguf-py's real `SpecialVocab` and `GGUFWriter`) writes.
//! 2. GGUF → HF: the `tokenizer.json` we build encodes calibration text to the same ids as the
//!    original.
//!
//! The checks take a tokenizer folder, so they also run on `fixtures/tokenizer-bpe` and
//! `fixtures/tokenizer-spm` when those exist.

use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_opt::export::tokenizer::{vocab_from_hf, VocabKind};
use ckpt_opt::import::tokenizer::tokenizer_from_gguf;
use formats::gguf::MetadataValue;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPT_OPT_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python interpreter at {} and CKPT_OPT_PYTHON is unset: run scripts/python-env.sh",
        p.display()
    );
    p
}

/// Real text that is always there: the held-out tail of the calibration text (fixtures).
fn calib() -> PathBuf {
    root().join("fixtures/heldout.txt")
}

fn py(args: &[&str]) {
    let script = root().join("tests/interop/tokenizer_interop.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python {args:?} failed:\n{text}");
    eprint!("{text}");
}

fn value_json(v: &MetadataValue) -> (String, Value) {
    match v {
        MetadataValue::U8(x) => ("u8".into(), json!(x)),
        MetadataValue::I8(x) => ("i8".into(), json!(x)),
        MetadataValue::U16(x) => ("u16".into(), json!(x)),
        MetadataValue::I16(x) => ("i16".into(), json!(x)),
        MetadataValue::U32(x) => ("u32".into(), json!(x)),
        MetadataValue::I32(x) => ("i32".into(), json!(x)),
        MetadataValue::F32(x) => ("f32".into(), json!(x)),
        MetadataValue::Bool(x) => ("bool".into(), json!(x)),
        MetadataValue::String(x) => ("string".into(), json!(x)),
        MetadataValue::U64(x) => ("u64".into(), json!(x)),
        MetadataValue::I64(x) => ("i64".into(), json!(x)),
        MetadataValue::F64(x) => ("f64".into(), json!(x)),
        MetadataValue::Array(_, items) => {
            let sub = items.first().map(|i| value_json(i).0).unwrap_or_default();
            let vals: Vec<Value> = items.iter().map(|i| value_json(i).1).collect();
            (format!("array:{sub}"), Value::Array(vals))
        }
    }
}

fn dump(md: &[(String, MetadataValue)], path: &Path) {
    let rows: Vec<Value> = md
        .iter()
        .map(|(k, v)| {
            let (t, v) = value_json(v);
            json!([k, t, v])
        })
        .collect();
    std::fs::write(path, serde_json::to_string(&rows).unwrap()).unwrap();
}

/// HF → GGUF metadata equals the converter's; returns our metadata.
pub fn check_export(dir: &Path, vocab_size: u64, kind: VocabKind) -> Vec<(String, MetadataValue)> {
    let v = vocab_from_hf(dir, vocab_size).unwrap();
    assert_eq!(v.kind, kind);
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours.json");
    let expected = work.path().join("expected.json");
    dump(&v.metadata, &ours);
    py(&[
        "expect",
        dir.to_str().unwrap(),
        &vocab_size.to_string(),
        expected.to_str().unwrap(),
    ]);
    py(&[
        "compare",
        expected.to_str().unwrap(),
        ours.to_str().unwrap(),
    ]);
    v.metadata
}

/// GGUF → HF: our tokenizer.json encodes like the original in `dir`.
pub fn check_roundtrip(dir: &Path, md: &[(String, MetadataValue)]) {
    let files = tokenizer_from_gguf(md, Path::new("model.gguf")).unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        out.path().join("tokenizer.json"),
        serde_json::to_string(&files.tokenizer_json).unwrap(),
    )
    .unwrap();
    std::fs::write(
        out.path().join("tokenizer_config.json"),
        serde_json::to_string(&files.tokenizer_config).unwrap(),
    )
    .unwrap();
    py(&[
        "roundtrip",
        dir.to_str().unwrap(),
        out.path().to_str().unwrap(),
        calib().to_str().unwrap(),
    ]);
}

fn trained(kind: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    py(&[
        "make",
        kind,
        d.path().to_str().unwrap(),
        calib().to_str().unwrap(),
    ]);
    d
}

fn vocab_len(dir: &Path) -> u64 {
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let mut max = j["model"]["vocab"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .max()
        .unwrap_or(0);
    for a in j["added_tokens"].as_array().into_iter().flatten() {
        max = max.max(a["id"].as_u64().unwrap());
    }
    max + 1
}

#[test]
fn byte_level_bpe_matches_converter_and_round_trips() {
    let d = trained("bpe");
    let n = vocab_len(d.path());
    // Padded to a larger embedding: [PAD{i}] UNUSED entries.
    check_export(d.path(), n + 5, VocabKind::Gpt2Bpe);
    let md = check_export(d.path(), n, VocabKind::Gpt2Bpe);
    check_roundtrip(d.path(), &md);
}

#[test]
fn byte_fallback_bpe_matches_converter_and_round_trips() {
    let d = trained("spm");
    let n = vocab_len(d.path());
    check_export(d.path(), n + 3, VocabKind::Llama);
    let md = check_export(d.path(), n, VocabKind::Llama);
    check_roundtrip(d.path(), &md);
}

#[test]
fn fixtures_when_present() {
    for (name, kind) in [
        ("tokenizer-bpe", VocabKind::Gpt2Bpe),
        ("tokenizer-spm", VocabKind::Llama),
    ] {
        let d = root().join("fixtures").join(name);
        if !d.join("tokenizer.json").exists() {
            eprintln!("skipping {}: not present", d.display());
            continue;
        }
        let n = vocab_len(&d);
        let md = check_export(&d, n, kind);
        check_roundtrip(&d, &md);
    }
}
