//! The safetensors header: `u64` little-endian JSON length, the JSON object, then the data.
//!
//! [`parse`] is pure (bytes in, [`Header`] out) and validates everything the official reader
//! does (`safetensors/src/tensor.rs`, `read_metadata` and `Metadata::validate`), plus duplicate
//! names, which serde would silently collapse.

use crate::dtype::{checked_numel, Dtype};
use crate::error::{FormatError, Result};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Largest JSON header accepted, as in the official crate (`MAX_HEADER_SIZE`).
pub const MAX_HEADER_SIZE: u64 = 100_000_000;

/// Dtypes the official crate knows but this crate cannot represent yet.
const KNOWN_UNSUPPORTED_DTYPES: [&str; 5] = ["F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"];

/// A parsed and validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The `__metadata__` map, if the header has one.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Every tensor, sorted by `start` (ties, which only zero-sized tensors can have, by end then
    /// header order).
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the data region: 8 + JSON length (padding included).
    pub data_start: u64,
}

/// One tensor's entry, with absolute file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Absolute offset of the first byte in the file.
    pub start: u64,
    /// Absolute offset one past the last byte in the file.
    pub end: u64,
}

impl TensorInfo {
    pub fn byte_len(&self) -> u64 {
        self.end - self.start
    }

    /// Element count. Cannot overflow for a parsed header: `parse` checked `numel * size`.
    pub fn numel(&self) -> u64 {
        checked_numel(&self.shape).unwrap_or(u64::MAX)
    }
}

impl Header {
    /// Total bytes of the data region.
    pub fn data_len(&self) -> u64 {
        self.tensors
            .last()
            .map_or(0, |t| t.end.saturating_sub(self.data_start))
    }
}

/// Parses and validates the header of a whole safetensors file (`file_bytes` is the entire
/// file: the data region is checked to be covered exactly). Errors carry an empty path.
pub fn parse(file_bytes: &[u8]) -> Result<Header> {
    let available = file_bytes.len() as u64;
    let Some(len_bytes) = file_bytes.get(..8) else {
        return Err(truncated("header length", 8, available));
    };
    let mut arr = [0u8; 8];
    arr.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(arr);
    if n > MAX_HEADER_SIZE {
        return Err(FormatError::header(
            "",
            format!("header length {n} exceeds the {MAX_HEADER_SIZE}-byte limit"),
        ));
    }
    // n <= 100 MB, so this cannot overflow, and it fits usize once compared with the length.
    let data_start = 8 + n;
    if data_start > available {
        return Err(truncated("JSON header", n, available - 8));
    }
    let json_bytes = &file_bytes[8..data_start as usize];
    let json = std::str::from_utf8(json_bytes)
        .map_err(|e| FormatError::header("", format!("header is not UTF-8: {e}")))?;
    // The official reader rejects anything not starting with `{` (InvalidHeaderStart).
    if !json.starts_with('{') {
        return Err(FormatError::header("", "header is not a JSON object"));
    }
    let raw = parse_json(json)?;

    let mut tensors = Vec::with_capacity(raw.entries.len());
    for (name, entry) in raw.entries {
        let dtype = match Dtype::from_name(&entry.dtype) {
            Some(d) => d,
            None if KNOWN_UNSUPPORTED_DTYPES.contains(&entry.dtype.as_str()) => {
                return Err(FormatError::Unsupported {
                    path: Default::default(),
                    tensor: Some(name),
                    reason: format!("dtype {} is not supported", entry.dtype),
                })
            }
            None => {
                let reason = format!("unknown dtype `{}`", entry.dtype);
                return Err(FormatError::tensor("", name, reason));
            }
        };
        let (s, e) = entry.data_offsets;
        let nbytes = checked_numel(&entry.shape)
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .ok_or_else(|| {
                let reason = format!("shape {:?} of {dtype} overflows u64 bytes", entry.shape);
                FormatError::tensor("", &name, reason)
            })?;
        if e < s {
            let reason = format!("data_offsets [{s}, {e}] end before they start");
            return Err(FormatError::tensor("", name, reason));
        }
        if e - s != nbytes {
            let reason = format!(
                "shape {:?} of {dtype} needs {nbytes} bytes but data_offsets [{s}, {e}] hold {}",
                entry.shape,
                e - s
            );
            return Err(FormatError::tensor("", name, reason));
        }
        tensors.push(TensorInfo {
            name,
            dtype,
            shape: entry.shape,
            start: s,
            end: e,
        });
    }

    // Like `Metadata::validate`: sorted by offsets, each tensor must start exactly where the
    // previous one ended (no overlap, no hole), and the last must end at the end of the file.
    tensors.sort_by_key(|t| (t.start, t.end));
    let data_len = available - data_start;
    let mut expected = 0u64;
    let mut previous: Option<&str> = None;
    for t in &tensors {
        if t.start != expected {
            let reason = match previous {
                Some(p) if t.start < expected => {
                    format!(
                        "data_offsets start at {} inside tensor `{p}` (ends at {expected})",
                        t.start
                    )
                }
                Some(p) => format!(
                    "hole in data: starts at {} but tensor `{p}` ends at {expected}",
                    t.start
                ),
                None => format!(
                    "hole in data: first tensor starts at {} instead of 0",
                    t.start
                ),
            };
            return Err(FormatError::tensor("", &t.name, reason));
        }
        if t.end > data_len {
            return Err(truncated(
                &format!("data of tensor `{}`", t.name),
                t.end,
                data_len,
            ));
        }
        expected = t.end;
        previous = Some(&t.name);
    }
    if expected != data_len {
        return Err(FormatError::header(
            "",
            format!(
                "tensors cover {expected} data bytes but the file has {data_len} after the header"
            ),
        ));
    }
    for t in &mut tensors {
        // Both are <= file length, so no overflow.
        t.start += data_start;
        t.end += data_start;
    }
    Ok(Header {
        metadata: raw.metadata,
        tensors,
        data_start,
    })
}

fn truncated(what: &str, needed: u64, available: u64) -> FormatError {
    FormatError::Truncated {
        path: Default::default(),
        what: what.to_string(),
        needed,
        available,
    }
}

/// One tensor entry as written; `dtype` stays a string so an unknown one names its tensor.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    entries: Vec<(String, RawEntry)>,
}

/// What the visitor was doing when serde failed, so the error can name the tensor.
#[derive(Default)]
struct Context {
    current: Option<String>,
    duplicate: Option<String>,
    bad_metadata: Option<String>,
}

fn parse_json(json: &str) -> Result<RawHeader> {
    let mut ctx = Context::default();
    let mut de = serde_json::Deserializer::from_str(json);
    let result = HeaderSeed(&mut ctx)
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw));
    result.map_err(|e| {
        if let Some(name) = ctx.duplicate.take() {
            FormatError::DuplicateTensor {
                path: Default::default(),
                tensor: name,
            }
        } else if let Some(reason) = ctx.bad_metadata.take() {
            FormatError::header("", reason)
        } else if let Some(name) = ctx.current.take() {
            FormatError::tensor("", name, format!("invalid entry: {e}"))
        } else {
            FormatError::header("", format!("invalid JSON: {e}"))
        }
    })
}

struct HeaderSeed<'a>(&'a mut Context);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawHeader, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let ctx = self.0;
        let mut seen = HashSet::new();
        let mut metadata = None;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let msg = format!("duplicate key `{key}`");
                ctx.duplicate = Some(key);
                return Err(de::Error::custom(msg));
            }
            if key == "__metadata__" {
                let value: serde_json::Value = map.next_value()?;
                match metadata_map(value) {
                    Ok(m) => metadata = m,
                    Err(reason) => {
                        ctx.bad_metadata = Some(reason.clone());
                        return Err(de::Error::custom(reason));
                    }
                }
            } else {
                ctx.current = Some(key);
                let entry: RawEntry = map.next_value()?;
                if let Some(name) = ctx.current.take() {
                    entries.push((name, entry));
                }
            }
        }
        Ok(RawHeader { metadata, entries })
    }
}

/// `__metadata__` must be a string-to-string object (or null, which serde reads as absent in
/// the official crate's `Option<HashMap<String, String>>`).
fn metadata_map(
    value: serde_json::Value,
) -> std::result::Result<Option<BTreeMap<String, String>>, String> {
    use serde_json::Value;
    match value {
        Value::Null => Ok(None),
        Value::Object(obj) => {
            let mut out = BTreeMap::new();
            for (k, v) in obj {
                match v {
                    Value::String(s) => {
                        out.insert(k, s);
                    }
                    other => {
                        return Err(format!(
                            "`__metadata__` must map strings to strings, but `{k}` is {other}"
                        ))
                    }
                }
            }
            Ok(Some(out))
        }
        other => Err(format!("`__metadata__` must be an object, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file from a JSON header (unpadded) and `data_len` zero bytes of data.
    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.resize(out.len() + data_len, 0);
        out
    }

    #[test]
    fn parses_a_valid_file() {
        let bytes = file(
            r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}   "#,
            12,
        );
        let h = parse(&bytes).unwrap();
        let data_start = bytes.len() as u64 - 12;
        assert_eq!(h.data_start, data_start);
        assert_eq!(h.metadata.unwrap()["format"], "pt");
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(h.tensors[1].start, data_start + 4);
        assert_eq!(h.tensors[1].byte_len(), 8);
        assert_eq!(h.tensors[1].numel(), 2);
    }

    #[test]
    fn empty_header_and_zero_sized_tensors() {
        assert!(parse(b"\x08\0\0\0\0\0\0\0{}      ")
            .unwrap()
            .tensors
            .is_empty());
        let bytes = file(
            r#"{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]}}"#,
            0,
        );
        assert_eq!(parse(&bytes).unwrap().tensors.len(), 2);
    }

    #[test]
    fn too_short() {
        assert!(matches!(
            parse(b"\x02\0\0"),
            Err(FormatError::Truncated {
                needed: 8,
                available: 3,
                ..
            })
        ));
    }

    #[test]
    fn header_past_the_end() {
        assert!(matches!(
            parse(b"\x10\0\0\0\0\0\0\0{}"),
            Err(FormatError::Truncated {
                needed: 16,
                available: 2,
                ..
            })
        ));
    }

    #[test]
    fn header_too_large() {
        let e = parse(b"\xff\xff\xff\xff\xff\xff\xff\xff{}").unwrap_err();
        assert!(matches!(e, FormatError::InvalidHeader { .. }), "{e}");
        let e = parse(b"\x01\xe1\xf5\x05\0\0\0\0{}").unwrap_err(); // 100_000_001
        assert!(matches!(e, FormatError::InvalidHeader { .. }), "{e}");
    }

    #[test]
    fn not_utf8() {
        let e = parse(b"\x04\0\0\0\0\0\0\0{\xff\xfe}").unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("UTF-8"))
        );
    }

    #[test]
    fn invalid_json() {
        let e = parse(b"\x04\0\0\0\0\0\0\0{1:2").unwrap_err();
        assert!(matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("JSON")));
        let e = parse(b"\x04\0\0\0\0\0\0\0{}{}").unwrap_err();
        assert!(matches!(e, FormatError::InvalidHeader { .. }));
    }

    #[test]
    fn not_an_object() {
        let e = parse(b"\x08\0\0\0\0\0\0\0[1,2]   ").unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("object"))
        );
        let e = parse(b"\x08\0\0\0\0\0\0\0 {}     ").unwrap_err();
        assert!(matches!(e, FormatError::InvalidHeader { .. }));
    }

    #[test]
    fn unknown_dtype() {
        let bytes = file(
            r#"{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, reason, .. } if tensor == "w" && reason.contains("F99"))
        );
        let bytes = file(
            r#"{"w":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(&e, FormatError::Unsupported { tensor: Some(t), .. } if t == "w"));
    }

    #[test]
    fn malformed_entry_names_the_tensor() {
        let bytes = file(
            r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            4,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "w"));
        let bytes = file(r#"{"w":{"dtype":"F32","shape":[1]}}"#, 4);
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "w"));
    }

    #[test]
    fn size_mismatch() {
        let bytes = file(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            4,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, reason, .. } if tensor == "w" && reason.contains("needs 8 bytes"))
        );
    }

    #[test]
    fn shape_overflow() {
        let json = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#;
        let e = parse(&file(json, 4)).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, reason, .. } if tensor == "w" && reason.contains("overflow"))
        );
        // numel fits but numel * 8 does not
        let json = r#"{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}"#;
        let e = parse(&file(json, 4)).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { reason, .. } if reason.contains("overflow"))
        );
    }

    #[test]
    fn offsets_reversed() {
        let bytes = file(
            r#"{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#,
            4,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "w"));
    }

    #[test]
    fn offsets_out_of_range() {
        let bytes = file(
            r#"{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#,
            4,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::Truncated { what, needed: 8, available: 4, .. } if what.contains("`w`"))
        );
    }

    #[test]
    fn offsets_overlap() {
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            6,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, reason, .. } if tensor == "b" && reason.contains("inside tensor `a`"))
        );
    }

    #[test]
    fn offsets_with_hole() {
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}"#,
            8,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, reason, .. } if tensor == "b" && reason.contains("hole"))
        );
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            6,
        );
        assert!(matches!(
            parse(&bytes),
            Err(FormatError::InvalidTensor { .. })
        ));
    }

    #[test]
    fn trailing_data() {
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
            5,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("cover 4"))
        );
    }

    #[test]
    fn duplicate_tensor() {
        let bytes = file(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
            8,
        );
        let e = parse(&bytes).unwrap_err();
        assert!(matches!(&e, FormatError::DuplicateTensor { tensor, .. } if tensor == "a"));
    }

    #[test]
    fn metadata_not_strings() {
        let e = parse(&file(r#"{"__metadata__":{"n":1}}"#, 0)).unwrap_err();
        assert!(matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("`n`")));
        let e = parse(&file(r#"{"__metadata__":[]}"#, 0)).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidHeader { reason, .. } if reason.contains("__metadata__"))
        );
        let e = parse(&file(r#"{"__metadata__":{},"__metadata__":{}}"#, 0)).unwrap_err();
        assert!(matches!(e, FormatError::DuplicateTensor { .. }));
    }

    #[test]
    fn errors_have_no_path() {
        let e = parse(b"").unwrap_err();
        assert_eq!(e.path(), std::path::Path::new(""));
    }
}
