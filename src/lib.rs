//! ckpt-opt: streaming transforms of sharded, memory-mapped LLM checkpoints.

pub mod error;
pub mod export;
pub mod import;

pub use error::{Error, Result};
