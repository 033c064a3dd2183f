//! The copy program of one output tensor: runs of rows, each a column segment copied from
//! one input tensor (or zeros), and the [`TensorProducer`] that executes it in row chunks.
//!
//! Whole-width runs are one `memcpy` of contiguous mmapped rows; narrower runs (row-parallel
//! weights being split or merged) copy one segment per row.

use super::input::{Input, Piece};
use super::layout::{BlockSource, StoredTensor};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::plan::TensorProducer;
use std::path::PathBuf;
use std::sync::Arc;

/// Linux's default `fault_around_bytes`.
const FAULT_AROUND: u64 = 64 << 10;

/// Output rows `out_row..out_row+rows`, bytes `out_col..out_col+width` of each, from `src`.
#[derive(Debug, Clone)]
struct Run {
    out_row: u64,
    rows: u64,
    out_col: u64,
    width: u64,
    src: Option<Source>,
}

#[derive(Debug, Clone)]
struct Source {
    file: usize,
    /// Index of the input checkpoint's file holding the tensor, and the tensor's first byte.
    part: usize,
    start: u64,
    row_bytes: u64,
    row: u64,
    col: u64,
}

/// Makes one output tensor from slices of the input rank files.
pub struct SliceProducer {
    files: Vec<Arc<Checkpoint>>,
    runs: Vec<Run>,
    rows: u64,
    row_bytes: u64,
}

impl std::fmt::Debug for SliceProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceProducer")
            .field("runs", &self.runs.len())
            .field("rows", &self.rows)
            .field("row_bytes", &self.row_bytes)
            .finish()
    }
}

impl SliceProducer {
    /// The copy program of output tensor `out` (element size `es`), from `input`'s pieces.
    pub fn new(input: &Input, out: &StoredTensor, es: u64, target: &PathBuf) -> Result<Self> {
        let width = out.width();
        let mut runs = Vec::new();
        let mut at = 0u64;
        for block in &out.blocks {
            match block.source {
                BlockSource::Zero => runs.push(Run {
                    out_row: at,
                    rows: block.rows,
                    out_col: 0,
                    width: width * es,
                    src: None,
                }),
                BlockSource::Logical { tensor, row, col } => {
                    let before = runs.len();
                    for p in &input.pieces[tensor] {
                        if let Some(run) = overlap(p, at, block.rows, row, col, width, es) {
                            runs.push(run);
                        }
                    }
                    let covered: u64 = runs[before..].iter().map(|r| r.rows * r.width).sum();
                    if covered != block.rows * width * es {
                        return Err(Error::tensor(
                            target,
                            &out.name,
                            format!(
                                "rows {row}.. of {} are not all in the input (internal error)",
                                input.logical.tensors[tensor].name
                            ),
                        ));
                    }
                }
            }
            at += block.rows;
        }
        runs.sort_by_key(|r| (r.out_row, r.out_col));
        Ok(SliceProducer {
            files: input.files.clone(),
            runs,
            rows: out.rows(),
            row_bytes: width * es,
        })
    }
}

/// The part of piece `p` that output block rows `at..at+rows` (logical rows `row..`, columns
/// `col..col+width`) need, as a run.
fn overlap(p: &Piece, at: u64, rows: u64, row: u64, col: u64, width: u64, es: u64) -> Option<Run> {
    let (r0, r1) = (row.max(p.row), (row + rows).min(p.row + p.rows));
    let (c0, c1) = (col.max(p.col), (col + width).min(p.col + p.cols));
    if r0 >= r1 || c0 >= c1 {
        return None;
    }
    Some(Run {
        out_row: at + (r0 - row),
        rows: r1 - r0,
        out_col: (c0 - col) * es,
        width: (c1 - c0) * es,
        src: Some(Source {
            file: p.file,
            part: p.tensor.file,
            start: p.tensor.start,
            row_bytes: p.row_bytes(),
            row: p.stored_row + (r0 - p.row),
            col: (c0 - p.col) * es,
        }),
    })
}

impl TensorProducer for SliceProducer {
    fn rows(&self) -> u64 {
        self.rows
    }

    fn row_bytes(&self) -> u64 {
        self.row_bytes
    }

    /// A column segment spans its source's whole row in the mmap: chunks are sized by that.
    fn input_row_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter_map(|r| r.src.as_ref().map(|s| s.row_bytes))
            .max()
            .unwrap_or(0)
            .max(self.row_bytes)
    }

    /// Chunks made only of whole-width runs are written straight from the mmaps.
    fn write_direct(
        &self,
        first_row: u64,
        rows: u64,
        write: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let end = first_row + rows;
        let rb = self.row_bytes;
        let start = self
            .runs
            .partition_point(|r| r.out_row + r.rows <= first_row);
        let runs = || self.runs[start..].iter().take_while(|r| r.out_row < end);
        let whole = |r: &Run| {
            r.src
                .as_ref()
                .is_some_and(|s| r.width == rb && s.row_bytes == rb)
        };
        if !runs().all(whole) {
            return Ok(false);
        }
        for run in runs() {
            let (a, b) = (
                run.out_row.max(first_row),
                (run.out_row + run.rows).min(end),
            );
            let Some(src) = &run.src else { continue };
            let mapped = self.files[src.file].mapped(src.part);
            let from = src.start + (src.row + (a - run.out_row)) * rb;
            let len = (b - a) * rb;
            write(
                (a - first_row) * rb,
                &mapped.bytes()[from as usize..(from + len) as usize],
            )?;
            release_rows(mapped, from, len);
        }
        Ok(true)
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let end = first_row + rows;
        let rb = self.row_bytes;
        // Runs are sorted by first row; skip those that end before the chunk.
        let start = self
            .runs
            .partition_point(|r| r.out_row + r.rows <= first_row);
        for run in self.runs[start..].iter().take_while(|r| r.out_row < end) {
            let (a, b) = (
                run.out_row.max(first_row),
                (run.out_row + run.rows).min(end),
            );
            if a >= b {
                continue;
            }
            let Some(src) = &run.src else {
                for r in a..b {
                    let o = ((r - first_row) * rb + run.out_col) as usize;
                    dst[o..o + run.width as usize].fill(0);
                }
                continue;
            };
            let ckpt = &self.files[src.file];
            let mapped = ckpt.mapped(src.part);
            let all = mapped.bytes();
            let first_src = src.start + (src.row + (a - run.out_row)) * src.row_bytes;
            let n = b - a;
            if run.width == rb && run.width == src.row_bytes {
                let o = ((a - first_row) * rb) as usize;
                let len = (n * rb) as usize;
                let s = first_src as usize;
                dst[o..o + len].copy_from_slice(&all[s..s + len]);
            } else {
                for i in 0..n {
                    let o = ((a - first_row + i) * rb + run.out_col) as usize;
                    let s = (first_src + i * src.row_bytes + src.col) as usize;
                    let w = run.width as usize;
                    dst[o..o + w].copy_from_slice(&all[s..s + w]);
                }
            }
            release_rows(mapped, first_src, n * src.row_bytes);
        }
        Ok(())
    }
}

/// Done with these input bytes here; other outputs reading them fault them back in from the
/// page cache, so the resident set stays bounded by the chunks in flight. The kernel maps up
/// to 64 KiB around each fault ("fault-around"), possibly pages of rows, or of a neighbouring
/// tensor, that another chunk already released: the margin drops those too (a page still in
/// use elsewhere is simply faulted back).
fn release_rows(mapped: &formats::mmap::MappedFile, from: u64, len: u64) {
    let start = from.saturating_sub(FAULT_AROUND);
    mapped.release(start, from + len + FAULT_AROUND - start);
}
