//! Reading model knowledge back out of export formats.

pub mod hf_config;
pub mod tokenizer;
