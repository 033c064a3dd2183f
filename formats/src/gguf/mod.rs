//! GGUF v3: reader, writer, and llama.cpp split sets. (Being written.)
pub mod types;
pub use types::{GgmlType, MetadataValue, ValueType};
