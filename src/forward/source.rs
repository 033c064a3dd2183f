//! What the forward pass reads weights from: one checkpoint (Hugging Face folder or file, GGUF)
//! through [`WeightIndex`], or a TensorRT-LLM rank set through [`TrtllmWeights`]; and
//! [`ModelSource`], the opened model of either kind with its tokenizer.

use super::act_quant::LinearActs;
use super::tokenizer::{self, Tokenizer};
use super::trtllm_weights::{self, TrtllmWeights};
use super::weights::{LayerWeights, WeightIndex};
use super::Model;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use std::path::{Path, PathBuf};

/// The weights of a loaded [`Model`], by Hugging Face name.
pub enum Weights<'a> {
    Checkpoint(Box<WeightIndex<'a>>),
    Trtllm(&'a TrtllmWeights),
}

impl Weights<'_> {
    pub fn config(&self) -> &ModelConfig {
        match self {
            Weights::Checkpoint(w) => w.config(),
            Weights::Trtllm(w) => w.config(),
        }
    }

    pub fn decode(&self, name: &str) -> Result<Vec<f32>> {
        match self {
            Weights::Checkpoint(w) => w.decode(name),
            Weights::Trtllm(w) => w.decode(name),
        }
    }

    pub fn decode_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        match self {
            Weights::Checkpoint(w) => w.decode_rows(name, rows),
            Weights::Trtllm(w) => w.decode_rows(name, rows),
        }
    }

    /// Layer `l`'s weights; with `act_quant`, also how each linear's input is quantized at
    /// run time ([`super::act_quant`]).
    pub fn layer(&self, l: u64, act_quant: bool) -> Result<LayerWeights> {
        let mut w = match self {
            Weights::Checkpoint(w) => w.layer(l)?,
            Weights::Trtllm(w) => LayerWeights::gather(l, |n| w.decode(n), |n| w.has(n))?,
        };
        if act_quant {
            w.acts = LinearActs::gather(l, |m| match self {
                Weights::Checkpoint(w) => w.act_quant(m),
                Weights::Trtllm(w) => w.act_quant(m),
            })?;
        }
        Ok(w)
    }

    pub fn prefetch_layer(&self, l: u64) {
        match self {
            Weights::Checkpoint(w) => w.prefetch_layer(l),
            Weights::Trtllm(w) => w.prefetch_layer(l),
        }
    }

    /// Name of the output projection: `lm_head.weight`, or the embedding when tied.
    pub fn lm_head_name(&self) -> &'static str {
        match self {
            Weights::Checkpoint(w) => w.lm_head_name(),
            Weights::Trtllm(w) if w.has("lm_head.weight") => "lm_head.weight",
            Weights::Trtllm(_) => "model.embed_tokens.weight",
        }
    }
}

/// A model opened for `eval`: a checkpoint, or a TensorRT-LLM checkpoint folder (detected by
/// the `mapping` of its `config.json`).
pub enum ModelSource {
    Checkpoint(Checkpoint),
    Trtllm(Box<TrtllmWeights>),
}

impl ModelSource {
    pub fn open(path: &Path) -> Result<Self> {
        if trtllm_weights::is_trtllm(path)? {
            Ok(ModelSource::Trtllm(Box::new(TrtllmWeights::open(path)?)))
        } else {
            Ok(ModelSource::Checkpoint(Checkpoint::open(path)?))
        }
    }

    pub fn model(&self) -> Result<Model<'_>> {
        match self {
            ModelSource::Checkpoint(c) => Model::load(c),
            ModelSource::Trtllm(w) => Model::from_trtllm(w),
        }
    }

    /// The tokenizer that belongs to the model, and the path that names it in errors, checked
    /// against the model's vocabulary.
    pub fn tokenizer(&self, model: &Model) -> Result<(Tokenizer, PathBuf)> {
        match self {
            ModelSource::Checkpoint(c) => crate::eval::load_checked_tokenizer(c, model),
            ModelSource::Trtllm(w) => {
                let path = w.root().join("tokenizer.json");
                if !path.is_file() {
                    return Err(Error::tokenizer(
                        &path,
                        "no tokenizer.json in the TensorRT-LLM checkpoint folder (`convert --format trtllm` copies it; copy the model's tokenizer.json there)",
                    ));
                }
                let tok = tokenizer::load_tokenizer_json(&path)?;
                crate::eval::check_tokenizer_vocab(&tok, &path, model)?;
                Ok((tok, path))
            }
        }
    }
}
