//! Outputs that never look valid until they are complete.
//!
//! [`AtomicFile`] writes to a hidden temp name in the target folder, preallocates the planned
//! size (so a full disk is usually reported before any data is written), accepts positioned
//! writes from many threads, and is fsynced and renamed into place by [`AtomicFile::commit`].
//! Dropping it uncommitted (an error, a panic unwinding, Ctrl-C handled by the caller)
//! removes the temp file.

use crate::error::{FormatError, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// The hidden temp path used for `target`: same folder, so the final rename is atomic.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.ckpt-opt-tmp-{}", std::process::id()))
}

impl AtomicFile {
    /// Creates the temp file for `target` with room for `size` bytes.
    pub fn create(target: &Path, size: u64) -> Result<Self> {
        let temp = temp_path_for(target);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| FormatError::io(target, "create", e))?;
        let out = AtomicFile {
            file,
            temp,
            target: target.to_path_buf(),
            committed: false,
        };
        out.reserve(size)?;
        Ok(out)
    }

    fn reserve(&self, size: u64) -> Result<()> {
        if size == 0 {
            return Ok(());
        }
        let len = i64::try_from(size).map_err(|_| {
            FormatError::io(
                &self.target,
                "allocate",
                std::io::Error::from_raw_os_error(libc::EFBIG),
            )
        })?;
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) };
        match rc {
            0 => Ok(()),
            // Filesystems without fallocate (tmpfs on old kernels, some FUSE): fall back to a sparse file.
            libc::EOPNOTSUPP | libc::EINVAL => self
                .file
                .set_len(size)
                .map_err(|e| FormatError::io(&self.target, "allocate", e)),
            err => Err(FormatError::io(
                &self.target,
                "allocate",
                std::io::Error::from_raw_os_error(err),
            )),
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes `bytes` at `offset`. Safe to call from several threads for disjoint ranges.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| FormatError::io(&self.target, "write", e))
    }

    /// Copies `len` bytes of `src` (at `src_offset`) to `offset` inside the kernel
    /// (`copy_file_range`: one copy, no pass through user space — what `cp` does), falling back
    /// to positioned reads and writes where the kernel or filesystem cannot. Safe to call from
    /// several threads for disjoint ranges: both offsets are explicit, no file position moves.
    pub fn copy_from(
        &self,
        offset: u64,
        src: &File,
        src_path: &Path,
        src_offset: u64,
        len: u64,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let (mut done, mut kernel) = (0u64, true);
        while done < len && kernel {
            let mut off_in = (src_offset + done) as libc::loff_t;
            let mut off_out = (offset + done) as libc::loff_t;
            let want = (len - done).min(1 << 30) as usize;
            // SAFETY: both fds are open for the duration of the call and the offsets are
            // passed by pointer, so neither file's position is used or changed.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    self.file.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n > 0 {
                done += n as u64;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match (n, err.raw_os_error()) {
                (0, _) => {
                    return Err(FormatError::io(
                        src_path,
                        "read",
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("file ends before byte {}", src_offset + len),
                        ),
                    ))
                }
                (_, Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                    kernel = false
                }
                (_, Some(libc::EINTR)) => {}
                _ => return Err(FormatError::io(&self.target, "copy", err)),
            }
        }
        let mut buf = vec![0u8; (len - done).min(8 << 20) as usize];
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_exact_at(&mut buf[..n], src_offset + done)
                .map_err(|e| FormatError::io(src_path, "read", e))?;
            self.write_at(offset + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Sets the final length (for outputs whose size was not known when created).
    pub fn set_len(&self, size: u64) -> Result<()> {
        self.file
            .set_len(size)
            .map_err(|e| FormatError::io(&self.target, "truncate", e))
    }

    /// Flushes the data to disk (so that several outputs can be flushed in parallel before
    /// their commits, whose own flush then finds nothing left to write).
    /// Asks the kernel to start writing `len` bytes at `offset` back to disk now, without
    /// waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so writeback overlaps the rest of the
    /// job instead of all of it waiting in the final `fsync`. Advisory: errors are ignored (the
    /// final `fsync` reports any real failure).
    pub fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on an fd we own; no memory is passed.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| FormatError::io(&self.target, "fsync", e))
    }

    /// Flushes the data to disk and renames the file into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.file
            .sync_all()
            .map_err(|e| FormatError::io(&self.target, "fsync", e))?;
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| FormatError::io(&self.target, "rename", e))?;
        self.committed = true;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir);
        }
        Ok(self.target.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes a small file (JSON config, index) atomically in one call.
pub fn write_file_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let out = AtomicFile::create(target, bytes.len() as u64)?;
    out.write_at(0, bytes)?;
    out.commit()?;
    Ok(())
}

/// A folder that is built under a hidden temp name beside its target and renamed into place
/// as a whole, so a folder output (HF shards + index + config) is never seen half-written.
pub struct StagedDir {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts staging `target`, which must not exist yet (callers decide about `--force`).
    pub fn create(target: &Path) -> Result<Self> {
        if target.exists() {
            return Err(FormatError::io(
                target,
                "create output folder",
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        let temp = temp_path_for(target);
        if temp.exists() {
            let _ = std::fs::remove_dir_all(&temp);
        }
        std::fs::create_dir_all(&temp)
            .map_err(|e| FormatError::io(target, "create output folder", e))?;
        Ok(StagedDir {
            temp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Where files are written while staging.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn commit(mut self) -> Result<PathBuf> {
        sync_dir(&self.temp);
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| FormatError::io(&self.target, "rename", e))?;
        self.committed = true;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir);
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let f = AtomicFile::create(&target, 16).unwrap();
            f.write_at(0, b"hello").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn committed_file_has_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let f = AtomicFile::create(&target, 10).unwrap();
        f.write_at(5, b"world").unwrap();
        f.write_at(0, b"hello").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"helloworld");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn staged_dir_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model");
        {
            let staged = StagedDir::create(&target).unwrap();
            write_file_atomic(&staged.path().join("a.json"), b"{}").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let staged = StagedDir::create(&target).unwrap();
        write_file_atomic(&staged.path().join("a.json"), b"{}").unwrap();
        staged.commit().unwrap();
        assert_eq!(std::fs::read(target.join("a.json")).unwrap(), b"{}");
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    #[test]
    fn copy_from_places_a_range_of_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let out = AtomicFile::create(&dir.path().join("out.bin"), 50_000).unwrap();
        out.copy_from(10, &src, &src_path, 1_000, 40_000).unwrap();
        out.copy_from(40_010, &src, &src_path, 0, 9_990).unwrap();
        let path = out.commit().unwrap();
        let got = std::fs::read(path).unwrap();
        assert!(got[10..40_010] == data[1_000..41_000]);
        assert!(got[40_010..50_000] == data[..9_990]);
        // A range past the source's end is an error naming the source.
        let short = AtomicFile::create(&dir.path().join("short.bin"), 5_000).unwrap();
        let err = short
            .copy_from(0, &src, &src_path, 99_000, 5_000)
            .unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");
        assert!(err.to_string().contains("src.bin"), "{err}");
    }
}
