//! The CUDA API when the `cuda` feature is off: same names and signatures, and
//! `Quantizer::new()` always fails with [`CudaError::NoDevice`], so a `Quantizer` never exists.

use super::CudaError;
use std::convert::Infallible;

/// See the `cuda`-feature version; here for API parity only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    F16,
    Bf16,
    F8E4M3,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
    Fp8PerTensor,
    Int8PerChannel { cols: usize },
    Int4Groupwise { cols: usize, group: usize },
}

/// Device-resident input; cannot exist without the `cuda` feature.
pub struct DeviceRows {
    never: Infallible,
}

impl DeviceRows {
    pub fn len(&self) -> usize {
        match self.never {}
    }

    pub fn is_empty(&self) -> bool {
        match self.never {}
    }
}

/// Cannot be constructed without the `cuda` feature.
pub struct Quantizer {
    never: Infallible,
}

impl Quantizer {
    pub fn new() -> Result<Self, CudaError> {
        Err(CudaError::NoDevice(
            "ckpt-opt was built without the `cuda` feature".into(),
        ))
    }

    pub fn device_name(&self) -> &str {
        match self.never {}
    }

    pub fn f32_to_f16(&self, _: &[f32], _: &mut [u16]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn f32_to_bf16(&self, _: &[f32], _: &mut [u16]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn f32_to_f8e4m3(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q8_0(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q4_0(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q4_1(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q5_0(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q5_1(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q4_k(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q5_k(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn q6_k(&self, _: &[f32], _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn amax(&self, _: &[f32]) -> Result<f32, CudaError> {
        match self.never {}
    }

    pub fn fp8_e4m3(&self, _: &[f32], _: f32, _: &mut [u8]) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn fp8_e4m3_per_tensor(&self, _: &[f32], _: &mut [u8]) -> Result<f32, CudaError> {
        match self.never {}
    }

    pub fn int8_per_channel(
        &self,
        _: &[f32],
        _: usize,
        _: &mut [i8],
        _: &mut [f32],
    ) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn int4_groupwise(
        &self,
        _: &[f32],
        _: usize,
        _: usize,
        _: &mut [i8],
        _: &mut [f32],
    ) -> Result<(), CudaError> {
        match self.never {}
    }

    pub fn upload(&self, _: &[f32]) -> Result<DeviceRows, CudaError> {
        match self.never {}
    }

    pub fn run_resident(&self, _: Op, _: &DeviceRows) -> Result<(), CudaError> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_reports_the_missing_feature() {
        let err = Quantizer::new()
            .err()
            .expect("no Quantizer without the feature");
        assert!(err.to_string().starts_with("no CUDA device: "), "{err}");
        assert!(!crate::cuda::cuda_available());
    }
}
