//! CPU kernels.
//!
//! - [`cast`]: dtype conversions between the dense float types (F64, F32, F16, BF16, F8E4M3,
//!   F8E5M2), both typed (`&[f32]` -> `&mut [u16]`, ...) and over raw little-endian bytes.
//! - [`ggml`]: GGML block quantization (Q8_0, Q4_0..Q5_1, Q2_K..Q6_K), llama.cpp-compatible.
//! - [`f8`]: the FP8 (OCP E4M3FN / E5M2) element codecs used by [`cast`].
//! - [`fp8_quant`], [`int8`], [`int4`]: weight quantizers (per-tensor FP8, per-channel INT8,
//!   group-wise INT4 with modelopt's nibble packing), each with its dequantizer; [`scale`]
//!   holds their shared scale floor; [`awq_gemm`] writes INT4 in AutoAWQ's GEMM layout.
pub mod awq_gemm;
pub mod cast;
pub mod f8;
pub mod fp8_quant;
pub mod ggml;
pub mod int4;
pub mod int8;
pub mod scale;
