//! Writing safetensors: every offset is planned from names, dtypes and shapes alone, then the
//! caller writes each tensor's bytes at its planned offset (in any order, from any thread).
//!
//! Output is byte-identical to the Python `safetensors` package (Rust `prepare` in
//! `safetensors/src/tensor.rs`) except where that package is nondeterministic: it keeps
//! `__metadata__` in a `HashMap`, so with several keys its order varies run to run; ours is sorted.

use crate::atomic::AtomicFile;
use crate::dtype::{checked_numel, Dtype};
use crate::error::{FormatError, Result};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Hugging Face's default shard limit, "5GB" (`MAX_SHARD_SIZE` in huggingface_hub).
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 5_000_000_000;

/// What a tensor will be, without its data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<u64>) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// Bytes of data, or an error naming the tensor on overflow.
    pub fn byte_len(&self) -> Result<u64> {
        checked_numel(&self.shape)
            .and_then(|n| n.checked_mul(self.dtype.size() as u64))
            .ok_or_else(|| {
                let reason = format!(
                    "shape {:?} of {} overflows u64 bytes",
                    self.shape, self.dtype
                );
                FormatError::tensor("", &self.name, reason)
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    pub spec: TensorSpec,
    /// Absolute file offset of the tensor's first byte.
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// The exact bytes at offset 0: u64 LE JSON length, the JSON, space padding to 8.
    pub header: Vec<u8>,
    /// Tensors in data order.
    pub tensors: Vec<PlannedTensor>,
    /// Size of the whole file.
    pub total_size: u64,
}

/// Position of a dtype in the official crate's `Dtype` enum, whose declaration order the
/// writer sorts by, descending ("descending dtype alignment", `prepare` in tensor.rs).
/// Checked against safetensors 0.8.0: U64, I64, F64, F32, U32, I32, BF16, F16, ..., BOOL.
fn official_rank(d: Dtype) -> u8 {
    match d {
        Dtype::Bool => 0,
        Dtype::U8 => 1,
        Dtype::I8 => 2,
        Dtype::F8E5M2 => 3,
        Dtype::F8E4M3 => 4,
        Dtype::I16 => 5,
        Dtype::U16 => 6,
        Dtype::F16 => 7,
        Dtype::BF16 => 8,
        Dtype::I32 => 9,
        Dtype::U32 => 10,
        Dtype::F32 => 11,
        Dtype::F64 => 12,
        Dtype::I64 => 13,
        Dtype::U64 => 14,
    }
}

/// Plans one file: data order, offsets and the header bytes.
pub fn plan_file(
    mut tensors: Vec<TensorSpec>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<FileLayout> {
    check_names(&tensors)?;
    tensors.sort_by(|a, b| {
        official_rank(b.dtype)
            .cmp(&official_rank(a.dtype))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut offset = 0u64;
    let mut relative = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let len = t.byte_len()?;
        let end = offset.checked_add(len).ok_or_else(|| {
            FormatError::tensor("", &t.name, "data of the file overflows u64 bytes")
        })?;
        relative.push((offset, end));
        offset = end;
    }
    let json = serde_json::to_vec(&HeaderJson {
        metadata,
        tensors: &tensors,
        offsets: &relative,
    })
    .map_err(|e| FormatError::header("", format!("cannot serialize header: {e}")))?;
    let mut header = Vec::with_capacity(json.len() + 16);
    let padded = json.len().div_ceil(8) * 8;
    header.extend_from_slice(&(padded as u64).to_le_bytes());
    header.extend_from_slice(&json);
    header.resize(8 + padded, b' ');
    let data_start = header.len() as u64;
    let total_size = data_start
        .checked_add(offset)
        .ok_or_else(|| FormatError::header("", "file size overflows u64 bytes"))?;
    let tensors = tensors
        .into_iter()
        .zip(relative)
        .map(|(spec, (s, e))| PlannedTensor {
            spec,
            start: data_start + s,
            len: e - s,
        })
        .collect();
    Ok(FileLayout {
        header,
        tensors,
        total_size,
    })
}

fn check_names(tensors: &[TensorSpec]) -> Result<()> {
    let mut seen = HashSet::with_capacity(tensors.len());
    for t in tensors {
        if t.name == "__metadata__" {
            return Err(FormatError::tensor(
                "",
                &t.name,
                "this name is reserved for metadata",
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(FormatError::DuplicateTensor {
                path: Default::default(),
                tensor: t.name.clone(),
            });
        }
    }
    Ok(())
}

/// The header JSON as the official `Metadata` serializes it: `__metadata__` first, then the
/// tensors in data order, each `{"dtype", "shape", "data_offsets"}` (relative offsets).
struct HeaderJson<'a> {
    metadata: Option<&'a BTreeMap<String, String>>,
    tensors: &'a [TensorSpec],
    offsets: &'a [(u64, u64)],
}

#[derive(Serialize)]
struct EntryJson<'a> {
    dtype: &'static str,
    shape: &'a [u64],
    data_offsets: [u64; 2],
}

impl Serialize for HeaderJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(m) = self.metadata {
            map.serialize_entry("__metadata__", m)?;
        }
        for (t, &(start, end)) in self.tensors.iter().zip(self.offsets) {
            let entry = EntryJson {
                dtype: t.dtype.name(),
                shape: &t.shape,
                data_offsets: [start, end],
            };
            map.serialize_entry(&t.name, &entry)?;
        }
        map.end()
    }
}

pub struct ShardPlan {
    /// (file name, layout), in shard order.
    pub files: Vec<(String, FileLayout)>,
    /// `model.safetensors.index.json` bytes when there is more than one file.
    pub index_json: Option<Vec<u8>>,
}

/// Splits `tensors` (in the given order, as a state dict iterates) into shards the way
/// huggingface_hub's `split_state_dict_into_shards_factory` does (`serialization/_base.py`):
/// a tensor larger than the limit gets a shard of its own where it stands; otherwise a new
/// shard starts when the next tensor would push the current one past `max_shard_size`.
/// Sizes count tensor data only, not headers. No tensors gives one empty `model.safetensors`.
pub fn plan_shards(
    tensors: Vec<TensorSpec>,
    max_shard_size: u64,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<ShardPlan> {
    check_names(&tensors)?;
    let mut shards: Vec<Vec<TensorSpec>> = Vec::new();
    let mut current: Vec<TensorSpec> = Vec::new();
    let mut current_size = 0u64;
    let mut total_size = 0u64;
    for t in tensors {
        let size = t.byte_len()?;
        total_size = total_size
            .checked_add(size)
            .ok_or_else(|| FormatError::tensor("", &t.name, "model size overflows u64 bytes"))?;
        if size > max_shard_size {
            shards.push(vec![t]);
            continue;
        }
        // current_size <= max here, and size <= max, so the sum cannot overflow.
        if current_size + size > max_shard_size {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(t);
        current_size += size;
    }
    if !current.is_empty() || shards.is_empty() {
        shards.push(current);
    }

    if shards.len() == 1 {
        let only = shards.pop().unwrap_or_default();
        return Ok(ShardPlan {
            files: vec![("model.safetensors".to_string(), plan_file(only, metadata)?)],
            index_json: None,
        });
    }
    let n = shards.len();
    let mut files = Vec::with_capacity(n);
    let mut weight_map = Vec::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let name = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
        weight_map.extend(shard.iter().map(|t| (t.name.clone(), name.clone())));
        files.push((name, plan_file(shard, metadata)?));
    }
    Ok(ShardPlan {
        files,
        index_json: Some(index_json(total_size, weight_map)),
    })
}

/// The index as transformers writes it: `json.dumps(index, indent=2, sort_keys=True) + "\n"`
/// (`save_pretrained` in modeling_utils.py), with Python's default `ensure_ascii=True`.
pub fn index_json(total_size: u64, mut weight_map: Vec<(String, String)>) -> Vec<u8> {
    weight_map.sort();
    let mut s = String::new();
    s.push_str("{\n  \"metadata\": {\n    \"total_size\": ");
    s.push_str(&total_size.to_string());
    s.push_str("\n  },\n  \"weight_map\": {");
    if weight_map.is_empty() {
        s.push('}');
    } else {
        for (i, (tensor, file)) in weight_map.iter().enumerate() {
            s.push_str(if i == 0 { "\n    " } else { ",\n    " });
            python_json_string(&mut s, tensor);
            s.push_str(": ");
            python_json_string(&mut s, file);
        }
        s.push_str("\n  }");
    }
    s.push_str("\n}\n");
    s.into_bytes()
}

/// A JSON string the way Python's json module writes it with `ensure_ascii=True`.
fn python_json_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Writes one file from in-memory tensors: plan, then positioned writes into an
/// [`AtomicFile`] renamed into place when complete.
pub fn write_file(
    path: &Path,
    tensors: &[(TensorSpec, &[u8])],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let specs: Vec<TensorSpec> = tensors.iter().map(|(s, _)| s.clone()).collect();
    let layout = plan_file(specs, metadata).map_err(|e| e.at(path))?;
    let data: HashMap<&str, &[u8]> = tensors.iter().map(|(s, d)| (s.name.as_str(), *d)).collect();
    let out = AtomicFile::create(path, layout.total_size)?;
    out.write_at(0, &layout.header)?;
    for t in &layout.tensors {
        let bytes = data.get(t.spec.name.as_str()).copied().unwrap_or_default();
        if bytes.len() as u64 != t.len {
            let reason = format!("expected {} bytes of data, got {}", t.len, bytes.len());
            return Err(FormatError::tensor(path, &t.spec.name, reason));
        }
        out.write_at(t.start, bytes)?;
    }
    out.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: Dtype, shape: &[u64]) -> TensorSpec {
        TensorSpec::new(name, dtype, shape.to_vec())
    }

    #[test]
    fn matches_official_serialization_test() {
        // `test_serialization` in safetensors/src/tensor.rs: one F32 [1,2,3] tensor "attn.0".
        let layout = plan_file(vec![spec("attn.0", Dtype::F32, &[1, 2, 3])], None).unwrap();
        let expected_json = br#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#;
        assert_eq!(&layout.header[..8], &64u64.to_le_bytes());
        assert_eq!(&layout.header[8..8 + expected_json.len()], expected_json);
        assert_eq!(layout.header.len(), 72);
        assert_eq!(layout.total_size, 96);
        assert_eq!(layout.tensors[0].start, 72);
    }

    #[test]
    fn empty_file_matches_official() {
        let layout = plan_file(vec![], None).unwrap();
        assert_eq!(layout.header, b"\x08\0\0\0\0\0\0\0{}      ");
        let meta = BTreeMap::from([("framework".to_string(), "pt".to_string())]);
        let layout = plan_file(vec![], Some(&meta)).unwrap();
        assert_eq!(
            &layout.header[8..],
            b"{\"__metadata__\":{\"framework\":\"pt\"}}     "
        );
    }

    #[test]
    fn data_order_is_dtype_rank_then_name() {
        let layout = plan_file(
            vec![
                spec("b", Dtype::U8, &[1]),
                spec("a", Dtype::F16, &[1]),
                spec("c", Dtype::BF16, &[1]),
                spec("z", Dtype::U64, &[1]),
                spec("y", Dtype::F64, &[1]),
            ],
            None,
        )
        .unwrap();
        let order: Vec<_> = layout
            .tensors
            .iter()
            .map(|t| t.spec.name.as_str())
            .collect();
        assert_eq!(order, ["z", "y", "c", "a", "b"]);
    }

    #[test]
    fn plan_rejects_duplicates_and_overflow() {
        let dup = vec![spec("a", Dtype::U8, &[1]), spec("a", Dtype::F32, &[1])];
        assert!(matches!(
            plan_file(dup, None),
            Err(FormatError::DuplicateTensor { .. })
        ));
        let big = vec![spec("a", Dtype::F64, &[u64::MAX / 4])];
        assert!(matches!(
            plan_file(big, None),
            Err(FormatError::InvalidTensor { .. })
        ));
        let reserved = vec![spec("__metadata__", Dtype::U8, &[1])];
        assert!(matches!(
            plan_file(reserved, None),
            Err(FormatError::InvalidTensor { .. })
        ));
    }

    #[test]
    fn shards_follow_huggingface_hub() {
        // Sizes [6, 6, 2, 6, 2, 2] with limit 10 -> [6], [6+2], [6+2+2] (the _base.py docstring).
        let sizes = [6u64, 6, 2, 6, 2, 2];
        let specs = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| spec(&format!("t{i}"), Dtype::U8, &[n]))
            .collect();
        let plan = plan_shards(specs, 10, None).unwrap();
        let names: Vec<Vec<&str>> = plan
            .files
            .iter()
            .map(|(_, l)| l.tensors.iter().map(|t| t.spec.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [vec!["t0"], vec!["t1", "t2"], vec!["t3", "t4", "t5"]]
        );
        assert_eq!(plan.files[0].0, "model-00001-of-00003.safetensors");
        let index = String::from_utf8(plan.index_json.unwrap()).unwrap();
        assert!(index.starts_with("{\n  \"metadata\": {\n    \"total_size\": 24\n  },\n  \"weight_map\": {\n    \"t0\": \"model-00001-of-00003.safetensors\",\n"));
        assert!(index.ends_with("\"\n  }\n}\n"));

        // A tensor over the limit gets its own shard, in place; the current shard continues.
        let specs = vec![
            spec("a", Dtype::U8, &[3]),
            spec("huge", Dtype::U8, &[20]),
            spec("b", Dtype::U8, &[3]),
        ];
        let plan = plan_shards(specs, 10, None).unwrap();
        let names: Vec<Vec<&str>> = plan
            .files
            .iter()
            .map(|(_, l)| l.tensors.iter().map(|t| t.spec.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["huge"], vec!["a", "b"]]);

        let plan = plan_shards(vec![spec("a", Dtype::U8, &[3])], 10, None).unwrap();
        assert_eq!(plan.files[0].0, "model.safetensors");
        assert!(plan.index_json.is_none());
        let plan = plan_shards(vec![], 10, None).unwrap();
        assert_eq!(plan.files.len(), 1);
    }

    #[test]
    fn python_string_escapes() {
        let mut s = String::new();
        python_json_string(&mut s, "a\"\\\n\u{1}é😀\u{7f}");
        assert_eq!(s, r#""a\"\\\n\u0001\u00e9\ud83d\ude00\u007f""#);
    }
}
