//! Interop with llama.cpp's official gguf-py (`gguf.GGUFReader` / `gguf.GGUFWriter`):
//! our files read by Python, Python's files read by us, and byte identity of the two writers.
//!
//! Needs the project venv: `scripts/python-env.sh` (or set `CKPT_OPT_PYTHON`). Without it the
//! tests fail rather than skip, so a missing interpreter never hides an interop break.

use std::path::{Path, PathBuf};
use std::process::Command;

use formats::gguf::{
    plan_split, split_file_name, write_file, write_layout, GgmlType, GgufFile, GgufModel,
    GgufTensorSpec, MetadataValue, SplitOptions, ValueType,
};
use serde_json::Value as J;

type Metadata = Vec<(String, MetadataValue)>;
type Tensors = Vec<(GgufTensorSpec, Vec<u8>)>;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPT_OPT_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let p = root.join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/python-env.sh (or set CKPT_OPT_PYTHON) to create the venv with gguf-py",
        p.display()
    );
    p
}

fn helper(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop_gguf/gguf_interop.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run the Python interpreter");
    assert!(
        out.status.success(),
        "gguf_interop.py {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dump(paths: &[PathBuf]) -> Vec<J> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["dump".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    serde_json::from_str::<Vec<J>>(&helper(&args)).unwrap()
}

fn s(k: &str) -> String {
    k.to_string()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// The model `gguf_interop.py write` builds, in the same order (GGUFWriter puts
/// `general.architecture` first by itself; `add_custom_alignment` comes next there).
fn reference_model(alignment: Option<u32>) -> (Metadata, Tensors) {
    use MetadataValue as V;
    let mut md = vec![(s("general.architecture"), V::String(s("llama")))];
    if let Some(a) = alignment {
        md.push((s("general.alignment"), V::U32(a)));
    }
    md.extend([
        (s("t.u8"), V::U8(200)),
        (s("t.i8"), V::I8(-5)),
        (s("t.u16"), V::U16(60000)),
        (s("t.i16"), V::I16(-30000)),
        (s("t.u32"), V::U32(4_000_000_000)),
        (s("t.i32"), V::I32(-2_000_000_000)),
        (s("t.f32"), V::F32(0.25)),
        (s("t.u64"), V::U64((1 << 40) + 1)),
        (s("t.i64"), V::I64(-(1 << 40))),
        (s("t.f64"), V::F64(std::f64::consts::PI)),
        (s("t.bool"), V::Bool(true)),
        (s("t.str"), V::String(s("h\u{e9}llo \u{2713}"))),
        (
            s("t.strs"),
            V::Array(
                ValueType::String,
                ["a", "bc", ""].map(|x| V::String(s(x))).to_vec(),
            ),
        ),
        (
            s("t.u8s"),
            V::Array(ValueType::U8, vec![V::U8(1), V::U8(2), V::U8(3)]),
        ),
        (
            s("t.f32s"),
            V::Array(ValueType::F32, vec![V::F32(0.5), V::F32(1.5)]),
        ),
        (
            s("t.i32s"),
            V::Array(ValueType::I32, vec![V::I32(1), V::I32(-2)]),
        ),
        (
            s("t.nested"),
            V::Array(
                ValueType::Array,
                vec![
                    V::Array(ValueType::I32, vec![V::I32(1), V::I32(2)]),
                    V::Array(ValueType::I32, vec![V::I32(3)]),
                ],
            ),
        ),
    ]);
    let f32s: Vec<u8> = (0..24)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let i32s: Vec<u8> = (0..6).flat_map(|i: i32| i.to_le_bytes()).collect();
    let t = |n: &str, dims: Vec<u64>, ty, data| (GgufTensorSpec::new(n, dims, ty), data);
    let tensors = vec![
        t("tok.weight", vec![8, 3], GgmlType::F32, f32s),
        t("ids", vec![3, 2, 1], GgmlType::I32, i32s),
        t("half", vec![8, 2], GgmlType::F16, pattern(32)),
        t("q8", vec![64, 4], GgmlType::Q8_0, pattern(4 * 68)),
        t("q4k", vec![256, 2], GgmlType::Q4K, pattern(2 * 144)),
        t("q6k", vec![256, 1], GgmlType::Q6K, pattern(210)),
    ];
    (md, tensors)
}

fn to_json(v: &MetadataValue) -> J {
    use MetadataValue as V;
    match v {
        V::U8(x) => J::from(*x),
        V::I8(x) => J::from(*x),
        V::U16(x) => J::from(*x),
        V::I16(x) => J::from(*x),
        V::U32(x) => J::from(*x),
        V::I32(x) => J::from(*x),
        V::F32(x) => J::from(*x as f64),
        V::Bool(x) => J::from(*x),
        V::String(x) => J::from(x.clone()),
        V::U64(x) => J::from(*x),
        V::I64(x) => J::from(*x),
        V::F64(x) => J::from(*x),
        V::Array(_, items) => J::Array(items.iter().map(to_json).collect()),
    }
}

fn json_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(1.0)
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        _ => a == b,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts that gguf-py's view of a file equals our reader's view of it.
fn assert_python_sees(file: &GgufFile, py: &J) {
    let h = file.header();
    let ctx = file.path().display();
    assert_eq!(py["alignment"], J::from(h.alignment), "{ctx}");
    assert_eq!(py["data_offset"], J::from(h.data_start), "{ctx}");
    let fields = py["fields"].as_array().unwrap();
    assert_eq!(fields.len(), h.metadata.len(), "{ctx}: field count");
    for (f, (k, v)) in fields.iter().zip(&h.metadata) {
        assert_eq!(f["key"], J::from(k.as_str()), "{ctx}");
        let types = f["types"].as_array().unwrap();
        assert_eq!(
            types[0],
            J::from(v.value_type() as u32),
            "{ctx}: type of {k}"
        );
        if let MetadataValue::Array(elem, _) = v {
            assert_eq!(
                types[1],
                J::from(*elem as u32),
                "{ctx}: element type of {k}"
            );
        }
        if !f["value"].is_null() {
            assert!(
                json_eq(&f["value"], &to_json(v)),
                "{ctx}: {k}: python {} vs ours {v:?}",
                f["value"]
            );
        }
    }
    let tensors = py["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), h.tensors.len(), "{ctx}: tensor count");
    for (pt, t) in tensors.iter().zip(&h.tensors) {
        assert_eq!(pt["name"], J::from(t.name.as_str()), "{ctx}");
        assert_eq!(pt["type"], J::from(t.ggml_type.id()), "{ctx}: {}", t.name);
        assert_eq!(pt["dims"], J::from(t.dims.clone()), "{ctx}: {}", t.name);
        assert_eq!(pt["n_bytes"], J::from(t.size), "{ctx}: {}", t.name);
        assert_eq!(pt["data_offset"], J::from(t.start), "{ctx}: {}", t.name);
        assert_eq!(
            pt["hex"],
            J::from(hex(file.data(t))),
            "{ctx}: data of {}",
            t.name
        );
    }
}

fn write_ours(path: &Path, alignment: Option<u32>) {
    let (md, tensors) = reference_model(alignment);
    let pairs: Vec<(GgufTensorSpec, &[u8])> = tensors
        .iter()
        .map(|(s, d)| (s.clone(), d.as_slice()))
        .collect();
    write_file(path, &md, &pairs).unwrap();
}

#[test]
fn our_single_file_is_read_by_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    for (name, align) in [
        ("a32.gguf", None),
        ("a64.gguf", Some(64)),
        ("a1.gguf", Some(1)),
    ] {
        let p = dir.path().join(name);
        write_ours(&p, align);
        let py = dump(std::slice::from_ref(&p));
        assert_python_sees(&GgufFile::open(&p).unwrap(), &py[0]);
    }
}

#[test]
fn our_split_files_are_read_by_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let (md, tensors) = reference_model(None);
    let specs = tensors.iter().map(|(s, _)| s.clone()).collect();
    let layouts = plan_split(
        &md,
        specs,
        &SplitOptions {
            max_tensors: Some(4),
            max_bytes: None,
        },
    )
    .unwrap();
    assert_eq!(layouts.len(), 2);
    let mut paths = Vec::new();
    let mut k = 0;
    for (i, l) in layouts.iter().enumerate() {
        let p = dir.path().join(split_file_name("m", i, layouts.len()));
        let first = k;
        write_layout(&p, l, |j| tensors[first + j].1.as_slice()).unwrap();
        k += l.tensors.len();
        paths.push(p);
    }
    let py = dump(&paths);
    for (p, py) in paths.iter().zip(&py) {
        assert_python_sees(&GgufFile::open(p).unwrap(), py);
    }
    let model = GgufModel::open(&paths[1]).unwrap();
    assert_eq!(model.tensors().len(), tensors.len());
}

#[test]
fn gguf_py_files_are_read_by_us_and_match_our_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs.gguf");
    helper(&["write".as_ref(), theirs.as_os_str()]);
    let f = GgufFile::open(&theirs).unwrap();
    let (md, tensors) = reference_model(Some(64));
    assert_eq!(f.header().metadata, md);
    assert_eq!(f.header().alignment, 64);
    assert_eq!(f.header().tensors.len(), tensors.len());
    for (t, (spec, data)) in f.header().tensors.iter().zip(&tensors) {
        assert_eq!(
            (&t.name, &t.dims, t.ggml_type),
            (&spec.name, &spec.dims, spec.ggml_type)
        );
        assert_eq!(f.data(t), data.as_slice(), "data of {}", t.name);
    }
    assert_python_sees(&f, &dump(std::slice::from_ref(&theirs))[0]);

    let ours = dir.path().join("ours.gguf");
    write_ours(&ours, Some(64));
    let (a, b) = (
        std::fs::read(&theirs).unwrap(),
        std::fs::read(&ours).unwrap(),
    );
    assert_eq!(a.len(), b.len(), "file sizes differ");
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!(
            "first differing byte at {i}: gguf-py {:02x?} vs ours {:02x?}",
            &a[i..(i + 16).min(a.len())],
            &b[i..(i + 16).min(b.len())]
        );
    }
}

#[test]
fn gguf_py_split_set_is_read_by_us() {
    let dir = tempfile::tempdir().unwrap();
    helper(&[
        "write-split".as_ref(),
        dir.path().join("s.gguf").as_os_str(),
    ]);
    let model = GgufModel::open(&dir.path().join("s-00003-of-00003.gguf")).unwrap();
    assert_eq!(model.files().len(), 3);
    let (md, tensors) = reference_model(None);
    assert_eq!(&model.metadata()[..md.len()], md.as_slice());
    assert_eq!(model.get("split.count"), Some(&MetadataValue::U16(3)));
    for (spec, data) in &tensors {
        let (fi, t) = model.find(&spec.name).unwrap();
        assert_eq!((&t.dims, t.ggml_type), (&spec.dims, spec.ggml_type));
        assert_eq!(model.files()[fi].data(t), data.as_slice());
    }
    // gguf-py and gguf-split agree on the split keys; our planner must produce the same files.
    let specs = tensors.iter().map(|(s, _)| s.clone()).collect();
    let layouts = plan_split(
        &md,
        specs,
        &SplitOptions {
            max_tensors: Some(2),
            max_bytes: None,
        },
    )
    .unwrap();
    for (i, l) in layouts.iter().enumerate() {
        let theirs = std::fs::read(model.files()[i].path()).unwrap();
        assert_eq!(
            &theirs[..l.header.len()],
            l.header.as_slice(),
            "header of split {i}"
        );
        assert_eq!(theirs.len() as u64, l.total_size, "size of split {i}");
    }
}
