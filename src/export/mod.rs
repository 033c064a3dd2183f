//! Writing model knowledge into export formats.

pub mod gguf_meta;
pub mod sentencepiece;
pub mod tokenizer;
