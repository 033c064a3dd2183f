//! One GGUF file, memory-mapped: the parsed header plus zero-copy tensor data slices.

use std::path::Path;

use super::header::{self, GgufHeader, GgufTensorInfo};
use crate::error::Result;
use crate::mmap::MappedFile;

pub struct GgufFile {
    map: MappedFile,
    header: GgufHeader,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let map = MappedFile::open(path)?;
        let header = header::parse(map.bytes()).map_err(|e| e.at(path))?;
        Ok(GgufFile { map, header })
    }

    pub fn path(&self) -> &Path {
        self.map.path()
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The tensor's bytes, borrowed from the map. `t` must come from this file's header
    /// (the parser checked that its range lies inside the file); a foreign `t` whose range
    /// does not fit gets an empty slice rather than a panic.
    pub fn data(&self, t: &GgufTensorInfo) -> &[u8] {
        let bytes = self.map.bytes();
        usize::try_from(t.start)
            .ok()
            .zip(usize::try_from(t.size).ok())
            .and_then(|(s, n)| bytes.get(s..s.checked_add(n)?))
            .unwrap_or(&[])
    }

    pub fn mapped(&self) -> &MappedFile {
        &self.map
    }
}
