//! `--hf-format transformers`: quantized Hugging Face folders in the layouts transformers loads
//! natively, instead of modelopt's unified checkpoint ([`super::hf`]):
//!
//! | scheme | `quantization_config` | tensors per quantized linear `L` |
//! |---|---|---|
//! | fp8 | `quant_method: "fp8"`, `fmt: "e4m3"`, `activation_scheme: "dynamic"`, `weight_block_size: [128, 128]` (transformers `FineGrainedFP8Config`) | `L.weight` F8_E4M3 `[out, in]`, `L.weight_scale_inv` F32 `[⌈out/128⌉, ⌈in/128⌉]`: the dequantization multiplier of each 128×128 block (transformers `integrations/finegrained_fp8.py` `FP8Linear`); our per-tensor scale fills every block |
//! | int4_awq, int4_rtn | `quant_method: "awq"`, `version: "gemm"`, `bits: 4`, `group_size`, `zero_point: true` (transformers `AwqConfig`) | `L.qweight` I32 `[in, out/8]`, `L.qzeros` I32 `[in/group, out/8]` (all 8), `L.scales` F16 `[in/group, out]` (AutoAWQ `WQLinear_GEMM`, see `kernels::cpu::awq_gemm`); AWQ scales folded (`--awq-fold` implied) |
//!
//! int8_wo / int8_sq have no transformers loader (its FP8 is dynamic-activation only, and
//! no INT8 weight format of its own reads per-channel scales): a usage error. Static
//! activation scales (`input_scale`) are not written: `FineGrainedFP8Config` accepts only
//! `activation_scheme: "dynamic"`.

use super::producer::ErrorSums;
use super::scheme::QuantScheme;
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::TensorProducer;
use formats::Dtype;
use kernels::cpu::awq_gemm;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Which Hugging Face layout a quantized folder is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HfFormat {
    /// modelopt's unified HF checkpoint (`quant_method: "modelopt"`, TensorRT-LLM, vLLM).
    #[default]
    Modelopt,
    /// transformers' own loaders: `quant_method: "fp8"` (FP8) or `"awq"` (INT4 GEMM).
    Transformers,
}

/// FP8 weight block edge of `FineGrainedFP8Config` (`weight_block_size: [128, 128]`).
pub const FP8_BLOCK: u64 = 128;
/// Output channels per `qweight` word.
pub const AWQ_PACK: u64 = 8;

/// Fails for schemes transformers has no loader for.
pub fn check_scheme(scheme: QuantScheme) -> Result<()> {
    match scheme {
        QuantScheme::Fp8 | QuantScheme::Int4Awq | QuantScheme::Int4Rtn => Ok(()),
        QuantScheme::Int8Wo | QuantScheme::Int8Sq => Err(Error::Usage(format!(
            "--quant {} cannot be written with --hf-format transformers (transformers loads FP8 as quant_method \"fp8\" and INT4 as \"awq\", no per-channel INT8); use --hf-format modelopt",
            scheme.name()
        ))),
    }
}

/// `config.json`'s `quantization_config` for `scheme` (after [`check_scheme`]).
/// `modules_to_not_convert` is written only with exclusions: left out, transformers skips the
/// LM head by itself (`get_modules_to_not_convert` → `get_keys_to_not_convert`), and
/// `AwqConfig.post_init` refuses a list unless autoawq ≥ 0.1.8 is installed, even to parse it.
pub fn quantization_config(
    scheme: QuantScheme,
    group: usize,
    excluded: &[String],
) -> serde_json::Value {
    let mut qc = if scheme == QuantScheme::Fp8 {
        json!({
            "quant_method": "fp8",
            "fmt": "e4m3",
            "activation_scheme": "dynamic",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
        })
    } else {
        json!({
            "quant_method": "awq",
            "version": "gemm",
            "bits": 4,
            "group_size": group,
            "zero_point": true,
        })
    };
    if let (Some(o), false) = (qc.as_object_mut(), excluded.is_empty()) {
        let mut skip = excluded.to_vec();
        skip.push("lm_head".into());
        o.insert("modules_to_not_convert".into(), json!(skip));
    }
    qc
}

/// The FP8 `weight_scale_inv` shape of an `[out, cols]` weight.
pub fn fp8_block_shape(out: u64, cols: u64) -> Vec<u64> {
    vec![out.div_ceil(FP8_BLOCK), cols.div_ceil(FP8_BLOCK)]
}

/// Which AWQ GEMM tensor a producer makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwqPart {
    /// `qweight` I32 `[in, out / 8]`.
    Qweight,
    /// `scales` F16 `[in / group, out]`.
    Scales,
}

/// Makes `qweight` or `scales` of one linear from column slices of the source (`[out, in]`,
/// read across every row: the layout is transposed), column-scaled by the AWQ scale and
/// row-divided by a folded one, quantized with f16 scales as AutoAWQ does.
pub struct AwqGemmProducer {
    pub ckpt: Arc<Checkpoint>,
    pub src: SourceTensor,
    pub dtype: Dtype,
    pub part: AwqPart,
    pub group: usize,
    pub col_scale: Option<Arc<Vec<f32>>>,
    pub row_divisor: Option<Arc<Vec<f32>>>,
    /// Clip ratios `[out, in / group]`.
    pub clip: Option<Arc<Vec<f32>>>,
    pub errors: Option<Arc<ErrorSums>>,
}

impl std::fmt::Debug for AwqGemmProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwqGemmProducer")
            .field("src", &self.src.name)
            .field("part", &self.part)
            .finish()
    }
}

impl AwqGemmProducer {
    fn out(&self) -> usize {
        self.src.shape[0] as usize
    }

    fn cols(&self) -> usize {
        self.src.shape[1] as usize
    }

    fn path(&self) -> PathBuf {
        self.ckpt.file_paths()[self.src.file].clone()
    }

    /// Source columns `k0 .. k0 + n` of every row, scaled, as `[out, n]` f32.
    fn columns(&self, k0: usize, n: usize) -> Result<Vec<f32>> {
        let (out, cols, size) = (self.out(), self.cols(), self.dtype.size());
        let bytes = self.ckpt.bytes(&self.src);
        let mut w = vec![0.0f32; out * n];
        for (o, row) in w.chunks_exact_mut(n).enumerate() {
            let from = (o * cols + k0) * size;
            kernels::cpu::cast::decode_f32(&bytes[from..from + n * size], self.dtype, row)
                .map_err(|e| Error::tensor(self.path(), &self.src.name, e.to_string()))?;
            if let Some(i) = kernels::cpu::scale::first_non_finite(row) {
                return Err(Error::tensor(
                    self.path(),
                    &self.src.name,
                    format!("{} at row {o}, column {}: cannot quantize", row[i], k0 + i),
                ));
            }
            if let Some(s) = &self.col_scale {
                row.iter_mut().zip(&s[k0..]).for_each(|(v, s)| *v *= s);
            }
            if let Some(d) = &self.row_divisor {
                row.iter_mut().for_each(|v| *v /= d[o]);
            }
        }
        // A column slice touches every page of the tensor: drop them from the resident set
        // (they stay in the page cache for the next chunk), so RSS stays near threads ×
        // tensor rather than growing to the model.
        self.ckpt
            .mapped(self.src.file)
            .release(self.src.start, self.src.len);
        Ok(w)
    }

    /// Codes `[out, n]` and f16 scales `[out, n / group]` of columns `k0 .. k0 + n`.
    fn quantize(&self, k0: usize, n: usize, w: &[f32]) -> Result<(Vec<i8>, Vec<u16>)> {
        let g = self.group;
        let per_row = self.cols() / g;
        let clip: Option<Vec<f32>> = self.clip.as_ref().map(|c| {
            (0..self.out())
                .flat_map(|o| {
                    c[o * per_row + k0 / g..o * per_row + (k0 + n) / g]
                        .iter()
                        .copied()
                })
                .collect()
        });
        let mut codes = vec![0i8; w.len()];
        let mut scales = vec![0u16; w.len() / g];
        awq_gemm::quantize_int4_f16_scales(w, n, g, clip.as_deref(), &mut codes, &mut scales)
            .map_err(|i| {
                Error::tensor(
                    self.path(),
                    &self.src.name,
                    format!(
                        "row {}, group {}: scale beyond the f16 range of AWQ's scales",
                        i / (n / g),
                        k0 / g + i % (n / g)
                    ),
                )
            })?;
        Ok((codes, scales))
    }

    /// Adds Σ w² and Σ (w − ŵ)² of the effective weights (`/ s`, `· d_row`).
    fn record(&self, k0: usize, n: usize, w: &[f32], codes: &[i8], scales: &[u16]) {
        let Some(errors) = &self.errors else {
            return;
        };
        let mut s32 = vec![0.0f32; scales.len()];
        kernels::cpu::cast::f16_to_f32(scales, &mut s32);
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (o, (row, q)) in w.chunks_exact(n).zip(codes.chunks_exact(n)).enumerate() {
            let d = self.row_divisor.as_ref().map_or(1.0, |d| d[o]);
            let (mut a2, mut d2) = (0.0f32, 0.0f32);
            for (j, (&a, &c)) in row.iter().zip(q).enumerate() {
                let s = self.col_scale.as_ref().map_or(1.0, |s| s[k0 + j]);
                let b = f32::from(c) * s32[o * (n / self.group) + j / self.group];
                let (a, b) = (a / s * d, b / s * d);
                a2 += a * a;
                d2 += (a - b) * (a - b);
            }
            signal += f64::from(a2);
            noise += f64::from(d2);
        }
        errors.add(0, k0 as u64, signal, noise);
    }
}

impl TensorProducer for AwqGemmProducer {
    fn rows(&self) -> u64 {
        match self.part {
            AwqPart::Qweight => self.cols() as u64,
            AwqPart::Scales => (self.cols() / self.group) as u64,
        }
    }

    fn row_bytes(&self) -> u64 {
        match self.part {
            AwqPart::Qweight => self.out() as u64 / AWQ_PACK * 4,
            AwqPart::Scales => self.out() as u64 * 2,
        }
    }

    fn row_group(&self) -> u64 {
        match self.part {
            AwqPart::Qweight => self.group as u64,
            AwqPart::Scales => 1,
        }
    }

    fn input_row_bytes(&self) -> u64 {
        let column = (self.out() * self.dtype.size()) as u64;
        match self.part {
            AwqPart::Qweight => column,
            AwqPart::Scales => column * self.group as u64,
        }
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let (first, rows) = (first_row as usize, rows as usize);
        let (out, g) = (self.out(), self.group);
        match self.part {
            AwqPart::Qweight => {
                let w = self.columns(first, rows)?;
                let (codes, scales) = self.quantize(first, rows, &w)?;
                self.record(first, rows, &w, &codes, &scales);
                let mut transposed = vec![0i8; codes.len()];
                for (o, row) in codes.chunks_exact(rows).enumerate() {
                    for (k, &c) in row.iter().enumerate() {
                        transposed[k * out + o] = c;
                    }
                }
                awq_gemm::pack_awq_gemm(&transposed, out, dst);
            }
            AwqPart::Scales => {
                let w = self.columns(first * g, rows * g)?;
                let (_, scales) = self.quantize(first * g, rows * g, &w)?;
                for (o, row) in scales.chunks_exact(rows).enumerate() {
                    for (k, s) in row.iter().enumerate() {
                        let at = (k * out + o) * 2;
                        dst[at..at + 2].copy_from_slice(&s.to_le_bytes());
                    }
                }
            }
        }
        Ok(())
    }
}
