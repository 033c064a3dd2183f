//! Reference CPU forward pass of the Llama family, used by `eval` (perplexity, teacher–student
//! divergence) and later by calibration. f32 activations, weights decoded per layer from the mmap.

pub mod act_quant;
pub mod model;
pub mod ops;
pub mod source;
pub mod tokenizer;
pub mod trtllm_weights;
pub mod weights;

pub use model::{rope_inv_freq, ActivationObserver, ForwardOutput, Model, Tap};
pub use source::ModelSource;
