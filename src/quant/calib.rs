//! The calibration phase of `quantize`: statistics from `--calib-stats FILE` (written by
//! `calibrate`) or computed from `--calib-data FILE`, and for AWQ activation samples, which
//! only a forward pass over the text can give.

use super::awq::{AwqChoice, AwqObserver};
use super::scheme::QuantScheme;
use crate::calibrate::{self, CalibrationStats};
use crate::checkpoint::Checkpoint;
use crate::data::{self, Sampling, TextSource};
use crate::error::{Error, Result};
use crate::forward::{tokenizer, Model};
use crate::model::ModelConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where calibration comes from.
#[derive(Debug, Clone, Default)]
pub struct CalibSource {
    pub data: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    pub sampling: Option<Sampling>,
    /// Windows per forward batch (statistics only; AWQ runs all windows as one batch).
    pub batch: usize,
    pub progress: bool,
    /// AWQ: also search clip ratios.
    pub awq_clip: bool,
    /// AWQ: fold `1/s` into the previous op (sites that cannot be folded keep `s = 1`).
    pub awq_fold: bool,
}

/// AWQ keeps at most this many input rows per site and layer for its loss.
pub const AWQ_MAX_SAMPLE_ROWS: usize = 2048;

pub const DEFAULT_SAMPLING: Sampling = Sampling {
    samples: 32,
    seq_len: 128,
    seed: 0,
};

/// What calibration produced.
pub enum Calibration {
    None,
    Stats(CalibrationStats),
    /// AWQ scales by module, and clip ratios by module (with `--awq-clip`).
    Awq(BTreeMap<String, AwqChoice>, BTreeMap<String, Vec<f32>>),
}

/// Runs the calibration `scheme` needs (none for int8_wo / int4_rtn).
pub fn run(
    scheme: QuantScheme,
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
    src: &CalibSource,
    selected: &[String],
    group: usize,
) -> Result<Calibration> {
    if !scheme.needs_calibration() {
        return Ok(Calibration::None);
    }
    let name = scheme.name();
    if src.stats.is_some() && src.data.is_some() {
        return Err(Error::Usage(
            "give either --calib-data or --calib-stats, not both".into(),
        ));
    }
    if scheme == QuantScheme::Int4Awq {
        let Some(data) = &src.data else {
            return Err(Error::Usage(if src.stats.is_some() {
                format!("--quant {name} needs activation samples, not only statistics: give --calib-data FILE (calibration text)")
            } else {
                format!(
                    "--quant {name} needs calibration: give --calib-data FILE (calibration text)"
                )
            }));
        };
        let model = Model::load(ckpt)?;
        let windows = windows(ckpt, &model, data, src)?;
        let tokens: usize = windows.iter().map(Vec::len).sum();
        let stride = tokens.div_ceil(AWQ_MAX_SAMPLE_ROWS).max(1);
        let mut obs = AwqObserver::new(
            ckpt,
            cfg.clone(),
            selected.to_vec(),
            group,
            stride,
            src.awq_clip,
            src.awq_fold,
        )?;
        let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
        model.observe_batch(&refs, &mut obs)?;
        if let Some(e) = obs.error.take() {
            return Err(e);
        }
        return Ok(Calibration::Awq(
            std::mem::take(&mut obs.choices),
            std::mem::take(&mut obs.clips),
        ));
    }
    match (&src.stats, &src.data) {
        (Some(path), _) => Ok(Calibration::Stats(calibrate::load_stats_for(path, cfg)?)),
        (None, Some(data)) => {
            let model = Model::load(ckpt)?;
            let windows = windows(ckpt, &model, data, src)?;
            Ok(Calibration::Stats(calibrate::collect_stats_of_windows(
                &model,
                &windows,
                src.batch,
                src.progress,
            )?))
        }
        (None, None) => Err(Error::Usage(format!(
            "--quant {name} needs calibration: give --calib-data FILE (calibration text) or --calib-stats FILE (from `ckpt-opt calibrate`)"
        ))),
    }
}

/// Calibration windows sampled from `data` with the model's tokenizer.
fn windows(
    ckpt: &Checkpoint,
    model: &Model,
    data: &std::path::Path,
    src: &CalibSource,
) -> Result<Vec<Vec<u32>>> {
    let (tok, tok_path) = crate::eval::load_checked_tokenizer(ckpt, model)?;
    let text = TextSource::open(data)?.joined();
    let ids = tokenizer::encode(&tok, &text, &tok_path)?;
    data::sample_windows(&ids, &src.sampling.unwrap_or(DEFAULT_SAMPLING), data)
}
