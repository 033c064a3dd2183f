//! End-to-end `reshard` and `plan-pipeline` runs: round trips between layouts and parallel
//! sizes must be bit-exact, bad inputs must fail with one line naming file and tensor and
//! leave nothing behind.

mod common;

use ckpt_opt::checkpoint::Checkpoint;
use ckpt_opt::model::ModelConfig;
use ckpt_opt::shard::{self, Parallel, ReshardOptions, ShardLayout};
use common::*;
use formats::safetensors::TensorSpec;
use formats::Dtype;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs `reshard IN OUT ARGS` quietly.
fn reshard(input: &Path, output: &Path, args: &[&str]) {
    let mut all = vec!["-q", "reshard", s(input), s(output)];
    all.extend_from_slice(args);
    ok(&all);
}

/// Every file of a folder, relative path -> bytes.
fn folder_bytes(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("ckpt-opt.json") {
                // The manifest records the command line, which differs by design.
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn hf_tp4_tp2_hf_is_bit_exact_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for model in MODELS {
        let (t4, t2, back) = (
            dir.path().join(format!("{model}-tp4")),
            dir.path().join(format!("{model}-tp2")),
            dir.path().join(format!("{model}-hf")),
        );
        reshard(&fixture(model), &t4, &["--tp", "4"]);
        reshard(&t4, &t2, &["--tp", "2"]);
        reshard(&t2, &back, &["--layout", "hf"]);
        assert_same_tensors(&fixture(model), &back);
        let a = ModelConfig::load(&fixture(model)).unwrap();
        let b = ModelConfig::load(&back).unwrap();
        assert_eq!(a.expected_tensors(), b.expected_tensors(), "{model}");
        assert!(back.join("tokenizer.json").is_file());
    }
}

#[test]
fn hf_megatron_tp2_trtllm_tp4_hf_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["llama-gqa", "qwen2-bias"] {
        let (m2, t4, back) = (
            dir.path().join(format!("{model}-m2")),
            dir.path().join(format!("{model}-t4")),
            dir.path().join(format!("{model}-hf")),
        );
        reshard(&fixture(model), &m2, &["--tp", "2", "--layout", "megatron"]);
        assert!(m2.join("mp_rank_01/model.safetensors").is_file());
        reshard(&m2, &t4, &["--tp", "4"]);
        reshard(&t4, &back, &["--layout", "hf"]);
        assert_same_tensors(&fixture(model), &back);
    }
}

#[test]
fn tp2_pp2_to_hf_is_bit_exact_and_stages_hold_their_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (pp, back) = (dir.path().join("pp"), dir.path().join("hf"));
    reshard(&fixture("trained-llama"), &pp, &["--tp", "2", "--pp", "2"]);
    // Rank 2 = pp stage 1, tp rank 0: layers 2..4 renumbered 0..2, LM head, no embedding.
    let r2 = tensors(&pp.join("rank2.safetensors"));
    assert!(r2.contains_key("transformer.layers.1.attention.qkv.weight"));
    assert!(!r2.contains_key("transformer.layers.2.attention.qkv.weight"));
    assert!(r2.contains_key("lm_head.weight") && r2.contains_key("transformer.ln_f.weight"));
    assert!(!r2.contains_key("transformer.vocab_embedding.weight"));
    let r0 = tensors(&pp.join("rank0.safetensors"));
    assert!(r0.contains_key("transformer.vocab_embedding.weight"));
    assert!(!r0.contains_key("lm_head.weight"));
    reshard(&pp, &back, &["--layout", "hf"]);
    assert_same_tensors(&fixture("trained-llama"), &back);
    // Megatron pp folders too, straight from trtllm tp 2 pp 2 to megatron tp 1 pp 4.
    let (m, back2) = (dir.path().join("m"), dir.path().join("hf2"));
    reshard(&pp, &m, &["--pp", "4", "--layout", "megatron"]);
    assert!(m.join("mp_rank_00_003/model.safetensors").is_file());
    reshard(&m, &back2, &["--layout", "hf"]);
    assert_same_tensors(&fixture("trained-llama"), &back2);
}

#[test]
fn tp_beyond_kv_heads_duplicates_them_and_merges_back() {
    let dir = tempfile::tempdir().unwrap();
    let (t8, back) = (dir.path().join("t8"), dir.path().join("hf"));
    reshard(&fixture("llama-gqa"), &t8, &["--tp", "8"]);
    // 8 heads of 32, 2 KV heads: each rank has 1 q head + 1 k + 1 v = 96 rows.
    let r5 = tensors(&t8.join("rank5.safetensors"));
    assert_eq!(
        r5["transformer.layers.0.attention.qkv.weight"].1,
        vec![96, 256]
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t8.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["mapping"]["tp_size"], 8);
    assert_eq!(config["mapping"]["world_size"], 8);
    assert_eq!(config["vocab_size"], 1000);
    assert_eq!(config["num_key_value_heads"], 2);
    reshard(&t8, &back, &["--layout", "hf"]);
    assert_same_tensors(&fixture("llama-gqa"), &back);
}

#[test]
fn ranks_written_separately_equal_the_whole_output() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    reshard(&fixture("llama-gqa"), &whole, &["--tp", "2", "--pp", "2"]);
    for rank in 0..4 {
        let r = rank.to_string();
        reshard(
            &fixture("llama-gqa"),
            &parts,
            &["--tp", "2", "--pp", "2", "--rank", &r],
        );
    }
    assert_eq!(folder_bytes(&whole), folder_bytes(&parts));
    let err = fails(
        &[
            "reshard",
            s(&fixture("llama-gqa")),
            s(&parts),
            "--tp",
            "2",
            "--rank",
            "2",
        ],
        2,
    );
    assert!(err.contains("--rank 2 is out of range"), "{err}");
}

#[test]
fn dry_run_prints_the_slices_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t4");
    let text = ok(&[
        "reshard",
        s(&fixture("llama-gqa")),
        s(&out),
        "--tp",
        "4",
        "--dry-run",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan["plan"]["files"].as_array().unwrap().len(), 4);
    assert!(
        text.contains("model.layers.0.self_attn.k_proj.weight[32..64]"),
        "{text}"
    );
    assert!(!out.exists());
}

#[test]
fn forward_pass_perplexity_is_unchanged_by_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, back) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
        dir.path().join("hf"),
    );
    reshard(&fixture("trained-llama"), &a, &["--tp", "2", "--pp", "2"]);
    reshard(&a, &b, &["--tp", "2", "--pp", "4", "--layout", "megatron"]);
    reshard(&b, &c, &["--tp", "8"]);
    reshard(&c, &back, &["--layout", "hf"]);
    let eval = |m: &Path| -> serde_json::Value {
        let text = ok(&[
            "--json",
            "eval",
            s(m),
            "--data",
            s(&sample_text()),
            "--max-windows",
            "4",
        ]);
        serde_json::from_str(&text).unwrap()
    };
    let (before, after) = (eval(&fixture("trained-llama")), eval(&back));
    assert_eq!(before["perplexity"], after["perplexity"]);
    assert_eq!(before["nll"], after["nll"]);
}

#[test]
fn interop_per_rank_qkv_matches_numpy_from_hf_weights() {
    let dir = tempfile::tempdir().unwrap();
    for (model, tp) in [("llama-gqa", "4"), ("llama-gqa", "2"), ("qwen2-bias", "4")] {
        let t = dir.path().join(format!("{model}-trt{tp}"));
        let m = dir.path().join(format!("{model}-meg{tp}"));
        reshard(&fixture(model), &t, &["--tp", tp]);
        let text = run_python(
            "check_trtllm_qkv.py",
            &[s(&fixture(model)), s(&t), "trtllm"],
        );
        assert!(text.contains("ok"), "{text}");
        if tp == "2" {
            reshard(&fixture(model), &m, &["--tp", tp, "--layout", "megatron"]);
            let text = run_python(
                "check_trtllm_qkv.py",
                &[s(&fixture(model)), s(&m), "megatron"],
            );
            assert!(text.contains("ok"), "{text}");
        }
    }
}

#[test]
fn plan_pipeline_for_distillation_lists_stage_layers_and_shapes() {
    let student = fixture("trained-llama").join("config.json");
    let teacher = fixture("llama-gqa").join("config.json");
    let text = ok(&[
        "--json",
        "plan-pipeline",
        s(&student),
        "--teacher",
        s(&teacher),
        "--pp",
        "2",
        "--seq-len",
        "128",
        "--micro-batch",
        "2",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hs = ModelConfig::load(&student).unwrap().hidden_size;
    let stages = plan["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0]["student_layers"], serde_json::json!([0, 2]));
    assert_eq!(stages[1]["teacher_layers"], serde_json::json!([1, 2]));
    assert_eq!(
        stages[0]["send"][0]["shape"],
        serde_json::json!([128, 2, hs + 256])
    );
    assert_eq!(
        stages[1]["recv"][2]["shape"],
        serde_json::json!([128, 2, 256])
    );
    assert!(stages[0]["recv"].as_array().unwrap().is_empty());
    let text = ok(&["plan-pipeline", s(&student), "--pp", "4", "--seq-len", "64"]);
    assert!(
        text.contains("stage 3: student layers 3..4, final norm + lm_head"),
        "{text}"
    );
    let err = fails(
        &["plan-pipeline", s(&student), "--pp", "3", "--seq-len", "64"],
        2,
    );
    assert!(err.contains("not divisible by pp 3"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Bad input.

/// The error, which must be one line, and the output must not exist.
fn refused(input: &Path, output: &Path, args: &[&str], code: i32) -> String {
    let mut all = vec!["reshard", s(input), s(output)];
    all.extend_from_slice(args);
    let err = fails(&all, code);
    assert!(!output.exists(), "{} was written", output.display());
    err
}

#[test]
fn uneven_splits_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gqa = fixture("llama-gqa");
    let err = refused(&gqa, &out, &["--tp", "3"], 2);
    assert!(
        err.contains("num_attention_heads 8 is not divisible by tp 3"),
        "{err}"
    );
    let err = refused(&gqa, &out, &["--pp", "3"], 2);
    assert!(
        err.contains("num_hidden_layers 2 is not divisible by pp 3"),
        "{err}"
    );
    let err = refused(&gqa, &out, &["--tp", "4", "--layout", "megatron"], 2);
    assert!(
        err.contains("num_key_value_heads 2 is not divisible by tp 4"),
        "{err}"
    );
    let err = refused(&gqa, &out, &["--tp", "2", "--layout", "hf"], 2);
    assert!(err.contains("unsharded"), "{err}");
}

#[test]
fn missing_or_extra_rank_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t4 = dir.path().join("t4");
    reshard(&fixture("llama-gqa"), &t4, &["--tp", "4"]);
    let out = dir.path().join("out");
    std::fs::rename(t4.join("rank3.safetensors"), dir.path().join("r3")).unwrap();
    let err = refused(&t4, &out, &["--tp", "2"], 1);
    assert!(
        err.contains("rank3.safetensors") && err.contains("rank file missing"),
        "{err}"
    );
    std::fs::rename(dir.path().join("r3"), t4.join("rank3.safetensors")).unwrap();
    std::fs::copy(t4.join("rank3.safetensors"), t4.join("rank4.safetensors")).unwrap();
    let err = refused(&t4, &out, &["--tp", "2"], 1);
    assert!(
        err.contains("rank4.safetensors") && err.contains("world_size 4"),
        "{err}"
    );
}

#[test]
fn a_rank_file_of_another_model_is_refused_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, out) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("out"),
    );
    reshard(&fixture("llama-gqa"), &a, &["--tp", "2"]);
    reshard(&fixture("trained-llama"), &b, &["--tp", "2"]);
    std::fs::copy(b.join("rank1.safetensors"), a.join("rank1.safetensors")).unwrap();
    let err = refused(&a, &out, &["--layout", "hf"], 1);
    assert!(err.contains("rank1.safetensors: tensor `"), "{err}");
    assert!(
        err.contains("shape") || err.contains("not a tensor"),
        "{err}"
    );

    // Megatron ranks carry their config: a rank of another model differs from rank 0's.
    let (ma, mb) = (dir.path().join("ma"), dir.path().join("mb"));
    reshard(
        &fixture("llama-gqa"),
        &ma,
        &["--tp", "2", "--layout", "megatron"],
    );
    reshard(
        &fixture("trained-llama"),
        &mb,
        &["--tp", "2", "--layout", "megatron"],
    );
    std::fs::copy(
        mb.join("mp_rank_01/model.safetensors"),
        ma.join("mp_rank_01/model.safetensors"),
    )
    .unwrap();
    let err = refused(&ma, &out, &["--layout", "hf"], 1);
    assert!(
        err.contains("mp_rank_01/model.safetensors") && err.contains("differs from rank 0"),
        "{err}"
    );
}

/// Flips one byte of `tensor` in a safetensors file, `offset` bytes into its data.
fn corrupt(file: &Path, tensor: &str, offset: u64) {
    let start = {
        let ckpt = Checkpoint::open(file).unwrap();
        let t = ckpt
            .tensors()
            .into_iter()
            .find(|t| t.name == tensor)
            .unwrap();
        t.start
    };
    let mut bytes = std::fs::read(file).unwrap();
    bytes[(start + offset) as usize] ^= 0x5a;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn duplicated_kv_heads_that_differ_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (t4, out) = (dir.path().join("t4"), dir.path().join("out"));
    reshard(&fixture("llama-gqa"), &t4, &["--tp", "4"]);
    // Rank 1 duplicates rank 0's K head: its qkv rows 64.. (after 2 q heads of 32 rows).
    let row_bytes = 256 * 2;
    corrupt(
        &t4.join("rank1.safetensors"),
        "transformer.layers.1.attention.qkv.weight",
        64 * row_bytes + 7,
    );
    let err = refused(&t4, &out, &["--layout", "hf"], 1);
    assert!(
        err.contains("rank1.safetensors: tensor `transformer.layers.1.attention.qkv.weight`")
            && err.contains("differs"),
        "{err}"
    );
}

/// A random Hugging Face checkpoint of the given geometry in `dir` (bf16, random bits).
#[allow(clippy::too_many_arguments)]
fn write_model(
    dir: &Path,
    qwen: bool,
    heads: u64,
    kv: u64,
    head_dim: u64,
    ffn: u64,
    layers: u64,
    vocab: u64,
    tied: bool,
    seed: u64,
) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": [if qwen { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "hidden_size": heads * head_dim,
        "head_dim": head_dim,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let cfg = ModelConfig::load(&path).unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<(TensorSpec, Vec<u8>)> = cfg
        .expected_tensors()
        .into_iter()
        .map(|t| {
            let n = t.shape.iter().product::<u64>() as usize * 2;
            let bytes = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            (TensorSpec::new(t.name, Dtype::BF16, t.shape), bytes)
        })
        .collect();
    let refs: Vec<(TensorSpec, &[u8])> = data
        .iter()
        .map(|(s, b)| (s.clone(), b.as_slice()))
        .collect();
    formats::safetensors::write_file(&dir.join("model.safetensors"), &refs, None).unwrap();
}

#[test]
fn nonzero_vocab_padding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (hf, t2, out) = (
        dir.path().join("hf"),
        dir.path().join("t2"),
        dir.path().join("out"),
    );
    write_model(&hf, false, 4, 2, 8, 16, 1, 11, false, 1);
    reshard(&hf, &t2, &["--tp", "2"]);
    // vocab 11 -> 12: rank 1's last lm_head row is padding.
    let rows = tensors(&t2.join("rank1.safetensors"))["lm_head.weight"]
        .1
        .clone();
    assert_eq!(rows, vec![6, 32]);
    corrupt(&t2.join("rank1.safetensors"), "lm_head.weight", 5 * 64 + 3);
    let err = refused(&t2, &out, &["--layout", "hf"], 1);
    assert!(
        err.contains(
            "rank1.safetensors: tensor `lm_head.weight`: vocabulary padding row 5 is not zero"
        ),
        "{err}"
    );
}

/// Reshards with the library (no process per step, for the property test).
fn lib_reshard(input: &Path, output: &Path, layout: ShardLayout, tp: u64, pp: u64) {
    let opts = ReshardOptions {
        layout,
        par: Parallel { tp, pp },
        rank: None,
        max_shard_size: 1 << 40,
    };
    let (_input, plan) = shard::plan_reshard(input, output, &opts).unwrap();
    let exec = ckpt_opt::plan::ExecOptions {
        threads: 2,
        chunk_bytes: 96, // tiny chunks: rows split across many chunks
        ..Default::default()
    };
    ckpt_opt::plan::execute_produced(&plan, &exec).unwrap();
}

fn layout_for(i: u8) -> ShardLayout {
    [ShardLayout::Trtllm, ShardLayout::Megatron][i as usize % 2]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Split at tp a / pp p into one layout, re-split directly at tp b into another, merge:
    /// the identity, whatever the shapes (vocab padding, KV duplication, biases, ties).
    #[test]
    fn split_then_merge_is_the_identity(
        kv_log in 0u32..3, group_log in 0u32..3, head_dim in prop::sample::select(vec![2u64, 4, 6]),
        ffn_mult in 1u64..4, layers in 1u64..4, vocab in 5u64..40, qwen in any::<bool>(),
        tied in any::<bool>(), tp_a_log in 0u32..4, tp_b_log in 0u32..4, pp_a in 1u64..3,
        la in any::<u8>(), lb in any::<u8>(), seed in any::<u64>(),
    ) {
        let kv = 1u64 << kv_log;
        let heads = kv << group_log;
        let (tp_a, tp_b) = (1u64 << tp_a_log, 1u64 << tp_b_log);
        let ffn = ffn_mult * 8;
        let layers = layers * pp_a;
        let dir = tempfile::tempdir().unwrap();
        let hf = dir.path().join("hf");
        write_model(&hf, qwen, heads, kv, head_dim, ffn, layers, vocab, tied, seed);
        let cfg = ModelConfig::load(&hf).unwrap();
        let usable = |layout: ShardLayout, tp: u64| {
            shard::layout::check_parallel(&cfg, layout, Parallel { tp, pp: 1 }).is_ok()
        };
        let (layout_a, layout_b) = (layout_for(la), layout_for(lb));
        prop_assume!(usable(layout_a, tp_a) && usable(layout_b, tp_b));
        let (a, b, back) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("back"));
        lib_reshard(&hf, &a, layout_a, tp_a, pp_a);
        lib_reshard(&a, &b, layout_b, tp_b, 1);
        lib_reshard(&b, &back, ShardLayout::Hf, 1, 1);
        let (x, y) = (tensors(&hf.join("model.safetensors")), tensors(&back));
        prop_assert_eq!(x, y);
    }
}
