//! The one error type of the ckpt-opt crate. Variants name the file (and tensor) they concern;
//! the binary prints the chain on one line and maps it to an exit code with [`Error::exit_code`].

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a checkpoint file failed (see `formats::FormatError`).
    #[error(transparent)]
    Format(#[from] formats::FormatError),
    /// `config.json` (or the GGUF metadata standing in for it) is missing, unreadable or
    /// inconsistent with itself or with the tensors.
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// The model's architecture is not one we know.
    #[error("{}: unsupported architecture `{architecture}` (supported: {supported})", path.display())]
    UnknownArchitecture {
        path: PathBuf,
        architecture: String,
        supported: String,
    },
    /// A tensor is missing, has the wrong shape or dtype for its role, or cannot be converted.
    #[error("{}: tensor `{tensor}`: {reason}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// `tokenizer.json` / `tokenizer_config.json` or a GGUF vocabulary cannot be used.
    #[error("{}: tokenizer: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    /// Calibration / evaluation text cannot be used: unreadable, empty, not UTF-8, a bad JSONL
    /// line, or too short for the windows asked for (see [`crate::data`]).
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    /// `verify` found problems (already printed, one per line). Exit code 1.
    #[error("verify: {0} problem(s)")]
    Verify(usize),
    /// The request itself is wrong (bad option combination, output exists). Exit code 2.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            path: path.into(),
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub fn tokenizer(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Tokenizer {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// 2 for usage errors, 1 for everything else (ripgrep's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}
