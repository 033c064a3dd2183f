//! Interop with the official Python `safetensors` package (and huggingface_hub's shard
//! splitter): files we write are read by it, files it writes are read by us, and our writer's
//! bytes equal its bytes. Needs the project venv: `scripts/python-env.sh`.

use formats::safetensors::{plan_shards, write_file, SafetensorsFile, TensorSpec};
use formats::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `$CKPT_OPT_PYTHON`, else `<workspace root>/.venv/bin/python`. Missing is a failure, not a
/// skip: an interop test that silently does nothing proves nothing.
fn python() -> PathBuf {
    let path = std::env::var_os("CKPT_OPT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        path.exists(),
        "Python interpreter {} not found: run scripts/python-env.sh (or set CKPT_OPT_PYTHON)",
        path.display()
    );
    path
}

fn helper(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/safetensors_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python helper {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Deterministic test tensors: every dtype, with scalar, empty and multi-dim shapes.
fn sample_tensors() -> Vec<(TensorSpec, Vec<u8>)> {
    let shapes: [&[u64]; 4] = [&[2, 3], &[5], &[], &[0, 4]];
    let mut seed = 0x2545f4914f6cdd1du64;
    Dtype::ALL
        .iter()
        .enumerate()
        .map(|(i, &dtype)| {
            let spec = TensorSpec {
                name: format!("layer.{i}.{}", dtype.name().to_lowercase()),
                dtype,
                shape: shapes[i % 4].to_vec(),
            };
            let len = spec.byte_len().unwrap() as usize;
            let data = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // BOOL must hold 0 or 1 for numpy to compare it as written.
                    if dtype == Dtype::Bool {
                        (seed & 1) as u8
                    } else {
                        seed as u8
                    }
                })
                .collect();
            (spec, data)
        })
        .collect()
}

#[test]
fn python_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.safetensors");
    let tensors = sample_tensors();
    let borrowed: Vec<(TensorSpec, &[u8])> = tensors
        .iter()
        .map(|(s, d)| (s.clone(), d.as_slice()))
        .collect();
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("note".to_string(), "ünïcode \"quoted\"\n".to_string()),
    ]);
    write_file(&path, &borrowed, Some(&metadata)).unwrap();

    let expect = serde_json::json!({
        "metadata": metadata,
        "tensors": tensors.iter().map(|(s, d)| (s.name.clone(), serde_json::json!({
            "dtype": s.dtype.name(), "shape": s.shape, "hex": hex(d),
        }))).collect::<serde_json::Map<_, _>>(),
    });
    let expect_path = dir.path().join("expect.json");
    std::fs::write(&expect_path, serde_json::to_vec(&expect).unwrap()).unwrap();
    let out = helper(&["check".as_ref(), path.as_os_str(), expect_path.as_os_str()]);
    assert_eq!(out.trim(), format!("ok {}", tensors.len()));
}

#[test]
fn we_read_what_python_writes_and_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs.safetensors");
    let expect: serde_json::Value =
        serde_json::from_str(&helper(&["write".as_ref(), theirs.as_os_str()])).unwrap();

    // (b) our reader sees what Python wrote.
    let file = SafetensorsFile::open(&theirs).unwrap();
    let meta: BTreeMap<String, String> =
        serde_json::from_value(expect["metadata"].clone()).unwrap();
    assert_eq!(file.header().metadata.as_ref(), Some(&meta));
    let wanted = expect["tensors"].as_object().unwrap();
    assert_eq!(file.tensors().len(), wanted.len());
    assert_eq!(wanted.len(), Dtype::ALL.len(), "Python wrote every dtype");
    let mut ours: Vec<(TensorSpec, Vec<u8>)> = Vec::new();
    for (name, e) in wanted {
        let info = file.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(info.dtype.name(), e["dtype"].as_str().unwrap(), "{name}");
        let shape: Vec<u64> = serde_json::from_value(e["shape"].clone()).unwrap();
        assert_eq!(info.shape, shape, "{name}");
        let data = unhex(e["hex"].as_str().unwrap());
        assert_eq!(file.data(info), data.as_slice(), "{name}");
        ours.push((
            TensorSpec {
                name: name.clone(),
                dtype: info.dtype,
                shape,
            },
            data,
        ));
    }

    // (c) our writer, given the same tensors (in another order) and metadata, writes the same
    // bytes. One metadata key: Python keeps `__metadata__` in a HashMap, so with several keys
    // its own output order varies from run to run.
    ours.reverse();
    let mine = dir.path().join("mine.safetensors");
    let borrowed: Vec<(TensorSpec, &[u8])> = ours
        .iter()
        .map(|(s, d)| (s.clone(), d.as_slice()))
        .collect();
    write_file(&mine, &borrowed, Some(&meta)).unwrap();
    let (a, b) = (
        std::fs::read(&mine).unwrap(),
        std::fs::read(&theirs).unwrap(),
    );
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "bytes differ at {at} (ours {} bytes, theirs {}):\nours:   {}\ntheirs: {}",
            a.len(),
            b.len(),
            String::from_utf8_lossy(&a[at.saturating_sub(40)..(at + 80).min(a.len())]),
            String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 80).min(b.len())]),
        );
    }
}

#[test]
fn shard_split_matches_huggingface_hub() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes in U8 elements = bytes; includes an oversized tensor and an exact fit.
    let sizes: [(&str, u64); 9] = [
        ("embed", 6),
        ("l0.q", 6),
        ("l0.k", 2),
        ("huge", 25),
        ("l0.v", 2),
        ("l1.q", 10),
        ("l1.k", 0),
        ("l1.v", 9),
        ("head", 1),
    ];
    let sizes_path = dir.path().join("sizes.json");
    std::fs::write(&sizes_path, serde_json::to_vec(&sizes).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&helper(&[
        "shards".as_ref(),
        "10".as_ref(),
        sizes_path.as_os_str(),
    ]))
    .unwrap();

    let specs = sizes
        .iter()
        .map(|&(n, s)| TensorSpec {
            name: n.into(),
            dtype: Dtype::U8,
            shape: vec![s],
        })
        .collect();
    let plan = plan_shards(specs, 10, None).unwrap();
    let mut ours = serde_json::Map::new();
    for (name, layout) in &plan.files {
        let mut names: Vec<&str> = layout
            .tensors
            .iter()
            .map(|t| t.spec.name.as_str())
            .collect();
        names.sort();
        ours.insert(name.clone(), serde_json::json!(names));
    }
    let mut theirs_files = theirs["files"].as_object().unwrap().clone();
    for v in theirs_files.values_mut() {
        v.as_array_mut()
            .unwrap()
            .sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    assert_eq!(
        serde_json::Value::Object(ours),
        serde_json::Value::Object(theirs_files)
    );

    let index: serde_json::Value =
        serde_json::from_slice(plan.index_json.as_ref().unwrap()).unwrap();
    assert_eq!(index["metadata"]["total_size"], theirs["total_size"]);
}

#[test]
fn index_bytes_match_python_json_dumps() {
    let specs = vec![
        TensorSpec {
            name: "b.weight".into(),
            dtype: Dtype::F32,
            shape: vec![4],
        },
        TensorSpec {
            name: "a.wéight".into(),
            dtype: Dtype::F32,
            shape: vec![4],
        },
    ];
    let plan = plan_shards(specs, 16, None).unwrap();
    let ours = plan.index_json.unwrap();
    let script = "import json,sys; d=json.loads(sys.argv[1]); \
                  sys.stdout.write(json.dumps(d, indent=2, sort_keys=True) + '\\n')";
    let out = Command::new(python())
        .args(["-c", script, std::str::from_utf8(&ours).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(ours).unwrap()
    );
}
