//! ckpt-opt: streaming transforms of sharded, memory-mapped LLM checkpoints.

pub mod error;

pub use error::{Error, Result};
