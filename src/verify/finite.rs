//! NaN/Inf scans of float tensor bytes (little-endian, as both formats store them).

use formats::Dtype;
use half::{bf16, f16};

/// Index of the first non-finite element of `bytes` as `dtype`; `None` when all are finite or
/// the dtype has no NaN (integers).
pub fn first_non_finite(dtype: Dtype, bytes: &[u8]) -> Option<usize> {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .position(|c| !f16::from_le_bytes([c[0], c[1]]).is_finite()),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .position(|c| !bf16::from_le_bytes([c[0], c[1]]).is_finite()),
        // float8_e4m3fn has no Inf; its NaN is S.1111.111.
        Dtype::F8E4M3 => bytes.iter().position(|b| b & 0x7f == 0x7f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nan_and_inf() {
        let mut b: Vec<u8> = [1.0f32, 2.0, f32::NAN]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(Dtype::F32, &b), Some(2));
        b.truncate(8);
        assert_eq!(first_non_finite(Dtype::F32, &b), None);
        let h: Vec<u8> = [f16::ONE, f16::INFINITY]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(Dtype::F16, &h), Some(1));
        assert_eq!(first_non_finite(Dtype::F8E4M3, &[0x7e, 0xff]), Some(1));
        assert_eq!(first_non_finite(Dtype::I8, &[0xff]), None);
    }
}
