//! ckpt-opt: streaming transforms of sharded, memory-mapped LLM checkpoints.
//!
//! Every job is planned from metadata ([`plan::Plan`]) and then streamed by the executor
//! ([`plan::execute`]) from memory-mapped inputs to outputs that appear only when complete.

pub mod calibrate;
pub mod checkpoint;
pub mod cli;
pub mod convert;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod forward;
pub mod import;
pub mod inspect;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod prune;
pub mod quant;
pub mod shard;
pub mod verify;

pub use error::{Error, Result};
