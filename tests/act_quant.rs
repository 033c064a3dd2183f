//! `eval --act-quant`: the forward pass quantizes FP8 / INT8 linears' inputs with their static
//! activation scales, checked against an independent numpy forward of the deployed arithmetic
//! (`tests/interop/act_quant_forward.py`); weight-only schemes are unchanged; the TensorRT-LLM
//! reader applies the same scales as the Hugging Face one.

mod common;

use common::{fixture, ok, s};
use serde_json::Value;
use std::path::Path;

fn quantize(out: &Path, scheme: &str, extra: &[&str]) {
    let text = common::sample_text();
    let m = fixture("trained-llama");
    let mut args = vec!["-q", "convert", s(&m), s(out), "--quant", scheme];
    args.extend_from_slice(&["--calib-data", s(&text), "--calib-samples", "4"]);
    args.extend_from_slice(extra);
    ok(&args);
}

/// `eval MODEL` on the sample text (against `teacher` when given) as JSON.
fn eval_json(model: &Path, teacher: Option<&Path>, extra: &[&str]) -> Value {
    let text = common::sample_text();
    let mut args = vec!["--json", "eval", s(model), "--data", s(&text)];
    if let Some(t) = teacher {
        args.extend_from_slice(&["--teacher", s(t)]);
    }
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).expect("eval JSON")
}

/// The independent numpy NLL of `model` over the first `windows` windows of the sample text.
fn numpy_nll(model: &Path, windows: usize, act_quant: bool) -> f64 {
    let text = common::sample_text();
    let n = windows.to_string();
    let mut args = vec![s(model), s(&text), n.as_str()];
    if !act_quant {
        args.push("--no-act-quant");
    }
    let report = common::run_python("act_quant_forward.py", &args);
    let json: Value = serde_json::from_str(report.trim()).expect("JSON report");
    json["nll"].as_f64().expect("nll")
}

#[test]
fn fp8_and_int8_inputs_are_quantized_as_deployed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let windows = 96;
    for scheme in ["fp8", "int8_sq"] {
        let out = dir.path().join(scheme);
        quantize(&out, scheme, &["--format", "hf"]);
        let max = windows.to_string();
        let ours = |extra: &[&str]| {
            let mut args = vec!["--max-windows", max.as_str()];
            args.extend_from_slice(extra);
            eval_json(&out, None, &args)["nll"].as_f64().expect("nll")
        };
        let (plain, aq) = (ours(&[]), ours(&["--act-quant"]));
        let (np_plain, np_aq) = (
            numpy_nll(&out, windows, false),
            numpy_nll(&out, windows, true),
        );
        println!("{scheme}: nll ours {plain} -> {aq} with act-quant, numpy {np_plain} -> {np_aq}");
        // Without the simulation both compute the same weights' model.
        assert!(
            (plain - np_plain).abs() < 1e-6,
            "{scheme}: {plain} vs {np_plain}"
        );
        // With it, both move the same way by about as much; float32 and float64 round values on
        // a quantization boundary differently, and each flip perturbs the layers after it, so
        // the two agree to a fraction of the shift, not exactly (see the script's notes).
        let shift = np_aq - np_plain;
        assert!(shift > 3e-4, "{scheme}: numpy shift {shift}");
        assert!(
            (aq - np_aq).abs() < 0.25 * shift,
            "{scheme}: {aq} vs {np_aq} (shift {shift})"
        );
    }
}

#[test]
fn weight_only_is_unchanged_and_trtllm_reads_the_same_scales() {
    let dir = tempfile::tempdir().expect("temp dir");
    let awq = dir.path().join("awq");
    quantize(&awq, "int4_awq", &["--format", "hf"]);
    let teacher = fixture("trained-llama");
    let eval = |m: &Path, extra: &[&str]| {
        let mut args = vec!["--max-windows", "24"];
        args.extend_from_slice(extra);
        eval_json(m, Some(&teacher), &args)
    };
    let (a, b) = (eval(&awq, &[]), eval(&awq, &["--act-quant"]));
    assert_eq!(a["nll"], b["nll"]);
    assert_eq!(
        (a["act_quant"].as_bool(), b["act_quant"].as_bool()),
        (Some(false), Some(true))
    );

    // SmoothQuant: the HF layout folds the smoothing into the norms, TensorRT-LLM keeps it as
    // every linear's prequant_scaling_factor (split with the columns on row-parallel ranks).
    let hf = dir.path().join("sq-hf");
    let tl = dir.path().join("sq-tl");
    quantize(&hf, "int8_sq", &["--format", "hf"]);
    quantize(&tl, "int8_sq", &["--format", "trtllm", "--tp", "2"]);
    let nll = |v: &Value| v["nll"].as_f64().expect("nll");
    let kl = |v: &Value| v["teacher"]["kl"].as_f64().expect("kl");
    let (h, t) = (eval(&hf, &["--act-quant"]), eval(&tl, &["--act-quant"]));
    let plain = eval(&hf, &[]);
    println!(
        "int8_sq act-quant KL: hf {} trtllm {}, plain {}",
        kl(&h),
        kl(&t),
        kl(&plain)
    );
    assert!((nll(&h) - nll(&t)).abs() < 1e-3 * nll(&h), "{h} / {t}");
    assert!((kl(&h) - kl(&t)).abs() < 0.05 * kl(&h), "{h} / {t}");
    assert!(kl(&h) > 3.0 * kl(&plain), "{h} / {plain}");

    // `quantize --eval-data --eval-act-quant` reports the same KL `eval --act-quant` measures.
    let text = common::sample_text();
    let m = fixture("trained-llama");
    let again = dir.path().join("sq-report");
    let report = ok(&[
        "--json",
        "quantize",
        s(&m),
        s(&again),
        "--quant",
        "int8_sq",
        "--calib-data",
        s(&text),
        "--calib-samples",
        "4",
        "--eval-data",
        s(&text),
        "--eval-max-windows",
        "24",
        "--eval-act-quant",
    ]);
    let report: Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(report["model"]["kl"].as_f64(), Some(kl(&h)), "{report}");
}
