//! Helpers shared by the black-box tests: run the built binary, find fixtures and Python.
#![allow(dead_code)]

use ckpt_opt::checkpoint::Checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The checkout; `CKPT_OPT_ROOT` overrides it where the test binary runs away from its build
/// (the GPU machine of `scripts/gpu-check.sh`).
pub fn root() -> PathBuf {
    std::env::var_os("CKPT_OPT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// Real text that is always there: the held-out tail of the calibration text, committed with
/// the fixtures (CI's copy of ../shared may sit anywhere).
pub fn sample_text() -> PathBuf {
    fixture("heldout.txt")
}

pub const MODELS: [&str; 4] = ["llama-gqa", "qwen2-bias", "mistral-spm", "llama-tied"];

/// Runs `ckpt-opt ARGS` and returns its output.
pub fn ckpt_opt(args: &[&str]) -> Output {
    // `CKPT_OPT_BIN`: as `CKPT_OPT_ROOT`, for a binary moved to another machine.
    let bin = std::env::var_os("CKPT_OPT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ckpt-opt")));
    Command::new(bin)
        .args(args)
        .output()
        .expect("the ckpt-opt binary runs")
}

/// Runs and requires success, printing stdout/stderr on failure.
pub fn ok(args: &[&str]) -> String {
    let out = ckpt_opt(args);
    assert!(
        out.status.success(),
        "ckpt-opt {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and requires failure with `code`; returns stderr, which must be one line.
pub fn fails(args: &[&str], code: i32) -> String {
    let out = ckpt_opt(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "ckpt-opt {args:?}: expected exit {code}\nstdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "expected a one-line error, got:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The interop interpreter: $CKPT_OPT_PYTHON, else the project venv. Missing is a failure,
/// not a skip: these checks are what proves our files are readable by others.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CKPT_OPT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the interop checks at {}: run `bash scripts/python-env.sh` first",
        venv.display()
    );
    venv
}

/// Runs a Python script from tests/interop with arguments, success or not.
pub fn python_output(script: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg(root().join("tests/interop").join(script))
        .args(args)
        .output()
        .expect("python runs")
}

/// Runs a Python script from tests/interop with arguments; requires success.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("tests/interop").join(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// name -> (dtype, shape, bytes) of every tensor of a checkpoint.
pub fn tensors(path: &Path) -> BTreeMap<String, (String, Vec<u64>, Vec<u8>)> {
    let ckpt = Checkpoint::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ckpt.tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                (t.ty.name(), t.shape.clone(), ckpt.bytes(t).to_vec()),
            )
        })
        .collect()
}

/// Same names, dtypes, shapes and bytes.
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "tensor names differ between {} and {}",
        a.display(),
        b.display()
    );
    for (name, (da, sa, ba)) in &ta {
        let (db, sb, bb) = &tb[name];
        assert_eq!((da, sa), (db, sb), "{name}: dtype/shape differ");
        if ba != bb {
            let first = ba.iter().zip(bb).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{name}: bytes differ (first at byte {first})");
        }
    }
}

/// A copy of fixture `model` (one model.safetensors) with the 4th value of `tensor` set to NaN
/// (in the file's own dtype), in `dir`.
pub fn with_nan(model: &str, tensor: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{model}-nan"));
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(fixture(model)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
    }
    let path = out.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let info = &header[tensor];
    let start = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize + 6;
    let nan: &[u8] = match info["dtype"].as_str().unwrap() {
        "BF16" => &[0xC0, 0x7F],
        "F16" => &[0x00, 0x7E],
        _ => &[0x00, 0x00, 0xC0, 0x7F],
    };
    bytes[start..start + nan.len()].copy_from_slice(nan);
    std::fs::write(&path, bytes).unwrap();
    out
}

/// A MIXED_PRECISION checkpoint at `out` spliced from two single-scheme exports `a` and `b` of
/// one model (`tests/interop/splice_mixed.py`, `kind` `trtllm` or `hf`): every quantized module
/// whose name matches a pattern of `from_b` (fnmatch) takes `b`'s tensors and scheme, every
/// other one `a`'s.
pub fn splice_mixed(kind: &str, a: &Path, b: &Path, out: &Path, from_b: &[&str]) {
    let mut args = vec![kind, s(a), s(b), s(out)];
    args.extend_from_slice(from_b);
    run_python("splice_mixed.py", &args);
}

/// Rewrites JSON file `path` through `edit`.
pub fn edit_json_file(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    edit(&mut v);
    std::fs::write(path, v.to_string()).expect("write JSON");
}
