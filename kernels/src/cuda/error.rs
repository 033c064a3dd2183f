//! Errors of the CUDA twins: one line each, lower case, like [`crate::KernelError`].

use std::fmt;

/// Why a CUDA kernel could not run. Nothing is written to the caller's output slices unless the
/// whole operation succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// No usable device: the driver or NVRTC library is missing, there is no GPU, or the build
    /// has no `cuda` feature.
    NoDevice(String),
    /// NVRTC rejected the embedded sources (a bug, or an NVRTC too old for the device).
    Compile(String),
    /// A driver call (allocation, copy, launch) failed.
    Driver(String),
    /// The caller's slices do not fit the operation (lengths, group size).
    InvalidInput(String),
    /// The input holds a NaN or an infinity; no output was written.
    NonFinite,
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NoDevice(why) => write!(f, "no CUDA device: {why}"),
            CudaError::Compile(why) => write!(f, "CUDA kernels failed to compile: {why}"),
            CudaError::Driver(why) => write!(f, "CUDA driver error: {why}"),
            CudaError::InvalidInput(why) => write!(f, "invalid input for CUDA kernel: {why}"),
            CudaError::NonFinite => write!(f, "input holds NaN or Inf values"),
        }
    }
}

impl std::error::Error for CudaError {}

#[cfg(feature = "cuda")]
impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}
