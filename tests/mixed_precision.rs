//! `--layer-quant GLOB=SCHEME` through the binary: a MIXED_PRECISION export holds, module by
//! module, exactly the tensors the single-scheme export of that module's scheme holds
//! (TensorRT-LLM ranks at tp 2 and modelopt's HF layout), its `quant_cfg.json` /
//! `quantized_layers` name each module's scheme, and what the layouts cannot express is refused.

mod common;

use common::{fails, fixture, ok, s};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `convert MODEL OUT --format FORMAT --quant SCHEME EXTRA…` with the committed sample text as
/// calibration.
fn convert(model: &Path, out: &Path, format: &str, scheme: &str, extra: &[&str]) -> String {
    let text = common::sample_text();
    let mut args = vec![
        "-q",
        "--json",
        "convert",
        s(model),
        s(out),
        "--format",
        format,
    ];
    args.extend_from_slice(&["--quant", scheme, "--group-size", "64"]);
    args.extend_from_slice(&["--calib-data", s(&text), "--calib-samples", "4"]);
    args.extend_from_slice(extra);
    ok(&args)
}

fn json_file(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("JSON")
}

/// Each tensor of the mixed file equals the same-named tensor of the file `pick` chooses.
fn assert_taken_from(mixed: &Path, pick: impl Fn(&str) -> PathBuf) {
    let mut sources: BTreeMap<PathBuf, BTreeMap<String, _>> = BTreeMap::new();
    for (name, t) in common::tensors(mixed) {
        let from = pick(&name);
        let source = sources
            .entry(from.clone())
            .or_insert_with(|| common::tensors(&from));
        assert_eq!(source.get(&name), Some(&t), "{name} differs from {from:?}");
    }
}

#[test]
fn trtllm_mixed_export_holds_each_schemes_own_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = |n: &str| dir.path().join(n);
    let rules = [
        "--layer-quant",
        "*.mlp.*=int4_awq",
        "--layer-quant",
        "model.layers.1.self_attn.o_proj=none",
    ];
    let mut mixed_args = vec!["--tp", "2"];
    mixed_args.extend_from_slice(&rules);
    let report: Value =
        serde_json::from_str(&convert(&m, &out("mixed"), "trtllm", "fp8", &mixed_args))
            .expect("report JSON");
    convert(&m, &out("fp8"), "trtllm", "fp8", &["--tp", "2"]);
    convert(&m, &out("awq"), "trtllm", "int4_awq", &["--tp", "2"]);
    ok(&[
        "convert",
        s(&m),
        s(&out("plain")),
        "--format",
        "trtllm",
        "--tp",
        "2",
    ]);

    for rank in ["rank0.safetensors", "rank1.safetensors"] {
        assert_taken_from(&out("mixed").join(rank), |name| {
            let from = if name.starts_with("transformer.layers.1.attention.dense") {
                "plain"
            } else if name.contains(".mlp.") {
                "awq"
            } else {
                "fp8"
            };
            out(from).join(rank)
        });
    }

    let config = json_file(out("mixed").join("config.json"));
    assert_eq!(
        config["quantization"],
        json!({
            "quant_algo": "MIXED_PRECISION",
            "kv_cache_quant_algo": null,
            "exclude_modules": ["lm_head", "transformer.layers.1.attention.dense"],
        })
    );
    let cfg = json_file(out("mixed").join("quant_cfg.json"));
    let mut keys: Vec<&String> = cfg.as_object().expect("object").keys().collect();
    keys.sort();
    // TensorRT-LLM's `LayerQuantConfig` is strict: exactly these keys.
    assert_eq!(
        keys,
        ["kv_cache_quant_algo", "quant_algo", "quantized_layers"]
    );
    assert_eq!(cfg["quant_algo"], "MIXED_PRECISION");
    let layers = cfg["quantized_layers"]
        .as_object()
        .expect("quantized_layers");
    let awq = json!({"quant_algo": "W4A16_AWQ", "group_size": 64, "has_zero_point": false, "pre_quant_scale": true});
    let fp8 = json!({"quant_algo": "FP8"});
    let mut want = serde_json::Map::new();
    for l in 0..2 {
        for linear in ["mlp.fc", "mlp.gate", "mlp.proj"] {
            want.insert(format!("transformer.layers.{l}.{linear}"), awq.clone());
        }
        want.insert(format!("transformer.layers.{l}.attention.qkv"), fp8.clone());
    }
    want.insert("transformer.layers.0.attention.dense".into(), fp8);
    assert_eq!(layers, &want);

    // Readers we did not write this for: our `verify`, the independent numpy checker (each
    // module against its quant_cfg.json entry), and `eval` through the TensorRT-LLM reader.
    let verified = ok(&["verify", s(&out("mixed"))]);
    assert!(verified.starts_with("ok:"), "{verified}");
    common::run_python("check_trtllm_quant.py", &[s(&m), s(&out("mixed")), "mixed"]);
    let text = common::sample_text();
    let eval = ok(&[
        "--json",
        "eval",
        s(&out("mixed")),
        "--data",
        s(&text),
        "--max-windows",
        "2",
    ]);
    let nll = serde_json::from_str::<Value>(&eval).expect("eval JSON")["nll"].as_f64();
    assert!(nll.is_some_and(f64::is_finite), "{eval}");

    assert_eq!(report["scheme"], "mixed");
    assert_eq!(report["quant_algo"], "MIXED_PRECISION");
    let scheme_of = |name: &str| {
        let tensors = report["tensors"].as_array().expect("tensors");
        let t = tensors.iter().find(|t| t["name"] == name).expect(name);
        t["scheme"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(scheme_of("model.layers.0.mlp.up_proj.weight"), "int4_awq");
    assert_eq!(scheme_of("model.layers.1.self_attn.v_proj.weight"), "fp8");
}

#[test]
fn hf_mixed_export_holds_each_schemes_own_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = |n: &str| dir.path().join(n);
    let rules = ["--layer-quant", "*.mlp.*=int4_awq"];
    convert(&m, &out("mixed"), "hf", "int8_sq", &rules);
    convert(&m, &out("sq"), "hf", "int8_sq", &[]);
    convert(&m, &out("awq"), "hf", "int4_awq", &[]);
    // SmoothQuant folds into the norm before its linears; AWQ keeps pre_quant_scale, so the
    // MLP's norm stays the input's, as in the AWQ export.
    assert_taken_from(&out("mixed").join("model.safetensors"), |name| {
        let mlp = name.contains(".mlp.") || name.contains("post_attention_layernorm");
        let from = if mlp { "awq" } else { "sq" };
        out(from).join("model.safetensors")
    });
    let q = &json_file(out("mixed").join("hf_quant_config.json"))["quantization"];
    assert_eq!(q["quant_algo"], "MIXED_PRECISION");
    let layers = q["quantized_layers"].as_object().expect("quantized_layers");
    assert_eq!(layers.len(), 2 * 7);
    assert_eq!(
        layers["model.layers.1.self_attn.q_proj"],
        json!({"quant_algo": "W8A8_SQ_PER_CHANNEL"})
    );
    assert_eq!(
        layers["model.layers.0.mlp.down_proj"]["quant_algo"],
        "W4A16_AWQ"
    );
    assert_eq!(
        layers["model.layers.0.mlp.down_proj"]["pre_quant_scale"],
        true
    );
    // Every AWQ linear holds the pre_quant_scale `pre_quant_scale: true` promises.
    let verified = ok(&["verify", s(&out("mixed"))]);
    assert!(verified.starts_with("ok:"), "{verified}");
    let qc = &json_file(out("mixed").join("config.json"))["quantization_config"];
    assert_eq!(qc["quant_method"], "modelopt");
    assert_eq!(qc["quantized_layers"], q["quantized_layers"]);
}

#[test]
fn pipeline_stages_must_quantize_their_layers_alike() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("pp");
    let same = ["--pp", "2", "--layer-quant", "*.mlp.*=int8_wo"];
    convert(&m, &out, "trtllm", "fp8", &same);
    // Stage-local names: each stage's layer 0 is its first layer.
    let layers = &json_file(out.join("quant_cfg.json"))["quantized_layers"];
    let mut names: Vec<&String> = layers.as_object().expect("object").keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "transformer.layers.0.attention.dense",
            "transformer.layers.0.attention.qkv",
            "transformer.layers.0.mlp.fc",
            "transformer.layers.0.mlp.gate",
            "transformer.layers.0.mlp.proj",
        ]
    );
    let text = common::sample_text();
    let other = dir.path().join("differ");
    let e = fails(
        &[
            "convert",
            s(&m),
            s(&other),
            "--format",
            "trtllm",
            "--quant",
            "fp8",
            "--calib-data",
            s(&text),
            "--pp",
            "2",
            "--layer-quant",
            "model.layers.1.mlp.*=int8_wo",
        ],
        2,
    );
    assert!(e.contains("stage-local"), "{e}");
    assert!(!other.exists());
}

#[test]
fn refusals_name_the_rule_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("out");
    let run = |format: &str, quant: &str, extra: &[&str]| {
        let mut a = vec![
            "convert",
            s(&m),
            s(&out),
            "--format",
            format,
            "--quant",
            quant,
        ];
        a.extend_from_slice(extra);
        let e = fails(&a, 2);
        assert!(!out.exists(), "{e}");
        e
    };
    let e = run("hf", "int8_wo", &["--layer-quant", "*.k_proj=int4_rtn"]);
    assert!(
        e.contains("self_attn.q_proj int8_wo") && e.contains("self_attn.k_proj int4_rtn"),
        "{e}"
    );
    let e = run("trtllm", "int8_wo", &["--layer-quant", "*.up_proj=fp8"]);
    assert!(e.contains("gate/up"), "{e}");
    // The fold would divide v_proj / up_proj rows, which only the INT4 producers apply.
    let e = run(
        "hf",
        "int4_rtn",
        &["--awq-fold", "--layer-quant", "*.self_attn.*=fp8"],
    );
    assert!(
        e.contains("--awq-fold applies when every quantized linear"),
        "{e}"
    );
    let e = run(
        "hf",
        "int4_rtn",
        &[
            "--hf-format",
            "transformers",
            "--layer-quant",
            "*.mlp.*=fp8",
        ],
    );
    assert!(e.contains("--hf-format transformers"), "{e}");
    for rule in ["*.mlp.*", "*.mlp.*=int3", "[=fp8"] {
        let e = run("hf", "int8_wo", &["--layer-quant", rule]);
        assert!(e.contains(&format!("--layer-quant `{rule}`")), "{e}");
    }
    let e = run("gguf", "q8_0", &["--layer-quant", "*.mlp.*=q4_0"]);
    assert!(e.contains("--layer-quant applies to hf and trtllm"), "{e}");
    let gguf = dir.path().join("m.gguf");
    let e = fails(
        &[
            "quantize",
            s(&m),
            s(&gguf),
            "--quant",
            "q8_0",
            "--exclude",
            "*.mlp.*",
        ],
        2,
    );
    assert!(e.contains("--exclude applies to the hf and trtllm"), "{e}");
    assert!(!gguf.exists());
}
