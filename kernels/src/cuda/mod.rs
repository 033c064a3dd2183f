//! CUDA twins of the CPU kernels, compiled at run time by NVRTC through `cudarc`.
//!
//! - [`Quantizer`]: the entry point. `Quantizer::new()?.q4_0(&rows, &mut blocks)?` takes host
//!   slices (rows of f32 in; blocks, or codes and scales, out), copies them to the device, runs the
//!   twin kernel and copies the result back; the executor calls it per chunk. Each `Quantizer` has
//!   its own stream, so several rayon workers can each hold one.
//! - [`cuda_available`]: whether a device can be opened; never panics.
//! - Sources: `kernels/cuda/*.cu`, embedded with `include_str!` and compiled once per process
//!   (`module.rs`) with FMA contraction and flush-to-zero off, so results are bit-identical to
//!   the CPU kernels (see `common.cuh`).
//!
//! Without the `cuda` feature the same API exists, and `Quantizer::new()` returns
//! [`CudaError::NoDevice`], so callers need no `cfg` of their own.

mod error;
pub use error::CudaError;

/// Default elements per group of the int4 group-wise quantizer (modelopt `INT4_AWQ_CFG`).
pub const INT4_GROUP_SIZE: usize = 128;

#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod module;
#[cfg(feature = "cuda")]
mod quantizer;
#[cfg(feature = "cuda")]
pub use quantizer::{DeviceRows, Op, Quantizer};

#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub use stub::{DeviceRows, Op, Quantizer};

/// True when a CUDA device can be opened and the kernels compile: `Quantizer::new()` would
/// succeed. Never panics (missing libcuda/libnvrtc or no device gives `false`).
pub fn cuda_available() -> bool {
    Quantizer::new().is_ok()
}
