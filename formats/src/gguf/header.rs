//! Pure GGUF header parser: whole file bytes in, [`GgufHeader`] out. No file system, no panics,
//! and every count or length is checked against the bytes that remain before anything is
//! allocated, so it is safe to fuzz.
//!
//! Layout: llama.cpp `ggml/src/gguf.cpp` (`gguf_init_from_file_impl`) and
//! `gguf-py/gguf/gguf_reader.py`.

use std::collections::HashSet;

use super::types::{GgmlType, MetadataValue, ValueType};
use crate::error::{FormatError, Result};

/// `GGUF_MAGIC` in gguf.h: the bytes "GGUF".
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// `GGUF_DEFAULT_ALIGNMENT` in gguf.h.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// `GGML_MAX_DIMS` in ggml.h.
pub const MAX_DIMS: usize = 4;
/// The key that overrides the alignment (`GGUF_KEY_GENERAL_ALIGNMENT`).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Arrays of arrays are legal in gguf-py; a depth cap keeps a hostile file from
/// overflowing the stack with 12-byte nested array headers.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// A parsed GGUF header. Offsets are both as stored (`offset`) and absolute (`start`).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetadataValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data blob (end of tensor infos rounded up to `alignment`).
    pub data_start: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: ne[0] (the contiguous dimension) first, as stored.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to the data blob, as stored.
    pub offset: u64,
    /// Bytes of tensor data (without padding).
    pub size: u64,
    /// Absolute: `data_start + offset`.
    pub start: u64,
}

impl GgufTensorInfo {
    /// Row-major (numpy) shape: `dims` reversed.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// Element count (1 for a 0-dim tensor). Cannot overflow: checked at parse/plan time.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Parses the header of a GGUF file given the whole file's bytes, and checks that every
/// tensor's data lies inside them.
pub fn parse(file_bytes: &[u8]) -> Result<GgufHeader> {
    let mut c = Cursor {
        bytes: file_bytes,
        pos: 0,
    };
    let magic = c.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(FormatError::header(
            "",
            format!("bad magic {magic:02x?}, expected \"GGUF\""),
        ));
    }
    let version = c.u32("version")?;
    // v1 used u32 counts and lengths; v2 and v3 share the u64 layout (v3 only added big-endian
    // files, which announce themselves by a byte-swapped version and are rejected here).
    if version != 2 && version != 3 {
        return Err(FormatError::header(
            "",
            format!("unsupported GGUF version {version} (only 2 and 3 are supported)"),
        ));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;

    // Smallest possible KV: empty key (8) + type (4) + 1-byte value.
    c.check_count(n_kv, 8 + 4 + 1, "metadata entries")?;
    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut keys = HashSet::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = c.string(|| format!("metadata key #{i}"))?;
        if !keys.insert(key.clone()) {
            return Err(FormatError::header(
                "",
                format!("duplicate metadata key `{key}`"),
            ));
        }
        let ty = c.u32("metadata value type")?;
        let value = c.value(ty, &key, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some((_, MetadataValue::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(FormatError::header(
                "",
                format!("`{ALIGNMENT_KEY}` must be a non-zero power of two u32, got {v:?}"),
            ))
        }
    };

    // Smallest possible tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
    c.check_count(n_tensors, 8 + 4 + 4 + 8, "tensor infos")?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(|| format!("name of tensor #{i}"))?;
        if !names.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor {
                path: Default::default(),
                tensor: name,
            });
        }
        let n_dims = c.u32("tensor n_dims")?;
        if n_dims as usize > MAX_DIMS {
            return Err(FormatError::tensor(
                "",
                name,
                format!("{n_dims} dimensions, ggml allows at most {MAX_DIMS}"),
            ));
        }
        c.check_count(n_dims as u64, 8, "tensor dims")?;
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dim")?);
        }
        let type_id = c.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            FormatError::tensor("", &name, format!("unknown ggml type id {type_id}"))
        })?;
        let offset = c.u64("tensor offset")?;
        let size = tensor_size(&name, &dims, ggml_type)?;
        if offset % alignment != 0 {
            return Err(FormatError::tensor(
                "",
                name,
                format!("offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
            start: 0,
        });
    }

    let data_start = align_up(c.pos as u64, alignment)
        .ok_or_else(|| FormatError::header("", "data offset overflows".to_string()))?;
    let file_len = file_bytes.len() as u64;
    for t in &mut tensors {
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size));
        match end {
            Some(end) if end <= file_len => t.start = data_start + t.offset,
            _ => {
                return Err(FormatError::Truncated {
                    path: Default::default(),
                    what: format!(
                        "data of tensor `{}` (offset {}, {} bytes)",
                        t.name, t.offset, t.size
                    ),
                    needed: data_start.saturating_add(t.offset).saturating_add(t.size),
                    available: file_len,
                })
            }
        }
    }
    check_overlaps(&tensors)?;

    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// Bytes of a tensor from its dims and type, checking what ggml checks: `ne[0]` a whole
/// number of blocks and the element count within i64 (gguf.cpp, `INT64_MAX/ne[1] <= ne[0]`).
pub fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
    let mut numel: u64 = 1;
    for &d in dims {
        numel = numel
            .checked_mul(d)
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| {
                FormatError::tensor("", name, format!("element count of {dims:?} overflows"))
            })?;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ty.block_size() != 0 {
        return Err(FormatError::tensor(
            "",
            name,
            format!(
                "ne[0] = {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            ),
        ));
    }
    let rows = numel.checked_div(ne0).unwrap_or(0);
    ty.tensor_bytes(ne0, rows)
        .ok_or_else(|| FormatError::tensor("", name, format!("byte size of {dims:?} overflows")))
}

fn check_overlaps(tensors: &[GgufTensorInfo]) -> Result<()> {
    let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
    order.sort_by_key(|t| t.start);
    for w in order.windows(2) {
        // Ends were checked to fit in the file, so `start + size` cannot overflow.
        if w[0].start + w[0].size > w[1].start {
            return Err(FormatError::tensor(
                "",
                &w[1].name,
                format!(
                    "data at offset {} overlaps tensor `{}` (offset {}, {} bytes)",
                    w[1].offset, w[0].name, w[0].offset, w[0].size
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? / align * align)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn truncated(&self, what: String, needed: u64) -> FormatError {
        FormatError::Truncated {
            path: Default::default(),
            what,
            needed,
            available: self.remaining(),
        }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        self.take_with(n, || what.to_string())
    }

    /// `take` with a lazily built description: the vocab arrays hold ~10^5 values, and the
    /// message is only needed on error.
    fn take_with(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    /// Fails before allocation if `count` items of at least `min_size` bytes cannot fit.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            n => Err(self.truncated(format!("{count} {what}"), n.unwrap_or(u64::MAX))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.value_bytes(|| what.to_string())
    }

    fn value_bytes<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let s = self.take_with(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String> {
        let len = self.u64("string length").map_err(|e| retitle(e, what()))?;
        let bytes = self.take(len, "string").map_err(|e| retitle(e, what()))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| FormatError::header("", format!("{} is not valid UTF-8: {e}", what())))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<MetadataValue> {
        let ty = ValueType::from_id(type_id).ok_or_else(|| {
            FormatError::header("", format!("key `{key}`: unknown value type {type_id}"))
        })?;
        let what = || format!("value of `{key}`");
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(self.value_bytes::<1>(what)?[0]),
            ValueType::I8 => MetadataValue::I8(self.value_bytes::<1>(what)?[0] as i8),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.value_bytes(what)?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.value_bytes(what)?)),
            ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(self.value_bytes(what)?)),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.value_bytes(what)?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.value_bytes(what)?)),
            // Stored as int8; gguf.cpp does not reject values other than 0/1.
            ValueType::Bool => MetadataValue::Bool(self.value_bytes::<1>(what)?[0] != 0),
            ValueType::String => MetadataValue::String(self.string(what)?),
            ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(self.value_bytes(what)?)),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.value_bytes(what)?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.value_bytes(what)?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(FormatError::header(
                        "",
                        format!("key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem_id = self.u32("array element type")?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    FormatError::header(
                        "",
                        format!("key `{key}`: unknown array element type {elem_id}"),
                    )
                })?;
                let count = self.u64("array length")?;
                self.check_count(
                    count,
                    min_encoded_size(elem),
                    &format!("elements of `{key}`"),
                )?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_id, key, depth + 1)?);
                }
                MetadataValue::Array(elem, items)
            }
        })
    }
}

/// Fewest bytes one value of this type takes (an array: its element type and count).
fn min_encoded_size(ty: ValueType) -> u64 {
    match ty {
        ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
        ValueType::U16 | ValueType::I16 => 2,
        ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
        ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
        ValueType::Array => 12,
    }
}

fn retitle(e: FormatError, what: String) -> FormatError {
    match e {
        FormatError::Truncated {
            path,
            needed,
            available,
            ..
        } => FormatError::Truncated {
            path,
            what,
            needed,
            available,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-written byte vectors, independent of our writer.
    fn u32le(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }
    fn u64le(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }
    fn s(v: &str) -> Vec<u8> {
        [u64le(v.len() as u64), v.as_bytes().to_vec()].concat()
    }
    fn head(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        [
            b"GGUF".to_vec(),
            u32le(version),
            u64le(n_tensors),
            u64le(n_kv),
        ]
        .concat()
    }
    fn kv_u32(key: &str, v: u32) -> Vec<u8> {
        [s(key), u32le(4), u32le(v)].concat()
    }
    fn ti(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
        let mut b = [s(name), u32le(dims.len() as u32)].concat();
        for d in dims {
            b.extend(u64le(*d));
        }
        [b, u32le(ty), u64le(offset)].concat()
    }
    /// Header + tensor infos, padded to 32, then `data` zero bytes.
    fn file(mut b: Vec<u8>, data: usize) -> Vec<u8> {
        b.resize(b.len().div_ceil(32) * 32 + data, 0);
        b
    }

    fn good() -> Vec<u8> {
        file(
            [
                head(3, 2, 1),
                kv_u32("a.b", 7),
                ti("x", &[4, 2], 0, 0),
                ti("y", &[32], 8, 32),
            ]
            .concat(),
            32 + 34,
        )
    }

    #[test]
    fn parses_a_minimal_file() {
        let h = parse(&good()).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.get("a.b"), Some(&MetadataValue::U32(7)));
        assert_eq!(h.alignment, 32);
        assert_eq!(h.data_start % 32, 0);
        assert_eq!(h.tensors[0].shape(), vec![2, 4]);
        assert_eq!(h.tensors[0].size, 32);
        assert_eq!(h.tensors[1].ggml_type, GgmlType::Q8_0);
        assert_eq!(h.tensors[1].size, 34);
        assert_eq!(h.tensors[1].start, h.data_start + 32);
    }

    #[test]
    fn version_2_has_the_same_layout() {
        let mut b = good();
        b[4] = 2;
        assert_eq!(parse(&b).unwrap().version, 2);
    }

    #[test]
    fn bad_magic() {
        let mut b = good();
        b[0] = b'X';
        assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
    }

    #[test]
    fn bad_version() {
        for v in [1u32, 4, 0x0300_0000] {
            let mut b = good();
            b[4..8].copy_from_slice(&v.to_le_bytes());
            let e = parse(&b).unwrap_err();
            assert!(matches!(e, FormatError::InvalidHeader { .. }), "{e}");
            assert!(e.to_string().contains("version"));
        }
    }

    #[test]
    fn truncated_at_every_stage() {
        let b = good();
        let h = parse(&b).unwrap();
        // Inside magic, version, counts, the KV, the tensor infos and the data.
        for cut in [
            2,
            6,
            12,
            20,
            30,
            40,
            60,
            80,
            h.data_start as usize,
            b.len() - 1,
        ] {
            let e = parse(&b[..cut]).unwrap_err();
            assert!(
                matches!(e, FormatError::Truncated { .. }),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn string_length_past_the_end() {
        let b = [head(3, 0, 1), u64le(1000), b"abc".to_vec()].concat();
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        let b = head(3, 0, 1 << 60);
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
        let b = head(3, 1 << 60, 0);
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
        // An array of 2^60 strings in a ~60-byte file.
        let b = [head(3, 0, 1), s("k"), u32le(9), u32le(8), u64le(1 << 60)].concat();
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
        // u64::MAX elements: the multiplication itself overflows.
        let b = [head(3, 0, 1), s("k"), u32le(9), u32le(10), u64le(u64::MAX)].concat();
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn bad_alignment() {
        for (ty, val) in [(4u32, u32le(0)), (4, u32le(48)), (10, u64le(32))] {
            let b = file(
                [head(3, 0, 1), s("general.alignment"), u32le(ty), val].concat(),
                0,
            );
            assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
        }
        let b = file([head(3, 0, 1), kv_u32("general.alignment", 64)].concat(), 0);
        assert_eq!(parse(&b).unwrap().alignment, 64);
    }

    #[test]
    fn unknown_type_id_names_the_tensor() {
        let b = file([head(3, 1, 0), ti("w", &[4], 4, 0)].concat(), 32);
        let e = parse(&b).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "w"),
            "{e}"
        );
    }

    #[test]
    fn unknown_value_type() {
        let b = [head(3, 0, 1), s("k"), u32le(13), u32le(0)].concat();
        assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
    }

    #[test]
    fn unaligned_offset() {
        let b = file([head(3, 1, 0), ti("w", &[4], 0, 4)].concat(), 64);
        assert!(matches!(parse(&b), Err(FormatError::InvalidTensor { .. })));
    }

    #[test]
    fn overlapping_offsets() {
        let b = file(
            [head(3, 2, 0), ti("a", &[16], 0, 0), ti("b", &[4], 0, 32)].concat(),
            96,
        );
        let e = parse(&b).unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidTensor { tensor, .. } if tensor == "b"),
            "{e}"
        );
    }

    #[test]
    fn offset_out_of_range() {
        let b = file([head(3, 1, 0), ti("w", &[4], 0, 1 << 40)].concat(), 16);
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
        let b = file(
            [head(3, 1, 0), ti("w", &[4], 0, u64::MAX - 31)].concat(),
            16,
        );
        assert!(matches!(parse(&b), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn ne0_not_a_multiple_of_the_block() {
        let b = file([head(3, 1, 0), ti("q", &[16, 2], 12, 0)].concat(), 1024);
        assert!(matches!(parse(&b), Err(FormatError::InvalidTensor { .. })));
    }

    #[test]
    fn too_many_dims_or_elements() {
        let b = file(
            [head(3, 1, 0), ti("w", &[1, 1, 1, 1, 1], 0, 0)].concat(),
            32,
        );
        assert!(matches!(parse(&b), Err(FormatError::InvalidTensor { .. })));
        let b = file(
            [head(3, 1, 0), ti("w", &[1 << 32, 1 << 32], 0, 0)].concat(),
            32,
        );
        assert!(matches!(parse(&b), Err(FormatError::InvalidTensor { .. })));
    }

    #[test]
    fn duplicate_tensor_name() {
        let b = file(
            [head(3, 2, 0), ti("w", &[4], 0, 0), ti("w", &[4], 0, 32)].concat(),
            64,
        );
        assert!(
            matches!(parse(&b), Err(FormatError::DuplicateTensor { tensor, .. }) if tensor == "w")
        );
    }

    #[test]
    fn duplicate_key() {
        let b = [head(3, 0, 2), kv_u32("k", 1), kv_u32("k", 2)].concat();
        assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
    }

    #[test]
    fn invalid_utf8_names_the_key() {
        let b = [
            head(3, 0, 1),
            s("tok"),
            u32le(8),
            u64le(2),
            vec![0xff, 0xfe],
        ]
        .concat();
        let e = parse(&b).unwrap_err();
        assert!(matches!(e, FormatError::InvalidHeader { .. }));
        assert!(e.to_string().contains("`tok`"), "{e}");
        let b = [head(3, 0, 1), u64le(1), vec![0xff], u32le(0), vec![0]].concat();
        assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
    }

    #[test]
    fn nested_arrays_and_depth_limit() {
        // [[1u8, 2u8], []]
        let b = [
            head(3, 0, 1),
            s("n"),
            u32le(9),
            u32le(9),
            u64le(2),
            u32le(0),
            u64le(2),
            vec![1, 2],
            u32le(0),
            u64le(0),
        ]
        .concat();
        let h = parse(&file(b, 0)).unwrap();
        assert_eq!(
            h.get("n"),
            Some(&MetadataValue::Array(
                ValueType::Array,
                vec![
                    MetadataValue::Array(
                        ValueType::U8,
                        vec![MetadataValue::U8(1), MetadataValue::U8(2)]
                    ),
                    MetadataValue::Array(ValueType::U8, vec![]),
                ]
            ))
        );
        let mut b = [head(3, 0, 1), s("deep"), u32le(9)].concat();
        for _ in 0..100 {
            b.extend([u32le(9), u64le(1)].concat());
        }
        assert!(matches!(parse(&b), Err(FormatError::InvalidHeader { .. })));
    }
}
