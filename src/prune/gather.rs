//! The streaming slice: an output tensor made of kept rows and kept columns of one input
//! tensor, read straight from the input's mmap in row chunks (the executor's chunking bounds
//! memory), with the input pages released once read.

use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::TensorProducer;
use std::sync::Arc;

/// Gathers `rows` (all rows when `None`) and, inside each, the elements of `col_runs` (whole
/// rows when `None`) of a tensor seen as `[src_rows, row_bytes]` (a 1-D tensor is one row).
pub struct Gather {
    ckpt: Arc<Checkpoint>,
    src: SourceTensor,
    src_rows: u64,
    src_row_bytes: u64,
    rows: Option<Vec<u32>>,
    cols: Option<Columns>,
    out_row_bytes: u64,
}

/// How kept columns are copied out of a row.
enum Columns {
    /// Long runs of consecutive columns: one `memcpy` per run `(first byte, bytes)`.
    Runs(Vec<(usize, usize)>),
    /// Scattered columns (short runs, e.g. hidden channels by importance): one fixed-size
    /// element copy per column, which compiles to a plain load and store.
    Elements { elem: usize, cols: Vec<u32> },
}

/// Mean run length (in elements) below which per-element copying beats a `memcpy` per run.
const SHORT_RUN: usize = 16;

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather")
            .field("source", &self.src.name)
            .field("rows", &self.rows.as_ref().map(Vec::len))
            .field("cols", &self.cols.is_some())
            .finish()
    }
}

impl Gather {
    /// `elem_bytes`: bytes per element of a dense tensor, `None` for a block-quantized one
    /// (whose rows can be gathered but not its columns). Indices were validated against the
    /// model's dimensions, and the tensor's shape against the config, at plan time.
    pub fn new(
        ckpt: Arc<Checkpoint>,
        src: SourceTensor,
        elem_bytes: Option<usize>,
        rows: Option<&[usize]>,
        cols: Option<&[usize]>,
    ) -> Result<Self> {
        let path = ckpt.file_paths()[src.file].clone();
        let fail = |why: String| Error::tensor(&path, &src.name, why);
        let src_rows = if src.shape.len() >= 2 {
            src.shape[0]
        } else {
            1
        };
        if src_rows == 0 || !src.len.is_multiple_of(src_rows) {
            return Err(fail("byte size is not a whole number of rows".into()));
        }
        let src_row_bytes = src.len / src_rows;
        let row_elements = src.numel() / src_rows;
        if let Some(r) = rows {
            if let Some(&bad) = r.iter().find(|&&i| i as u64 >= src_rows) {
                return Err(fail(format!("row {bad} is out of range ({src_rows} rows)")));
            }
        }
        let (cols, out_row_bytes) = match cols {
            None => (None, src_row_bytes),
            Some(cols) => {
                let Some(elem) = elem_bytes else {
                    return Err(fail(format!(
                        "{} tensors cannot have columns pruned (blocks span columns); prune the unquantized model",
                        src.ty.name()
                    )));
                };
                if let Some(&bad) = cols.iter().find(|&&c| c as u64 >= row_elements) {
                    return Err(fail(format!(
                        "column {bad} is out of range ({row_elements} per row)"
                    )));
                }
                let runs = runs_of(cols);
                let how = if runs.len() * SHORT_RUN > cols.len() && elem <= 8 {
                    Columns::Elements {
                        elem,
                        cols: cols.iter().map(|&c| c as u32).collect(),
                    }
                } else {
                    Columns::Runs(
                        runs.into_iter()
                            .map(|(start, len)| (start * elem, len * elem))
                            .collect(),
                    )
                };
                (Some(how), (cols.len() * elem) as u64)
            }
        };
        Ok(Gather {
            ckpt,
            src,
            src_rows,
            src_row_bytes,
            rows: rows.map(|r| r.iter().map(|&i| i as u32).collect()),
            cols,
            out_row_bytes,
        })
    }

    fn source_row(&self, out_row: u64) -> u64 {
        match &self.rows {
            Some(r) => u64::from(r[out_row as usize]),
            None => out_row,
        }
    }
}

/// Consecutive indices merged into `(first, count)` runs, so kept blocks copy as one memcpy.
fn runs_of(sorted: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in sorted {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == i => *len += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

fn gather_elements<const N: usize>(row: &[u8], cols: &[u32], out: &mut [u8]) {
    for (o, &c) in out.chunks_exact_mut(N).zip(cols) {
        let s = c as usize * N;
        o.copy_from_slice(&row[s..s + N]);
    }
}

impl TensorProducer for Gather {
    fn rows(&self) -> u64 {
        self.rows.as_ref().map_or(self.src_rows, |r| r.len() as u64)
    }

    fn row_bytes(&self) -> u64 {
        self.out_row_bytes
    }

    fn input_row_bytes(&self) -> u64 {
        self.src_row_bytes
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let all = self.ckpt.bytes(&self.src);
        let (in_row, out_row) = (self.src_row_bytes as usize, self.out_row_bytes as usize);
        // Kept rows are ascending, so the span from this chunk's first to last source row holds
        // only rows this chunk read and rows nobody reads: releasing it whole (one madvise per
        // chunk) drops nothing another chunk still needs.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, out) in dst
            .chunks_exact_mut(out_row)
            .take(rows as usize)
            .enumerate()
        {
            let r = self.source_row(first_row + i as u64);
            match runs.last_mut() {
                Some((start, len)) if *start + *len == r => *len += 1,
                _ => runs.push((r, 1)),
            }
            let row = &all[r as usize * in_row..(r as usize + 1) * in_row];
            match &self.cols {
                None => out.copy_from_slice(row),
                Some(Columns::Runs(runs)) => {
                    let mut at = 0;
                    for &(start, len) in runs {
                        out[at..at + len].copy_from_slice(&row[start..start + len]);
                        at += len;
                    }
                }
                Some(Columns::Elements { elem, cols }) => match elem {
                    1 => gather_elements::<1>(row, cols, out),
                    2 => gather_elements::<2>(row, cols, out),
                    4 => gather_elements::<4>(row, cols, out),
                    _ => gather_elements::<8>(row, cols, out),
                },
            }
        }
        let mapped = self.ckpt.mapped(self.src.file);
        if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
            mapped.release(
                self.src.start + first.0 * self.src_row_bytes,
                (last.0 + last.1 - first.0) * self.src_row_bytes,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_consecutive_indices() {
        assert_eq!(runs_of(&[0, 1, 2, 5, 7, 8]), vec![(0, 3), (5, 1), (7, 2)]);
        assert_eq!(runs_of(&[]), vec![]);
    }

    #[test]
    fn gathers_rows_and_columns_of_a_safetensors_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        // 3 x 4 u16: element (r, c) = 10 r + c
        let data: Vec<u8> = (0..3u16)
            .flat_map(|r| (0..4u16).flat_map(move |c| (10 * r + c).to_le_bytes()))
            .collect();
        let spec = formats::safetensors::TensorSpec::new("w", formats::Dtype::U16, vec![3, 4]);
        formats::safetensors::write_file(&path, &[(spec, &data)], None).unwrap();
        let ckpt = Arc::new(Checkpoint::open(&path).unwrap());
        let src = ckpt.tensors()[0].clone();
        let g = Gather::new(ckpt, src, Some(2), Some(&[2, 0]), Some(&[1, 2, 3])).unwrap();
        assert_eq!((g.rows(), g.row_bytes()), (2, 6));
        let mut out = vec![0u8; 12];
        g.produce(0, 2, &mut out).unwrap();
        let got: Vec<u16> = out
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(got, vec![21, 22, 23, 1, 2, 3]);
        let mut one = vec![0u8; 6];
        g.produce(1, 1, &mut one).unwrap();
        assert_eq!(&one, &out[6..]);
    }

    #[test]
    fn scattered_columns_take_the_per_element_path_with_the_same_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        // 2 x 64 f32: element (r, c) = 100 r + c
        let data: Vec<u8> = (0..2u32)
            .flat_map(|r| (0..64u32).flat_map(move |c| ((100 * r + c) as f32).to_le_bytes()))
            .collect();
        let spec = formats::safetensors::TensorSpec::new("w", formats::Dtype::F32, vec![2, 64]);
        formats::safetensors::write_file(&path, &[(spec, &data)], None).unwrap();
        let ckpt = Arc::new(Checkpoint::open(&path).unwrap());
        let src = ckpt.tensors()[0].clone();
        let cols: Vec<usize> = (0..64).step_by(3).collect();
        let g = Gather::new(ckpt, src, Some(4), None, Some(&cols)).unwrap();
        assert!(matches!(g.cols, Some(Columns::Elements { elem: 4, .. })));
        let mut out = vec![0u8; 2 * cols.len() * 4];
        g.produce(0, 2, &mut out).unwrap();
        let got: Vec<f32> = out
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let want: Vec<f32> = (0..2)
            .flat_map(|r| cols.iter().map(move |&c| (100 * r + c) as f32))
            .collect();
        assert_eq!(got, want);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any kept rows and columns, produced in any two chunks, give the naive gather of the
        /// tensor: both column paths (runs and scattered elements) and the row release.
        #[test]
        fn gather_equals_the_naive_selection(
            rows in 1usize..12,
            cols in 1usize..80,
            row_mask in proptest::collection::vec(proptest::bool::ANY, 12),
            col_mask in proptest::collection::vec(proptest::bool::ANY, 80),
            split in 0usize..12,
        ) {
            let kept_rows: Vec<usize> = (0..rows).filter(|&r| row_mask[r]).collect();
            let kept_cols: Vec<usize> = (0..cols).filter(|&c| col_mask[c]).collect();
            proptest::prop_assume!(!kept_rows.is_empty() && !kept_cols.is_empty());
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.safetensors");
            let data: Vec<u8> = (0..rows * cols)
                .flat_map(|i| (i as u16).to_le_bytes())
                .collect();
            let spec = formats::safetensors::TensorSpec::new(
                "w",
                formats::Dtype::BF16,
                vec![rows as u64, cols as u64],
            );
            formats::safetensors::write_file(&path, &[(spec, &data)], None).unwrap();
            let ckpt = Arc::new(Checkpoint::open(&path).unwrap());
            let src = ckpt.tensors()[0].clone();
            let g = Gather::new(ckpt, src, Some(2), Some(&kept_rows), Some(&kept_cols)).unwrap();
            let out_rows = kept_rows.len();
            let first = split.min(out_rows);
            let mut out = vec![0u8; out_rows * kept_cols.len() * 2];
            let at = first * kept_cols.len() * 2;
            let (a, b) = out.split_at_mut(at);
            if first > 0 {
                g.produce(0, first as u64, a).unwrap();
            }
            if first < out_rows {
                g.produce(first as u64, (out_rows - first) as u64, b).unwrap();
            }
            let want: Vec<u8> = kept_rows
                .iter()
                .flat_map(|&r| kept_cols.iter().map(move |&c| r * cols + c))
                .flat_map(|i| (i as u16).to_le_bytes())
                .collect();
            proptest::prop_assert_eq!(out, want);
        }
    }
}
