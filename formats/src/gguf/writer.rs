//! GGUF writer: the whole layout (header bytes, every tensor's absolute offset, file size) is
//! planned from metadata alone; callers then write tensor data at the planned offsets.
//!
//! Byte layout follows gguf-py `GGUFWriter` (`write_header_to_file`, `write_kv_data_to_file`,
//! `write_ti_data_to_file`, `write_tensors_to_file`): KVs in the given order, tensor infos with
//! dims in ggml order, zero padding to the alignment, and each tensor advancing by its size
//! padded to the alignment (the last one padded too).

use std::collections::HashSet;
use std::path::Path;

use super::header::{
    align_up, tensor_size, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
};
use super::types::{GgmlType, MetadataValue, ValueType};
use crate::atomic::AtomicFile;
use crate::error::{FormatError, Result};

/// A tensor to be written: name, dims in ggml order (ne[0] first) and type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GgufTensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl GgufTensorSpec {
    pub fn new(name: impl Into<String>, dims: Vec<u64>, ggml_type: GgmlType) -> Self {
        GgufTensorSpec {
            name: name.into(),
            dims,
            ggml_type,
        }
    }

    /// Bytes of this tensor's data, checked as the parser checks it.
    pub fn byte_size(&self) -> Result<u64> {
        if self.dims.len() > MAX_DIMS {
            return Err(FormatError::tensor(
                "",
                &self.name,
                format!(
                    "{} dimensions, ggml allows at most {MAX_DIMS}",
                    self.dims.len()
                ),
            ));
        }
        tensor_size(&self.name, &self.dims, self.ggml_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedGgufTensor {
    pub spec: GgufTensorSpec,
    /// Absolute offset in the output file.
    pub start: u64,
    /// Bytes of data (without padding).
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufLayout {
    /// Exact bytes from offset 0 up to the data blob, padding included.
    pub header: Vec<u8>,
    pub tensors: Vec<PlannedGgufTensor>,
    /// File size, including the padding after the last tensor (as gguf-py writes it).
    pub total_size: u64,
}

impl GgufLayout {
    pub fn data_start(&self) -> u64 {
        self.header.len() as u64
    }
}

/// Alignment a file with this metadata uses: `general.alignment` (a non-zero power-of-two u32)
/// or 32.
pub fn alignment_of(metadata: &[(String, MetadataValue)]) -> Result<u64> {
    match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, MetadataValue::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
        Some((_, v)) => Err(FormatError::header(
            "",
            format!("`{ALIGNMENT_KEY}` must be a non-zero power of two u32, got {v:?}"),
        )),
    }
}

/// Plans one GGUF file.
pub fn plan_file(
    metadata: &[(String, MetadataValue)],
    tensors: Vec<GgufTensorSpec>,
) -> Result<GgufLayout> {
    let alignment = alignment_of(metadata)?;
    let mut keys = HashSet::new();
    for (k, _) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(FormatError::header(
                "",
                format!("duplicate metadata key `{k}`"),
            ));
        }
    }
    let mut names = HashSet::new();
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in &tensors {
        if !names.insert(t.name.as_str()) {
            return Err(FormatError::DuplicateTensor {
                path: Default::default(),
                tensor: t.name.clone(),
            });
        }
        sizes.push(t.byte_size()?);
    }

    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut header, k);
        header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(&mut header, k, v, 0)?;
    }
    let overflow = || FormatError::header("", "planned file size overflows u64".to_string());
    let mut offset = 0u64;
    let mut rel = Vec::with_capacity(tensors.len());
    for (t, &size) in tensors.iter().zip(&sizes) {
        put_string(&mut header, &t.name);
        header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ggml_type.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        rel.push(offset);
        offset = align_up(size, alignment)
            .and_then(|p| offset.checked_add(p))
            .ok_or_else(overflow)?;
    }
    let data_start = align_up(header.len() as u64, alignment).ok_or_else(overflow)?;
    header.resize(data_start as usize, 0);
    let total_size = data_start.checked_add(offset).ok_or_else(overflow)?;
    let tensors = tensors
        .into_iter()
        .zip(rel.into_iter().zip(sizes))
        .map(|(spec, (off, len))| PlannedGgufTensor {
            spec,
            start: data_start + off,
            len,
        })
        .collect();
    Ok(GgufLayout {
        header,
        tensors,
        total_size,
    })
}

/// Writes a whole file atomically from in-memory data (tests, small files). Each data slice
/// must have exactly the planned size.
pub fn write_file(
    path: &Path,
    metadata: &[(String, MetadataValue)],
    tensors: &[(GgufTensorSpec, &[u8])],
) -> Result<()> {
    let layout = plan_file(metadata, tensors.iter().map(|(s, _)| s.clone()).collect())
        .map_err(|e| e.at(path))?;
    write_layout(path, &layout, |i| tensors[i].1)
}

/// Writes a planned layout; `data(i)` gives the bytes of `layout.tensors[i]`.
pub fn write_layout<'a>(
    path: &Path,
    layout: &GgufLayout,
    data: impl Fn(usize) -> &'a [u8],
) -> Result<()> {
    let out = AtomicFile::create(path, layout.total_size)?;
    out.write_at(0, &layout.header)?;
    for (i, t) in layout.tensors.iter().enumerate() {
        let bytes = data(i);
        if bytes.len() as u64 != t.len {
            return Err(FormatError::tensor(
                path,
                &t.spec.name,
                format!("got {} bytes of data, planned {}", bytes.len(), t.len),
            ));
        }
        // Padding needs no write: the preallocated file reads back as zeros.
        out.write_at(t.start, bytes)?;
    }
    out.commit()?;
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes a value without its type id (gguf-py `_pack_val(add_vtype=False)`); array elements
/// are likewise untagged, and a nested array is its element type, count and elements.
fn put_value(out: &mut Vec<u8>, key: &str, v: &MetadataValue, depth: usize) -> Result<()> {
    match v {
        MetadataValue::U8(x) => out.push(*x),
        MetadataValue::I8(x) => out.push(*x as u8),
        MetadataValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => out.push(*x as u8),
        MetadataValue::String(s) => put_string(out, s),
        MetadataValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Array(elem, items) => {
            // Keep what we write readable by our own parser.
            if depth >= MAX_ARRAY_DEPTH {
                return Err(FormatError::header(
                    "",
                    format!("key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                ));
            }
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *elem {
                    return Err(FormatError::header(
                        "",
                        format!(
                            "key `{key}`: array of {elem:?} holds a {:?}",
                            item.value_type()
                        ),
                    ));
                }
                put_value(out, key, item, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The element type for an array built from values (U8 when empty).
pub fn array_of(items: Vec<MetadataValue>) -> MetadataValue {
    let elem = items
        .first()
        .map(|v| v.value_type())
        .unwrap_or(ValueType::U8);
    MetadataValue::Array(elem, items)
}
