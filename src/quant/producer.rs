//! [`TensorProducer`]s that quantize one linear weight in row chunks, straight from the input
//! mmap: decode rows to f32, multiply the columns by the smoothing / AWQ scale, quantize with
//! the kernels of `kernels::cpu::{fp8_quant, int8, int4}`. The codes and their scales are two
//! output tensors made by two producers over the same rows (the scales are recomputed, which
//! costs one more read of rows that are in the page cache, and keeps every chunk independent).

use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::TensorProducer;
use formats::Dtype;
use kernels::cpu::{fp8_quant, int4, int8};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Which output tensor of a quantized linear a producer makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Part {
    /// E4M3 codes `[out, in]` with the per-tensor scale.
    Fp8Codes { scale: f32 },
    /// INT8 codes `[out, in]`.
    Int8Codes,
    /// INT8 per-row scales `[out]` f32.
    Int8Scales,
    /// INT4 codes packed in pairs of rows `[out / 2, in]` u8.
    Int4Packed { group: usize },
    /// INT4 group scales `[out, in / group]` f32.
    Int4Scales { group: usize },
}

/// Σ w² and Σ (w − ŵ)² of a tensor, per chunk (keyed by first row and first column, summed in
/// that order so the report does not depend on thread timing; a chunk made twice, as the whole
/// rows of a row-parallel split are on every rank, counts once).
#[derive(Debug, Default)]
pub struct ErrorSums(Mutex<BTreeMap<(u64, u64), (f64, f64)>>);

impl ErrorSums {
    pub(crate) fn add(&self, first_row: u64, first_col: u64, signal: f64, noise: f64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert((first_row, first_col), (signal, noise));
    }

    /// (Σ w², Σ (w − ŵ)²).
    pub fn totals(&self) -> (f64, f64) {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.values().fold((0.0, 0.0), |(s, n), (a, b)| (s + a, n + b))
    }
}

pub struct QuantProducer {
    pub ckpt: Arc<Checkpoint>,
    pub src: SourceTensor,
    pub dtype: Dtype,
    pub part: Part,
    /// Column multiplier `s` (SmoothQuant / AWQ); the effective weight is `ŵ / s`.
    pub col_scale: Option<Arc<Vec<f32>>>,
    /// Output-row divisor (a folded AWQ scale); the effective weight is `ŵ · d_row`.
    pub row_divisor: Option<Arc<Vec<f32>>>,
    /// INT4 clip ratios `[out, in / group]` (AWQ clip search); `None`: ratio 1.
    pub clip: Option<Arc<Vec<f32>>>,
    /// Where the codes producer adds its error sums (`None` for scale producers).
    pub errors: Option<Arc<ErrorSums>>,
    /// `Cuda`: FP8, INT8 and unclipped INT4 codes come from the CUDA twins (same bytes as the
    /// CPU kernels); scales, clipped INT4 and error sums stay on the CPU.
    pub device: crate::plan::Device,
}

impl std::fmt::Debug for QuantProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantProducer")
            .field("src", &self.src.name)
            .field("part", &self.part)
            .finish()
    }
}

impl QuantProducer {
    fn out_rows(&self) -> u64 {
        self.src.shape[0]
    }

    fn cols(&self) -> u64 {
        self.src.shape[1]
    }

    fn path(&self) -> PathBuf {
        self.ckpt.file_paths()[self.src.file].clone()
    }

    /// Source rows `first .. first + n` decoded to f32 and column-scaled; NaN or ±Inf is an
    /// error naming the tensor and row.
    fn source_rows(&self, first: u64, n: u64) -> Result<Vec<f32>> {
        let cols = self.cols() as usize;
        let row_bytes = cols * self.dtype.size();
        let (from, len) = (first as usize * row_bytes, n as usize * row_bytes);
        let bytes = &self.ckpt.bytes(&self.src)[from..from + len];
        let mut w = vec![0.0f32; n as usize * cols];
        kernels::cpu::cast::decode_f32(bytes, self.dtype, &mut w)
            .map_err(|e| Error::tensor(self.path(), &self.src.name, e.to_string()))?;
        self.ckpt
            .mapped(self.src.file)
            .release(self.src.start + from as u64, len as u64);
        if let Some(i) = kernels::cpu::scale::first_non_finite(&w) {
            return Err(Error::tensor(
                self.path(),
                &self.src.name,
                format!(
                    "{} at row {}, column {}: cannot quantize",
                    w[i],
                    first + (i / cols) as u64,
                    i % cols
                ),
            ));
        }
        if let Some(s) = &self.col_scale {
            for row in w.chunks_exact_mut(cols) {
                row.iter_mut().zip(s.iter()).for_each(|(v, s)| *v *= s);
            }
        }
        if let Some(d) = &self.row_divisor {
            for (row, d) in w.chunks_exact_mut(cols).zip(&d[first as usize..]) {
                row.iter_mut().for_each(|v| *v /= d);
            }
        }
        Ok(w)
    }

    /// Runs a CUDA twin on this thread's quantizer; its error names the tensor.
    fn on_gpu(
        &self,
        twin: impl FnOnce(
            &kernels::cuda::Quantizer,
        ) -> std::result::Result<(), kernels::cuda::CudaError>,
    ) -> Result<()> {
        crate::plan::with_quantizer(twin)
            .map_err(|e| Error::tensor(self.path(), &self.src.name, format!("--device cuda: {e}")))
    }

    fn gpu(&self) -> bool {
        // FP8, INT8 and INT4 codes are memory-bound: `auto` keeps them on the CPU.
        self.device.runs_on_gpu(false)
    }

    /// INT4 codes and scales of source rows starting at `first` (clipped when there are
    /// clip ratios).
    fn quantize_int4(
        &self,
        first: u64,
        w: &[f32],
        group: usize,
        codes: &mut [i8],
        scales: &mut [f32],
    ) -> Result<()> {
        let cols = self.cols() as usize;
        match &self.clip {
            None if self.gpu() => {
                self.on_gpu(|q| q.int4_groupwise(w, cols, group, codes, scales))?
            }
            Some(clip) => {
                let per_row = cols / group;
                let from = first as usize * per_row;
                let ratios = &clip[from..from + scales.len()];
                int4::quantize_int4_group_rows_clipped(w, cols, group, ratios, codes, scales);
            }
            None => int4::quantize_int4_group_rows(w, cols, group, codes, scales),
        }
        Ok(())
    }

    /// Adds Σ w² and Σ (w − ŵ)² of effective weights (`/ s`) to the error sums (f32 within
    /// a row, f64 across rows).
    fn record(&self, first: u64, scaled: &[f32], deq: &[f32]) {
        let Some(errors) = &self.errors else {
            return;
        };
        let cols = self.cols() as usize;
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (r, (w, q)) in scaled
            .chunks_exact(cols)
            .zip(deq.chunks_exact(cols))
            .enumerate()
        {
            let (mut a2, mut d2) = (0.0f32, 0.0f32);
            match &self.col_scale {
                None => {
                    for (&a, &b) in w.iter().zip(q) {
                        a2 += a * a;
                        d2 += (a - b) * (a - b);
                    }
                }
                Some(s) => {
                    for ((&a, &b), &s) in w.iter().zip(q).zip(s.iter()) {
                        let (a, b) = (a / s, b / s);
                        a2 += a * a;
                        d2 += (a - b) * (a - b);
                    }
                }
            }
            // Rows divided by a folded scale count at their original size.
            let d = self
                .row_divisor
                .as_ref()
                .map_or(1.0, |d| f64::from(d[first as usize + r]));
            signal += f64::from(a2) * d * d;
            noise += f64::from(d2) * d * d;
        }
        errors.add(first, 0, signal, noise);
    }
}

impl QuantProducer {
    /// Makes columns `col .. col + dst.len() / rows` of rows `first .. first + rows` when this
    /// part is elementwise (FP8 codes without a column scale), so a row-parallel rank quantizes
    /// only its own columns; false when the part needs whole rows.
    pub fn produce_columns(&self, first: u64, rows: u64, col: u64, dst: &mut [u8]) -> Result<bool> {
        match self.part {
            Part::Fp8Codes { scale } if self.col_scale.is_none() => {
                self.fp8_window(scale, first, rows, col, dst)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// FP8 codes straight from the input bytes (decoded a block at a time), with their error
    /// sums from the same pass. The plan-time amax pass ([`super::fp8_weight_scales`]) has
    /// already refused non-finite weights.
    fn fp8_window(
        &self,
        scale: f32,
        first: u64,
        rows: u64,
        col: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        let cols = self.cols() as usize;
        let es = self.dtype.size();
        let width = dst.len() / rows.max(1) as usize;
        let row_bytes = cols * es;
        let from = first as usize * row_bytes;
        let len = rows as usize * row_bytes;
        let bytes = &self.ckpt.bytes(&self.src)[from..from + len];
        let fail =
            |e: kernels::KernelError| Error::tensor(self.path(), &self.src.name, e.to_string());
        let mut sum = fp8_quant::ErrorSum::default();
        if width == cols {
            sum = fp8_quant::quantize_fp8_encoded(bytes, self.dtype, scale, dst).map_err(fail)?;
        } else {
            let c = col as usize * es;
            for (src, out) in bytes
                .chunks_exact(row_bytes)
                .zip(dst.chunks_exact_mut(width))
            {
                let s = fp8_quant::quantize_fp8_encoded(
                    &src[c..c + width * es],
                    self.dtype,
                    scale,
                    out,
                )
                .map_err(fail)?;
                sum.signal += s.signal;
                sum.noise += s.noise;
            }
        }
        self.ckpt
            .mapped(self.src.file)
            .release(self.src.start + from as u64, len as u64);
        if let Some(errors) = &self.errors {
            errors.add(first, col, sum.signal, sum.noise);
        }
        Ok(())
    }
}

impl TensorProducer for QuantProducer {
    fn rows(&self) -> u64 {
        match self.part {
            Part::Int4Packed { .. } => self.out_rows() / 2,
            _ => self.out_rows(),
        }
    }

    fn row_bytes(&self) -> u64 {
        let cols = self.cols();
        match self.part {
            Part::Fp8Codes { .. } | Part::Int8Codes | Part::Int4Packed { .. } => cols,
            Part::Int8Scales => 4,
            Part::Int4Scales { group } => cols / group as u64 * 4,
        }
    }

    fn input_row_bytes(&self) -> u64 {
        let row = self.cols() * self.dtype.size() as u64;
        match self.part {
            Part::Int4Packed { .. } => 2 * row,
            _ => row,
        }
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let cols = self.cols() as usize;
        match self.part {
            Part::Fp8Codes { scale } if self.col_scale.is_none() && !self.gpu() => {
                self.fp8_window(scale, first_row, rows, 0, dst)?;
            }
            Part::Fp8Codes { scale } => {
                let w = self.source_rows(first_row, rows)?;
                if self.gpu() {
                    self.on_gpu(|q| q.fp8_e4m3(&w, scale, dst))?;
                } else {
                    fp8_quant::quantize_fp8_rows(&w, scale, dst);
                }
                let mut deq = vec![0.0f32; w.len()];
                fp8_quant::dequantize_fp8_rows(dst, scale, &mut deq);
                self.record(first_row, &w, &deq);
            }
            Part::Int8Codes | Part::Int8Scales => {
                let w = self.source_rows(first_row, rows)?;
                let mut scales = vec![0.0f32; rows as usize];
                if self.part == Part::Int8Codes {
                    let mut codes = vec![0i8; w.len()];
                    if self.gpu() {
                        self.on_gpu(|q| q.int8_per_channel(&w, cols, &mut codes, &mut scales))?;
                    } else {
                        int8::quantize_int8_rows(&w, cols, &mut codes, &mut scales);
                    }
                    dst.iter_mut().zip(&codes).for_each(|(d, &c)| *d = c as u8);
                    let mut deq = vec![0.0f32; w.len()];
                    int8::dequantize_int8_rows(&codes, cols, &scales, &mut deq);
                    self.record(first_row, &w, &deq);
                } else {
                    int8::int8_row_scales(&w, cols, &mut scales);
                    write_f32(&scales, dst);
                }
            }
            Part::Int4Packed { group } => {
                let w = self.source_rows(2 * first_row, 2 * rows)?;
                let mut codes = vec![0i8; w.len()];
                let mut scales = vec![0.0f32; w.len() / group];
                self.quantize_int4(2 * first_row, &w, group, &mut codes, &mut scales)?;
                int4::pack_int4_row_pairs(&codes, cols, dst);
                let mut deq = vec![0.0f32; w.len()];
                int4::dequantize_int4_group_rows(&codes, group, &scales, &mut deq);
                self.record(2 * first_row, &w, &deq);
            }
            Part::Int4Scales { group } => {
                let w = self.source_rows(first_row, rows)?;
                let mut scales = vec![0.0f32; w.len() / group];
                if self.clip.is_some() {
                    let mut codes = vec![0i8; w.len()];
                    self.quantize_int4(first_row, &w, group, &mut codes, &mut scales)?;
                } else {
                    int4::int4_group_scales(&w, group, &mut scales);
                }
                write_f32(&scales, dst);
            }
        }
        Ok(())
    }
}

fn write_f32(values: &[f32], dst: &mut [u8]) {
    for (d, v) in dst.chunks_exact_mut(4).zip(values) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// An unquantized weight whose output rows are divided by a folded AWQ scale (AutoAWQ
/// `scale_fc_fc` on a linear left out of quantization), re-encoded in its own dtype.
pub struct RowDivProducer {
    pub ckpt: Arc<Checkpoint>,
    pub src: SourceTensor,
    pub dtype: Dtype,
    pub divisor: Arc<Vec<f32>>,
}

impl std::fmt::Debug for RowDivProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowDivProducer")
            .field("src", &self.src.name)
            .finish()
    }
}

impl TensorProducer for RowDivProducer {
    fn rows(&self) -> u64 {
        self.src.shape[0]
    }

    fn row_bytes(&self) -> u64 {
        self.src.shape[1] * self.dtype.size() as u64
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let row_bytes = self.row_bytes() as usize;
        let (from, len) = (first_row as usize * row_bytes, rows as usize * row_bytes);
        let path = || self.ckpt.file_paths()[self.src.file].clone();
        let fail = |e: kernels::KernelError| Error::tensor(path(), &self.src.name, e.to_string());
        let mut w = vec![0.0f32; len / self.dtype.size()];
        kernels::cpu::cast::decode_f32(
            &self.ckpt.bytes(&self.src)[from..from + len],
            self.dtype,
            &mut w,
        )
        .map_err(fail)?;
        let cols = self.src.shape[1] as usize;
        for (row, d) in w
            .chunks_exact_mut(cols)
            .zip(&self.divisor[first_row as usize..])
        {
            row.iter_mut().for_each(|v| *v /= d);
        }
        kernels::cpu::cast::encode_f32(&w, self.dtype, dst).map_err(fail)
    }
}
