//! The error type of the `kernels` crate.
//!
//! `thiserror` is not a dependency of this crate, so `Display` and `Error` are written by hand;
//! the messages follow the same one-line, lower-case style as the other crates' errors.

use formats::Dtype;
use std::fmt;

/// Why a kernel refused its input. Kernels never fail half-way: every check happens before any
/// output byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelError {
    /// There is no conversion between these dtypes (for example an integer to a float).
    Unsupported { from: Dtype, to: Dtype },
    /// The source and destination do not hold the same whole number of elements.
    LengthMismatch {
        src_bytes: usize,
        dst_bytes: usize,
        from: Dtype,
        to: Dtype,
    },
    /// A float-only kernel (`decode_f32`, `encode_f32`) was given a non-float dtype.
    NotFloat(Dtype),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Unsupported { from, to } => {
                write!(f, "unsupported dtype conversion {from} -> {to}")
            }
            KernelError::LengthMismatch {
                src_bytes,
                dst_bytes,
                from,
                to,
            } => write!(
                f,
                "length mismatch converting {from} -> {to}: {src_bytes} source bytes \
                 ({from} is {} bytes per element) do not match {dst_bytes} destination bytes \
                 ({to} is {} bytes per element)",
                from.size(),
                to.size()
            ),
            KernelError::NotFloat(d) => write!(f, "dtype {d} is not a floating-point type"),
        }
    }
}

impl std::error::Error for KernelError {}
