//! GGML block quantization: f32 rows → blocks and blocks → f32, bit-compatible with llama.cpp.
//!
//! - [`legacy`]: the 32-element types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0. Without importance weights
//!   the bytes equal gguf-py's `gguf.quants.quantize` (itself bit-exact with ggml's
//!   `quantize_row_*_ref`); with weights they follow ggml's `quantize_row_*_impl`.
//! - [`k_quants`]: the 256-element super-block types Q2_K..Q6_K, ported from
//!   `ggml/src/ggml-quants.c` (`quantize_row_qX_K_ref` and, with importance weights, the
//!   imatrix path `quantize_row_qX_K_impl`).
//! - `search`: the scale/min searches both families share (`make_qx_quants`, ...).
//!
//! Blocks are handled as raw little-endian bytes (`dst.len() == blocks × type_size`) rather than
//! `#[repr(C)]` structs: the executor and the mmap hand us byte slices with no alignment
//! guarantee, and every layout below is written out field by field with its offsets.
//! Block layouts: `ggml/src/ggml-common.h` (`block_q4_0` ... `block_q6_K`).

pub mod k_quants;
pub mod legacy;
mod search;

use crate::KernelError;
use formats::gguf::GgmlType;

/// Elements per K-quant super-block (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;
/// Elements per legacy block (`QK4_0` = `QK8_0` = 32).
pub const QK: usize = 32;

/// The block types these kernels quantize and dequantize.
pub const SUPPORTED: [GgmlType; 10] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

pub fn is_supported(ty: GgmlType) -> bool {
    SUPPORTED.contains(&ty)
}

/// Bytes of `elements` f32 values quantized to `ty`, or an error when they are not whole blocks.
pub fn quantized_len(ty: GgmlType, elements: usize) -> Result<usize, KernelError> {
    let bs = ty.block_size() as usize;
    if !is_supported(ty) {
        return Err(KernelError::UnsupportedGgml(ty));
    }
    if !elements.is_multiple_of(bs) {
        return Err(KernelError::PartialBlock {
            ty,
            elements,
            block: bs,
        });
    }
    Ok(elements / bs * ty.type_size() as usize)
}

/// Quantizes `src` into `dst` (`quantized_len(ty, src.len())` bytes).
///
/// `importance` (llama.cpp's imatrix: one weight per input column) makes the search weight each
/// column's error; `src` is then a whole number of rows of `importance.len()` elements. Q8_0
/// ignores it, as ggml does. Non-finite input is refused before anything is written.
pub fn quantize(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    importance: Option<&[f32]>,
) -> Result<(), KernelError> {
    let want = quantized_len(ty, src.len())?;
    if dst.len() != want {
        return Err(KernelError::BlockBytes {
            ty,
            expected: want,
            actual: dst.len(),
        });
    }
    // A branch-free pass over blocks of 64 (vectorised); the position only when one fails.
    let all_finite = src
        .chunks(64)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
    if !all_finite {
        let index = src.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(KernelError::NotFinite { index });
    }
    let Some(weights) = importance else {
        return quantize_rows(ty, src, dst, None);
    };
    let row = weights.len();
    if row == 0 || !src.len().is_multiple_of(row) || !row.is_multiple_of(ty.block_size() as usize) {
        return Err(KernelError::ImportanceLength {
            row,
            elements: src.len(),
        });
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(KernelError::ImportanceNotFinite);
    }
    let row_bytes = want / (src.len() / row).max(1);
    for (x, y) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row_bytes)) {
        quantize_rows(ty, x, y, Some(weights))?;
    }
    Ok(())
}

/// One row with weights, or any number of rows without. Lengths are checked by the caller.
fn quantize_rows(
    ty: GgmlType,
    x: &[f32],
    y: &mut [u8],
    w: Option<&[f32]>,
) -> Result<(), KernelError> {
    match (ty, w) {
        (GgmlType::Q8_0, _) => legacy::quantize_q8_0(x, y),
        (GgmlType::Q4_0, None) => legacy::quantize_q4_0(x, y),
        (GgmlType::Q4_1, None) => legacy::quantize_q4_1(x, y),
        (GgmlType::Q5_0, None) => legacy::quantize_q5_0(x, y),
        (GgmlType::Q5_1, None) => legacy::quantize_q5_1(x, y),
        (GgmlType::Q4_0, Some(w)) => legacy::quantize_q4_0_weighted(x, y, w),
        (GgmlType::Q4_1, Some(w)) => legacy::quantize_q4_1_weighted(x, y, w),
        (GgmlType::Q5_0, Some(w)) => legacy::quantize_q5_0_weighted(x, y, w),
        (GgmlType::Q5_1, Some(w)) => legacy::quantize_q5_1_weighted(x, y, w),
        (GgmlType::Q2K, w) => k_quants::quantize_q2_k(x, y, w),
        (GgmlType::Q3K, w) => k_quants::quantize_q3_k(x, y, w),
        (GgmlType::Q4K, w) => k_quants::quantize_q4_k(x, y, w),
        (GgmlType::Q5K, w) => k_quants::quantize_q5_k(x, y, w),
        (GgmlType::Q6K, w) => k_quants::quantize_q6_k(x, y, w),
        (other, _) => return Err(KernelError::UnsupportedGgml(other)),
    }
    Ok(())
}

/// Dequantizes whole blocks `src` into `dst` (`src.len() / type_size × block_size` values).
/// Any bytes are accepted: every bit pattern decodes to some value (possibly inf/NaN from the
/// fp16 scales), none panics.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let want = quantized_len(ty, dst.len())?;
    if src.len() != want {
        return Err(KernelError::BlockBytes {
            ty,
            expected: want,
            actual: src.len(),
        });
    }
    match ty {
        GgmlType::Q8_0 => legacy::dequantize_q8_0(src, dst),
        GgmlType::Q4_0 => legacy::dequantize_q4_0(src, dst),
        GgmlType::Q4_1 => legacy::dequantize_q4_1(src, dst),
        GgmlType::Q5_0 => legacy::dequantize_q5_0(src, dst),
        GgmlType::Q5_1 => legacy::dequantize_q5_1(src, dst),
        GgmlType::Q2K => k_quants::dequantize_q2_k(src, dst),
        GgmlType::Q3K => k_quants::dequantize_q3_k(src, dst),
        GgmlType::Q4K => k_quants::dequantize_q4_k(src, dst),
        GgmlType::Q5K => k_quants::dequantize_q5_k(src, dst),
        GgmlType::Q6K => k_quants::dequantize_q6_k(src, dst),
        other => return Err(KernelError::UnsupportedGgml(other)),
    }
    Ok(())
}

/// `GGML_FP32_TO_FP16`: IEEE half, round to nearest even (as numpy's `astype(np.float16)`).
#[inline]
fn put_f16(dst: &mut [u8], at: usize, v: f32) {
    dst[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

/// `GGML_FP16_TO_FP32`.
#[inline]
fn get_f16(src: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([src[at], src[at + 1]])).to_f32()
}

#[cfg(test)]
mod tests;
