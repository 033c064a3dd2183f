//! Output layouts (GGUF, TensorRT-LLM): configs and metadata.

pub mod gguf_meta;
