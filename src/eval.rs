//! `eval`: perplexity of a model on a text file and, with a teacher, how far the model's
//! next-token distributions are from the teacher's.
//!
//! Protocol: the file (plain text or JSONL, read by [`crate::data::TextSource`]) is tokenized as one stream with the model's tokenizer, no BOS or other
//! special tokens added; the stream is cut into non-overlapping windows of `ctx` tokens (a last
//! partial window is dropped); each window is run on its own, and every token after the first is
//! scored against the logits at the position before it. `nll` is the mean negative
//! log-likelihood (nats) over scored tokens and `perplexity = exp(nll)`. With a teacher, the same
//! windows and positions give the mean KL(teacher ‖ student) of the temperature-softmaxed
//! distributions, top-1 agreement, and the mean cosine similarity of the residual stream after
//! each layer (when both have as many layers).

use crate::checkpoint::Checkpoint;
use crate::data::{self, TextSource};
use crate::error::{Error, Result};
use crate::forward::{ops, tokenizer, ForwardOutput, Model, ModelSource};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Tokens per window (at least 2).
    pub ctx: usize,
    /// Softmax temperature for the teacher comparison (> 0).
    pub temperature: f64,
    /// Evaluate only the first N windows.
    pub max_windows: Option<usize>,
    /// Windows run together per pass over the weights.
    pub batch: usize,
    pub progress: bool,
    /// Quantize each FP8 / INT8 linear's input with its static activation scale, as the
    /// deployment does ([`crate::forward::act_quant`]); f32 inputs otherwise.
    pub act_quant: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            ctx: 128,
            temperature: 1.0,
            max_windows: None,
            batch: 8,
            progress: false,
            act_quant: false,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub data: PathBuf,
    pub ctx: usize,
    pub windows: usize,
    pub tokens_scored: u64,
    /// Mean negative log-likelihood per scored token, in nats.
    pub nll: f64,
    pub perplexity: f64,
    pub seconds: f64,
    /// Tokens run through the model (windows × ctx, teacher included) per second.
    pub tokens_per_second: f64,
    /// Whether quantized linears' inputs were quantized as deployed (`--act-quant`).
    pub act_quant: bool,
    pub teacher: Option<TeacherReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TeacherReport {
    pub teacher: PathBuf,
    pub temperature: f64,
    /// Mean KL(teacher ‖ student) per scored position, in nats.
    pub kl: f64,
    /// Fraction of scored positions where both put their maximum on the same token.
    pub top1_agreement: f64,
    /// Mean cosine similarity of hidden states after each layer; `None` when layer counts differ.
    pub layer_cosine: Option<Vec<f64>>,
}

/// Sums over scored positions, merged across windows.
#[derive(Default, Clone)]
struct Totals {
    nll: f64,
    scored: u64,
    kl: f64,
    agree: u64,
    cos: Vec<f64>,
    cos_n: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.nll += o.nll;
        self.scored += o.scored;
        self.kl += o.kl;
        self.agree += o.agree;
        if self.cos.len() < o.cos.len() {
            self.cos.resize(o.cos.len(), 0.0);
        }
        self.cos.iter_mut().zip(&o.cos).for_each(|(a, b)| *a += b);
        self.cos_n += o.cos_n;
    }
}

/// Runs the protocol in the module docs. Threads come from the current rayon pool.
pub fn eval(
    model_path: &Path,
    data: &Path,
    teacher_path: Option<&Path>,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    if opts.ctx < 2 {
        return Err(Error::Usage(format!(
            "--ctx must be at least 2, got {}",
            opts.ctx
        )));
    }
    if !(opts.temperature.is_finite() && opts.temperature > 0.0) {
        return Err(Error::Usage(format!(
            "--temperature must be positive, got {}",
            opts.temperature
        )));
    }
    let source = ModelSource::open(model_path)?;
    let mut model = source.model()?;
    model.simulate_activation_quant(opts.act_quant);
    let (tok, tok_path) = source.tokenizer(&model)?;
    let teacher_source = teacher_path.map(ModelSource::open).transpose()?;
    let mut teacher = teacher_source.as_ref().map(|t| t.model()).transpose()?;
    if let Some(t) = teacher.as_mut() {
        t.simulate_activation_quant(opts.act_quant);
    }
    if let (Some(t), Some(p)) = (&teacher, teacher_path) {
        if t.vocab_size() != model.vocab_size() {
            return Err(Error::config(
                p,
                format!(
                    "teacher vocab_size {} differs from the model's {}",
                    t.vocab_size(),
                    model.vocab_size()
                ),
            ));
        }
    }

    let text = TextSource::open(data)?.joined();
    let ids = tokenizer::encode(&tok, &text, &tok_path)?;
    if ids.len() < opts.ctx {
        return Err(Error::data(
            data,
            format!(
                "{} tokens, fewer than one window of --ctx {}",
                ids.len(),
                opts.ctx
            ),
        ));
    }
    let windows = data::eval_windows(&ids, opts.ctx, data)?;
    let mut windows: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
    if let Some(n) = opts.max_windows {
        windows.truncate(n.max(1));
    }

    let start = Instant::now();
    let bar = progress_bar(opts.progress, windows.len() as u64);
    let mut totals = Totals::default();
    let keep_hidden = teacher
        .as_ref()
        .is_some_and(|t| t.config().num_hidden_layers == model.config().num_hidden_layers);
    for batch in windows.chunks(opts.batch.max(1)) {
        let student = model.forward_batch(batch, keep_hidden)?;
        let teacher_out = match &teacher {
            Some(t) => Some(t.forward_batch(batch, keep_hidden)?),
            None => None,
        };
        let vocab = model.vocab_size();
        let part = batch
            .par_iter()
            .enumerate()
            .map(|(i, w)| {
                score_window(
                    w,
                    &student[i],
                    teacher_out.as_ref().map(|t| &t[i]),
                    vocab,
                    opts.temperature,
                )
            })
            .reduce(Totals::default, |mut a, b| {
                a.add(&b);
                a
            });
        totals.add(&part);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();

    let seconds = start.elapsed().as_secs_f64();
    let scored = totals.scored.max(1) as f64;
    let nll = totals.nll / scored;
    let passes = if teacher.is_some() { 2 } else { 1 };
    let tokens_run = (windows.len() * opts.ctx * passes) as f64;
    Ok(EvalReport {
        model: model_path.to_path_buf(),
        data: data.to_path_buf(),
        act_quant: opts.act_quant,
        ctx: opts.ctx,
        windows: windows.len(),
        tokens_scored: totals.scored,
        nll,
        perplexity: nll.exp(),
        seconds,
        tokens_per_second: tokens_run / seconds.max(1e-9),
        teacher: teacher_path.map(|p| TeacherReport {
            teacher: p.to_path_buf(),
            temperature: opts.temperature,
            kl: totals.kl / scored,
            top1_agreement: totals.agree as f64 / scored,
            layer_cosine: keep_hidden.then(|| {
                totals
                    .cos
                    .iter()
                    .map(|c| c / totals.cos_n.max(1) as f64)
                    .collect()
            }),
        }),
    })
}

/// The model's tokenizer (its `tokenizer.json`, or rebuilt from the GGUF metadata) and the path
/// that names it in errors; an error if it has more tokens than the model's `vocab_size`.
pub(crate) fn load_checked_tokenizer(
    ckpt: &Checkpoint,
    model: &Model,
) -> Result<(tokenizers::Tokenizer, PathBuf)> {
    let tok = tokenizer::load_tokenizer(ckpt)?;
    let tok_path = match ckpt {
        Checkpoint::Safetensors(_) => ckpt.root().join("tokenizer.json"),
        Checkpoint::Gguf(_) => ckpt.display_path(),
    };
    check_tokenizer_vocab(&tok, &tok_path, model)?;
    Ok((tok, tok_path))
}

/// An error if the tokenizer at `tok_path` has more tokens than the model's `vocab_size`.
pub(crate) fn check_tokenizer_vocab(
    tok: &tokenizers::Tokenizer,
    tok_path: &Path,
    model: &Model,
) -> Result<()> {
    let tok_vocab = tok.get_vocab_size(true);
    if tok_vocab > model.vocab_size() {
        return Err(Error::tokenizer(
            tok_path,
            format!(
                "{tok_vocab} tokens, more than the model's vocab_size {}",
                model.vocab_size()
            ),
        ));
    }
    Ok(())
}

/// Scores one window: NLL of tokens 1.., and with a teacher KL, top-1 and per-layer cosine.
fn score_window(
    tokens: &[u32],
    s: &ForwardOutput,
    t: Option<&ForwardOutput>,
    vocab: usize,
    temp: f64,
) -> Totals {
    let mut tot = Totals::default();
    for (pos, &next) in tokens.iter().enumerate().skip(1) {
        let row = &s.logits[(pos - 1) * vocab..pos * vocab];
        tot.nll += ops::log_sum_exp(row) - f64::from(row[next as usize]);
        tot.scored += 1;
        if let Some(t) = t {
            let trow = &t.logits[(pos - 1) * vocab..pos * vocab];
            tot.kl += kl_divergence(trow, row, temp);
            tot.agree += u64::from(argmax(trow) == argmax(row));
        }
    }
    if let Some(t) = t {
        if !s.hidden.is_empty() && s.hidden.len() == t.hidden.len() {
            let d = s.hidden[0].len() / tokens.len().max(1);
            tot.cos = s
                .hidden
                .iter()
                .zip(&t.hidden)
                .map(|(a, b)| {
                    a.chunks_exact(d)
                        .zip(b.chunks_exact(d))
                        .map(|(x, y)| cosine(x, y))
                        .sum()
                })
                .collect();
            tot.cos_n = tokens.len() as u64;
        }
    }
    tot
}

/// KL(p ‖ q) of `softmax(p_logits / T)` and `softmax(q_logits / T)`, in f64.
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32], temp: f64) -> f64 {
    let scaled = |x: &[f32]| -> Vec<f64> { x.iter().map(|&v| f64::from(v) / temp).collect() };
    let (p, q) = (scaled(p_logits), scaled(q_logits));
    let lse = |x: &[f64]| {
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(&p), lse(&q));
    let kl: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| {
            let logp = a - lp;
            logp.exp() * (logp - (b - lq))
        })
        .sum();
    // Rounding can leave a tiny negative for identical inputs; KL is never negative.
    kl.max(0.0)
}

fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return if aa == bb { 1.0 } else { 0.0 };
    }
    ab / (aa.sqrt() * bb.sqrt())
}

pub(crate) fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} windows eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        let a = [1.0f32, 2.0, -3.0, 0.5];
        assert!(kl_divergence(&a, &a, 1.0) <= 1e-12);
        let b = [1.0f32, 2.5, -3.0, 0.0];
        let k1 = kl_divergence(&a, &b, 1.0);
        assert!(k1 > 0.0);
        // Higher temperature flattens both distributions and shrinks the divergence.
        assert!(kl_divergence(&a, &b, 4.0) < k1);
        // Shifting logits by a constant changes nothing.
        let c: Vec<f32> = a.iter().map(|v| v + 10.0).collect();
        assert!(kl_divergence(&a, &c, 1.0) < 1e-10);
    }

    #[test]
    fn cosine_and_argmax() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
        assert_eq!(argmax(&[0.0, 3.0, 1.0]), 1);
    }
}
