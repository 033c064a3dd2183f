//! The forward pass against an independent float64 numpy implementation
//! (`tests/interop/reference_forward.py`), the GGUF path against the HF path, and the tokenizer
//! against the Python `tokenizers` package.

mod common;

use ckpt_opt::checkpoint::Checkpoint;
use ckpt_opt::forward::{tokenizer, Model};
use common::{fixture, ok, run_python, s, MODELS};
use std::path::Path;

/// A deterministic sequence that touches many embedding rows.
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

fn logits_of(path: &Path, ids: &[u32]) -> Vec<f32> {
    let ckpt = Checkpoint::open(path).expect("checkpoint opens");
    let model = Model::load(&ckpt).expect("model loads");
    model.forward(ids).expect("forward runs")
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        d += (f64::from(x) - f64::from(y)).powi(2);
        n += f64::from(y).powi(2);
    }
    (d / n).sqrt()
}

#[test]
fn logits_match_float64_reference_on_every_fixture() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in MODELS {
        let ids = tokens(37, 1000);
        let logits = logits_of(&fixture(name), &ids);
        assert_eq!(logits.len(), ids.len() * 1000);
        assert!(logits.iter().all(|v| v.is_finite()));
        let out = dir.path().join(format!("{name}.f32"));
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&out, bytes).expect("write logits");
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        let report = run_python(
            "reference_forward.py",
            &[s(&fixture(name)), &list.join(","), s(&out)],
        );
        let json: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON report");
        let rel = json["rel_err"].as_f64().expect("rel_err");
        println!(
            "{name}: rel_err {rel:.3e} max_abs_err {}",
            json["max_abs_err"]
        );
        assert!(rel < 1e-4, "{name}: ‖Δ‖/‖ref‖ = {rel:e} ({report})");
    }
}

#[test]
fn gguf_forward_matches_hf_forward() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in MODELS {
        let gguf = dir.path().join(format!("{name}.gguf"));
        ok(&[
            "convert",
            s(&fixture(name)),
            s(&gguf),
            "--format",
            "gguf",
            "--quiet",
        ]);
        let ids = tokens(29, 1000);
        let hf = logits_of(&fixture(name), &ids);
        let gg = logits_of(&gguf, &ids);
        let rel = rel_err(&gg, &hf);
        println!("{name}: GGUF vs HF rel_err {rel:.3e}");
        // Same values (norms widened exactly to F32); only summation order could differ.
        assert!(rel < 1e-6, "{name}: GGUF logits differ from HF by {rel:e}");
    }
}

#[test]
fn batch_equals_single_and_hidden_states_are_per_layer() {
    let ckpt = Checkpoint::open(&fixture("llama-gqa")).expect("opens");
    let model = Model::load(&ckpt).expect("loads");
    let a = tokens(16, 1000);
    let b: Vec<u32> = tokens(9, 1000).iter().map(|t| (t + 5) % 1000).collect();
    let batch = model.forward_batch(&[&a, &b], true).expect("batch");
    assert_eq!(batch[0].hidden.len(), 2);
    assert_eq!(batch[0].hidden[0].len(), 16 * 256);
    for (out, ids) in batch.iter().zip([&a, &b]) {
        let single = model.forward(ids).expect("single");
        assert!(rel_err(&out.logits, &single) < 1e-6);
    }
    // A prefix's logits do not depend on what follows it (causality, end to end).
    let prefix = model.forward(&a[..5]).expect("prefix");
    assert!(rel_err(&batch[0].logits[..5 * 1000], &prefix) < 1e-6);
}

#[test]
fn out_of_vocabulary_token_is_an_error() {
    let ckpt = Checkpoint::open(&fixture("llama-tied")).expect("opens");
    let model = Model::load(&ckpt).expect("loads");
    let err = model.forward(&[1, 1000]).expect_err("rejected");
    assert!(err.to_string().contains("1000"), "{err}");
    // An empty sequence gives empty logits, alone or beside another.
    assert!(model.forward(&[]).expect("empty").is_empty());
    let out = model.forward_batch(&[&[], &[3, 4]], false).expect("mixed");
    assert_eq!((out[0].logits.len(), out[1].logits.len()), (0, 2000));
}

fn paragraphs() -> Vec<String> {
    let text = std::fs::read_to_string(common::sample_text()).expect("fixtures/heldout.txt");
    let mut paras: Vec<String> = text
        .split("\n\n")
        .filter(|p| p.trim().len() > 40)
        .take(8)
        .map(str::to_owned)
        .collect();
    // One long span too, with odd whitespace and non-ASCII.
    paras.push(text.chars().take(6000).collect());
    paras.push("  Ünïcödé — “quotes”\ttabs\n\nand 12345 numbers, emoji 🦀.  ".into());
    paras
}

#[test]
fn tokenizer_ids_match_python_tokenizers() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["tokenizer-bpe", "tokenizer-spm"] {
        let path = fixture(name).join("tokenizer.json");
        let tok = tokenizer::load_tokenizer_json(&path).expect("tokenizer loads");
        for (i, text) in paragraphs().iter().enumerate() {
            let file = dir.path().join(format!("{name}-{i}.txt"));
            std::fs::write(&file, text).expect("write text");
            let py: serde_json::Value =
                serde_json::from_str(run_python("tokenize_ids.py", &[s(&path), s(&file)]).trim())
                    .expect("JSON");
            let want = |k: &str| -> Vec<u32> {
                py[k]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|v| v.as_u64().expect("id") as u32)
                    .collect()
            };
            let plain = tokenizer::encode(&tok, text, &path).expect("encodes");
            assert_eq!(
                plain,
                want("plain"),
                "{name} paragraph {i} (no special tokens)"
            );
            let special = tok.encode(text.as_str(), true).expect("encodes");
            assert_eq!(
                special.get_ids(),
                want("special"),
                "{name} paragraph {i} (special tokens)"
            );
        }
    }
}

/// Copies a fixture folder and edits its `config.json`.
fn fixture_with_config(
    name: &str,
    dir: &Path,
    edit: impl Fn(&mut serde_json::Value),
) -> std::path::PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    for entry in std::fs::read_dir(fixture(name)).expect("fixture") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, out.join(p.file_name().expect("name"))).expect("copy");
    }
    let path = out.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).expect("write");
    out
}

fn reference_rel_err(model: &Path, ids: &[u32], logits: &[f32], dir: &Path) -> f64 {
    let out = dir.join("logits.f32");
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&out, bytes).expect("write logits");
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let report = run_python(
        "reference_forward.py",
        &[s(model), &list.join(","), s(&out)],
    );
    let json: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON report");
    json["rel_err"].as_f64().expect("rel_err")
}

#[test]
fn rope_scaling_linear_and_llama3_match_reference_and_gguf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids = tokens(40, 1000);
    let plain = logits_of(&fixture("llama-tied"), &ids);
    let cases = [
        (
            "linear",
            serde_json::json!({"rope_type": "linear", "factor": 3.0}),
        ),
        (
            "llama3",
            // A short original context so all three frequency bands occur at head_dim 64.
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
        ),
    ];
    for (kind, scaling) in cases {
        let case_dir = dir.path().join(kind);
        let model = fixture_with_config("llama-tied", &case_dir, |c| {
            c["rope_scaling"] = scaling.clone();
            // convert_hf_to_gguf.py reads the llama3 context from the top level.
            c["original_max_position_embeddings"] = serde_json::json!(256);
        });
        let logits = logits_of(&model, &ids);
        assert!(
            rel_err(&logits, &plain) > 1e-3,
            "{kind}: scaling changed nothing"
        );
        let rel = reference_rel_err(&model, &ids, &logits, &case_dir);
        println!("llama-tied rope {kind}: rel_err {rel:.3e}");
        assert!(rel < 1e-4, "{kind}: ‖Δ‖/‖ref‖ = {rel:e}");
        // The GGUF keeps linear as metadata and llama3 as the rope_freqs tensor.
        let gguf = case_dir.join("m.gguf");
        ok(&[
            "convert",
            s(&model),
            s(&gguf),
            "--format",
            "gguf",
            "--quiet",
        ]);
        let gg = logits_of(&gguf, &ids);
        let rel = rel_err(&gg, &logits);
        println!("llama-tied rope {kind}: GGUF vs HF rel_err {rel:.3e}");
        assert!(rel < 1e-5, "{kind}: GGUF differs from HF by {rel:e}");
    }
}
