//! The before/after quality report of `quantize` (the comparison NeMo's quantizer prints):
//! per tensor, the relative error `‖W − Ŵ‖ / ‖W‖` and SQNR `10·log10(‖W‖² / ‖W − Ŵ‖²)` dB of
//! the effective dequantized weight (`Ŵ = dequant(codes) · diag(pre_quant_scale)`, the weight
//! the model actually applies, against the input's weight); for the model, with `--eval-data`,
//! perplexity of the input (teacher) and of the output, and KL(teacher ‖ output) and top-1
//! agreement, from `eval` on the same windows.

use super::awq::AwqChoice;
use super::scheme::QuantScheme;
use crate::eval::EvalReport;
use std::path::PathBuf;

#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorQuality {
    pub name: String,
    pub shape: Vec<u64>,
    pub scheme: &'static str,
    pub rel_error: f64,
    pub sqnr_db: f64,
}

impl TensorQuality {
    pub fn new(
        name: String,
        shape: Vec<u64>,
        scheme: QuantScheme,
        (signal, noise): (f64, f64),
    ) -> Self {
        let rel_error = if signal > 0.0 {
            (noise / signal).sqrt()
        } else {
            0.0
        };
        let sqnr_db = if noise > 0.0 {
            10.0 * (signal / noise).log10()
        } else {
            f64::INFINITY
        };
        TensorQuality {
            name,
            shape,
            scheme: scheme.name(),
            rel_error,
            sqnr_db,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelQuality {
    pub data: PathBuf,
    pub ctx: usize,
    pub windows: usize,
    pub teacher_perplexity: f64,
    pub perplexity: f64,
    pub kl: f64,
    pub top1_agreement: f64,
}

impl ModelQuality {
    pub fn from_reports(teacher: &EvalReport, student: &EvalReport) -> Self {
        let t = student.teacher.as_ref();
        ModelQuality {
            data: student.data.clone(),
            ctx: student.ctx,
            windows: student.windows,
            teacher_perplexity: teacher.perplexity,
            perplexity: student.perplexity,
            kl: t.map_or(f64::NAN, |t| t.kl),
            top1_agreement: t.map_or(f64::NAN, |t| t.top1_agreement),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QuantizeReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub scheme: &'static str,
    pub quant_algo: &'static str,
    pub group_size: Option<usize>,
    pub quantized_tensors: usize,
    pub excluded_modules: Vec<String>,
    pub calibration_seconds: f64,
    pub quantization_seconds: f64,
    pub bytes_written: u64,
    pub tensors: Vec<TensorQuality>,
    /// Mean of `rel_error` over the quantized tensors.
    pub mean_rel_error: f64,
    pub min_sqnr_db: f64,
    pub awq: Vec<AwqChoice>,
    pub model: Option<ModelQuality>,
}

/// The human table.
pub fn render(r: &QuantizeReport) -> String {
    let mut s = format!(
        "quantized {} -> {} with {} ({}): {} tensors, {} written in {:.2}s (calibration {:.2}s)\n",
        r.input.display(),
        r.output.display(),
        r.scheme,
        r.quant_algo,
        r.quantized_tensors,
        crate::inspect::human_bytes(r.bytes_written),
        r.quantization_seconds,
        r.calibration_seconds
    );
    s.push_str(&format!(
        "{:<48} {:>9} {:>12} {:>10}\n",
        "tensor", "scheme", "rel_error", "sqnr_db"
    ));
    for t in &r.tensors {
        s.push_str(&format!(
            "{:<48} {:>9} {:>12.4e} {:>10.2}\n",
            t.name, t.scheme, t.rel_error, t.sqnr_db
        ));
    }
    s.push_str(&format!(
        "mean rel_error {:.4e}, min sqnr {:.2} dB\n",
        r.mean_rel_error, r.min_sqnr_db
    ));
    if let Some(m) = &r.model {
        s.push_str(&format!(
            "perplexity {:.4} (teacher {:.4}), kl {:.6e}, top1_agreement {:.4} on {} windows of {}\n",
            m.perplexity, m.teacher_perplexity, m.kl, m.top1_agreement, m.windows, m.ctx
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_and_relative_error() {
        let t = TensorQuality::new("w".into(), vec![2], QuantScheme::Fp8, (100.0, 1.0));
        assert!((t.rel_error - 0.1).abs() < 1e-12);
        assert!((t.sqnr_db - 20.0).abs() < 1e-12);
        assert!(
            TensorQuality::new("z".into(), vec![1], QuantScheme::Fp8, (1.0, 0.0))
                .sqnr_db
                .is_infinite()
        );
    }
}
