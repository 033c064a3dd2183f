//! `convert --format trtllm --quant` through the binary: every scheme at tp 1, 2 (and tp 4 with
//! KV-head duplication, tp 2 × pp 2) dequantized independently with numpy
//! (`tests/interop/check_trtllm_quant.py`) within its error bound; the checker rejects a
//! swapped nibble order and a transposed weight; config fields; exclusions; each error.

mod common;

use common::{fails, fixture, ok, s};
use serde_json::Value;
use std::path::Path;

fn export(model: &Path, out: &Path, scheme: &str, extra: &[&str]) {
    let text = common::sample_text();
    let mut args = vec![
        "convert",
        s(model),
        s(out),
        "--format",
        "trtllm",
        "--quant",
        scheme,
    ];
    if matches!(scheme, "fp8" | "int8_sq" | "int4_awq") {
        args.extend_from_slice(&["--calib-data", s(&text), "--calib-samples", "4"]);
    }
    args.extend_from_slice(extra);
    ok(&args);
}

fn check_in_python(orig: &Path, out: &Path, scheme: &str) -> std::process::Output {
    common::python_output("check_trtllm_quant.py", &[s(orig), s(out), scheme])
}

/// The independent numpy check, then our own `verify` (every export must verify).
fn assert_python_accepts(orig: &Path, out: &Path, scheme: &str) {
    let verified = ok(&["verify", s(out)]);
    assert!(verified.starts_with("ok:"), "{scheme}: {verified}");
    let o = check_in_python(orig, out, scheme);
    assert!(
        o.status.success(),
        "{scheme} {}: {}\n{}",
        out.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn config(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("config.json")).expect("config.json");
    serde_json::from_str(&text).expect("config JSON")
}

#[test]
fn every_scheme_and_tp_dequantizes_within_its_bound_in_numpy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    for scheme in ["fp8", "int8_wo", "int8_sq", "int4_awq", "int4_rtn"] {
        for tp in ["1", "2"] {
            let out = dir.path().join(format!("{scheme}-tp{tp}"));
            export(&m, &out, scheme, &["--tp", tp, "--group-size", "64"]);
            assert_python_accepts(&m, &out, scheme);
            let c = config(&out);
            assert_eq!(c["mapping"]["tp_size"], tp.parse::<u64>().unwrap());
            for r in 0..tp.parse::<u64>().unwrap() {
                assert!(out.join(format!("rank{r}.safetensors")).is_file());
            }
            assert!(out.join("tokenizer.json").is_file(), "tokenizer carried");
        }
    }
    // KV heads repeated (2 KV heads, tp 4) and pipeline stages renumbered.
    let out = dir.path().join("awq-tp4");
    export(&m, &out, "int4_awq", &["--tp", "4", "--group-size", "32"]);
    assert_python_accepts(&m, &out, "int4_awq");
    let out = dir.path().join("fp8-tp2-pp2");
    export(&m, &out, "fp8", &["--tp", "2", "--pp", "2"]);
    assert_python_accepts(&m, &out, "fp8");
    // Biases (Qwen2) ride along unquantized in the fused qkv.
    let q = fixture("qwen2-bias");
    let out = dir.path().join("qwen-int8");
    export(&q, &out, "int8_wo", &["--tp", "2"]);
    assert_python_accepts(&q, &out, "int8_wo");
}

/// Shape and byte range of tensor `name` in the bytes of a safetensors file.
fn locate(bytes: &[u8], name: &str) -> (Vec<u64>, std::ops::Range<usize>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let t = &header[name];
    let shape = t["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} not in file"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let off = t["data_offsets"].as_array().unwrap();
    let (a, b) = (
        off[0].as_u64().unwrap() as usize,
        off[1].as_u64().unwrap() as usize,
    );
    (shape, 8 + n + a..8 + n + b)
}

/// Rewrites the bytes of tensor `name` of a safetensors file with `f`.
fn corrupt(file: &Path, name: &str, f: impl Fn(&mut [u8], &[u64])) {
    let mut bytes = std::fs::read(file).expect("rank file");
    let (shape, range) = locate(&bytes, name);
    f(&mut bytes[range], &shape);
    std::fs::write(file, bytes).expect("write corrupted file");
}

#[test]
fn checker_rejects_swapped_nibbles_and_a_transposed_weight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let awq = dir.path().join("awq");
    export(&m, &awq, "int4_rtn", &["--tp", "2", "--group-size", "64"]);
    assert_python_accepts(&m, &awq, "int4_rtn");
    corrupt(
        &awq.join("rank1.safetensors"),
        "transformer.layers.0.mlp.fc.weight",
        |data, _| data.iter_mut().for_each(|b| *b = b.rotate_left(4)),
    );
    let o = check_in_python(&m, &awq, "int4_rtn");
    assert!(!o.status.success(), "swapped nibbles accepted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("rank1 transformer.layers.0.mlp.fc"));

    let fp8 = dir.path().join("fp8");
    export(&m, &fp8, "fp8", &[]);
    corrupt(
        &fp8.join("rank0.safetensors"),
        "transformer.layers.1.attention.dense.weight",
        |data, shape| {
            let (r, c) = (shape[0] as usize, shape[1] as usize);
            assert_eq!(r, c, "square dense weight");
            let copy = data.to_vec();
            for i in 0..r {
                for j in 0..c {
                    data[i * c + j] = copy[j * c + i];
                }
            }
        },
    );
    let o = check_in_python(&m, &fp8, "fp8");
    assert!(!o.status.success(), "transposed weight accepted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("layers.1.attention.dense"));
}

#[test]
fn config_has_every_documented_field_and_lists_exclusions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("awq");
    export(
        &m,
        &out,
        "int4_awq",
        &["--group-size", "64", "--exclude", "*down_proj"],
    );
    let c = config(&out);
    for key in [
        "architecture",
        "dtype",
        "logits_dtype",
        "vocab_size",
        "max_position_embeddings",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_size",
        "hidden_act",
        "intermediate_size",
        "norm_epsilon",
        "position_embedding_type",
        "rotary_base",
        "rotary_scaling",
        "mapping",
        "quantization",
        "producer",
    ] {
        assert!(c.get(key).is_some(), "config.json lacks {key}");
    }
    let q = &c["quantization"];
    assert_eq!(q["quant_algo"], "W4A16_AWQ");
    assert_eq!(q["group_size"], 64);
    assert_eq!(q["has_zero_point"], false);
    assert_eq!(q["pre_quant_scale"], true);
    assert!(q["kv_cache_quant_algo"].is_null());
    assert_eq!(
        q["exclude_modules"],
        serde_json::json!([
            "lm_head",
            "transformer.layers.0.mlp.proj",
            "transformer.layers.1.mlp.proj"
        ])
    );
    assert_eq!(c["producer"]["name"], "ckpt-opt");
    // The excluded linear is stored as in an unquantized export.
    let info = ok(&["inspect", s(&out.join("rank0.safetensors")), "--json"]);
    assert!(info.contains("transformer.layers.0.mlp.proj.weight"));
    assert!(!info.contains("transformer.layers.0.mlp.proj.weights_scaling_factor"));
    assert!(info.contains("transformer.layers.0.mlp.fc.prequant_scaling_factor"));
}

#[test]
fn unquantized_export_is_a_reshard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("plain");
    ok(&["convert", s(&m), s(&out), "--format", "trtllm", "--tp", "2"]);
    assert!(config(&out)["quantization"]["quant_algo"].is_null());
    common::run_python("check_trtllm_qkv.py", &[s(&m), s(&out), "trtllm"]);
}

#[test]
fn refusals_name_the_problem_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let out = dir.path().join("out");
    let base = ["convert", s(&m), s(&out), "--format", "trtllm", "--quant"];
    let run = |extra: &[&str], code: i32| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        fails(&a, code)
    };
    let e = run(&["int4_rtn", "--tp", "2", "--group-size", "256"], 2);
    assert!(
        e.contains("o_proj gives each rank 128 of its 256 input columns"),
        "{e}"
    );
    let e = run(&["int4_rtn", "--exclude", "*k_proj"], 1);
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("attention.qkv"),
        "{e}"
    );
    let e = run(&["int8_wo", "--tp", "3"], 2);
    assert!(e.contains("tp 3"), "{e}");
    let e = run(&["int8_wo", "--max-shard-size", "1MB"], 2);
    assert!(e.contains("--max-shard-size"), "{e}");
    let e = run(&["int8_wo", "--split-max-tensors", "3"], 2);
    assert!(e.contains("apply to gguf output"), "{e}");
    let e = run(&["int8_wo", "--dry-run"], 2);
    assert!(e.contains("--dry-run"), "{e}");
    assert!(!out.exists());
    let e = fails(
        &[
            "convert",
            s(&m),
            s(&out),
            "--format",
            "hf",
            "--quant",
            "int8_wo",
            "--tp",
            "2",
        ],
        2,
    );
    assert!(e.contains("--tp/--pp apply to trtllm"), "{e}");
    assert!(!out.exists());
}

/// Shape and bytes of tensor `name` in a safetensors file.
fn tensor(file: &Path, name: &str) -> (Vec<u64>, Vec<u8>) {
    let bytes = std::fs::read(file).expect("safetensors file");
    let (shape, range) = locate(&bytes, name);
    (shape, bytes[range].to_vec())
}

#[test]
fn awq_ranks_hold_exactly_the_hf_quantize_codes_cut_per_rank() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let text = common::sample_text();
    let opts = [
        "--calib-data",
        s(&text),
        "--calib-samples",
        "4",
        "--group-size",
        "64",
    ];
    let hf = dir.path().join("hf");
    let mut args = vec!["quantize", s(&m), s(&hf), "--quant", "int4_awq"];
    args.extend_from_slice(&opts);
    ok(&args);
    let tl = dir.path().join("tl");
    export(&m, &tl, "int4_awq", &["--tp", "2", "--group-size", "64"]);
    let hf_file = hf.join("model.safetensors");
    let rank = |r: usize, name: &str| tensor(&tl.join(format!("rank{r}.safetensors")), name);
    // Column-parallel: the ranks' rows one after the other.
    assert_rows_stacked(&hf_file, &tl, "mlp.gate_proj", "mlp.fc");
    // Row-parallel: each rank holds its half of every row (codes and group scales).
    for (hf_name, tl_name) in [
        (
            "model.layers.0.self_attn.o_proj.weight",
            "transformer.layers.0.attention.dense.weight",
        ),
        (
            "model.layers.0.self_attn.o_proj.weight_scale",
            "transformer.layers.0.attention.dense.weights_scaling_factor",
        ),
        (
            "model.layers.0.self_attn.o_proj.pre_quant_scale",
            "transformer.layers.0.attention.dense.prequant_scaling_factor",
        ),
    ] {
        let (shape, want) = tensor(&hf_file, hf_name);
        let rows = if shape.len() == 2 {
            shape[0] as usize
        } else {
            1
        };
        let row_bytes = want.len() / rows;
        for r in 0..2 {
            let got = rank(r, tl_name).1;
            let half = row_bytes / 2;
            let expect: Vec<u8> = want
                .chunks(row_bytes)
                .flat_map(|row| row[r * half..(r + 1) * half].to_vec())
                .collect();
            assert!(
                got == expect,
                "rank{r} {tl_name} differs from its half of {hf_name}"
            );
        }
    }
}

/// Layer 1's `hf` codes and row scales equal the tp 2 ranks' `tl` ones stacked (column-parallel).
fn assert_rows_stacked(hf_file: &Path, tl: &Path, hf: &str, tl_linear: &str) {
    let rank = |r: usize, name: &str| tensor(&tl.join(format!("rank{r}.safetensors")), name);
    for (h, t) in [
        ("weight", "weight"),
        ("weight_scale", "weights_scaling_factor"),
    ] {
        let (hf_name, tl_name) = (
            format!("model.layers.1.{hf}.{h}"),
            format!("transformer.layers.1.{tl_linear}.{t}"),
        );
        let (_, want) = tensor(hf_file, &hf_name);
        let got = [rank(0, &tl_name).1, rank(1, &tl_name).1].concat();
        assert!(got == want, "{tl_name} differs from {hf_name}");
    }
}

/// FP8 rank files hold exactly the codes `quantize --quant fp8` writes (row-parallel ranks
/// quantize only their columns), and the quality report (summed over column windows) is the
/// one of whole rows.
#[test]
fn fp8_ranks_hold_exactly_the_hf_quantize_codes_and_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let text = common::sample_text();
    let calib = ["--calib-data", s(&text), "--calib-samples", "4"];
    let hf = dir.path().join("hf");
    let mut args = vec!["--json", "quantize", s(&m), s(&hf), "--quant", "fp8"];
    args.extend_from_slice(&calib);
    let hf_report: Value = serde_json::from_str(&ok(&args)).expect("report JSON");
    let tl = dir.path().join("tl");
    let mut args = vec![
        "--json",
        "convert",
        s(&m),
        s(&tl),
        "--format",
        "trtllm",
        "--quant",
        "fp8",
        "--tp",
        "2",
    ];
    args.extend_from_slice(&calib);
    let tl_report: Value = serde_json::from_str(&ok(&args)).expect("report JSON");
    for (a, b) in hf_report["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .zip(tl_report["tensors"].as_array().expect("tensors"))
    {
        // q/k/v share the max of their scales in the fused qkv (modelopt `QKVConfig`).
        if ["q_proj", "k_proj", "v_proj"]
            .iter()
            .any(|p| a["name"].as_str().is_some_and(|n| n.contains(p)))
        {
            continue;
        }
        let (x, y) = (a["rel_error"].as_f64(), b["rel_error"].as_f64());
        let (x, y) = (x.expect("rel_error"), y.expect("rel_error"));
        assert!((x - y).abs() <= 1e-6 * x, "{}: {x} vs {y}", a["name"]);
    }
    let hf_file = hf.join("model.safetensors");
    let rank = |r: usize, name: &str| tensor(&tl.join(format!("rank{r}.safetensors")), name);
    let (_, want) = tensor(&hf_file, "model.layers.1.mlp.gate_proj.weight");
    let name = "transformer.layers.1.mlp.fc.weight";
    assert!([rank(0, name).1, rank(1, name).1].concat() == want);
    let (shape, want) = tensor(&hf_file, "model.layers.0.mlp.down_proj.weight");
    let row = shape[1] as usize;
    for r in 0..2 {
        let expect: Vec<u8> = want
            .chunks(row)
            .flat_map(|w| w[r * row / 2..(r + 1) * row / 2].to_vec())
            .collect();
        assert!(rank(r, "transformer.layers.0.mlp.proj.weight").1 == expect);
    }
}

#[test]
fn fp8_export_of_a_nan_weight_names_tensor_row_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = common::with_nan(
        "llama-tied",
        "model.layers.0.self_attn.o_proj.weight",
        dir.path(),
    );
    let out = dir.path().join("out");
    let text = common::sample_text();
    let e = fails(
        &[
            "convert",
            s(&m),
            s(&out),
            "--format",
            "trtllm",
            "--quant",
            "fp8",
            "--tp",
            "2",
            "--calib-data",
            s(&text),
            "--calib-samples",
            "2",
        ],
        1,
    );
    assert!(
        e.contains("model.layers.0.self_attn.o_proj.weight")
            && e.contains("NaN at row 0, column 3"),
        "{e}"
    );
    assert!(!out.exists());
}

/// W8A8_SQ_PER_CHANNEL holds the codes and row scales `quantize --quant int8_sq` writes to the HF
/// layout (same calibration), cut per rank; the smoothing the HF layout folds into the norms is
/// each linear's `prequant_scaling_factor` instead (= HF smoothed norm / input norm).
#[test]
fn int8_sq_ranks_hold_the_hf_codes_and_the_unfolded_smoothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let text = common::sample_text();
    let calib = ["--calib-data", s(&text), "--calib-samples", "4"];
    let hf = dir.path().join("hf");
    let mut args = vec!["quantize", s(&m), s(&hf), "--quant", "int8_sq"];
    args.extend_from_slice(&calib);
    ok(&args);
    let tl = dir.path().join("tl");
    export(&m, &tl, "int8_sq", &["--tp", "2"]);
    let hf_file = hf.join("model.safetensors");
    let rank = |r: usize, name: &str| tensor(&tl.join(format!("rank{r}.safetensors")), name);
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let bf16s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect()
    };
    // Column-parallel codes and scales: the ranks' rows one after the other.
    assert_rows_stacked(&hf_file, &tl, "mlp.up_proj", "mlp.gate");
    // Row-parallel: half of every row; the pre-quant scale split with the columns.
    let (shape, want) = tensor(&hf_file, "model.layers.0.mlp.down_proj.weight");
    let (_, pqs) = tensor(&hf_file, "model.layers.0.mlp.down_proj.pre_quant_scale");
    let row = shape[1] as usize;
    for r in 0..2 {
        let expect: Vec<u8> = want
            .chunks(row)
            .flat_map(|w| w[r * row / 2..(r + 1) * row / 2].to_vec())
            .collect();
        assert!(rank(r, "transformer.layers.0.mlp.proj.weight").1 == expect);
        let got = rank(r, "transformer.layers.0.mlp.proj.prequant_scaling_factor").1;
        assert!(
            got == pqs[r * row * 2..(r + 1) * row * 2],
            "rank{r} proj pqs"
        );
    }
    // q/k/v: the HF layout divides input_layernorm by s; here the norm is the input's and
    // every rank's qkv carries 1/s (within the bf16 rounding of the HF norm).
    let (_, norm) = tensor(
        &m.join("model-00001-of-00002.safetensors"),
        "model.layers.0.input_layernorm.weight",
    );
    let (_, smoothed) = tensor(&hf_file, "model.layers.0.input_layernorm.weight");
    let (norm, smoothed) = (bf16s(&norm), bf16s(&smoothed));
    for r in 0..2 {
        let (_, tl_norm) = rank(r, "transformer.layers.0.input_layernorm.weight");
        assert_eq!(bf16s(&tl_norm), norm, "rank{r} norm changed");
        let pqs = f32s(
            &rank(
                r,
                "transformer.layers.0.attention.qkv.prequant_scaling_factor",
            )
            .1,
        );
        for ((p, n), s) in pqs.iter().zip(&norm).zip(&smoothed) {
            let want = s / n;
            assert!(
                (p - want).abs() <= 2f32.powi(-7) * want.abs(),
                "{p} vs {want}"
            );
        }
    }
    let c = config(&tl);
    assert_eq!(c["quantization"]["quant_algo"], "W8A8_SQ_PER_CHANNEL");
}

/// `--kv-cache fp8`: the scales are max |K| (after RoPE) and max |V| over the calibration
/// tokens / 448, checked against a float64 numpy forward over the same windows
/// (`check_kv_scales.py`): per layer `kv_cache_scaling_factor` replicated over the tp ranks
/// (trtllm, fp8 tp 2 × pp 2 from `--calib-stats`), `k_proj.k_scale` / `v_proj.v_scale` (hf,
/// int4_rtn, whose own scheme needs no calibration, from `--calib-data`); both verify.
#[test]
fn fp8_kv_cache_scales_match_a_numpy_forward() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    let text = common::sample_text();
    let windows = dir.path().join("windows.json");
    let stats = dir.path().join("stats.safetensors");
    let sampling = ["--calib-samples", "3", "--calib-seq-len", "32"];
    let mut args = vec!["calibrate", s(&m), "--data", s(&text), "-o", s(&stats)];
    args.extend_from_slice(&["--dump-windows", s(&windows)]);
    args.extend_from_slice(&sampling);
    ok(&args);
    let tl = dir.path().join("tl");
    ok(&[
        "convert",
        s(&m),
        s(&tl),
        "--format",
        "trtllm",
        "--quant",
        "fp8",
        "--tp",
        "2",
        "--pp",
        "2",
        "--calib-stats",
        s(&stats),
        "--kv-cache",
        "fp8",
    ]);
    let hf = dir.path().join("hf");
    let mut args = vec![
        "quantize",
        s(&m),
        s(&hf),
        "--quant",
        "int4_rtn",
        "--group-size",
        "64",
    ];
    args.extend_from_slice(&["--kv-cache", "fp8", "--calib-data", s(&text)]);
    args.extend_from_slice(&sampling);
    ok(&args);
    for (out, layout) in [(&tl, "trtllm"), (&hf, "hf")] {
        let verified = ok(&["verify", s(out)]);
        assert!(verified.starts_with("ok:"), "{layout}: {verified}");
        let report =
            common::run_python("check_kv_scales.py", &[s(&m), s(&windows), s(out), layout]);
        assert!(report.contains("worst_rel_err"), "{report}");
    }
    // GGUF types and unquantized exports have no KV-cache scales to write.
    let out = dir.path().join("x.gguf");
    let e = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "q8_0",
            "--kv-cache",
            "fp8",
        ],
        2,
    );
    assert!(e.contains("--kv-cache"), "{e}");
    let e = fails(
        &[
            "convert",
            s(&m),
            s(&tl),
            "--format",
            "trtllm",
            "--kv-cache",
            "fp8",
            "--force",
        ],
        2,
    );
    assert!(e.contains("--kv-cache applies"), "{e}");
    let out = dir.path().join("none");
    let e = fails(
        &[
            "quantize",
            s(&m),
            s(&out),
            "--quant",
            "int8_wo",
            "--kv-cache",
            "fp8",
        ],
        2,
    );
    assert!(e.contains("--kv-cache fp8 needs calibration"), "{e}");
    assert!(!out.exists());
}

#[test]
fn checker_follows_quant_cfg_module_by_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = fixture("llama-gqa");
    // tp 2, and pp 2 where quant_cfg.json's stage-local names stand for one layer per stage.
    let cases: [(&str, &str, &[&str], &str); 2] = [
        (
            "fp8",
            "int4_awq",
            &["--tp", "2", "--group-size", "64"],
            "transformer.layers.1.*",
        ),
        (
            "int8_wo",
            "fp8",
            &["--pp", "2"],
            "transformer.layers.0.mlp.*",
        ),
    ];
    for (a, b, par, pattern) in cases {
        let (ea, eb) = (
            dir.path().join(format!("{a}-{b}-a")),
            dir.path().join(format!("{a}-{b}-b")),
        );
        export(&m, &ea, a, par);
        export(&m, &eb, b, par);
        let mix = dir.path().join(format!("{a}-{b}-mix"));
        common::splice_mixed("trtllm", &ea, &eb, &mix, &[pattern]);
        assert_python_accepts(&m, &mix, "mixed");
        // The scheme argument is ignored once config.json says MIXED_PRECISION.
        assert!(check_in_python(&m, &mix, a).status.success());
    }
    // A module's entry swapped to the other scheme: its tensors no longer fit.
    let mix = dir.path().join("fp8-int4_awq-mix");
    let key = "transformer.layers.0.attention.dense";
    common::edit_json_file(&mix.join("quant_cfg.json"), |q| {
        q["quantized_layers"][key] = serde_json::json!({"quant_algo": "W4A16_AWQ",
            "group_size": 64, "has_zero_point": false, "pre_quant_scale": true})
    });
    let o = check_in_python(&m, &mix, "mixed");
    assert!(!o.status.success(), "swapped scheme accepted");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("rank0 {key}: layout")));
    // An algo the checker does not know, and a key quantizing lm_head: each refused.
    let refused = |edit: &dyn Fn(&mut Value), needle: &str| {
        let out = dir.path().join(format!("refused-{needle}"));
        common::splice_mixed(
            "trtllm",
            &dir.path().join("fp8-int4_awq-a"),
            &dir.path().join("fp8-int4_awq-b"),
            &out,
            &[],
        );
        common::edit_json_file(&out.join("quant_cfg.json"), edit);
        let o = check_in_python(&m, &out, "mixed");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success() && err.contains(needle),
            "{needle}: {err}"
        );
    };
    refused(
        &|q| q["quantized_layers"][key] = serde_json::json!({"quant_algo": "NVFP4"}),
        "NVFP4",
    );
    refused(
        &|q| q["quantized_layers"]["lm_head"] = serde_json::json!({"quant_algo": "FP8"}),
        "lm_head",
    );
}
