//! Depth metrics: which layers to drop when only a target layer count is given.
//!
//! - `bi`: ShortGPT block influence from the statistics file (`block_influence`, modelopt's
//!   layer score, FORMATS.md 4.2); the lowest-BI layers are dropped.
//! - `ppl`: Minitron's second depth metric (Muralidharan et al., arXiv 2407.14679, section
//!   on depth pruning): the perplexity of the model with that one layer removed, on the
//!   calibration windows; the layers whose removal hurts least (lowest perplexity) are dropped.

use crate::checkpoint::Checkpoint;
use crate::data::{self, Sampling, TextSource};
use crate::error::Result;
use crate::forward::{ops, tokenizer, Model};
use std::path::Path;

/// Perplexity of the model on the sampled calibration windows with each single layer removed
/// (index = layer), and with none removed. Every window scores all its tokens after the first,
/// as `eval` does.
pub fn perplexity_without_each_layer(
    ckpt: &Checkpoint,
    data_path: &Path,
    sampling: &Sampling,
    batch: usize,
) -> Result<(Vec<f64>, f64)> {
    let mut model = Model::load(ckpt)?;
    let (tok, tok_path) = crate::eval::load_checked_tokenizer(ckpt, &model)?;
    let text = TextSource::open(data_path)?.joined();
    let ids = tokenizer::encode(&tok, &text, &tok_path)?;
    let windows = data::sample_windows(&ids, sampling, data_path)?;
    let layers = model.config().num_hidden_layers as usize;
    let full = perplexity(&model, &windows, batch)?;
    let mut out = Vec::with_capacity(layers);
    for l in 0..layers {
        model.skip_layers(&[l]);
        out.push(perplexity(&model, &windows, batch)?);
    }
    model.skip_layers(&[]);
    Ok((out, full))
}

fn perplexity(model: &Model, windows: &[Vec<u32>], batch: usize) -> Result<f64> {
    let vocab = model.vocab_size();
    let (mut nll, mut scored) = (0.0f64, 0u64);
    for chunk in windows.chunks(batch.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let outs = model.forward_batch(&refs, false)?;
        for (w, o) in chunk.iter().zip(&outs) {
            for (pos, &next) in w.iter().enumerate().skip(1) {
                let row = &o.logits[(pos - 1) * vocab..pos * vocab];
                nll += ops::log_sum_exp(row) - f64::from(row[next as usize]);
                scored += 1;
            }
        }
    }
    Ok((nll / scored.max(1) as f64).exp())
}

/// The `drop` layers with the lowest scores (ties to the later layer, which sits closer to
/// the output where ShortGPT finds redundancy), ascending.
pub fn lowest(scores: &[f64], drop: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::INFINITY
        } else {
            scores[i]
        }
    };
    order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(b.cmp(&a)));
    order.truncate(drop);
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_scores_are_dropped() {
        assert_eq!(lowest(&[0.5, 0.1, 0.3, 0.2], 2), vec![1, 3]);
        assert_eq!(lowest(&[0.1, 0.1, 0.9], 1), vec![1]);
        assert_eq!(lowest(&[f64::NAN, 0.4], 1), vec![1]);
    }
}
