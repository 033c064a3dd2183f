//! Read-only memory maps with error context, and the page release that keeps resident
//! memory bounded while a job streams through a file much larger than RAM.

use crate::error::{FormatError, Result};
use memmap2::{Mmap, UncheckedAdvice};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A read-only mapping of a whole file, remembering its path for error messages.
pub struct MappedFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| FormatError::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| FormatError::io(path, "stat", e))?
            .len();
        // mmap of a zero-length file fails on Linux; an empty file is simply empty bytes.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only. Like every mmap reader (safetensors, llama.cpp), we
            // rely on the file not being truncated by another process while we read it.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, "mmap", e))?)
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Tells the kernel we are done with `range` of the file: its pages leave this process's
    /// resident set (they stay in the page cache and fault back in if read again). Partial
    /// pages at the edges are kept, since a neighbour may still be using them.
    pub fn release(&self, start: u64, len: u64) {
        let Some(map) = &self.map else { return };
        let page = page_size();
        let first = start.div_ceil(page);
        let end = (start.saturating_add(len)).min(map.len() as u64) / page;
        if end <= first {
            return;
        }
        let (offset, length) = ((first * page) as usize, ((end - first) * page) as usize);
        // SAFETY: DONTNEED on a private read-only file mapping drops our page-table entries;
        // later reads fault the same file bytes back in, so no live slice can observe a change.
        unsafe {
            let _ = map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, length);
        }
    }

    /// Asks the kernel to read `range` ahead (sequential streaming).
    pub fn will_need(&self, start: u64, len: u64) {
        let Some(map) = &self.map else { return };
        let page = page_size();
        let first = start / page * page;
        let end = start.saturating_add(len).min(map.len() as u64);
        if end <= first {
            return;
        }
        let _ = map.advise_range(
            memmap2::Advice::WillNeed,
            first as usize,
            (end - first) as usize,
        );
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}
