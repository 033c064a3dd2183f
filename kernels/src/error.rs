//! The error type of the `kernels` crate.
//!
//! `thiserror` is not a dependency of this crate, so `Display` and `Error` are written by hand;
//! the messages follow the same one-line, lower-case style as the other crates' errors.

use formats::gguf::GgmlType;
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
    /// No GGML block kernel for this type.
    UnsupportedGgml(GgmlType),
    /// The element count is not a whole number of blocks.
    PartialBlock {
        ty: GgmlType,
        elements: usize,
        block: usize,
    },
    /// The block bytes do not match the element count.
    BlockBytes {
        ty: GgmlType,
        expected: usize,
        actual: usize,
    },
    /// A NaN or infinite value at this index of the input.
    NotFinite { index: usize },
    /// Importance weights must cover a row whose length is a whole number of blocks and divides
    /// the input.
    ImportanceLength { row: usize, elements: usize },
    /// Importance weights must be finite and non-negative.
    ImportanceNotFinite,
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
            KernelError::UnsupportedGgml(t) => write!(f, "no {t} block kernel"),
            KernelError::PartialBlock {
                ty,
                elements,
                block,
            } => write!(
                f,
                "{elements} values are not a whole number of {ty} blocks of {block}"
            ),
            KernelError::BlockBytes {
                ty,
                expected,
                actual,
            } => write!(
                f,
                "{actual} bytes of {ty} blocks where {expected} were expected"
            ),
            KernelError::NotFinite { index } => {
                write!(f, "value {index} is NaN or infinite")
            }
            KernelError::ImportanceLength { row, elements } => write!(
                f,
                "importance weights of {row} columns do not fit rows of {elements} values \
                 (whole blocks per row, whole rows)"
            ),
            KernelError::ImportanceNotFinite => {
                write!(f, "importance weights must be finite and non-negative")
            }
        }
    }
}

impl std::error::Error for KernelError {}
