//! `ckpt-opt quantize` (and `convert --format hf --quant`) through the binary: every written
//! layout dequantized independently with numpy (`tests/interop/check_quantized_hf.py`) within
//! its scheme's error bound, AWQ against RTN on the trained fixture, determinism, exclusions,
//! the report, and each error.

mod common;

use common::{fails, fixture, ok, python, s};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The second half of the held-out text (calibration), so that evaluating on the first
/// windows of the whole file measures text the calibration never saw.
fn calib_text(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(common::sample_text()).expect("fixtures/heldout.txt");
    let half: String = text.chars().skip(text.chars().count() / 2).collect();
    let p = dir.join("calib.txt");
    std::fs::write(&p, half).expect("write calibration text");
    p
}

fn quantize(model: &Path, out: &Path, scheme: &str, extra: &[&str]) -> Value {
    let mut args = vec!["quantize", s(model), s(out), "--quant", scheme, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).expect("JSON report")
}

fn check_in_python(orig: &Path, out: &Path, scheme: &str) -> std::process::Output {
    check_with_report(orig, out, scheme, None)
}

/// The numpy check, given the report whose AWQ scales a folded checkpoint absorbed.
fn check_with_report(
    orig: &Path,
    out: &Path,
    scheme: &str,
    report: Option<&Path>,
) -> std::process::Output {
    std::process::Command::new(python())
        .arg(common::root().join("tests/interop/check_quantized_hf.py"))
        .args([s(orig), s(out), scheme])
        .args(report.map(s))
        .output()
        .expect("python runs")
}

fn assert_python_accepts(orig: &Path, out: &Path, scheme: &str) {
    let o = check_in_python(orig, out, scheme);
    assert!(
        o.status.success(),
        "{scheme}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_scheme_dequantizes_within_its_bound_in_numpy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    for model in ["llama-gqa", "qwen2-bias"] {
        let m = fixture(model);
        for (scheme, clip) in [
            ("fp8", false),
            ("int8_wo", false),
            ("int8_sq", false),
            ("int4_rtn", false),
            ("int4_awq", false),
            ("int4_awq", true),
        ] {
            let out = dir.path().join(format!("{model}-{scheme}-{clip}"));
            let mut extra = vec!["--calib-data", s(&calib), "--calib-samples", "4"];
            extra.extend_from_slice(&["--calib-seq-len", "64"]);
            if clip {
                extra.push("--awq-clip");
            }
            let r = quantize(&m, &out, scheme, &extra);
            assert_eq!(r["scheme"], scheme);
            assert_python_accepts(&m, &out, scheme);
            // The forward pass reads what was written.
            ok(&[
                "eval",
                s(&out),
                "--data",
                s(&common::sample_text()),
                "--max-windows",
                "2",
            ]);
        }
    }
}

/// Rewrites one tensor's bytes of a single-file output with `f`, into a copy of the folder.
fn corrupt_copy(out: &Path, dst: &Path, tensor: &str, f: impl Fn(&mut [u8])) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(out).expect("read output") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
    let file = dst.join("model.safetensors");
    let mut bytes = std::fs::read(&file).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let offs = &header[tensor]["data_offsets"];
    let (a, b) = (
        8 + n + offs[0].as_u64().expect("start") as usize,
        8 + n + offs[1].as_u64().expect("end") as usize,
    );
    f(&mut bytes[a..b]);
    std::fs::write(&file, bytes).expect("write");
}

#[test]
fn numpy_check_rejects_a_wrong_packing_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("rtn");
    quantize(&m, &out, "int4_rtn", &[]);
    assert_python_accepts(&m, &out, "int4_rtn");
    // High nibble first instead of low nibble first: rows 2i and 2i+1 swap.
    let swapped = dir.path().join("swapped");
    corrupt_copy(&out, &swapped, "model.layers.0.mlp.up_proj.weight", |b| {
        b.iter_mut().for_each(|x| *x = x.rotate_left(4))
    });
    let o = check_in_python(&m, &swapped, "int4_rtn");
    assert!(
        !o.status.success(),
        "a swapped nibble order must fail the check"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.layers.0.mlp.up_proj"));
}

#[test]
fn awq_beats_rtn_in_kl_on_the_trained_fixture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let calib = calib_text(dir.path());
    let heldout = common::sample_text();
    let eval = ["--eval-data", s(&heldout), "--eval-max-windows", "96"];
    let mut kl = Vec::new();
    let runs: [(&str, &[&str]); 5] = [
        ("int4_rtn", &[]),
        ("int4_awq", &[]),
        ("int4_awq", &["--awq-clip"]),
        ("int4_awq", &["--awq-fold"]),
        ("int4_awq", &["--awq-clip", "--awq-fold"]),
    ];
    for (i, (scheme, flags)) in runs.into_iter().enumerate() {
        let out = dir.path().join(format!("{scheme}-{i}"));
        let mut extra = vec!["--calib-data", s(&calib), "--calib-samples", "32"];
        extra.extend_from_slice(&eval);
        extra.extend_from_slice(flags);
        let r = quantize(&m, &out, scheme, &extra);
        let model = &r["model"];
        assert!(model["teacher_perplexity"].as_f64().expect("ppl") > 1.0);
        kl.push(model["kl"].as_f64().expect("kl"));
        if scheme == "int4_awq" {
            let searches = r["awq"].as_array().expect("awq choices");
            assert_eq!(searches.len(), 4 * 4, "4 input sites per layer");
            for c in searches {
                assert!(c["loss"].as_f64() <= c["rtn_loss"].as_f64());
                // Folded: o_proj under GQA keeps s = 1 (AutoAWQ scales it only when
                // v_proj and o_proj have the same shape).
                let o_proj = c["modules"][0]
                    .as_str()
                    .is_some_and(|m| m.ends_with("o_proj"));
                if flags.contains(&"--awq-fold") && o_proj {
                    assert!(c["ratio"].is_null(), "{c}");
                }
            }
        }
    }
    eprintln!(
        "KL int4_rtn {:.6e}, int4_awq {:.6e}, with clip {:.6e}; folded {:.6e}, folded with clip {:.6e}",
        kl[0], kl[1], kl[2], kl[3], kl[4]
    );
    // Folding loses o_proj's scale (GQA) and rounds the folded norms / up_proj rows to bf16:
    // close to the pre-quant-scale layout, still better than RTN.
    for (folded, kept) in [(kl[3], kl[1]), (kl[4], kl[2])] {
        assert!(
            folded < kl[0],
            "folded AWQ {folded} must beat RTN {}",
            kl[0]
        );
        assert!((folded - kept).abs() < 0.05 * kept, "{folded} vs {kept}");
    }
    assert!(kl[1] < kl[0], "AWQ {} must beat RTN {}", kl[1], kl[0]);
    assert!(
        kl[2] < kl[1],
        "the clip search {} improves on AWQ scales alone {}",
        kl[2],
        kl[1]
    );
}

#[test]
fn report_fields_and_theoretical_error_levels() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let calib = calib_text(dir.path());
    let report = dir.path().join("report.json");
    let out = dir.path().join("int8");
    let stdout = ok(&[
        "quantize",
        s(&m),
        s(&out),
        "--quant",
        "int8_wo",
        "--report",
        s(&report),
        "--eval-data",
        s(&common::sample_text()),
        "--eval-max-windows",
        "4",
    ]);
    assert!(
        stdout.contains("rel_error") && stdout.contains("perplexity"),
        "{stdout}"
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    for key in [
        "scheme",
        "quant_algo",
        "quantized_tensors",
        "tensors",
        "mean_rel_error",
        "min_sqnr_db",
        "model",
        "calibration_seconds",
        "quantization_seconds",
        "bytes_written",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    let tensors = r["tensors"].as_array().expect("tensors");
    assert_eq!(tensors.len(), 4 * 7);
    for t in tensors {
        // Per-channel INT8 of roughly Gaussian rows: relative error ~ 1/(127·√3·crest) ≪ 2%;
        // SQNR of 8-bit quantization is ~ 6 dB per bit minus the crest factor.
        assert!(t["rel_error"].as_f64().expect("rel") < 0.02, "{t}");
        assert!(t["sqnr_db"].as_f64().expect("sqnr") > 34.0, "{t}");
    }
    let model = &r["model"];
    for key in ["teacher_perplexity", "perplexity", "kl", "top1_agreement"] {
        assert!(model[key].as_f64().is_some(), "model report lacks {key}");
    }
    assert!(model["kl"].as_f64().expect("kl") < 1e-3);

    let fp8 = dir.path().join("fp8");
    let r = quantize(
        &m,
        &fp8,
        "fp8",
        &["--calib-data", s(&calib), "--calib-samples", "4"],
    );
    // E4M3 has 3 mantissa bits: relative error per value ≤ 2^-4, RMS well below it.
    assert!(r["mean_rel_error"].as_f64().expect("rel") < 0.0625);
}

#[test]
fn calib_stats_and_calib_data_give_the_same_bytes_and_convert_equals_quantize() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let calib = calib_text(dir.path());
    let stats = dir.path().join("stats.safetensors");
    let sampling = [
        "--calib-samples",
        "4",
        "--calib-seq-len",
        "64",
        "--seed",
        "3",
    ];
    let mut args = vec!["calibrate", s(&m), "--data", s(&calib), "-o", s(&stats)];
    args.extend_from_slice(&sampling);
    ok(&args);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let mut extra = vec!["--calib-data", s(&calib)];
    extra.extend_from_slice(&sampling);
    quantize(&m, &a, "int8_sq", &extra);
    quantize(&m, &b, "int8_sq", &["--calib-stats", s(&stats)]);
    let read = |p: &Path| std::fs::read(p.join("model.safetensors")).expect("read");
    assert!(read(&a) == read(&b), "same statistics, same bytes");

    let c = dir.path().join("c");
    let mut args = vec![
        "convert",
        s(&m),
        s(&c),
        "--format",
        "hf",
        "--quant",
        "int8_sq",
        "--calib-stats",
        s(&stats),
        "-q",
    ];
    args.push("-j1");
    ok(&args);
    assert!(read(&a) == read(&c), "convert --quant is quantize");
}

#[test]
fn exclusions_and_globs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("q");
    let r = quantize(
        &m,
        &out,
        "int4_rtn",
        &["--include", "*.mlp.*", "--exclude", "model.layers.1.*"],
    );
    let names: Vec<&str> = r["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.up_proj.weight"
        ]
    );
    assert_python_accepts(&m, &out, "int4_rtn");
    let hfq: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("hf_quant_config.json")).expect("hf_quant_config"),
    )
    .expect("JSON");
    let excluded = hfq["quantization"]["exclude_modules"]
        .as_array()
        .expect("list");
    assert!(excluded.iter().any(|v| v == "lm_head"));
    assert!(excluded.iter().any(|v| v == "model.layers.1.mlp.up_proj"));
    assert!(excluded
        .iter()
        .any(|v| v == "model.layers.0.self_attn.q_proj"));
    fails(
        &[
            "quantize",
            s(&m),
            s(&dir.path().join("x")),
            "--quant",
            "int8_wo",
            "--include",
            "[",
        ],
        2,
    );
}

#[test]
fn nan_weight_stops_the_job_naming_the_tensor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let bad = dir.path().join("bad");
    corrupt_copy(&m, &bad, "model.layers.1.mlp.up_proj.weight", |b| {
        b[10..12].copy_from_slice(&0x7FC0u16.to_le_bytes())
    });
    for scheme in ["int8_wo", "fp8"] {
        let out = dir.path().join(scheme);
        let calib = common::sample_text();
        let err = fails(
            &[
                "quantize",
                s(&bad),
                s(&out),
                "--quant",
                scheme,
                "--calib-data",
                s(&calib),
                "--calib-samples",
                "2",
                "-q",
            ],
            1,
        );
        assert!(
            err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("NaN"),
            "{err}"
        );
        assert!(!out.exists(), "nothing is left at the output path");
    }
}

#[test]
fn calibration_and_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("o");
    for scheme in ["fp8", "int8_sq", "int4_awq"] {
        let err = fails(&["quantize", s(&m), s(&out), "--quant", scheme], 2);
        assert!(
            err.contains("needs calibration") && err.contains("--calib-data"),
            "{err}"
        );
    }
    let stats = dir.path().join("stats.safetensors");
    ok(&[
        "calibrate",
        s(&m),
        "--data",
        s(&common::sample_text()),
        "-o",
        s(&stats),
        "--calib-samples",
        "2",
        "--calib-seq-len",
        "32",
    ]);
    let err = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "int4_awq",
            "--calib-stats",
            s(&stats),
        ],
        2,
    );
    assert!(err.contains("activation samples"), "{err}");
    let err = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "q4_k_m",
            "--calib-data",
            s(&common::sample_text()),
        ],
        2,
    );
    assert!(err.contains("--calib-stats"), "{err}");
    let err = fails(&["quantize", s(&m), s(&out), "--quant", "auto"], 2);
    assert!(err.contains("--target"), "{err}");
    let err = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "int4_rtn",
            "--awq-clip",
        ],
        2,
    );
    assert!(err.contains("--awq-clip"), "{err}");
    let err = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "int4_rtn",
            "--group-size",
            "96",
        ],
        1,
    );
    assert!(err.contains("--group-size 96"), "{err}");
    let err = fails(
        &[
            "convert",
            s(&m),
            s(&dir.path().join("g.gguf")),
            "--format",
            "gguf",
            "--quant",
            "int8_wo",
        ],
        2,
    );
    assert!(err.contains("--format hf"), "{err}");
    assert!(!out.exists());
    // An existing output needs --force.
    std::fs::create_dir_all(&out).expect("mkdir");
    fails(&["quantize", s(&m), s(&out), "--quant", "int8_wo"], 2);
}

#[test]
fn auto_picks_by_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let calib = calib_text(dir.path());
    let c = [
        "--calib-data",
        s(&calib),
        "--calib-samples",
        "2",
        "--calib-seq-len",
        "32",
    ];
    let mut a100 = vec!["--target", "a100"];
    a100.extend_from_slice(&c);
    let r = quantize(&m, &dir.path().join("a"), "auto", &a100);
    assert_eq!(r["scheme"], "int4_awq");
    let mut h100 = vec!["--target", "h100"];
    h100.extend_from_slice(&c);
    let r = quantize(&m, &dir.path().join("h"), "auto", &h100);
    assert_eq!(r["scheme"], "fp8");
}

#[test]
fn awq_fold_puts_the_scales_into_the_previous_ops_and_numpy_agrees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    // llama-gqa and qwen2-bias (biases) are GQA: o_proj stays unscaled; mistral-spm (f32, no
    // GQA) folds o_proj's scale into v_proj's rows. Exclusions: an unquantized up_proj /
    // v_proj gets its rows divided in its own dtype; a norm site with an unquantized linear
    // keeps s = 1.
    let runs: [(&str, &[&str]); 5] = [
        ("llama-gqa", &[]),
        ("qwen2-bias", &["--awq-clip"]),
        ("mistral-spm", &[]),
        (
            "mistral-spm",
            &["--exclude", "*up_proj", "--exclude", "*v_proj"],
        ),
        ("qwen2-bias", &["--exclude", "*q_proj"]),
    ];
    for (i, (model, flags)) in runs.into_iter().enumerate() {
        let m = fixture(model);
        let out = dir.path().join(format!("{model}-{i}"));
        let report = dir.path().join(format!("{model}-{i}.json"));
        let mut extra = vec![
            "--calib-data",
            s(&calib),
            "--calib-samples",
            "4",
            "--awq-fold",
        ];
        extra.extend_from_slice(&["--report", s(&report)]);
        extra.extend_from_slice(flags);
        let r = quantize(&m, &out, "int4_awq", &extra);
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("config.json")).expect("config"),
        )
        .expect("JSON");
        assert_eq!(config["quantization_config"]["pre_quant_scale"], false);
        let o = check_with_report(&m, &out, "int4_awq", Some(&report));
        assert!(
            o.status.success(),
            "{model} {flags:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let searches = r["awq"].as_array().expect("awq");
        let ratio_of = |suffix: &str| {
            searches
                .iter()
                .find(|c| {
                    c["modules"][0]
                        .as_str()
                        .is_some_and(|m| m.ends_with(suffix))
                })
                .map(|c| c["ratio"].clone())
        };
        match (model, i) {
            ("mistral-spm", 2) => assert!(ratio_of("o_proj").is_some_and(|r| !r.is_null())),
            ("qwen2-bias", 4) => assert!(ratio_of("k_proj").is_some_and(|r| r.is_null())),
            (_, _) if model != "mistral-spm" => {
                assert!(ratio_of("o_proj").is_some_and(|r| r.is_null()))
            }
            _ => {}
        }
        ok(&[
            "eval",
            s(&out),
            "--data",
            s(&common::sample_text()),
            "--max-windows",
            "2",
        ]);
    }
    // Without the report the folded scales are unknown, and a norm left unfolded is caught.
    let m = fixture("mistral-spm");
    let (out, report) = (
        dir.path().join("mistral-spm-2"),
        dir.path().join("mistral-spm-2.json"),
    );
    assert!(!check_in_python(&m, &out, "int4_awq").status.success());
    let unfolded = dir.path().join("unfolded");
    let norm = "model.layers.0.input_layernorm.weight";
    let original = common::tensors(&m.join("model.safetensors"));
    let bytes = original[norm].2.clone();
    corrupt_copy(&out, &unfolded, norm, |b| b.copy_from_slice(&bytes));
    let o = check_with_report(&m, &unfolded, "int4_awq", Some(&report));
    assert!(!o.status.success(), "an unfolded norm must fail the check");
    assert!(String::from_utf8_lossy(&o.stderr).contains(norm));
}

/// `quantize --hf-format transformers` (the layouts transformers loads itself).
fn quantize_transformers(
    model: &Path,
    out: &Path,
    scheme: &str,
    calib: &Path,
    extra: &[&str],
) -> Value {
    let report = out.with_extension("json");
    let mut args = vec!["--hf-format", "transformers", "--calib-data", s(calib)];
    args.extend_from_slice(&["--calib-samples", "4", "--report", s(&report)]);
    args.extend_from_slice(extra);
    quantize(model, out, scheme, &args)
}

#[test]
fn transformers_layouts_dequantize_within_bound_in_numpy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    // qwen2-bias: f16 with q/k/v biases; mistral-spm: no GQA, so o_proj's scale folds into
    // v_proj.
    for model in ["llama-gqa", "qwen2-bias", "mistral-spm"] {
        let m = fixture(model);
        for (scheme, extra) in [
            ("fp8", &[][..]),
            ("int4_rtn", &[][..]),
            ("int4_awq", &[][..]),
            ("int4_awq", &["--awq-clip"][..]),
            ("int4_awq", &["--exclude", "*down_proj"][..]),
        ] {
            let out = dir.path().join(format!("{model}-{scheme}-{}", extra.len()));
            quantize_transformers(&m, &out, scheme, &calib, extra);
            assert!(!out.join("hf_quant_config.json").exists());
            let config: Value = serde_json::from_str(
                &std::fs::read_to_string(out.join("config.json")).expect("config"),
            )
            .expect("JSON");
            let qc = &config["quantization_config"];
            // Listed only with exclusions (transformers skips lm_head by itself).
            match extra {
                [_, glob] if glob.contains("down_proj") => {
                    let skip = qc["modules_to_not_convert"].as_array().expect("list");
                    assert!(skip.iter().any(|m| m == "lm_head"), "{qc}");
                    assert!(
                        skip.iter().any(|m| m == "model.layers.0.mlp.down_proj"),
                        "{qc}"
                    );
                }
                _ => assert!(qc.get("modules_to_not_convert").is_none(), "{qc}"),
            }
            if scheme == "fp8" {
                assert_eq!(qc["quant_method"], "fp8");
                assert_eq!(qc["weight_block_size"], serde_json::json!([128, 128]));
            } else {
                assert_eq!(qc["quant_method"], "awq");
                assert_eq!(qc["version"], "gemm");
                assert_eq!(qc["zero_point"], true);
            }
            let o = check_with_report(&m, &out, scheme, Some(&out.with_extension("json")));
            assert!(
                o.status.success(),
                "{model} {scheme} {extra:?}: {}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            ok(&[
                "eval",
                s(&out),
                "--data",
                s(&common::sample_text()),
                "--max-windows",
                "2",
            ]);
            // `verify` knows the layouts (qweight shapes, f16 scales finite, the manifest).
            ok(&["verify", s(&out), "--deep"]);
        }
    }
}

#[test]
fn numpy_check_rejects_a_wrong_awq_pack_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    let m = fixture("llama-gqa");
    let out = dir.path().join("awq");
    quantize_transformers(&m, &out, "int4_rtn", &calib, &[]);
    assert_python_accepts(&m, &out, "int4_rtn");
    // Nibble i holding output i (plain order) instead of AutoAWQ's [0, 2, 4, 6, 1, 3, 5, 7].
    const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
    let plain = dir.path().join("plain");
    corrupt_copy(&out, &plain, "model.layers.1.mlp.gate_proj.qweight", |b| {
        for word in b.chunks_exact_mut(4) {
            let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let mut p = 0u32;
            for (i, &o) in ORDER.iter().enumerate() {
                p |= ((v >> (4 * i)) & 0xF) << (4 * o);
            }
            word.copy_from_slice(&p.to_le_bytes());
        }
    });
    let o = check_in_python(&m, &plain, "int4_rtn");
    assert!(
        !o.status.success(),
        "the plain nibble order must fail the check"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.layers.1.mlp.gate_proj"));
}

/// `eval --teacher` of a folder: (perplexity, KL).
fn eval_against(model: &Path, teacher: &Path) -> (f64, f64) {
    let text = common::sample_text();
    let args = ["eval", s(model), "--data", s(&text), "--max-windows", "24"];
    let r: Value = serde_json::from_str(&ok(
        &[&args[..], &["--teacher", s(teacher), "--json"]].concat()
    ))
    .expect("JSON");
    let kl = r["teacher"]["kl"].as_f64().expect("kl");
    (r["perplexity"].as_f64().expect("perplexity"), kl)
}

#[test]
fn transformers_layouts_evaluate_as_the_modelopt_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    let m = fixture("trained-llama");
    let calib_args = ["--calib-data", s(&calib), "--calib-samples", "4"];
    // FP8: the same codes and the same scale in every block: the same numbers exactly.
    let (fp8_mo, fp8_tf) = (dir.path().join("fp8-mo"), dir.path().join("fp8-tf"));
    quantize(&m, &fp8_mo, "fp8", &calib_args);
    quantize_transformers(&m, &fp8_tf, "fp8", &calib, &[]);
    assert_eq!(eval_against(&fp8_tf, &m), eval_against(&fp8_mo, &m));
    // AWQ: the same search and fold; AutoAWQ's f16 scales (codes computed with them) move the
    // figures slightly.
    let (awq_mo, awq_tf) = (dir.path().join("awq-mo"), dir.path().join("awq-tf"));
    let r_mo = quantize(
        &m,
        &awq_mo,
        "int4_awq",
        &[&calib_args[..], &["--awq-fold"]].concat(),
    );
    let r_tf = quantize_transformers(&m, &awq_tf, "int4_awq", &calib, &[]);
    assert_eq!(r_mo["awq"], r_tf["awq"], "the same AWQ search");
    let (p_mo, kl_mo) = eval_against(&awq_mo, &m);
    let (p_tf, kl_tf) = eval_against(&awq_tf, &m);
    eprintln!(
        "AWQ folded: modelopt ppl {p_mo} KL {kl_mo:.6e}, transformers ppl {p_tf} KL {kl_tf:.6e}"
    );
    assert!((p_tf - p_mo).abs() < 1e-3 * p_mo, "{p_tf} vs {p_mo}");
    assert!((kl_tf - kl_mo).abs() < 0.03 * kl_mo, "{kl_tf} vs {kl_mo}");
}

#[test]
fn awq_fold_and_hf_format_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("o");
    let calib = calib_text(dir.path());
    let quantize = |scheme: &'static str, flags: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["quantize", s(&m), s(&out), "--quant", scheme]
            .map(String::from)
            .to_vec();
        a.extend(["--calib-data", s(&calib)].map(String::from));
        a.extend(flags.iter().map(|f| f.to_string()));
        a
    };
    let trtllm = |mut a: Vec<String>| {
        a[0] = "convert".into();
        a.extend(["--format", "trtllm"].map(String::from));
        a
    };
    let cases: [(Vec<String>, &[&str]); 5] = [
        (
            quantize("int8_wo", &["--awq-fold"]),
            &["--awq-fold", "int8_wo"],
        ),
        (
            trtllm(quantize("int4_awq", &["--awq-fold"])),
            &["--awq-fold"],
        ),
        (
            quantize("int8_wo", &["--hf-format", "transformers"]),
            &["int8_wo", "--hf-format modelopt"],
        ),
        (
            quantize("int8_sq", &["--hf-format", "transformers"]),
            &["int8_sq", "--hf-format modelopt"],
        ),
        (
            trtllm(quantize("fp8", &["--hf-format", "transformers"])),
            &["--hf-format"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&args, 2);
        assert!(needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn malformed_transformers_awq_tensors_are_named_by_eval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let calib = calib_text(dir.path());
    let m = fixture("llama-gqa");
    let out = dir.path().join("awq");
    quantize_transformers(&m, &out, "int4_rtn", &calib, &[]);
    // Drop `scales`, or keep one group of them: one line naming the module, exit 1.
    let rewrite = r#"
import json, sys, safetensors
path, name, mode = sys.argv[1:4]
tensors = dict(safetensors.deserialize(open(path, "rb").read()))
if mode == "drop":
    del tensors[name]
else:
    t = tensors[name]
    row = len(t["data"]) // t["shape"][0]
    tensors[name] = {"dtype": t["dtype"], "shape": [1, t["shape"][1]], "data": t["data"][:row]}
header, data = {}, b""
for n, t in tensors.items():
    d = bytes(t["data"])
    header[n] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [len(data), len(data) + len(d)]}
    data += d
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(len(h).to_bytes(8, "little") + h + data)
"#;
    for mode in ["drop", "truncate"] {
        let broken = dir.path().join(mode);
        corrupt_copy(&out, &broken, "model.layers.1.mlp.up_proj.scales", |_| {});
        let file = broken.join("model.safetensors");
        let o = std::process::Command::new(python())
            .args([
                "-c",
                rewrite,
                s(&file),
                "model.layers.1.mlp.up_proj.scales",
                mode,
            ])
            .output()
            .expect("python runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = common::sample_text();
        let err = fails(
            &["eval", s(&broken), "--data", s(&text), "--max-windows", "1"],
            1,
        );
        assert!(err.contains("model.layers.1.mlp.up_proj"), "{mode}: {err}");
    }
}

/// `--device` changes where FP8 / INT8 / INT4 codes are made, never the bytes: `auto` (the CPU
/// here, the GPU where one is present) and, with a GPU, `cuda` write the CPU's checkpoint, for
/// the Hugging Face layout and a TensorRT-LLM tp 2 export. Without a GPU, `cuda` is a one-line
/// usage error before calibration and nothing is written (`CKPT_OPT_REQUIRE_CUDA=1` turns that
/// case into a failure, for GPU machines).
#[test]
fn device_choice_never_changes_the_quantized_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("llama-gqa");
    let calib = calib_text(dir.path());
    let gpu = ckpt_opt::plan::Device::Cuda.resolve().is_ok();
    if !gpu && std::env::var("CKPT_OPT_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
        panic!("CKPT_OPT_REQUIRE_CUDA=1 but no CUDA device can be opened");
    }
    for (scheme, format) in [
        ("fp8", "hf"),
        ("int8_wo", "hf"),
        ("int4_rtn", "hf"),
        ("int8_sq", "hf"),
        ("fp8", "trtllm"),
        ("int4_rtn", "trtllm"),
    ] {
        let args = |device: &str, out: &Path| -> Vec<String> {
            let mut a = vec!["-q", "--no-manifest", "convert", s(&m), s(out), "--format"];
            a.extend([
                format,
                "--quant",
                scheme,
                "--device",
                device,
                "--calib-data",
                s(&calib),
            ]);
            if format == "trtllm" {
                a.extend(["--tp", "2"]);
            }
            a.into_iter().map(String::from).collect()
        };
        let run = |device: &str| -> (PathBuf, Vec<String>) {
            let out = dir.path().join(format!("{scheme}-{format}-{device}"));
            let a = args(device, &out);
            (out, a)
        };
        let (cpu, cpu_args) = run("cpu");
        ok(&cpu_args.iter().map(String::as_str).collect::<Vec<_>>());
        for device in ["auto", "cuda"] {
            let (out, owned) = run(device);
            let args: Vec<&str> = owned.iter().map(String::as_str).collect();
            if device == "cuda" && !gpu {
                let err = fails(&args, 2);
                assert!(err.contains("no CUDA device"), "{err}");
                assert!(!out.exists());
                continue;
            }
            ok(&args);
            for entry in std::fs::read_dir(&cpu).unwrap() {
                let name = entry.unwrap().file_name();
                if name.to_string_lossy().ends_with(".safetensors") {
                    eprintln!("{scheme} {format} --device {device}: {name:?}");
                    common::assert_same_tensors(&cpu.join(&name), &out.join(&name));
                }
            }
        }
    }
    eprintln!("quantize device test ran with gpu = {gpu}");
}
