//! Opening Hugging Face folders: index resolution and the errors a broken folder gives.

use formats::safetensors::{plan_shards, write_file, SafetensorsModel, TensorSpec};
use formats::{Dtype, FormatError};
use std::path::Path;

fn spec(name: &str, n: u64) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype: Dtype::U8,
        shape: vec![n],
    }
}

fn write(dir: &Path, file: &str, tensors: &[(&str, u64)]) {
    let datas: Vec<Vec<u8>> = tensors
        .iter()
        .map(|&(_, n)| vec![n as u8; n as usize])
        .collect();
    let pairs: Vec<(TensorSpec, &[u8])> = tensors
        .iter()
        .zip(&datas)
        .map(|(&(name, n), d)| (spec(name, n), d.as_slice()))
        .collect();
    write_file(&dir.join(file), &pairs, None).unwrap();
}

fn index(dir: &Path, name: &str, entries: &[(&str, &str)]) {
    let map: Vec<String> = entries
        .iter()
        .map(|(t, f)| format!("\"{t}\": \"{f}\""))
        .collect();
    let json = format!(
        "{{\"metadata\": {{\"total_size\": 0}}, \"weight_map\": {{{}}}}}",
        map.join(", ")
    );
    std::fs::write(dir.join(name), json).unwrap();
}

const S1: &str = "model-00001-of-00002.safetensors";
const S2: &str = "model-00002-of-00002.safetensors";

fn two_shards(dir: &Path) {
    write(dir, S1, &[("a", 2), ("b", 3)]);
    write(dir, S2, &[("c", 4)]);
}

#[test]
fn opens_index_folder() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    index(
        dir.path(),
        "model.safetensors.index.json",
        &[("c", S2), ("a", S1), ("b", S1)],
    );
    let m = SafetensorsModel::open(dir.path()).unwrap();
    assert_eq!(m.root(), dir.path());
    assert_eq!(m.files().len(), 2);
    assert_eq!(m.files()[0].path(), dir.path().join(S1));
    let names: Vec<_> = m
        .tensors()
        .iter()
        .map(|(i, t)| (*i, t.name.clone()))
        .collect();
    assert_eq!(
        names,
        [(0, "a".to_string()), (0, "b".into()), (1, "c".into())]
    );
    let (fi, c) = m.find("c").unwrap();
    assert_eq!(fi, 1);
    assert_eq!(m.files()[fi].data(c), &[4, 4, 4, 4]);
    assert!(m.find("zz").is_none());
    assert_eq!(m.total_bytes(), 9);
    assert_eq!(
        m.index_path(),
        Some(dir.path().join("model.safetensors.index.json").as_path())
    );
}

#[test]
fn opens_other_index_names_single_files_and_lone_file_folders() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    index(
        dir.path(),
        "diffusion_pytorch_model.safetensors.index.json",
        &[("a", S1), ("b", S1), ("c", S2)],
    );
    assert_eq!(SafetensorsModel::open(dir.path()).unwrap().files().len(), 2);

    let m = SafetensorsModel::open(&dir.path().join(S2)).unwrap();
    assert_eq!(m.root(), dir.path());
    assert!(m.index_path().is_none());
    assert_eq!(m.tensors().len(), 1);

    let lone = tempfile::tempdir().unwrap();
    write(lone.path(), "weights.safetensors", &[("x", 1)]);
    assert_eq!(
        SafetensorsModel::open(lone.path()).unwrap().total_bytes(),
        1
    );
}

#[test]
fn ambiguous_or_empty_folders() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        SafetensorsModel::open(dir.path()),
        Err(FormatError::Io { .. })
    ));
    two_shards(dir.path());
    assert!(matches!(
        SafetensorsModel::open(dir.path()),
        Err(FormatError::Unsupported { .. })
    ));
    index(dir.path(), "a.safetensors.index.json", &[("a", S1)]);
    index(dir.path(), "b.safetensors.index.json", &[("a", S1)]);
    assert!(matches!(
        SafetensorsModel::open(dir.path()),
        Err(FormatError::Unsupported { .. })
    ));
}

#[test]
fn malformed_index() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    let path = dir.path().join("model.safetensors.index.json");
    std::fs::write(&path, b"{\"weight_map\": [").unwrap();
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert!(matches!(e, FormatError::InvalidHeader { .. }));
    assert_eq!(e.path(), path);
}

#[test]
fn index_names_a_missing_shard() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    index(
        dir.path(),
        "model.safetensors.index.json",
        &[
            ("a", S1),
            ("b", S1),
            ("c", "model-00003-of-00003.safetensors"),
        ],
    );
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert!(
        matches!(&e, FormatError::MissingTensor { tensor, in_file: Some(f), .. }
            if tensor == "c" && f.ends_with("model-00003-of-00003.safetensors")),
        "{e}"
    );
    assert!(e.to_string().contains("model-00003-of-00003.safetensors"));
}

#[test]
fn index_places_a_tensor_in_the_wrong_shard() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    index(
        dir.path(),
        "model.safetensors.index.json",
        &[("a", S2), ("b", S1), ("c", S2)],
    );
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert!(
        matches!(&e, FormatError::MissingTensor { tensor, in_file: Some(f), .. } if tensor == "a" && f.ends_with(S2)),
        "{e}"
    );

    index(
        dir.path(),
        "model.safetensors.index.json",
        &[("a", S1), ("b", S1), ("c", S2), ("ghost", S2)],
    );
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert!(
        matches!(&e, FormatError::MissingTensor { tensor, .. } if tensor == "ghost"),
        "{e}"
    );
}

#[test]
fn same_tensor_in_two_shards() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), S1, &[("a", 2)]);
    write(dir.path(), S2, &[("a", 2), ("c", 1)]);
    index(
        dir.path(),
        "model.safetensors.index.json",
        &[("a", S1), ("c", S2)],
    );
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert!(
        matches!(&e, FormatError::DuplicateTensor { tensor, path } if tensor == "a" && path.ends_with(S2)),
        "{e}"
    );
}

#[test]
fn corrupt_shard_error_names_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    std::fs::write(dir.path().join(S2), b"\x02\0\0\0\0\0\0\0{").unwrap();
    index(
        dir.path(),
        "model.safetensors.index.json",
        &[("a", S1), ("b", S1), ("c", S2)],
    );
    let e = SafetensorsModel::open(dir.path()).unwrap_err();
    assert_eq!(e.path(), dir.path().join(S2));
}

#[test]
fn planned_shards_open_as_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![spec("x", 6), spec("y", 6), spec("z", 2)];
    let plan = plan_shards(specs, 10, None).unwrap();
    assert_eq!(plan.files.len(), 2);
    for (name, layout) in &plan.files {
        let mut bytes = layout.header.clone();
        bytes.resize(layout.total_size as usize, 7);
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        plan.index_json.unwrap(),
    )
    .unwrap();
    let m = SafetensorsModel::open(dir.path()).unwrap();
    assert_eq!(m.total_bytes(), 14);
    assert_eq!(m.find("z").unwrap().0, 1);
}
