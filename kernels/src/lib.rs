//! Numeric kernels for ckpt-opt: pure functions over slices. Threading is the caller's job.
pub mod cpu;
pub mod cuda;
pub mod error;

pub use error::KernelError;
