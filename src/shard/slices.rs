//! The copy program of one output tensor: runs of rows, each a column segment copied from
//! one input tensor (or zeros), and the [`TensorProducer`] that executes it in row chunks.
//!
//! Chunks of whole input rows are copied file to file inside the kernel (`copy_file_range`).
//! Other chunks are read with positioned reads into a per-thread buffer, then written in one
//! positioned write: whole-width runs read straight into place; column segments (row-parallel
//! weights being split or merged) read the rows' whole span once and copy a segment per row.

use super::input::{Input, Piece, Reader};
use super::layout::{BlockSource, StoredTensor};
use crate::error::{Error, Result};
use crate::plan::{DirectPiece, TensorProducer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    file: Arc<Reader>,
    /// Absolute offset of the source tensor's first byte in `file`.
    start: u64,
    row_bytes: u64,
    row: u64,
    col: u64,
}

/// Spans of input rows read for row-parallel splits, shared between the output ranks that
/// each take a column slice of them: the first rank to need a span reads it, the others
/// (whose chunks the executor runs next) take it from here. Bounded: at most
/// `SHARED_SPANS` spans (each at most one chunk) wait for their other readers.
#[derive(Default)]
pub struct SpanShare {
    /// Split runs reading each source tensor, by (file, tensor start).
    readers: Mutex<HashMap<(usize, u64), u64>>,
    /// (file, absolute offset, length) -> the span and how many more readers will take it.
    waiting: Mutex<Vec<Waiting>>,
}

type SpanKey = (usize, u64, u64);
type Waiting = (SpanKey, Arc<Vec<u8>>, u64);
const SHARED_SPANS: usize = 8;

impl SpanShare {
    fn register(&self, src: &Source) {
        let key = (Arc::as_ptr(&src.file) as usize, src.start);
        *lock(&self.readers).entry(key).or_insert(0) += 1;
    }

    fn span(&self, src: &Source, offset: u64, len: u64) -> Result<Arc<Vec<u8>>> {
        let file = Arc::as_ptr(&src.file) as usize;
        let key = (file, offset, len);
        {
            let mut waiting = lock(&self.waiting);
            if let Some(i) = waiting.iter().position(|(k, _, _)| *k == key) {
                let bytes = waiting[i].1.clone();
                waiting[i].2 -= 1;
                if waiting[i].2 == 0 {
                    waiting.remove(i);
                }
                return Ok(bytes);
            }
        }
        let mut bytes = vec![0u8; len as usize];
        src.file.read_at(&mut bytes, offset)?;
        let bytes = Arc::new(bytes);
        let others = lock(&self.readers)
            .get(&(file, src.start))
            .copied()
            .unwrap_or(1)
            .saturating_sub(1);
        if others > 0 {
            let mut waiting = lock(&self.waiting);
            if waiting.len() >= SHARED_SPANS {
                waiting.remove(0);
            }
            waiting.push((key, bytes.clone(), others));
        }
        Ok(bytes)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes one output tensor from slices of the input rank files.
pub struct SliceProducer {
    share: Arc<SpanShare>,
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

thread_local! {
    /// (output chunk, input span) buffers of this worker, reused across chunks.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl SliceProducer {
    /// The copy program of output tensor `out` (element size `es`), from `input`'s pieces.
    pub fn new(
        input: &Input,
        out: &StoredTensor,
        es: u64,
        target: &Path,
        share: &Arc<SpanShare>,
    ) -> Result<Self> {
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
                        let reader = &input.readers[p.file][p.tensor.file];
                        let block = (at, block.rows, row, col, width);
                        if let Some(run) = overlap(p, reader, block, es) {
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
        for run in &runs {
            if let Some(src) = run.src.as_ref().filter(|s| run.width < s.row_bytes) {
                share.register(src);
            }
        }
        Ok(SliceProducer {
            share: share.clone(),
            runs,
            rows: out.rows(),
            row_bytes: width * es,
        })
    }

    /// When rows `first_row..first_row+rows` are all whole rows of inputs (no column segment, no
    /// zero padding), the file ranges they are: (byte offset in the chunk, source, source
    /// offset, length), one per run.
    fn whole_row_ranges(&self, first_row: u64, rows: u64) -> Option<Vec<(u64, &Source, u64, u64)>> {
        let (end, rb) = (first_row + rows, self.row_bytes);
        let start = self
            .runs
            .partition_point(|r| r.out_row + r.rows <= first_row);
        let mut ranges = Vec::new();
        let mut covered = 0;
        for run in self.runs[start..].iter().take_while(|r| r.out_row < end) {
            let src = run.src.as_ref()?;
            if run.width != rb || src.row_bytes != rb {
                return None;
            }
            let (a, b) = (
                run.out_row.max(first_row),
                (run.out_row + run.rows).min(end),
            );
            let offset = src.start + (src.row + (a - run.out_row)) * rb;
            ranges.push(((a - first_row) * rb, src, offset, (b - a) * rb));
            covered += b - a;
        }
        (covered == rows).then_some(ranges)
    }

    /// Fills `dst` with rows `first_row..first_row+rows`, reading column runs through `span`.
    fn fill(&self, first_row: u64, rows: u64, dst: &mut [u8], span: &mut Vec<u8>) -> Result<()> {
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
            let n = b - a;
            let Some(src) = &run.src else {
                for r in a..b {
                    let o = ((r - first_row) * rb + run.out_col) as usize;
                    dst[o..o + run.width as usize].fill(0);
                }
                continue;
            };
            let first_src = src.start + (src.row + (a - run.out_row)) * src.row_bytes;
            if run.width == rb && run.width == src.row_bytes {
                let o = ((a - first_row) * rb) as usize;
                src.file
                    .read_at(&mut dst[o..o + (n * rb) as usize], first_src)?;
            } else {
                // Column segments (row-parallel weights split or merged): one read of the rows'
                // whole span, then a segment per row (a read per row costs more: a system call
                // is dearer than copying a few KiB). A split's span is shared with the other
                // ranks taking their slices of it.
                let len = n * src.row_bytes;
                let w = run.width as usize;
                let mut copy = |bytes: &[u8]| {
                    for i in 0..n {
                        let o = ((a - first_row + i) * rb + run.out_col) as usize;
                        let s = (i * src.row_bytes + src.col) as usize;
                        dst[o..o + w].copy_from_slice(&bytes[s..s + w]);
                    }
                };
                if run.width < src.row_bytes {
                    copy(&self.share.span(src, first_src, len)?);
                } else {
                    if span.len() < len as usize {
                        span.resize(len as usize, 0);
                    }
                    src.file.read_at(&mut span[..len as usize], first_src)?;
                    copy(&span[..len as usize]);
                }
            }
        }
        Ok(())
    }
}

/// The part of piece `p` that an output block needs, as a run. `block` is (first output
/// row, rows, first logical row, first logical column, columns).
fn overlap(
    p: &Piece,
    reader: &Arc<Reader>,
    block: (u64, u64, u64, u64, u64),
    es: u64,
) -> Option<Run> {
    let (at, rows, row, col, width) = block;
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
            file: reader.clone(),
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

    /// A column segment is read with its source's whole row: chunks are sized by that.
    fn input_row_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter_map(|r| r.src.as_ref().map(|s| s.row_bytes))
            .max()
            .unwrap_or(0)
            .max(self.row_bytes)
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        BUFFERS.with(|b| self.fill(first_row, rows, dst, &mut b.borrow_mut().1))
    }

    /// A chunk made only of whole input rows (column-parallel splits, merges of row-split
    /// tensors along rows, whole tensors) is copied file to file inside the kernel, as `cp`
    /// copies; any other chunk is filled in this worker's reused buffer (no allocation, no
    /// zeroing) and handed to the executor in one write.
    fn write_direct(
        &self,
        first_row: u64,
        rows: u64,
        write: &mut dyn FnMut(u64, DirectPiece<'_>) -> Result<()>,
    ) -> Result<bool> {
        if let Some(ranges) = self.whole_row_ranges(first_row, rows) {
            for (at, src, offset, len) in ranges {
                write(
                    at,
                    DirectPiece::File {
                        file: &src.file.file,
                        path: &src.file.path,
                        offset,
                        len,
                    },
                )?;
            }
            return Ok(true);
        }
        BUFFERS.with(|b| {
            let (out, span) = &mut *b.borrow_mut();
            let len = (rows * self.row_bytes) as usize;
            if out.len() < len {
                out.resize(len, 0);
            }
            self.fill(first_row, rows, &mut out[..len], span)?;
            write(0, DirectPiece::Bytes(&out[..len]))
        })?;
        Ok(true)
    }
}
