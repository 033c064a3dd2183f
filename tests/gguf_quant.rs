//! `convert --format gguf --quant TYPE [--imatrix STATS]` end to end: files read back by the
//! Python `gguf` package (types, file_type, bytes equal to gguf-py's quantizer where it has one),
//! `eval` of the quantized files (perplexity, KL vs the f32 teacher), the imatrix effect, and
//! NaN weights stopping the job.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const QUANTS: [&str; 13] = [
    "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_s",
    "q4_k_m", "q5_k_m",
];

/// llama.cpp's `llama_ftype` numbers (uniform K types carry their `_S` mix's number).
fn file_type(quant: &str) -> u64 {
    match quant {
        "q4_0" => 2,
        "q4_1" => 3,
        "q8_0" => 7,
        "q5_0" => 8,
        "q5_1" => 9,
        "q2_k" => 10,
        "q3_k" => 11,
        "q4_k" | "q4_k_s" => 14,
        "q4_k_m" => 15,
        "q5_k" => 16,
        "q5_k_m" => 17,
        "q6_k" => 18,
        other => panic!("{other}"),
    }
}

/// The per-tensor types llama-quantize picks for these small llama fixtures (all rows are
/// 256-multiples), written out by hand from llama-quant.cpp: `use_more_bits(i, n)` selects
/// layers {2, 3} of 4, {1} of 2, {0} of 1; Q4_K_S bumps attn_v of layers < 4 and ffn_down of
/// layers < n/8 (none here).
fn expected_types(quant: &str, layers: u64, tied: bool) -> Value {
    let upper = |q: &str| q.to_uppercase();
    let default = match quant {
        "q4_k_s" | "q4_k_m" => "Q4_K".to_string(),
        "q5_k_m" => "Q5_K".to_string(),
        q => upper(q),
    };
    let output = if quant == "q8_0" { "Q8_0" } else { "Q6_K" };
    let more_bits: &[u64] = match layers {
        4 => &[2, 3],
        2 => &[1],
        1 => &[0],
        n => panic!("no hand-written use_more_bits for {n} layers"),
    };
    let mut types = serde_json::Map::new();
    types.insert(
        "token_embd.weight".into(),
        json!(if tied { output } else { default.as_str() }),
    );
    if !tied {
        types.insert("output.weight".into(), json!(output));
    }
    for l in 0..layers {
        for role in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            let bumped = match (quant, role) {
                ("q4_k_m" | "q5_k_m", "attn_v" | "ffn_down") if more_bits.contains(&l) => "Q6_K",
                ("q4_k_s", "attn_v") if l < 4 => "Q5_K",
                _ => default.as_str(),
            };
            types.insert(format!("blk.{l}.{role}.weight"), json!(bumped));
        }
    }
    Value::Object(types)
}

/// Relative RMSE bounds per type for the fixtures' weights (measured worst tensor × ~1.5).
fn rmse_bounds() -> Value {
    json!({"Q8_0": 0.01, "Q6_K": 0.03, "Q5_1": 0.06, "Q5_0": 0.07, "Q5_K": 0.06, "Q4_1": 0.12,
           "Q4_0": 0.14, "Q4_K": 0.12, "Q3_K": 0.25, "Q2_K": 0.45})
}

fn convert(input: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["-q", "convert", s(input), s(out), "--format", "gguf"];
    args.extend_from_slice(extra);
    ok(&args);
}

fn check(quant_file: &Path, f32_file: &Path, quant: &str, layers: u64, tied: bool, dir: &Path) {
    let expect = dir.join(format!("expect-{quant}.json"));
    let body = json!({
        "file_type": file_type(quant),
        "types": expected_types(quant, layers, tied),
        "max_rel_rmse": rmse_bounds(),
    });
    std::fs::write(&expect, body.to_string()).unwrap();
    let report = run_python(
        "check_quant_gguf.py",
        &[s(quant_file), s(f32_file), s(&expect)],
    );
    eprintln!("{} {quant}: {report}", quant_file.display());
}

#[test]
fn every_quant_type_is_read_back_by_the_gguf_package() {
    let dir = tempfile::tempdir().unwrap();
    for (model, layers, tied) in [
        ("trained-llama", 4, false),
        ("llama-gqa", 2, false),
        ("llama-tied", 1, true),
    ] {
        let f32_file = dir.path().join(format!("{model}.f32.gguf"));
        convert(&fixture(model), &f32_file, &["--dtype", "f32"]);
        for quant in QUANTS {
            let out = dir.path().join(format!("{model}.{quant}.gguf"));
            convert(&fixture(model), &out, &["--quant", quant]);
            check(&out, &f32_file, quant, layers, tied, dir.path());
        }
    }
    // GGUF input (llama-quantize's usual job): the same file from the F32 GGUF.
    let f32_file = dir.path().join("trained-llama.f32.gguf");
    for quant in ["q8_0", "q4_k_m"] {
        let out = dir.path().join(format!("from-gguf.{quant}.gguf"));
        convert(&f32_file, &out, &["--quant", quant]);
        check(&out, &f32_file, quant, 4, false, dir.path());
        // The F32 GGUF carries the converter's metadata, so the whole file is the same bytes.
        let from_hf = dir.path().join(format!("trained-llama.{quant}.gguf"));
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&from_hf).unwrap(),
            "{quant}: GGUF-sourced file differs from the HF-sourced one"
        );
    }
}

fn eval(model: &Path, data: &Path, windows: &str) -> Value {
    let out = ok(&[
        "eval",
        s(model),
        "--data",
        s(data),
        "--json",
        "--max-windows",
        windows,
        "--teacher",
        s(&fixture("trained-llama")),
    ]);
    serde_json::from_str(&out).unwrap()
}

fn ppl_kl(v: &Value) -> (f64, f64) {
    (
        v["perplexity"].as_f64().unwrap(),
        v["teacher"]["kl"].as_f64().unwrap(),
    )
}

#[test]
fn eval_of_quantized_trained_model_tracks_the_f32_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample_text();
    let (f32_ppl, f32_kl) = ppl_kl(&eval(&fixture("trained-llama"), &data, "64"));
    assert_eq!(f32_kl, 0.0);
    let mut kls = Vec::new();
    for quant in ["q8_0", "q6_k", "q4_k_m", "q2_k"] {
        let out = dir.path().join(format!("{quant}.gguf"));
        convert(&fixture("trained-llama"), &out, &["--quant", quant]);
        let (ppl, kl) = ppl_kl(&eval(&out, &data, "64"));
        eprintln!("{quant}: perplexity {ppl:.3} (f32 {f32_ppl:.3}), KL {kl:.3e}");
        let ratio = ppl / f32_ppl;
        match quant {
            "q8_0" => assert!((ratio - 1.0).abs() < 0.01, "q8_0 ppl ratio {ratio}"),
            "q6_k" => assert!((ratio - 1.0).abs() < 0.01, "q6_k ppl ratio {ratio}"),
            "q4_k_m" => assert!(ratio < 1.03, "q4_k_m ppl ratio {ratio}"),
            _ => assert!(ratio < 1.25, "q2_k ppl ratio {ratio}"),
        }
        kls.push((quant, kl));
    }
    for pair in kls.windows(2) {
        assert!(pair[0].1 < pair[1].1, "KL not ordered: {kls:?}");
    }
}

/// Calibrates on the first half of the held-out text and evaluates on the second half, so the
/// imatrix never saw the evaluation text.
#[test]
fn imatrix_lowers_kl_on_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(sample_text()).unwrap();
    let cut = text.char_indices().nth(text.chars().count() / 2).unwrap().0;
    let (calib, held) = (dir.path().join("calib.txt"), dir.path().join("eval.txt"));
    std::fs::write(&calib, &text[..cut]).unwrap();
    std::fs::write(&held, &text[cut..]).unwrap();
    let stats = dir.path().join("stats.safetensors");
    ok(&[
        "-q",
        "calibrate",
        s(&fixture("trained-llama")),
        "--data",
        s(&calib),
        "-o",
        s(&stats),
    ]);
    for quant in ["q4_k", "q3_k", "q2_k"] {
        let plain = dir.path().join(format!("{quant}.gguf"));
        let imat = dir.path().join(format!("{quant}-imatrix.gguf"));
        convert(&fixture("trained-llama"), &plain, &["--quant", quant]);
        convert(
            &fixture("trained-llama"),
            &imat,
            &["--quant", quant, "--imatrix", s(&stats)],
        );
        let (_, kl_plain) = ppl_kl(&eval(&plain, &held, "100"));
        let (_, kl_imat) = ppl_kl(&eval(&imat, &held, "100"));
        eprintln!("{quant}: KL {kl_plain:.4e} without imatrix, {kl_imat:.4e} with");
        assert!(
            kl_imat < kl_plain * 0.97,
            "{quant}: imatrix KL {kl_imat} not below {kl_plain}"
        );
    }
}

#[test]
fn nan_weight_stops_the_job_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::with_nan(
        "llama-tied",
        "model.layers.0.mlp.up_proj.weight",
        dir.path(),
    );
    for quant in ["q8_0", "q4_k_m"] {
        let out = dir.path().join(format!("{quant}.gguf"));
        let err = fails(
            &[
                "-q",
                "convert",
                s(&model),
                s(&out),
                "--format",
                "gguf",
                "--quant",
                quant,
            ],
            1,
        );
        assert!(err.contains("model.layers.0.mlp.up_proj.weight"), "{err}");
        assert!(err.contains("NaN"), "{err}");
        assert!(!out.exists(), "a half-written {} was left", out.display());
    }
}

#[test]
fn bad_quant_requests_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let m = fixture("llama-tied");
    let err = fails(
        &[
            "-q",
            "convert",
            s(&m),
            s(&out),
            "--format",
            "gguf",
            "--quant",
            "iq2_xs",
        ],
        2,
    );
    assert!(err.contains("q4_k_m"), "{err}");
    let err = fails(
        &[
            "-q",
            "convert",
            s(&m),
            s(&dir.path().join("hf")),
            "--format",
            "hf",
            "--quant",
            "q8_0",
        ],
        2,
    );
    assert!(err.contains("gguf"), "{err}");
    // --imatrix must be calibration statistics: a model file is refused, naming it.
    let not_stats = m.join("model.safetensors");
    let err = fails(
        &[
            "-q",
            "convert",
            s(&m),
            s(&out),
            "--format",
            "gguf",
            "--quant",
            "q4_k",
            "--imatrix",
            s(&not_stats),
        ],
        1,
    );
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(!out.exists());
}

/// The plan is data: `--dry-run` shows each tensor's ggml type and its quantize op.
#[test]
fn dry_run_plan_shows_the_quantize_ops() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let json = ok(&[
        "convert",
        s(&fixture("trained-llama")),
        s(&out),
        "--format",
        "gguf",
        "--quant",
        "q4_k_m",
        "--dry-run",
    ]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let tensors: Vec<&Value> = v["plan"]["files"][0]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let find = |name: &str| *tensors.iter().find(|t| t["name"] == name).unwrap();
    let down = find("blk.3.ffn_down.weight");
    assert_eq!(down["dtype"], "Q6_K");
    assert_eq!(down["recipe"]["ops"][0]["op"], "quantize_ggml");
    assert_eq!(down["recipe"]["ops"][0]["ty"], "Q6K");
    assert_eq!(find("blk.0.ffn_down.weight")["dtype"], "Q4_K");
    assert_eq!(find("blk.0.attn_norm.weight")["dtype"], "F32");
    // q/k rows are permuted (source rows) before quantizing.
    let q = &find("blk.0.attn_q.weight")["recipe"]["ops"];
    assert_eq!(q[0]["op"], "permute_qk");
    assert_eq!(q[1]["op"], "quantize_ggml");
    assert!(!out.exists());
}

/// `quantize` with a GGUF type (or `auto --target cpu`) writes what `convert --format gguf
/// --quant` writes, from an HF folder or from a GGUF file, with `--calib-stats` as the imatrix.
#[test]
fn quantize_command_makes_the_same_gguf_as_convert() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("llama-gqa");
    let via_convert = dir.path().join("convert.gguf");
    convert(&m, &via_convert, &["--quant", "q4_k_m"]);
    let via_quantize = dir.path().join("quantize.gguf");
    ok(&[
        "-q",
        "quantize",
        s(&m),
        s(&via_quantize),
        "--quant",
        "q4_k_m",
    ]);
    assert_eq!(
        std::fs::read(&via_convert).unwrap(),
        std::fs::read(&via_quantize).unwrap()
    );
    let via_auto = dir.path().join("auto.gguf");
    ok(&[
        "-q",
        "quantize",
        s(&m),
        s(&via_auto),
        "--quant",
        "auto",
        "--target",
        "cpu",
    ]);
    assert_eq!(
        std::fs::read(&via_convert).unwrap(),
        std::fs::read(&via_auto).unwrap()
    );

    // GGUF in, GGUF out; statistics as the importance matrix.
    let f32_gguf = dir.path().join("f32.gguf");
    convert(&m, &f32_gguf, &["--dtype", "f32"]);
    let stats = dir.path().join("stats.safetensors");
    ok(&[
        "-q",
        "calibrate",
        s(&m),
        "--data",
        s(&sample_text()),
        "-o",
        s(&stats),
        "--calib-samples",
        "4",
        "--calib-seq-len",
        "32",
    ]);
    let from_gguf = dir.path().join("from-gguf.gguf");
    ok(&[
        "-q",
        "quantize",
        s(&f32_gguf),
        s(&from_gguf),
        "--quant",
        "q4_k",
        "--calib-stats",
        s(&stats),
    ]);
    let imatrix = dir.path().join("imatrix.gguf");
    convert(
        &f32_gguf,
        &imatrix,
        &["--quant", "q4_k", "--imatrix", s(&stats)],
    );
    assert_eq!(
        std::fs::read(&from_gguf).unwrap(),
        std::fs::read(&imatrix).unwrap()
    );
}

/// `--device` changes where blocks are made, never the bytes: `auto` (CPU here, the GPU where
/// one is present) and, with a GPU, `cuda` equal the CPU's file for every type with a CUDA twin
/// and for the mixes. Without a GPU, `cuda` is a one-line usage error and nothing is written
/// (`CKPT_OPT_REQUIRE_CUDA=1` turns that case into a failure, for GPU machines).
#[test]
fn device_choice_never_changes_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("trained-llama");
    let gpu = ckpt_opt::plan::Device::Cuda.resolve().is_ok();
    if !gpu && std::env::var("CKPT_OPT_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
        panic!("CKPT_OPT_REQUIRE_CUDA=1 but no CUDA device can be opened");
    }
    for quant in [
        "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k",
    ] {
        let cpu = dir.path().join(format!("{quant}-cpu.gguf"));
        convert(&m, &cpu, &["--quant", quant]);
        let expected = std::fs::read(&cpu).unwrap();
        let auto = dir.path().join(format!("{quant}-auto.gguf"));
        convert(&m, &auto, &["--quant", quant, "--device", "auto"]);
        assert_eq!(
            std::fs::read(&auto).unwrap(),
            expected,
            "{quant} --device auto"
        );
        let cuda = dir.path().join(format!("{quant}-cuda.gguf"));
        let args = [
            "-q",
            "convert",
            s(&m),
            s(&cuda),
            "--format",
            "gguf",
            "--quant",
            quant,
            "--device",
            "cuda",
        ];
        if gpu {
            ok(&args);
            assert_eq!(
                std::fs::read(&cuda).unwrap(),
                expected,
                "{quant} --device cuda"
            );
        } else {
            let err = fails(&args, 2);
            assert!(err.contains("no CUDA device"), "{err}");
            assert!(!cuda.exists());
        }
    }
    eprintln!("device test ran with gpu = {gpu}");
}
