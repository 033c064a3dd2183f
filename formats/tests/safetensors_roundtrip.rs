//! Property tests: plan -> write -> parse round-trips, and the parser never panics.

use formats::safetensors::{header, plan_file, write_file, SafetensorsFile, TensorSpec};
use formats::{Dtype, FormatError};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn dtype() -> impl Strategy<Value = Dtype> {
    prop::sample::select(Dtype::ALL.to_vec())
}

/// Up to 8 tensors with distinct names, small shapes (zero dims and scalars included).
fn tensors() -> impl Strategy<Value = Vec<(TensorSpec, Vec<u8>)>> {
    prop::collection::btree_map(
        "[a-z.é_0-9]{1,12}",
        (dtype(), prop::collection::vec(0u64..5, 0..4)),
        0..8,
    )
    .prop_flat_map(|m| {
        let specs: Vec<TensorSpec> = m
            .into_iter()
            .map(|(name, (dtype, shape))| TensorSpec { name, dtype, shape })
            .collect();
        let datas: Vec<_> = specs
            .iter()
            .map(|s| prop::collection::vec(any::<u8>(), s.byte_len().unwrap() as usize))
            .collect();
        (Just(specs), datas)
    })
    .prop_map(|(specs, datas)| specs.into_iter().zip(datas).collect())
}

fn metadata() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    prop::option::of(prop::collection::btree_map(
        "[a-z\"\\\\ ]{0,6}",
        ".{0,6}",
        0..3,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plan_write_parse_round_trips(ts in tensors(), meta in metadata()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let borrowed: Vec<(TensorSpec, &[u8])> =
            ts.iter().map(|(s, d)| (s.clone(), d.as_slice())).collect();
        write_file(&path, &borrowed, meta.as_ref()).unwrap();

        let layout = plan_file(ts.iter().map(|(s, _)| s.clone()).collect(), meta.as_ref()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        prop_assert_eq!(bytes.len() as u64, layout.total_size);
        prop_assert_eq!(&bytes[..layout.header.len()], layout.header.as_slice());
        prop_assert_eq!(layout.header.len() % 8, 0);

        let parsed = header::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.data_start, layout.header.len() as u64);
        prop_assert_eq!(&parsed.metadata, &meta);
        let file = SafetensorsFile::open(&path).unwrap();
        prop_assert_eq!(file.tensors().len(), ts.len());
        for (spec, data) in &ts {
            let info = file.get(&spec.name).unwrap();
            prop_assert_eq!(info.dtype, spec.dtype);
            prop_assert_eq!(&info.shape, &spec.shape);
            prop_assert_eq!(file.data(info), data.as_slice());
            let planned = layout.tensors.iter().find(|p| p.spec.name == spec.name).unwrap();
            prop_assert_eq!(planned.start, info.start);
            prop_assert_eq!(planned.len, info.byte_len());
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = header::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_mangled_headers(
        ts in tensors(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let layout = plan_file(ts.iter().map(|(s, _)| s.clone()).collect(), None).unwrap();
        let mut bytes = layout.header.clone();
        bytes.resize(layout.total_size as usize, 0);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let _ = header::parse(&bytes);
        let _ = header::parse(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

#[test]
fn opener_fills_in_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, b"\x01\0").unwrap();
    let e = SafetensorsFile::open(&path).unwrap_err();
    assert!(matches!(e, FormatError::Truncated { .. }));
    assert_eq!(e.path(), path);
    let e = SafetensorsFile::open(&dir.path().join("missing.safetensors")).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }));
}

#[test]
fn write_file_checks_data_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let spec = TensorSpec {
        name: "w".into(),
        dtype: Dtype::F32,
        shape: vec![2],
    };
    let e = write_file(&path, &[(spec, &[0u8; 4][..])], None).unwrap_err();
    assert!(matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "w"));
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
