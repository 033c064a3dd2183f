//! Round trips through our GGUF writer and reader, split sets, and a parser that never panics.

use formats::gguf::{
    header, plan_file, plan_split, split_file_name, write_file, write_layout, GgmlType, GgufFile,
    GgufModel, GgufTensorSpec, MetadataValue, SplitOptions, ValueType,
};
use formats::FormatError;
use proptest::collection::vec;
use proptest::prelude::*;

const TYPES: [GgmlType; 10] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::I8,
    GgmlType::I64,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::IQ4_XS,
];

fn elem_type(depth: u32) -> BoxedStrategy<ValueType> {
    (0u32..=12)
        .prop_filter_map("leaf types only at depth 0", move |id| {
            let t = ValueType::from_id(id)?;
            (depth > 0 || t != ValueType::Array).then_some(t)
        })
        .boxed()
}

fn value_of(ty: ValueType, depth: u32) -> BoxedStrategy<MetadataValue> {
    use MetadataValue as V;
    match ty {
        ValueType::U8 => any::<u8>().prop_map(V::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(V::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(V::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(V::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(V::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(V::I32).boxed(),
        ValueType::F32 => (-1e6f32..1e6).prop_map(V::F32).boxed(),
        ValueType::Bool => any::<bool>().prop_map(V::Bool).boxed(),
        ValueType::String => "[a-zA-Z0-9 _.é✓]{0,12}".prop_map(V::String).boxed(),
        ValueType::U64 => any::<u64>().prop_map(V::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(V::I64).boxed(),
        ValueType::F64 => (-1e12f64..1e12).prop_map(V::F64).boxed(),
        ValueType::Array => elem_type(depth.saturating_sub(1))
            .prop_flat_map(move |et| {
                vec(value_of(et, depth.saturating_sub(1)), 0..5).prop_map(move |v| V::Array(et, v))
            })
            .boxed(),
    }
}

fn metadata() -> impl Strategy<Value = Vec<(String, MetadataValue)>> {
    vec(elem_type(2).prop_flat_map(|t| value_of(t, 2)), 0..8).prop_map(|vals| {
        vals.into_iter()
            .enumerate()
            .map(|(i, v)| (format!("test.key_{i}"), v))
            .collect()
    })
}

fn tensor_specs() -> impl Strategy<Value = Vec<GgufTensorSpec>> {
    vec((0..TYPES.len(), 1u64..3, vec(1u64..4, 0..4)), 0..6).prop_map(|ts| {
        ts.into_iter()
            .enumerate()
            .map(|(i, (ty, blocks, rest))| {
                let ty = TYPES[ty];
                let mut dims = vec![ty.block_size() * blocks];
                dims.extend(rest);
                GgufTensorSpec::new(format!("blk.{i}.weight"), dims, ty)
            })
            .collect()
    })
}

fn data_for(spec: &GgufTensorSpec, seed: usize) -> Vec<u8> {
    let n = spec.byte_size().unwrap() as usize;
    (0..n).map(|i| (i * 31 + seed * 7) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_then_parse_is_identity(md in metadata(), specs in tensor_specs(), align in prop::sample::select(vec![None, Some(1u32), Some(8), Some(64), Some(256)])) {
        let mut md = md;
        if let Some(a) = align {
            md.push(("general.alignment".into(), MetadataValue::U32(a)));
        }
        let datas: Vec<Vec<u8>> = specs.iter().enumerate().map(|(i, s)| data_for(s, i)).collect();
        let pairs: Vec<(GgufTensorSpec, &[u8])> = specs.iter().cloned().zip(datas.iter().map(|d| d.as_slice())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        write_file(&path, &md, &pairs).unwrap();

        let f = GgufFile::open(&path).unwrap();
        let h = f.header();
        prop_assert_eq!(&h.metadata, &md);
        prop_assert_eq!(h.alignment, align.map_or(32, |a| a as u64));
        prop_assert_eq!(h.tensors.len(), specs.len());
        let layout = plan_file(&md, specs.clone()).unwrap();
        prop_assert_eq!(h.data_start, layout.header.len() as u64);
        prop_assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.total_size);
        for ((t, s), d) in h.tensors.iter().zip(&specs).zip(&datas) {
            prop_assert_eq!(&t.name, &s.name);
            prop_assert_eq!(&t.dims, &s.dims);
            prop_assert_eq!(t.ggml_type, s.ggml_type);
            prop_assert_eq!(t.start % h.alignment, 0);
            prop_assert_eq!(f.data(t), d.as_slice());
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        let _ = header::parse(&bytes);
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.extend(&bytes);
        let _ = header::parse(&b);
    }

    #[test]
    fn parse_never_panics_on_mutated_files(md in metadata(), specs in tensor_specs(), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let layout = plan_file(&md, specs).unwrap();
        let mut b = layout.header.clone();
        b.resize(layout.total_size as usize, 0);
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] = v;
        }
        let _ = header::parse(&b);
    }
}

type Fixture = (
    Vec<(String, MetadataValue)>,
    Vec<GgufTensorSpec>,
    Vec<Vec<u8>>,
);

fn model_fixture() -> Fixture {
    let md = vec![
        (
            "general.architecture".to_string(),
            MetadataValue::String("llama".into()),
        ),
        ("llama.block_count".to_string(), MetadataValue::U32(5)),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetadataValue::Array(
                ValueType::String,
                vec![MetadataValue::String("<s>".into()); 3],
            ),
        ),
    ];
    let mut specs = Vec::new();
    for i in 0..5 {
        specs.push(GgufTensorSpec::new(
            format!("blk.{i}.attn_q.weight"),
            vec![64, 8],
            GgmlType::Q8_0,
        ));
        specs.push(GgufTensorSpec::new(
            format!("blk.{i}.attn_norm.weight"),
            vec![64],
            GgmlType::F32,
        ));
    }
    let datas = specs
        .iter()
        .enumerate()
        .map(|(i, s)| data_for(s, i))
        .collect();
    (md, specs, datas)
}

fn write_set(dir: &std::path::Path, prefix: &str, opts: &SplitOptions) -> usize {
    let (md, specs, datas) = model_fixture();
    let layouts = plan_split(&md, specs.clone(), opts).unwrap();
    let n = layouts.len();
    let mut k = 0;
    for (i, l) in layouts.iter().enumerate() {
        let name = if n == 1 {
            format!("{prefix}.gguf")
        } else {
            split_file_name(prefix, i, n)
        };
        let first = k;
        write_layout(&dir.join(name), l, |j| datas[first + j].as_slice()).unwrap();
        k += l.tensors.len();
    }
    n
}

#[test]
fn split_round_trip_from_second_member() {
    let dir = tempfile::tempdir().unwrap();
    let n = write_set(
        dir.path(),
        "m",
        &SplitOptions {
            max_tensors: Some(3),
            max_bytes: None,
        },
    );
    assert_eq!(n, 4);
    assert_eq!(write_set(dir.path(), "whole", &SplitOptions::default()), 1);
    let whole = GgufModel::open(&dir.path().join("whole.gguf")).unwrap();
    let split = GgufModel::open(&dir.path().join("m-00002-of-00004.gguf")).unwrap();
    assert_eq!(split.files().len(), 4);
    assert_eq!(whole.files().len(), 1);
    assert_eq!(split.total_bytes(), whole.total_bytes());

    let (md, _, _) = model_fixture();
    assert_eq!(whole.metadata(), md.as_slice());
    // First split: the model's metadata, then split.no, split.count, split.tensors.count (gguf-split order).
    let m = split.metadata();
    assert_eq!(&m[..md.len()], md.as_slice());
    assert_eq!(
        m[md.len()..]
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["split.no", "split.count", "split.tensors.count"]
    );
    assert_eq!(split.get("split.count"), Some(&MetadataValue::U16(4)));
    assert_eq!(
        split.get("split.tensors.count"),
        Some(&MetadataValue::I32(10))
    );
    // Other splits carry only the split keys.
    let second = split.files()[1].header();
    assert_eq!(second.metadata.len(), 3);
    assert_eq!(second.get("split.no"), Some(&MetadataValue::U16(1)));

    let a = whole.tensors();
    let b = split.tensors();
    assert_eq!(a.len(), b.len());
    for ((_, ta), (fb, tb)) in a.iter().zip(&b) {
        assert_eq!(
            (&ta.name, &ta.dims, ta.ggml_type),
            (&tb.name, &tb.dims, tb.ggml_type)
        );
        assert_eq!(whole.files()[0].data(ta), split.files()[*fb].data(tb));
        assert_eq!(split.find(&tb.name).unwrap().0, *fb);
    }
    assert_eq!(b[3].0, 1);
    // Offsets are relative to each split's own blob.
    assert_eq!(second.tensors[0].offset, 0);
}

#[test]
fn split_by_bytes_closes_before_overflow() {
    let md = vec![(
        "general.architecture".to_string(),
        MetadataValue::String("x".into()),
    )];
    let specs = vec![
        GgufTensorSpec::new("a", vec![16], GgmlType::F32), // 64 bytes
        GgufTensorSpec::new("b", vec![16], GgmlType::F32),
        GgufTensorSpec::new("big", vec![100], GgmlType::F32), // 400 bytes, over the limit alone
        GgufTensorSpec::new("c", vec![8], GgmlType::F32),     // 32 bytes
        GgufTensorSpec::new("d", vec![1], GgmlType::F32),     // 4 bytes, padded to 32
    ];
    let l = plan_split(
        &md,
        specs,
        &SplitOptions {
            max_tensors: None,
            max_bytes: Some(128),
        },
    )
    .unwrap();
    let names: Vec<Vec<&str>> = l
        .iter()
        .map(|l| l.tensors.iter().map(|t| t.spec.name.as_str()).collect())
        .collect();
    assert_eq!(names, vec![vec!["a", "b"], vec!["big"], vec!["c", "d"]]);
}

#[test]
fn no_split_needed_gives_one_plain_file() {
    let (md, specs, _) = model_fixture();
    let mut with_old_keys = md.clone();
    with_old_keys.push(("split.no".into(), MetadataValue::U16(0)));
    let l = plan_split(
        &with_old_keys,
        specs.clone(),
        &SplitOptions {
            max_tensors: Some(128),
            max_bytes: None,
        },
    )
    .unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0], plan_file(&md, specs).unwrap());
}

#[test]
fn missing_split_member_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_set(
        dir.path(),
        "m",
        &SplitOptions {
            max_tensors: Some(4),
            max_bytes: None,
        },
    );
    let gone = dir.path().join("m-00003-of-00003.gguf");
    std::fs::remove_file(&gone).unwrap();
    let e = GgufModel::open(&dir.path().join("m-00001-of-00003.gguf"))
        .err()
        .unwrap();
    assert!(
        matches!(&e, FormatError::Io { path, .. } if *path == gone),
        "{e}"
    );
    assert!(e.to_string().contains("m-00003-of-00003.gguf"));
}

#[test]
fn split_member_with_wrong_number_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_set(
        dir.path(),
        "m",
        &SplitOptions {
            max_tensors: Some(4),
            max_bytes: None,
        },
    );
    std::fs::rename(
        dir.path().join("m-00002-of-00003.gguf"),
        dir.path().join("tmp"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("m-00003-of-00003.gguf"),
        dir.path().join("m-00002-of-00003.gguf"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("tmp"),
        dir.path().join("m-00003-of-00003.gguf"),
    )
    .unwrap();
    let e = GgufModel::open(&dir.path().join("m-00001-of-00003.gguf"))
        .err()
        .unwrap();
    assert!(matches!(e, FormatError::InvalidHeader { .. }), "{e}");
}

#[test]
fn writer_rejects_bad_input() {
    let t = |n: &str, d: Vec<u64>, ty| GgufTensorSpec::new(n, d, ty);
    let e = plan_file(
        &[],
        vec![
            t("a", vec![4], GgmlType::F32),
            t("a", vec![4], GgmlType::F32),
        ],
    )
    .unwrap_err();
    assert!(matches!(e, FormatError::DuplicateTensor { .. }));
    let e = plan_file(&[], vec![t("q", vec![100], GgmlType::Q4K)]).unwrap_err();
    assert!(matches!(e, FormatError::InvalidTensor { .. }));
    let e = plan_file(&[], vec![t("q", vec![1, 1, 1, 1, 1], GgmlType::F32)]).unwrap_err();
    assert!(matches!(e, FormatError::InvalidTensor { .. }));
    let md = vec![("general.alignment".to_string(), MetadataValue::U32(24))];
    assert!(matches!(
        plan_file(&md, vec![]),
        Err(FormatError::InvalidHeader { .. })
    ));
    let md = vec![
        ("k".to_string(), MetadataValue::U8(1)),
        ("k".to_string(), MetadataValue::U8(2)),
    ];
    assert!(matches!(
        plan_file(&md, vec![]),
        Err(FormatError::InvalidHeader { .. })
    ));
    let md = vec![(
        "k".to_string(),
        MetadataValue::Array(ValueType::U8, vec![MetadataValue::I8(1)]),
    )];
    assert!(matches!(
        plan_file(&md, vec![]),
        Err(FormatError::InvalidHeader { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.gguf");
    let e = write_file(&p, &[], &[(t("a", vec![4], GgmlType::F32), &[0u8; 3][..])]).unwrap_err();
    assert!(matches!(e, FormatError::InvalidTensor { .. }));
    assert!(!p.exists());
}
