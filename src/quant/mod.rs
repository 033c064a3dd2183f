//! Quantization schemes.
pub mod gguf;
