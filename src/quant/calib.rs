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

/// What calibration produced: statistics (fp8, int8_sq, the FP8 KV cache) and AWQ's search;
/// either may be absent.
#[derive(Default)]
pub struct Calibration {
    pub stats: Option<CalibrationStats>,
    pub awq: Option<AwqSearch>,
}

/// AWQ scales by module, and clip ratios by module (`--awq-clip`).
pub type AwqSearch = (BTreeMap<String, AwqChoice>, BTreeMap<String, Vec<f32>>);

/// What a quantization run needs calibrated.
pub struct Needs<'a> {
    /// Statistics, for the flag named here as messages name it (`--quant fp8`,
    /// `--kv-cache fp8`).
    pub stats: Option<String>,
    /// Linears AWQ searches scales for (empty: no AWQ).
    pub awq: &'a [String],
}

/// Runs the calibration `needs` asks for: an AWQ pass over `--calib-data` for its linears,
/// and statistics from `--calib-stats` or a statistics pass over `--calib-data`.
pub fn run(
    needs: &Needs,
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
    src: &CalibSource,
    group: usize,
) -> Result<Calibration> {
    if needs.stats.is_none() && needs.awq.is_empty() {
        return Ok(Calibration::default());
    }
    if src.stats.is_some() && src.data.is_some() {
        return Err(Error::Usage(
            "give either --calib-data or --calib-stats, not both".into(),
        ));
    }
    let mut out = Calibration::default();
    if !needs.awq.is_empty() {
        let name = QuantScheme::Int4Awq.name();
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
            needs.awq.to_vec(),
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
        out.awq = Some((
            std::mem::take(&mut obs.choices),
            std::mem::take(&mut obs.clips),
        ));
    }
    let Some(flag) = &needs.stats else {
        return Ok(out);
    };
    out.stats = Some(match (&src.stats, &src.data) {
        (Some(path), _) => calibrate::load_stats_for(path, cfg)?,
        (None, Some(data)) => {
            let model = Model::load(ckpt)?;
            let windows = windows(ckpt, &model, data, src)?;
            calibrate::collect_stats_of_windows(&model, &windows, src.batch, src.progress)?
        }
        (None, None) => return Err(Error::Usage(format!(
            "{flag} needs calibration: give --calib-data FILE (calibration text) or --calib-stats FILE (from `ckpt-opt calibrate`)"
        ))),
    });
    Ok(out)
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
