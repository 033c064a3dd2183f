//! Rebuilding Hugging Face files from other formats.

pub mod hf_config;
