//! safetensors: a zero-copy mmap reader for single files and Hugging Face sharded folders, and a
//! writer that plans every offset from metadata before any data is written.
//!
//! Behaviour follows the official crate (`huggingface/safetensors`, `safetensors/src/tensor.rs`)
//! and huggingface_hub's shard splitting (`src/huggingface_hub/serialization/_base.py`).

pub mod header;
pub mod reader;
pub mod sharded;
pub mod writer;

pub use header::{Header, TensorInfo, MAX_HEADER_SIZE};
pub use reader::SafetensorsFile;
pub use sharded::{SafetensorsModel, INDEX_FILE_NAME};
pub use writer::{
    index_json, plan_file, plan_shards, write_file, FileLayout, PlannedTensor, ShardPlan,
    TensorSpec, DEFAULT_MAX_SHARD_SIZE,
};
