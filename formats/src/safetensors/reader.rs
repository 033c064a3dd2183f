//! One safetensors file, memory-mapped; tensor data is borrowed from the map, never copied.

use super::header::{self, Header, TensorInfo};
use crate::error::Result;
use crate::mmap::MappedFile;
use std::collections::HashMap;
use std::path::Path;

/// A validated safetensors file: its mapping and parsed header.
pub struct SafetensorsFile {
    map: MappedFile,
    header: Header,
    by_name: HashMap<String, usize>,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header and data layout.
    pub fn open(path: &Path) -> Result<Self> {
        let map = MappedFile::open(path)?;
        let header = header::parse(map.bytes()).map_err(|e| e.at(path))?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile {
            map,
            header,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        self.map.path()
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Tensors in offset order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.header.tensors[i])
    }

    /// The bytes of `info`, a zero-copy slice of the map. `info` must come from this file;
    /// offsets that do not fit it (a caller mixing up files) give an empty slice, not a panic.
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        let bytes = self.map.bytes();
        debug_assert!(
            info.end as usize <= bytes.len(),
            "TensorInfo from another file"
        );
        usize::try_from(info.start)
            .ok()
            .zip(usize::try_from(info.end).ok())
            .and_then(|(s, e)| bytes.get(s..e))
            .unwrap_or(&[])
    }

    pub fn mapped(&self) -> &MappedFile {
        &self.map
    }
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}
