//! The one error type of the formats crate. Every variant names the file it concerns and,
//! where there is one, the tensor, so the binary can print a single useful line.
//!
//! Pure parsers (`safetensors::header::parse`, `gguf::header::parse`) have no path; they
//! return errors with an empty path that the file-level opener fills in with [`FormatError::at`].

use std::fmt;
use std::path::{Path, PathBuf};

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Shows a path, or `<bytes>` for errors from pure parsers that never saw one.
pub struct ShowPath<'a>(pub &'a Path);

impl fmt::Display for ShowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.as_os_str().is_empty() {
            f.write_str("<bytes>")
        } else {
            write!(f, "{}", self.0.display())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An operating-system error (open, read, write, rename, fsync; ENOSPC lands here).
    #[error("{}: {op}: {source}", ShowPath(path))]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file ends before something it declares (header, string, count, tensor data).
    #[error(
        "{}: truncated: {what} needs {needed} bytes but only {available} remain",
        ShowPath(path)
    )]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },
    /// The file-level header is malformed: bad magic or version, invalid UTF-8 or JSON,
    /// an alignment that is not a power of two, and so on.
    #[error("{}: invalid header: {reason}", ShowPath(path))]
    InvalidHeader { path: PathBuf, reason: String },
    /// One tensor's entry is wrong: unknown dtype, shape/size mismatch, offsets out of range
    /// or overlapping.
    #[error("{}: tensor `{tensor}`: {reason}", ShowPath(path))]
    InvalidTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// Two tensors share a name (within a file, or across the shards of one model).
    #[error("{}: tensor `{tensor}` appears more than once", ShowPath(path))]
    DuplicateTensor { path: PathBuf, tensor: String },
    /// A tensor that was asked for, or that an index promises, is not there.
    #[error("{}: tensor `{tensor}` not found{}", ShowPath(path), in_file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    MissingTensor {
        path: PathBuf,
        tensor: String,
        in_file: Option<PathBuf>,
    },
    /// The file is valid but asks for something this operation cannot do
    /// (for example a ggml block type that cannot be converted to a dense dtype).
    #[error("{}: {}{reason}", ShowPath(path), tensor.as_ref().map(|t| format!("tensor `{t}`: ")).unwrap_or_default())]
    Unsupported {
        path: PathBuf,
        tensor: Option<String>,
        reason: String,
    },
}

impl FormatError {
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub fn header(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        FormatError::InvalidHeader {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        FormatError::InvalidTensor {
            path: path.into(),
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    /// The path this error names (empty for errors from pure parsers).
    pub fn path(&self) -> &Path {
        match self {
            FormatError::Io { path, .. }
            | FormatError::Truncated { path, .. }
            | FormatError::InvalidHeader { path, .. }
            | FormatError::InvalidTensor { path, .. }
            | FormatError::DuplicateTensor { path, .. }
            | FormatError::MissingTensor { path, .. }
            | FormatError::Unsupported { path, .. } => path,
        }
    }

    /// Fills in the path of an error that came from a pure parser.
    pub fn at(mut self, file: &Path) -> Self {
        let slot = match &mut self {
            FormatError::Io { path, .. }
            | FormatError::Truncated { path, .. }
            | FormatError::InvalidHeader { path, .. }
            | FormatError::InvalidTensor { path, .. }
            | FormatError::DuplicateTensor { path, .. }
            | FormatError::MissingTensor { path, .. }
            | FormatError::Unsupported { path, .. } => path,
        };
        if slot.as_os_str().is_empty() {
            *slot = file.to_path_buf();
        }
        self
    }

    /// True when the underlying cause is a full disk (ENOSPC or a file-size limit).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, FormatError::Io { source, .. }
            if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EFBIG))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_tensor() {
        let e = FormatError::tensor("m.safetensors", "w", "bad").to_string();
        assert_eq!(e, "m.safetensors: tensor `w`: bad");
        let e = FormatError::header("", "bad magic").at(Path::new("x.gguf"));
        assert_eq!(e.to_string(), "x.gguf: invalid header: bad magic");
        let e = FormatError::header("", "bad magic");
        assert_eq!(e.to_string(), "<bytes>: invalid header: bad magic");
    }
}
