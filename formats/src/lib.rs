//! File formats for ckpt-opt: safetensors (single file and the Hugging Face sharded layout),
//! GGUF v3 (single file and llama.cpp split sets) and the element types they store.
//!
//! This crate knows nothing about models. Readers borrow memory maps and copy nothing;
//! writers plan every offset from metadata first and then stream data into a temp file
//! that is renamed into place only when complete ([`atomic::AtomicFile`]).

pub mod atomic;
pub mod dtype;
pub mod error;
pub mod gguf;
pub mod mmap;
pub mod safetensors;

pub use dtype::Dtype;
pub use error::{FormatError, Result};
