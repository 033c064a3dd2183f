//! `--device cpu|cuda|auto`: where the executor runs GGML block quantization and the quantize
//! producers run FP8, INT8 and INT4 (the Hugging Face and TensorRT-LLM schemes).
//!
//! The CUDA twins (`kernels::cuda`) give the same bytes as the CPU kernels (integer codes and
//! fp16 scales bit-exact; see the README's CUDA section), so the device changes speed, never
//! the output. Types without a twin (Q2_K, Q3_K) and importance-weighted (imatrix) quantization
//! run on the CPU whatever the device.

use crate::error::{Error, Result};
use formats::gguf::GgmlType;
use kernels::cuda::{CudaError, Quantizer};
use std::cell::RefCell;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    /// A CUDA GPU; an error when none can be opened.
    Cuda,
    /// The GPU, when one can be opened, for the work measured faster there (the k-quant
    /// searches, [`Device::runs_on_gpu`]); everything else, and everything without a GPU, on
    /// the CPU.
    Auto,
}

impl Device {
    /// `Auto` stays `Auto` only when a GPU can be opened (else `Cpu`); `Cuda` is checked (our
    /// error, not cudarc's panic, when libcuda, NVRTC or a GPU is missing, or the build has no
    /// `cuda` feature).
    pub fn resolve(self) -> Result<Device> {
        match self {
            Device::Cpu => Ok(Device::Cpu),
            Device::Auto if kernels::cuda::cuda_available() => Ok(Device::Auto),
            Device::Auto => Ok(Device::Cpu),
            Device::Cuda => match Quantizer::new() {
                Ok(_) => Ok(Device::Cuda),
                Err(e) => Err(Error::Usage(format!("--device cuda: {e}"))),
            },
        }
    }

    /// Whether work of this kind goes to the GPU on a resolved device: always with `Cuda`;
    /// with `Auto` only compute-bound work. Measured on an H200 host (README, CUDA section):
    /// the k-quant search is 5.6× faster there than on 2 CPU threads, while for memory-bound
    /// quantization (q8_0 … q5_1, FP8, INT8, INT4 codes) each chunk's pageable host ↔ device
    /// copies cost more than the CPU's own pass.
    pub fn runs_on_gpu(self, compute_bound: bool) -> bool {
        match self {
            Device::Cuda => true,
            Device::Auto => compute_bound,
            Device::Cpu => false,
        }
    }
}

/// The GGML types whose quantization is compute-bound: the k-quant scale searches.
pub fn is_compute_bound(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K)
}

thread_local! {
    /// One quantizer (and CUDA stream) per worker thread, made on first use.
    static QUANTIZER: RefCell<Option<Quantizer>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's quantizer, made (and its CUDA context opened) on first use.
pub fn with_quantizer<T>(
    f: impl FnOnce(&Quantizer) -> Result<T, CudaError>,
) -> Result<T, CudaError> {
    QUANTIZER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Quantizer::new()?);
        }
        match slot.as_ref() {
            Some(q) => f(q),
            None => Err(CudaError::InvalidInput("no CUDA quantizer".into())),
        }
    })
}

/// Quantizes `src` (whole rows) into `dst` on the GPU when `ty` has a CUDA twin; `Ok(false)`
/// when it has none, so the caller runs the CPU kernel.
pub fn quantize_ggml_cuda(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<bool, CudaError> {
    type Twin = fn(&Quantizer, &[f32], &mut [u8]) -> Result<(), CudaError>;
    let twin: Twin = match ty {
        GgmlType::Q8_0 => Quantizer::q8_0,
        GgmlType::Q4_0 => Quantizer::q4_0,
        GgmlType::Q4_1 => Quantizer::q4_1,
        GgmlType::Q5_0 => Quantizer::q5_0,
        GgmlType::Q5_1 => Quantizer::q5_1,
        GgmlType::Q4K => Quantizer::q4_k,
        GgmlType::Q5K => Quantizer::q5_k,
        GgmlType::Q6K => Quantizer::q6_k,
        _ => return Ok(false),
    };
    with_quantizer(|q| twin(q, src, dst).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_sends_only_compute_bound_work_to_the_gpu() {
        assert!(Device::Cuda.runs_on_gpu(false) && Device::Cuda.runs_on_gpu(true));
        assert!(Device::Auto.runs_on_gpu(true) && !Device::Auto.runs_on_gpu(false));
        assert!(!Device::Cpu.runs_on_gpu(true));
        for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
            assert!(is_compute_bound(ty), "{ty:?}");
        }
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_1,
            GgmlType::F16,
        ] {
            assert!(!is_compute_bound(ty), "{ty:?}");
        }
    }
}
