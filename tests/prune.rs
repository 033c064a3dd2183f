//! `ckpt-opt prune` end to end on the trained fixture: the quality bar (lowest-BI
//! layers vs last layers, importance vs seeded random heads and neurons), the pruned model
//! against an independent numpy forward pass, GGUF input and output, masks, recipes and bad
//! input.
//!
//! Calibration and evaluation use disjoint halves of `fixtures/heldout.txt`, so importance is
//! never measured on the text it is judged on.

mod common;

use ckpt_opt::calibrate::Dims;
use ckpt_opt::checkpoint::Checkpoint;
use ckpt_opt::forward::Model;
use ckpt_opt::prune::masks;
use ckpt_opt::prune::select::Kept;
use common::{fails, fixture, ok, run_python, s, sample_text};
use std::path::{Path, PathBuf};

/// Calibration text, evaluation text and a statistics file, in a temp folder.
struct Setup {
    dir: tempfile::TempDir,
    calib: PathBuf,
    eval: PathBuf,
    stats: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = std::fs::read_to_string(sample_text()).expect("held-out text");
        let lines: Vec<&str> = text.lines().collect();
        let half = lines.len() / 2;
        let calib = dir.path().join("calib.txt");
        let eval = dir.path().join("eval.txt");
        std::fs::write(&calib, lines[..half].join("\n")).expect("write");
        std::fs::write(&eval, lines[half..].join("\n")).expect("write");
        let stats = dir.path().join("stats.safetensors");
        ok(&[
            "calibrate",
            s(&model()),
            "--data",
            s(&calib),
            "-o",
            s(&stats),
            "--calib-samples",
            "32",
            "--calib-seq-len",
            "128",
            "--quiet",
        ]);
        Setup {
            dir,
            calib,
            eval,
            stats,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Prunes the trained model with `args` into `out`, evaluating on the eval half; returns
    /// the JSON report.
    fn prune(&self, out: &str, args: &[&str]) -> serde_json::Value {
        let (model, out) = (model(), self.path(out));
        let mut all = vec![
            "prune",
            s(&model),
            s(&out),
            "--eval-data",
            s(&self.eval),
            "--eval-max-windows",
            "48",
            "--json",
        ];
        all.extend(args);
        serde_json::from_str(&ok(&all)).expect("JSON report")
    }
}

fn model() -> PathBuf {
    fixture("trained-llama")
}

fn ppl_after(report: &serde_json::Value) -> f64 {
    report["quality"]["perplexity_after"]
        .as_f64()
        .expect("perplexity_after")
}

/// SplitMix64, so the random baselines are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `k` distinct indices of `0..n`, ascending.
    fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + (self.next() % (n - i) as u64) as usize;
            all.swap(i, j);
        }
        let mut out = all[..k].to_vec();
        out.sort_unstable();
        out
    }
}

fn model_dims() -> Dims {
    let ckpt = Checkpoint::open(&model()).expect("opens");
    let model = Model::load(&ckpt).expect("loads");
    Dims::of(model.config())
}

#[test]
fn lowest_block_influence_layers_beat_the_last_layers() {
    let setup = Setup::new();
    for keep in [3, 2] {
        let keep_s = keep.to_string();
        let bi = setup.prune(
            &format!("bi{keep}"),
            &[
                "--target-num-layers",
                &keep_s,
                "--calib-stats",
                s(&setup.stats),
            ],
        );
        let last: Vec<String> = (keep..4).map(|l| l.to_string()).collect();
        let tail = setup.prune(&format!("last{keep}"), &["--drop-layers", &last.join(",")]);
        let (p_bi, p_last) = (ppl_after(&bi), ppl_after(&tail));
        println!(
            "keep {keep}: lowest BI dropped {} -> ppl {p_bi:.3}; last dropped -> {p_last:.3}",
            bi["dropped_layers"]
        );
        assert_eq!(bi["after"]["num_hidden_layers"], keep);
        assert!(
            p_bi < p_last,
            "dropping the lowest-BI layers ({p_bi}) should beat dropping the last ones ({p_last})"
        );
        // The dropped layers are the lowest-BI ones.
        let scores: Vec<f64> = bi["depth_scores"]["scores"]
            .as_array()
            .expect("scores")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let dropped: Vec<usize> = bi["dropped_layers"]
            .as_array()
            .expect("dropped")
            .iter()
            .map(|v| v.as_u64().expect("index") as usize)
            .collect();
        let worst_kept = (0..4)
            .filter(|l| !dropped.contains(l))
            .map(|l| scores[l])
            .fold(f64::INFINITY, f64::min);
        assert!(dropped.iter().all(|&l| scores[l] <= worst_kept));
    }
}

#[test]
fn perplexity_depth_metric_drops_the_layer_whose_removal_hurts_least() {
    let setup = Setup::new();
    let r = setup.prune(
        "ppl",
        &[
            "--target-num-layers",
            "3",
            "--depth-metric",
            "ppl",
            "--calib-data",
            s(&setup.calib),
            "--calib-samples",
            "8",
        ],
    );
    assert_eq!(r["depth_scores"]["metric"], "ppl");
    let scores: Vec<f64> = r["depth_scores"]["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let baseline = r["depth_scores"]["baseline_perplexity"]
        .as_f64()
        .expect("baseline");
    let best = (0..4)
        .min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .expect("layers");
    assert_eq!(r["dropped_layers"], serde_json::json!([best]));
    // Removing any layer costs perplexity on the calibration windows.
    assert!(
        scores.iter().all(|&p| p > baseline),
        "{scores:?} vs {baseline}"
    );
    let tail = setup.prune("last", &["--drop-layers", "3"]);
    assert!(ppl_after(&r) <= ppl_after(&tail));
}

/// Importance-ranked width pruning against the same sizes chosen at random (three seeds).
#[test]
fn importance_beats_random_heads_and_neurons() {
    let setup = Setup::new();
    let dims = model_dims();
    for (what, args) in [
        ("ffn", vec!["--target-ffn-hidden-size", "384"]),
        ("heads", vec!["--target-num-attention-heads", "4"]),
    ] {
        let masks_path = setup.path(&format!("{what}.masks.safetensors"));
        let mut full = args.clone();
        full.extend([
            "--calib-stats",
            s(&setup.stats),
            "--emit-masks",
            s(&masks_path),
        ]);
        let by_importance = ppl_after(&setup.prune(&format!("{what}-imp"), &full));
        let kept = masks::read(&masks_path, dims).expect("masks read back");
        for seed in 1..=3u64 {
            let mut rng = Rng(seed);
            let mut random = kept.clone();
            for at in 0..random.layers.len() {
                if what == "ffn" {
                    random.ffn[at] = rng.choose(dims.ffn, kept.ffn[at].len());
                } else {
                    // Two of the four heads of each group, as the uniform-per-group rule needs.
                    let per_group = dims.heads / dims.kv_heads;
                    let mut heads = Vec::new();
                    for g in 0..dims.kv_heads {
                        heads.extend(
                            rng.choose(per_group, 2)
                                .into_iter()
                                .map(|h| g * per_group + h),
                        );
                    }
                    random.heads[at] = heads;
                }
            }
            assert_ne!(random, kept);
            let random_path = setup.path(&format!("{what}-{seed}.masks.safetensors"));
            masks::write(&random_path, &random).expect("write masks");
            let by_chance = ppl_after(&setup.prune(
                &format!("{what}-rand{seed}"),
                &["--apply-masks", s(&random_path)],
            ));
            println!(
                "{what}: importance ppl {by_importance:.3}, random (seed {seed}) {by_chance:.3}"
            );
            assert!(
                by_importance < by_chance,
                "{what}: importance {by_importance} should beat random seed {seed} ({by_chance})"
            );
        }
    }
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

fn logits_of(path: &Path, ids: &[u32]) -> Vec<f32> {
    let ckpt = Checkpoint::open(path).expect("checkpoint opens");
    let model = Model::load(&ckpt).expect("model loads");
    model.forward(ids).expect("forward runs")
}

/// Every dimension pruned at once (layers, hidden, FFN, heads, query groups): the folder loads
/// in our forward pass, and its logits match the numpy reference run on the pruned weights.
#[test]
fn pruned_model_matches_the_numpy_reference_and_converts_to_gguf() {
    let setup = Setup::new();
    let out = setup.path("all");
    ok(&[
        "prune",
        s(&model()),
        s(&out),
        "--drop-layers",
        "2",
        "--target-hidden-size",
        "192",
        "--target-ffn-hidden-size",
        "500",
        "--target-num-attention-heads",
        "2",
        "--target-num-query-groups",
        "1",
        "--calib-stats",
        s(&setup.stats),
        "--quiet",
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("JSON");
    for (key, want) in [
        ("num_hidden_layers", 3),
        ("hidden_size", 192),
        ("intermediate_size", 500),
        ("num_attention_heads", 2),
        ("num_key_value_heads", 1),
        ("head_dim", 32),
    ] {
        assert_eq!(config[key], want, "{key}");
    }
    assert!(out.join("tokenizer.json").is_file());

    let ids: Vec<u32> = (0..40).map(|i| ((i * 7919 + 13) % 1000) as u32).collect();
    let logits = logits_of(&out, &ids);
    let logits_path = setup.path("logits.f32");
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&logits_path, bytes).expect("write logits");
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let report = run_python(
        "reference_forward.py",
        &[s(&out), &list.join(","), s(&logits_path)],
    );
    let json: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON report");
    let rel = json["rel_err"].as_f64().expect("rel_err");
    println!("pruned vs numpy reference: rel_err {rel:.3e}");
    assert!(rel < 1e-4, "‖Δ‖/‖ref‖ = {rel:e} ({report})");

    // convert --format gguf, read by the Python gguf package, same logits as the folder.
    let gguf = setup.path("all.gguf");
    ok(&["convert", s(&out), s(&gguf), "--format", "gguf", "--quiet"]);
    let digest = run_python("gguf_digest.py", &[s(&gguf)]);
    assert!(digest.contains("llama.block_count"), "{digest}");
    let rel = rel_err(&logits_of(&gguf, &ids), &logits);
    assert!(rel < 1e-5, "GGUF of the pruned folder: rel_err {rel:e}");
}

/// A GGUF input gives a GGUF output, and the masks decided on the HF folder applied to the GGUF
/// of the same model give the same model (same logits).
#[test]
fn gguf_input_prunes_to_gguf_like_the_hf_folder() {
    let setup = Setup::new();
    let gguf = setup.path("t.gguf");
    ok(&[
        "convert",
        s(&model()),
        s(&gguf),
        "--format",
        "gguf",
        "--quiet",
    ]);
    let masks_path = setup.path("m.safetensors");
    let hf_out = setup.path("hf");
    ok(&[
        "prune",
        s(&model()),
        s(&hf_out),
        "--drop-layers",
        "1",
        "--target-hidden-size",
        "200",
        "--target-num-attention-heads",
        "4",
        "--target-ffn-hidden-size",
        "512",
        "--calib-stats",
        s(&setup.stats),
        "--emit-masks",
        s(&masks_path),
        "--quiet",
    ]);
    let gguf_out = setup.path("p.gguf");
    ok(&[
        "prune",
        s(&gguf),
        s(&gguf_out),
        "--apply-masks",
        s(&masks_path),
        "--quiet",
    ]);
    let digest = run_python("gguf_digest.py", &[s(&gguf_out)]);
    assert!(digest.contains("llama.embedding_length"), "{digest}");
    let ids: Vec<u32> = (0..33).map(|i| ((i * 131 + 7) % 1000) as u32).collect();
    let rel = rel_err(&logits_of(&gguf_out, &ids), &logits_of(&hf_out, &ids));
    println!("pruned GGUF vs pruned HF: rel_err {rel:.3e}");
    assert!(rel < 1e-5, "rel_err {rel:e}");
    let ckpt = Checkpoint::open(&gguf_out).expect("opens");
    let model = Model::load(&ckpt).expect("loads");
    assert_eq!(model.config().num_hidden_layers, 3);
    assert_eq!(model.config().hidden_size, 200);
    assert_eq!(model.config().intermediate_size, 512);
    assert_eq!(model.config().num_attention_heads, 4);
}

fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        // The manifest records the command line, which differs by design.
        .filter(|p| !p.ends_with("ckpt-opt.json"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn emitted_masks_applied_again_give_identical_bytes() {
    let setup = Setup::new();
    let masks_path = setup.path("m.safetensors");
    let a = setup.path("a");
    ok(&[
        "prune",
        s(&model()),
        s(&a),
        "--target-num-layers",
        "3",
        "--target-ffn-hidden-size",
        "640",
        "--target-num-query-groups",
        "1",
        "--calib-stats",
        s(&setup.stats),
        "--emit-masks",
        s(&masks_path),
        "--quiet",
    ]);
    let b = setup.path("b");
    let report_path = setup.path("report.json");
    ok(&[
        "prune",
        s(&model()),
        s(&b),
        "--apply-masks",
        s(&masks_path),
        "--report",
        s(&report_path),
        "--quiet",
    ]);
    assert_eq!(folder_bytes(&a), folder_bytes(&b));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("JSON");
    assert_eq!(report["params_before"], 3_528_960);
    assert!(report["params_after"].as_u64() < report["params_before"].as_u64());
    assert_eq!(report["after"]["num_key_value_heads"], 1);
    let kept = masks::read(&masks_path, model_dims()).expect("masks");
    assert_eq!(kept.layers.len(), 3);
    assert_eq!(kept.query_groups[0].len(), 1);
    assert_eq!(kept.heads[0].len(), 4);
}

#[test]
fn recipe_files_hold_the_options_and_name_bad_fields() {
    let setup = Setup::new();
    let toml = setup.path("prune.toml");
    std::fs::write(
        &toml,
        format!(
            "# depth and width\n[prune]\ndrop_layers = [3]\ntarget_ffn_hidden_size = 512\ncalib_stats = \"{}\"\n",
            setup.stats.file_name().expect("name").to_string_lossy()
        ),
    )
    .expect("write");
    let json = setup.path("prune.json");
    std::fs::write(
        &json,
        format!(
            "{{\"drop_layers\": \"3\", \"target_ffn_hidden_size\": 512, \"calib_stats\": \"{}\"}}",
            s(&setup.stats)
        ),
    )
    .expect("write");
    let flags = setup.path("flags");
    ok(&[
        "prune",
        s(&model()),
        s(&flags),
        "--drop-layers",
        "3",
        "--target-ffn-hidden-size",
        "512",
        "--calib-stats",
        s(&setup.stats),
        "--quiet",
    ]);
    for (name, recipe) in [("toml", &toml), ("json", &json)] {
        let out = setup.path(name);
        ok(&[
            "prune",
            s(&model()),
            s(&out),
            "--recipe",
            s(recipe),
            "--quiet",
        ]);
        assert_eq!(folder_bytes(&out), folder_bytes(&flags), "{name}");
    }

    for (text, field) in [
        ("target_ffn_hiden_size = 512\n", "target_ffn_hiden_size"),
        ("target_hidden_size = \"small\"\n", "target_hidden_size"),
        ("drop_layers = [1, -2]\n", "drop_layers"),
    ] {
        let bad = setup.path("bad.toml");
        std::fs::write(&bad, text).expect("write");
        let out = setup.path("bad-out");
        let err = fails(&["prune", s(&model()), s(&out), "--recipe", s(&bad)], 1);
        assert!(err.contains(&format!("`{field}`")), "{err}");
        assert!(!out.exists());
    }
    let bad = setup.path("bad.json");
    std::fs::write(&bad, "{\"seed\": true}").expect("write");
    let err = fails(
        &[
            "prune",
            s(&model()),
            s(&setup.path("x")),
            "--recipe",
            s(&bad),
        ],
        1,
    );
    assert!(err.contains("`seed`"), "{err}");
}

#[test]
fn bad_requests_are_one_line_errors_and_write_nothing() {
    let setup = Setup::new();
    let out = setup.path("out");
    let stats = s(&setup.stats);
    let model_path = model();
    let m = s(&model_path);
    let o = s(&out);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--target-ffn-hidden-size", "768", "--calib-stats", stats],
            "not smaller than the model's intermediate_size 768",
        ),
        (
            vec!["--target-hidden-size", "300", "--calib-stats", stats],
            "not smaller",
        ),
        (vec!["--target-num-layers", "4"], "not smaller"),
        (
            vec![
                "--target-num-attention-heads",
                "3",
                "--target-num-query-groups",
                "2",
                "--calib-stats",
                stats,
            ],
            "not divisible by 2 query groups",
        ),
        (vec!["--drop-layers", "0-3"], "every one of the 4 layers"),
        (vec!["--drop-layers", "4"], "layers 0..3"),
        (
            vec!["--target-ffn-hidden-size", "100"],
            "needs --calib-stats",
        ),
        (vec![], "nothing to prune"),
    ];
    for (args, want) in cases {
        let mut all = vec!["prune", m, o];
        all.extend(args.iter());
        let err = fails(&all, 2);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} left an output");
    }

    // A masks file made for another model (llama-gqa: 2 layers).
    let other = setup.path("other.masks.safetensors");
    ok(&[
        "prune",
        s(&fixture("llama-gqa")),
        s(&setup.path("gqa-out")),
        "--drop-layers",
        "1",
        "--emit-masks",
        s(&other),
        "--quiet",
    ]);
    let err = fails(&["prune", m, o, "--apply-masks", s(&other)], 1);
    assert!(err.contains("another model"), "{err}");
    assert!(!out.exists());

    // Statistics from another model.
    let gqa_stats = setup.path("gqa.safetensors");
    ok(&[
        "calibrate",
        s(&fixture("llama-gqa")),
        "--data",
        s(&setup.calib),
        "-o",
        s(&gqa_stats),
        "--calib-samples",
        "2",
        "--calib-seq-len",
        "16",
        "--quiet",
    ]);
    let err = fails(
        &[
            "prune",
            m,
            o,
            "--target-ffn-hidden-size",
            "512",
            "--calib-stats",
            s(&gqa_stats),
        ],
        1,
    );
    assert!(err.contains("another model"), "{err}");
    assert!(!out.exists());

    // The output exists already: refused without --force, replaced with it.
    std::fs::create_dir(&out).expect("mkdir");
    let err = fails(&["prune", m, o, "--drop-layers", "3"], 2);
    assert!(err.contains("already exists"), "{err}");
    ok(&["prune", m, o, "--drop-layers", "3", "--force", "--quiet"]);
    assert!(out.join("config.json").is_file());
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let setup = Setup::new();
    let out = setup.path("dry");
    let text = ok(&[
        "prune",
        s(&model()),
        s(&out),
        "--target-ffn-hidden-size",
        "384",
        "--calib-stats",
        s(&setup.stats),
        "--dry-run",
    ]);
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["after"]["intermediate_size"], 384);
    assert!(json["params_after"].as_u64() < json["params_before"].as_u64());
    assert!(!out.exists());
}

/// Every fixture layout (GQA, Qwen2 q/k/v biases and NeoX rotary, Mistral with an explicit
/// head_dim, tied embeddings with one KV head), pruned in every width at once with statistics
/// computed on the fly: the HF result loads in the forward pass, and the same masks applied to
/// the fixture's GGUF give the same logits.
#[test]
fn every_fixture_layout_prunes_in_both_formats() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, attention) in [
        ("llama-gqa", ["--target-num-attention-heads", "4"]),
        ("qwen2-bias", ["--target-num-attention-heads", "2"]),
        ("mistral-spm", ["--target-num-query-groups", "2"]),
        ("llama-tied", ["--target-num-attention-heads", "2"]),
    ] {
        let hf_out = dir.path().join(format!("{name}-pruned"));
        let masks_path = dir.path().join(format!("{name}.masks.safetensors"));
        let (input, text) = (fixture(name), sample_text());
        let mut args = vec![
            "prune",
            s(&input),
            s(&hf_out),
            "--target-hidden-size",
            "192",
            "--target-ffn-hidden-size",
            "128",
            "--calib-data",
            s(&text),
            "--calib-samples",
            "4",
            "--calib-seq-len",
            "32",
            "--emit-masks",
            s(&masks_path),
            "--quiet",
        ];
        args.extend(attention);
        ok(&args);
        let gguf = dir.path().join(format!("{name}.gguf"));
        ok(&[
            "convert",
            s(&fixture(name)),
            s(&gguf),
            "--format",
            "gguf",
            "--quiet",
        ]);
        let gguf_out = dir.path().join(format!("{name}-pruned.gguf"));
        ok(&[
            "prune",
            s(&gguf),
            s(&gguf_out),
            "--apply-masks",
            s(&masks_path),
            "--quiet",
        ]);
        let ids: Vec<u32> = (0..21).map(|i| ((i * 7919 + 13) % 1000) as u32).collect();
        let hf = logits_of(&hf_out, &ids);
        let rel = rel_err(&logits_of(&gguf_out, &ids), &hf);
        println!("{name}: pruned GGUF vs pruned HF rel_err {rel:.3e}");
        assert!(rel < 1e-5, "{name}: rel_err {rel:e}");
        let ckpt = Checkpoint::open(&hf_out).expect("opens");
        let model = Model::load(&ckpt).expect("loads");
        assert_eq!(model.config().hidden_size, 192, "{name}");
        assert_eq!(model.config().intermediate_size, 128, "{name}");
    }
}

/// Block-quantized GGUF tensors (Q8_0 `ffn_down` here) can lose rows (whole blocks) but not
/// columns: hidden pruning gathers its rows; FFN pruning is refused naming it, nothing written.
#[test]
fn quantized_gguf_tensors_lose_rows_but_not_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let q8 = dir.path().join("q8.gguf");
    run_python("make_q8_gguf.py", &[s(&q8)]);
    let dims = Dims {
        layers: 1,
        hidden: 32,
        ffn: 64,
        heads: 2,
        kv_heads: 1,
        head_dim: 16,
    };
    let mut hidden = Kept::all(dims);
    hidden.hidden = (0..32).step_by(2).collect();
    let hidden_masks = dir.path().join("hidden.safetensors");
    masks::write(&hidden_masks, &hidden).expect("write masks");
    let out = dir.path().join("hidden.gguf");
    ok(&[
        "prune",
        s(&q8),
        s(&out),
        "--apply-masks",
        s(&hidden_masks),
        "--quiet",
    ]);
    let pruned = Checkpoint::open(&out).expect("opens");
    let down = pruned
        .tensors()
        .into_iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .expect("ffn_down");
    assert_eq!(down.shape, vec![16, 64]);
    assert_eq!(down.ty.name(), "Q8_0");
    // Rows 0, 2, 4, ... of the input, byte for byte (34 bytes per Q8_0 block, 2 per row).
    let input = Checkpoint::open(&q8).expect("opens");
    let src = input
        .tensors()
        .into_iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .expect("ffn_down");
    let (a, b) = (input.bytes(&src), pruned.bytes(&down));
    for (i, row) in b.chunks(68).enumerate() {
        assert_eq!(row, &a[2 * i * 68..(2 * i + 1) * 68], "row {i}");
    }

    let mut ffn = Kept::all(dims);
    ffn.ffn = vec![(0..32).collect()];
    let ffn_masks = dir.path().join("ffn.safetensors");
    masks::write(&ffn_masks, &ffn).expect("write masks");
    let out = dir.path().join("ffn.gguf");
    let err = fails(
        &["prune", s(&q8), s(&out), "--apply-masks", s(&ffn_masks)],
        1,
    );
    assert!(
        err.contains("blk.0.ffn_down.weight") && err.contains("columns"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The `ppl` depth metric's view (the forward pass with a layer skipped) is the model with that
/// layer dropped: same logits as the pruned folder.
#[test]
fn skipping_a_layer_in_the_forward_pass_equals_dropping_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("no-layer-1");
    ok(&[
        "prune",
        s(&model()),
        s(&out),
        "--drop-layers",
        "1",
        "--quiet",
    ]);
    let ids: Vec<u32> = (0..24).map(|i| ((i * 37 + 5) % 1000) as u32).collect();
    let ckpt = Checkpoint::open(&model()).expect("opens");
    let mut full = Model::load(&ckpt).expect("loads");
    full.skip_layers(&[1]);
    let skipped = full.forward(&ids).expect("forward");
    let dropped = logits_of(&out, &ids);
    assert_eq!(skipped, dropped);
    full.skip_layers(&[]);
    assert_ne!(full.forward(&ids).expect("forward"), dropped);
}
