//! GGUF v3: a strict zero-copy reader, a writer that plans every offset from metadata, and
//! llama.cpp split sets. Our own code rather than the gguf-rs crate, which computes wrong sizes
//! for several block types and copies the file into memory.
pub mod header;
pub mod reader;
pub mod split;
pub mod types;
pub mod writer;

pub use header::{GgufHeader, GgufTensorInfo};
pub use reader::GgufFile;
pub use split::{
    parse_split_file_name, plan_split, split_file_name, GgufModel, SplitOptions,
    DEFAULT_MAX_TENSORS,
};
pub use types::{GgmlType, MetadataValue, ValueType};
pub use writer::{
    alignment_of, array_of, plan_file, write_file, write_layout, GgufLayout, GgufTensorSpec,
    PlannedGgufTensor,
};
