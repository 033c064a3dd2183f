//! `eval` of exported TensorRT-LLM checkpoints through the binary: an unquantized export at any
//! tp/pp scores exactly as its Hugging Face source (KL 0 against it as teacher); a quantized
//! export's KL to the source equals that of `quantize` to hf with the same calibration (FP8:
//! close, the fused QKV shares one scale; int8_sq: close, the hf layout folds the smoothing into
//! bf16 norms); an FP8 KV cache changes nothing; a TensorRT-LLM teacher; and each error.

mod common;

use common::{fails, fixture, ok, s};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    common::sample_text()
}

/// `eval MODEL [--teacher T] --json` on the first windows of the held-out text.
fn eval(model: &Path, teacher: Option<&Path>) -> Value {
    let d = data();
    let mut args = vec![
        "eval",
        s(model),
        "--data",
        s(&d),
        "--ctx",
        "64",
        "--max-windows",
        "4",
        "--json",
    ];
    if let Some(t) = teacher {
        args.extend_from_slice(&["--teacher", s(t)]);
    }
    serde_json::from_str(&ok(&args)).expect("eval --json prints JSON")
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} in {v}"))
}

fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * a.abs().max(b.abs()),
        "{what}: {a} vs {b}"
    );
}

/// `convert MODEL OUT --format trtllm [--quant Q] EXTRA` (calibrated on the held-out text).
fn export(model: &Path, out: &Path, quant: Option<&str>, extra: &[&str]) {
    let d = data();
    let mut args = vec!["convert", s(model), s(out), "--format", "trtllm", "--quiet"];
    if let Some(q) = quant {
        args.extend_from_slice(&["--quant", q]);
    }
    if matches!(quant, Some("fp8" | "int4_awq" | "int8_sq")) {
        args.extend_from_slice(&["--calib-data", s(&d), "--calib-samples", "4"]);
    }
    args.extend_from_slice(extra);
    ok(&args);
}

/// `quantize MODEL OUT --quant Q` to hf with the calibration `export` uses.
fn quantize_hf(model: &Path, out: &Path, quant: &str) {
    let d = data();
    let mut args = vec!["quantize", s(model), s(out), "--quant", quant, "--quiet"];
    if matches!(quant, "fp8" | "int4_awq" | "int8_sq") {
        args.extend_from_slice(&["--calib-data", s(&d), "--calib-samples", "4"]);
    }
    ok(&args);
}

#[test]
fn unquantized_exports_score_exactly_as_their_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &[&str]); 5] = [
        ("trained-llama", &["--tp", "1"]),
        ("trained-llama", &["--tp", "2"]),
        ("trained-llama", &["--tp", "2", "--pp", "2"]),
        // q/k/v biases fused per rank.
        ("qwen2-bias", &["--tp", "2"]),
        // Tied embeddings; one KV head duplicated on both ranks.
        ("llama-tied", &["--tp", "2"]),
    ];
    for (i, (name, par)) in cases.iter().enumerate() {
        let m = fixture(name);
        let out = dir.path().join(format!("{name}-{i}"));
        export(&m, &out, None, par);
        let (hf, tl) = (eval(&m, None), eval(&out, None));
        let what = format!("{name} {par:?}");
        assert_eq!(hf["tokens_scored"], tl["tokens_scored"], "{what}");
        assert_close(num(&hf, "/nll"), num(&tl, "/nll"), 1e-12, &what);
        // Against its source as teacher: the same distribution at every position.
        let vs = eval(&out, Some(&m));
        assert!(num(&vs, "/teacher/kl") < 1e-12, "{what}: {vs}");
        assert_eq!(num(&vs, "/teacher/top1_agreement"), 1.0, "{what}");
    }
}

#[test]
fn quantized_exports_measure_what_quantize_measured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let cases: [(&str, &[&str]); 4] = [
        ("int4_awq", &["--tp", "2"]),
        ("int4_rtn", &["--tp", "1"]),
        ("int8_wo", &["--tp", "2", "--pp", "2"]),
        ("fp8", &["--tp", "2"]),
    ];
    for (quant, par) in cases {
        let hf = dir.path().join(format!("hf-{quant}"));
        let tl = dir.path().join(format!("tl-{quant}"));
        quantize_hf(&m, &hf, quant);
        export(&m, &tl, Some(quant), par);
        let (a, b) = (eval(&hf, Some(&m)), eval(&tl, Some(&m)));
        let (ka, kb) = (num(&a, "/teacher/kl"), num(&b, "/teacher/kl"));
        assert!(ka > 0.0, "{quant}: quantization changed nothing? {a}");
        if quant == "fp8" {
            // The fused [Q;K;V] of a rank shares the largest of the three scales (modelopt
            // `QKVConfig`), so q/k/v codes differ slightly from the per-linear hf ones.
            assert_close(ka, kb, 0.1, quant);
        } else {
            assert_close(ka, kb, 1e-9, quant);
            assert_close(num(&a, "/nll"), num(&b, "/nll"), 1e-12, quant);
            // The export as teacher of the hf quantization: identical weights.
            let vs = eval(&hf, Some(&tl));
            assert!(num(&vs, "/teacher/kl") < 1e-12, "{quant}: {vs}");
        }
    }
}

#[test]
fn smoothquant_exports_evaluate_alike_at_any_tp_and_close_to_hf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let hf = dir.path().join("hf");
    quantize_hf(&m, &hf, "int8_sq");
    let a = eval(&hf, Some(&m));
    let mut first: Option<Value> = None;
    for tp in ["1", "2"] {
        let tl = dir.path().join(format!("tl-{tp}"));
        export(&m, &tl, Some("int8_sq"), &["--tp", tp]);
        let b = eval(&tl, Some(&m));
        let (ka, kb) = (num(&a, "/teacher/kl"), num(&b, "/teacher/kl"));
        assert!(kb > 0.0, "tp {tp}: quantization changed nothing? {b}");
        // Same codes and scales; the hf layout rounds `norm / s` to bf16 where TensorRT-LLM
        // multiplies the input by `1/s` in f32 (measured: KL 6.4e-5 → 5.9e-5, nll 4e-5 apart).
        assert_close(ka, kb, 0.2, &format!("tp {tp} KL"));
        assert_close(
            num(&a, "/nll"),
            num(&b, "/nll"),
            1e-3,
            &format!("tp {tp} nll"),
        );
        match &first {
            None => first = Some(b),
            Some(f) => {
                assert_eq!(f["tokens_scored"], b["tokens_scored"]);
                assert_eq!(num(f, "/nll"), num(&b, "/nll"), "tp 1 vs tp {tp}");
                assert_eq!(
                    num(f, "/teacher/kl"),
                    num(&b, "/teacher/kl"),
                    "tp 1 vs tp {tp}"
                );
            }
        }
    }
    // The smoothing is applied: dropping the qkv prequant scales (ones) changes the model.
    let tl = dir.path().join("tl-2");
    let name = "transformer.layers.0.attention.qkv.prequant_scaling_factor";
    let ones = vec![1.0f32; 256];
    set_f32(&tl.join("rank0.safetensors"), name, &ones);
    let c = eval(&tl, Some(&m));
    assert!(
        num(&c, "/nll") != num(first.as_ref().expect("tp 1"), "/nll"),
        "{c}"
    );
}

#[test]
fn fp8_kv_cache_scales_change_nothing_and_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    // pp 2: the scales carry stage-local layer numbers.
    let par: &[&str] = &["--tp", "2", "--pp", "2"];
    let plain = dir.path().join("plain");
    export(&m, &plain, Some("fp8"), par);
    let fresh = |name: &str| {
        let out = dir.path().join(name);
        export(
            &m,
            &out,
            Some("fp8"),
            &[par, &["--kv-cache", "fp8"]].concat(),
        );
        out
    };
    let kv = fresh("kv");
    let (a, b) = (eval(&plain, Some(&m)), eval(&kv, Some(&m)));
    assert_eq!(num(&a, "/nll"), num(&b, "/nll"));
    assert_eq!(num(&a, "/teacher/kl"), num(&b, "/teacher/kl"));
    let vs = eval(&kv, Some(&plain));
    assert_eq!(num(&vs, "/teacher/kl"), 0.0, "{vs}");

    let d = data();
    let run = |p: &Path| fails(&["eval", s(p), "--data", s(&d), "--max-windows", "1"], 1);
    let name = "transformer.layers.1.attention.kv_cache_scaling_factor";
    let out = fresh("shape");
    edit_header(&out.join("rank3.safetensors"), |h| {
        h[name]["shape"] = Value::Array(vec![])
    });
    let e = run(&out);
    assert!(
        e.contains("rank3.safetensors") && e.contains(name) && e.contains("expected F32 [1]"),
        "{e}"
    );
    let out = fresh("nan");
    set_f32(&out.join("rank2.safetensors"), name, &[f32::NAN]);
    let e = run(&out);
    assert!(
        e.contains("rank2.safetensors") && e.contains(name) && e.contains("not a finite"),
        "{e}"
    );
    // The config says FP8 KV cache, the scale is gone.
    let out = fresh("missing");
    edit_header(&out.join("rank0.safetensors"), |h| {
        let t = h.as_object_mut().expect("header").remove(name).expect(name);
        h[name.replace("factor", "factoR")] = t;
    });
    let e = run(&out);
    assert!(
        e.contains("rank0.safetensors") && e.contains(name) && e.contains("missing"),
        "{e}"
    );
}

/// Overwrites F32 tensor `name` of a safetensors file with `values`.
fn set_f32(file: &Path, name: &str, values: &[f32]) {
    let mut bytes = std::fs::read(file).expect("rank file");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let t = &header[name];
    assert_eq!(t["dtype"], "F32", "{name}");
    let start = 8 + n + t["data_offsets"][0].as_u64().expect("offsets") as usize;
    let end = 8 + n + t["data_offsets"][1].as_u64().expect("offsets") as usize;
    assert_eq!(end - start, values.len() * 4, "{name}");
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes[start..end].copy_from_slice(&le);
    std::fs::write(file, bytes).expect("write rank file");
}

/// Rewrites the JSON header of a safetensors file with `f` (same length, padded with spaces).
fn edit_header(file: &Path, f: impl Fn(&mut Value)) {
    let mut bytes = std::fs::read(file).expect("rank file");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    f(&mut header);
    let mut text = serde_json::to_string(&header).expect("header JSON");
    assert!(text.len() <= n, "edited header grew");
    text.push_str(&" ".repeat(n - text.len()));
    bytes[8..8 + n].copy_from_slice(text.as_bytes());
    std::fs::write(file, bytes).expect("write rank file");
}

fn edit_config(dir: &Path, f: impl Fn(&mut Value)) {
    let p = dir.join("config.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("config")).expect("JSON");
    f(&mut v);
    std::fs::write(&p, v.to_string()).expect("write config");
}

#[test]
fn damaged_exports_fail_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let d = data();
    let fresh = |name: &str| {
        let out = dir.path().join(name);
        export(&m, &out, Some("int4_rtn"), &["--tp", "2"]);
        out
    };
    let run = |p: &Path| fails(&["eval", s(p), "--data", s(&d), "--max-windows", "1"], 1);

    let out = fresh("missing");
    std::fs::remove_file(out.join("rank1.safetensors")).expect("remove rank");
    let e = run(&out);
    assert!(
        e.contains("rank1.safetensors") && e.contains("rank file missing"),
        "{e}"
    );

    // Same bytes, transposed scale shape.
    let out = fresh("shape");
    let name = "transformer.layers.1.mlp.proj.weights_scaling_factor";
    edit_header(&out.join("rank0.safetensors"), |h| {
        let shape = h[name]["shape"].as_array().expect("shape").clone();
        h[name]["shape"] = Value::Array(shape.into_iter().rev().collect());
    });
    let e = run(&out);
    assert!(
        e.contains("rank0.safetensors")
            && e.contains(name)
            && e.contains("expected a float [256, 3]"),
        "{e}"
    );

    let out = fresh("algo");
    edit_config(&out, |c| c["quantization"]["quant_algo"] = "NVFP4".into());
    let e = run(&out);
    assert!(e.contains("config.json") && e.contains("NVFP4"), "{e}");

    // Scales in a checkpoint that says it is not quantized.
    let out = fresh("null-algo");
    edit_config(&out, |c| c["quantization"]["quant_algo"] = Value::Null);
    let e = run(&out);
    assert!(
        e.contains("weights_scaling_factor") && e.contains("null"),
        "{e}"
    );

    let out = fresh("tokenizer");
    std::fs::remove_file(out.join("tokenizer.json")).expect("remove tokenizer");
    let e = run(&out);
    assert!(e.contains("no tokenizer.json"), "{e}");
}

/// Adds 1 to the first byte of row `row` of tensor `name` in a safetensors file.
fn bump_row(file: &Path, name: &str, row: usize) {
    let mut bytes = std::fs::read(file).expect("rank file");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let t = &header[name];
    let rows = t["shape"][0].as_u64().expect("shape") as usize;
    let start = t["data_offsets"][0].as_u64().expect("offsets") as usize;
    let end = t["data_offsets"][1].as_u64().expect("offsets") as usize;
    let at = 8 + n + start + row * ((end - start) / rows);
    bytes[at] = bytes[at].wrapping_add(1);
    std::fs::write(file, bytes).expect("write rank file");
}

#[test]
fn duplicated_kv_heads_that_differ_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-tied");
    // One KV head of 64 rows, on both ranks after their 2 query heads (128 rows).
    let out = dir.path().join("tl");
    export(&m, &out, None, &["--tp", "2"]);
    let name = "transformer.layers.0.attention.qkv.weight";
    bump_row(&out.join("rank1.safetensors"), name, 130);
    let d = data();
    let e = fails(&["eval", s(&out), "--data", s(&d)], 1);
    assert!(
        e.contains("rank1.safetensors") && e.contains(name) && e.contains("duplicate a KV head"),
        "{e}"
    );
}

/// An entry of quant_cfg.json's `quantized_layers`.
fn set_layer(dir: &Path, key: &str, block: Value) {
    common::edit_json_file(&dir.join("quant_cfg.json"), |q| {
        q["quantized_layers"][key] = block
    });
}

#[test]
fn mixed_precision_splices_evaluate_each_module_with_its_own_algo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("trained-llama");
    let (fp8, awq) = (dir.path().join("fp8"), dir.path().join("awq"));
    export(&m, &fp8, Some("fp8"), &["--tp", "2"]);
    export(&m, &awq, Some("int4_awq"), &["--tp", "2"]);
    let splice = |name: &str, from_awq: &[&str]| {
        let out = dir.path().join(name);
        common::splice_mixed("trtllm", &fp8, &awq, &out, from_awq);
        out
    };
    // Every module from one export: the same model, read through quant_cfg.json.
    let (e_fp8, e_awq) = (eval(&fp8, None), eval(&awq, None));
    let all_fp8 = eval(&splice("all-fp8", &[]), None);
    let all_awq = eval(&splice("all-awq", &["*"]), None);
    assert_eq!(e_fp8["tokens_scored"], all_fp8["tokens_scored"]);
    assert_eq!(num(&e_fp8, "/nll"), num(&all_fp8, "/nll"));
    assert_eq!(num(&e_awq, "/nll"), num(&all_awq, "/nll"));
    // A genuine mix: AWQ attention in layers 0 and 2, AWQ MLPs in layer 1.
    let mix = splice(
        "mix",
        &[
            "transformer.layers.[02].attention.*",
            "transformer.layers.1.mlp.*",
        ],
    );
    let e_mix = eval(&mix, None);
    let n = num(&e_mix, "/nll");
    assert!(
        n.is_finite() && n != num(&e_fp8, "/nll") && n != num(&e_awq, "/nll"),
        "{e_mix}"
    );
    let vs = eval(&mix, Some(&fp8));
    assert!(num(&vs, "/teacher/kl") > 0.0, "{vs}");
    // pp 2: keys name stage-local layers, so `layers.0` is layers 0 and 2 of the model.
    let (fp8_pp, awq_pp) = (dir.path().join("fp8-pp"), dir.path().join("awq-pp"));
    export(&m, &fp8_pp, Some("fp8"), &["--pp", "2"]);
    export(&m, &awq_pp, Some("int4_awq"), &["--pp", "2"]);
    let staged = dir.path().join("staged");
    let stage_local = ["transformer.layers.0.*"];
    common::splice_mixed("trtllm", &fp8_pp, &awq_pp, &staged, &stage_local);
    let global = splice("global", &["transformer.layers.[02].*"]);
    let (a, b) = (eval(&staged, None), eval(&global, None));
    assert_close(
        num(&a, "/nll"),
        num(&b, "/nll"),
        1e-12,
        "pp 2 vs tp 2 splice",
    );
    assert!(num(&a, "/nll") != num(&e_fp8, "/nll"), "{a}");

    let d = data();
    let run = |p: &Path| fails(&["eval", s(p), "--data", s(&d), "--max-windows", "1"], 1);
    let damaged = |name: &str, f: &dyn Fn(&Path)| {
        let out = splice(name, &["transformer.layers.1.mlp.*"]);
        f(&out);
        run(&out)
    };
    let e = damaged("no-cfg", &|o| {
        std::fs::remove_file(o.join("quant_cfg.json")).expect("rm")
    });
    assert!(e.contains("quant_cfg.json") && e.contains("missing"), "{e}");
    let e = damaged("bad-json", &|o| {
        std::fs::write(o.join("quant_cfg.json"), "{").expect("write")
    });
    assert!(
        e.contains("quant_cfg.json") && e.contains("invalid JSON"),
        "{e}"
    );
    let key = "transformer.layers.1.mlp.fc";
    let e = damaged("unknown", &|o| {
        set_layer(o, key, serde_json::json!({"quant_algo": "NVFP4"}))
    });
    assert!(
        e.contains("quant_cfg.json") && e.contains(key) && e.contains("NVFP4"),
        "{e}"
    );
    let e = damaged("kv", &|o| {
        common::edit_json_file(&o.join("quant_cfg.json"), |q| {
            q["kv_cache_quant_algo"] = "FP8".into()
        })
    });
    assert!(
        e.contains("quant_cfg.json") && e.contains("disagrees"),
        "{e}"
    );
    // Listed as FP8, holding the AWQ tensors.
    let e = damaged("wrong-algo", &|o| {
        set_layer(o, key, serde_json::json!({"quant_algo": "FP8"}))
    });
    assert!(
        e.contains("rank0.safetensors")
            && e.contains(&format!("{key}.weight"))
            && e.contains("for FP8"),
        "{e}"
    );
    // Scales on a module no key matches.
    let e = damaged("unlisted", &|o| {
        common::edit_json_file(&o.join("quant_cfg.json"), |q| {
            q["quantized_layers"]
                .as_object_mut()
                .expect("layers")
                .remove(key);
        })
    });
    assert!(
        e.contains(key) && e.contains("no quantized_layers key"),
        "{e}"
    );
    // A listed linear holding a float weight (an unquantized export said to be mixed).
    let plain = dir.path().join("plain");
    export(&m, &plain, None, &["--tp", "2"]);
    edit_config(&plain, |c| {
        c["quantization"] = serde_json::json!({"quant_algo": "MIXED_PRECISION"})
    });
    let listed = "transformer.layers.2.mlp.gate";
    let cfg = serde_json::json!({"quant_algo": "MIXED_PRECISION",
        "quantized_layers": {listed: {"quant_algo": "W8A16"}}});
    std::fs::write(plain.join("quant_cfg.json"), cfg.to_string()).expect("write");
    let e = run(&plain);
    assert!(
        e.contains("rank0.safetensors")
            && e.contains(&format!("{listed}.weights_scaling_factor"))
            && e.contains("missing (quant_cfg.json gives"),
        "{e}"
    );
}
