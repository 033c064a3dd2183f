//! The streaming slice: an output tensor made of kept rows and kept columns of one input
//! tensor, in row chunks (the executor's chunking bounds memory).
//!
//! Runs of consecutive kept rows are copied whole, file to file inside the kernel
//! (`copy_file_range`, as `cp` copies). When columns are pruned too, each chunk's kept rows are
//! read with positioned reads into a per-worker buffer (each input span read once, no mmap page
//! faults, nothing left in the resident set) and the kept columns gathered from it, the same
//! split as reshard's `shard::slices`.

use crate::checkpoint::SourceTensor;
use crate::error::{Error, Result};
use crate::plan::{DirectPiece, TensorProducer, WRITE_PIECE_BYTES};
use crate::shard::input::Reader;
use std::cell::RefCell;
use std::sync::Arc;

/// Gathers `rows` (all rows when `None`) and, inside each, the elements of `col_runs` (whole
/// rows when `None`) of a tensor seen as `[src_rows, row_bytes]` (a 1-D tensor is one row).
pub struct Gather {
    input: Arc<Reader>,
    src: SourceTensor,
    src_row_bytes: u64,
    /// Kept rows as runs of consecutive source rows, in output order.
    runs: Vec<RowRun>,
    cols: Option<Columns>,
    out_row_bytes: u64,
    /// [`MIN_FILE_RUN`] and [`WRITE_PIECE_BYTES`] (tests lower them to cover every path on small
    /// tensors).
    min_file_run: u64,
    piece_bytes: u64,
}

/// Output rows `out_row..out_row+rows` are source rows `src_row..src_row+rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowRun {
    out_row: u64,
    src_row: u64,
    rows: u64,
}

/// Kept columns of a row as runs of consecutive columns, `(first byte, bytes)` each.
type Columns = Vec<(usize, usize)>;

/// Runs of at most this many bytes are copied as one fixed-size block (see [`copy_columns`]).
const BLOCK: usize = 16;

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather")
            .field("source", &self.src.name)
            .field("row_runs", &self.runs.len())
            .field("cols", &self.cols.is_some())
            .finish()
    }
}

thread_local! {
    /// (output chunk, input span) buffers of this worker, reused across chunks.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Gather {
    /// `input`: the source tensor's file opened for positioned reads. `elem_bytes`: bytes per
    /// element of a dense tensor, `None` for a block-quantized one (whose rows can be gathered
    /// but not its columns). Indices were validated against the model's dimensions, and the
    /// tensor's shape against the config, at plan time.
    pub fn new(
        input: Arc<Reader>,
        src: SourceTensor,
        elem_bytes: Option<usize>,
        rows: Option<&[usize]>,
        cols: Option<&[usize]>,
    ) -> Result<Self> {
        let fail = |why: String| Error::tensor(&input.path, &src.name, why);
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
                let runs = runs_of(cols)
                    .into_iter()
                    .map(|(start, len)| (start * elem, len * elem))
                    .collect();
                (Some(runs), (cols.len() * elem) as u64)
            }
        };
        let runs = match rows {
            Some(r) => row_runs(r),
            None => vec![RowRun {
                out_row: 0,
                src_row: 0,
                rows: src_rows,
            }],
        };
        Ok(Gather {
            input,
            src,
            src_row_bytes,
            runs,
            cols,
            out_row_bytes,
            min_file_run: MIN_FILE_RUN,
            piece_bytes: WRITE_PIECE_BYTES,
        })
    }

    /// The row runs of output rows `first..first+rows`, clipped to them, output rows counted
    /// from `first`.
    fn runs_in(&self, first: u64, rows: u64) -> impl Iterator<Item = RowRun> + '_ {
        let end = first + rows;
        let start = self.runs.partition_point(|r| r.out_row + r.rows <= first);
        self.runs[start..]
            .iter()
            .take_while(move |r| r.out_row < end)
            .map(move |r| {
                let (a, b) = (r.out_row.max(first), (r.out_row + r.rows).min(end));
                RowRun {
                    out_row: a - first,
                    src_row: r.src_row + (a - r.out_row),
                    rows: b - a,
                }
            })
    }

    /// Fills `dst` with output rows `runs` (consecutive in the output; `dst` starts at the
    /// first one's row). Whole rows are read straight into place, a read per run; rows losing
    /// columns are read into `span` in as few positioned reads as stay within twice the kept
    /// bytes (see [`reads`]), then each row's kept columns copied out.
    fn gather(&self, runs: &[RowRun], dst: &mut [u8], span: &mut Vec<u8>) -> Result<()> {
        let (in_row, out_row) = (self.src_row_bytes as usize, self.out_row_bytes as usize);
        let Some(first_out) = runs.first().map(|r| r.out_row) else {
            return Ok(());
        };
        let Some(cols) = &self.cols else {
            // Whole rows: each run read straight into its place, no buffer pass.
            for run in runs {
                let o = (run.out_row - first_out) as usize * out_row;
                let len = run.rows as usize * in_row;
                self.input.read_at(
                    &mut dst[o..o + len],
                    self.src.start + run.src_row * in_row as u64,
                )?;
            }
            return Ok(());
        };
        for group in reads(runs) {
            let base = group[0].src_row;
            let last = group[group.len() - 1];
            let len = (last.src_row + last.rows - base) as usize * in_row;
            if span.len() < len {
                span.resize(len, 0);
            }
            self.input
                .read_at(&mut span[..len], self.src.start + base * in_row as u64)?;
            for run in group {
                let s = (run.src_row - base) as usize * in_row;
                let o = (run.out_row - first_out) as usize * out_row;
                for k in 0..run.rows as usize {
                    copy_columns(
                        cols,
                        &span[s + k * in_row..s + (k + 1) * in_row],
                        &mut dst[o + k * out_row..o + (k + 1) * out_row],
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether a run is copied file to file: whole rows, long enough that one
    /// `copy_file_range` beats reading it into the buffer and writing it with the rest.
    fn copied_by_kernel(&self, run: &RowRun) -> bool {
        self.cols.is_none() && run.rows * self.src_row_bytes >= self.min_file_run
    }
}

/// Bytes of a run of whole rows from which it is copied file to file (`copy_file_range`)
/// rather than gathered with its neighbours. Measured on the bench model (ext4, 2 threads):
/// with `--target-hidden-size` (runs of a few 11 KiB `down_proj` rows) this threshold cost
/// about a fifth less CPU than one `copy_file_range` per run; with `--target-ffn-hidden-size`
/// the two were even; gathering every run in the buffer cost more in both.
const MIN_FILE_RUN: u64 = 64 << 10;

/// Kept source rows (any order) as runs of consecutive rows, in output order.
fn row_runs(rows: &[usize]) -> Vec<RowRun> {
    let mut runs: Vec<RowRun> = Vec::new();
    for (out, &r) in rows.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.src_row + run.rows == r as u64 => run.rows += 1,
            _ => runs.push(RowRun {
                out_row: out as u64,
                src_row: r as u64,
                rows: 1,
            }),
        }
    }
    runs
}

/// Consecutive runs grouped into one positioned read each: a run joins the read before it while
/// its rows come later in the source and the read's span stays at most twice the rows it
/// keeps (fewer system calls for scattered rows, at most as many bytes skipped as kept).
fn reads(runs: &[RowRun]) -> Vec<&[RowRun]> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let (base, mut end, mut kept) = (
            runs[i].src_row,
            runs[i].src_row + runs[i].rows,
            runs[i].rows,
        );
        let mut j = i + 1;
        while let Some(r) = runs.get(j) {
            if r.src_row < end || r.src_row + r.rows - base > 2 * (kept + r.rows) {
                break;
            }
            end = r.src_row + r.rows;
            kept += r.rows;
            j += 1;
        }
        groups.push(&runs[i..j]);
        i = j;
    }
    groups
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

/// The kept column runs of one source row, packed into `out`. A short run (scattered
/// channels kept by importance are runs of a few elements) is copied as one fixed
/// [`BLOCK`]-byte load and store, several times cheaper than a `memcpy` call or a copy per
/// element: the bytes past its end land where the next runs go, and are overwritten by them.
/// Runs near the end of `row` or `out`, and long runs, are copied exactly.
fn copy_columns(cols: &[(usize, usize)], row: &[u8], out: &mut [u8]) {
    let mut at = 0;
    for &(start, len) in cols {
        if len <= BLOCK && at + BLOCK <= out.len() && start + BLOCK <= row.len() {
            out[at..at + BLOCK].copy_from_slice(&row[start..start + BLOCK]);
        } else {
            out[at..at + len].copy_from_slice(&row[start..start + len]);
        }
        at += len;
    }
}

impl TensorProducer for Gather {
    fn rows(&self) -> u64 {
        self.runs.iter().map(|r| r.rows).sum()
    }

    fn row_bytes(&self) -> u64 {
        self.out_row_bytes
    }

    fn input_row_bytes(&self) -> u64 {
        self.src_row_bytes
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let runs: Vec<RowRun> = self.runs_in(first_row, rows).collect();
        BUFFERS.with(|b| self.gather(&runs, dst, &mut b.borrow_mut().1))
    }

    /// In pieces of [`WRITE_PIECE_BYTES`]: long runs of whole kept rows are handed over as file
    /// ranges, which the executor copies inside the kernel; the rows between them (short runs,
    /// rows losing columns) are gathered in this worker's reused buffers and written one
    /// stretch at a time.
    fn write_direct(
        &self,
        first_row: u64,
        rows: u64,
        write: &mut dyn FnMut(u64, DirectPiece<'_>) -> Result<()>,
    ) -> Result<bool> {
        let step = (self.piece_bytes / self.src_row_bytes.max(self.out_row_bytes).max(1)).max(1);
        let mut r = first_row;
        while r < first_row + rows {
            let n = step.min(first_row + rows - r);
            let at = (r - first_row) * self.out_row_bytes;
            self.write_piece(r, n, &mut |o, piece| write(at + o, piece))?;
            r += n;
        }
        Ok(true)
    }
}

impl Gather {
    /// [`TensorProducer::write_direct`] for output rows `first_row..first_row+rows`.
    fn write_piece(
        &self,
        first_row: u64,
        rows: u64,
        write: &mut dyn FnMut(u64, DirectPiece<'_>) -> Result<()>,
    ) -> Result<()> {
        let runs: Vec<RowRun> = self.runs_in(first_row, rows).collect();
        let rb = self.out_row_bytes;
        BUFFERS.with(|b| {
            let (out, span) = &mut *b.borrow_mut();
            let mut i = 0;
            while i < runs.len() {
                let run = runs[i];
                if self.copied_by_kernel(&run) {
                    let piece = DirectPiece::File {
                        file: &self.input.file,
                        path: &self.input.path,
                        offset: self.src.start + run.src_row * self.src_row_bytes,
                        len: run.rows * rb,
                    };
                    write(run.out_row * rb, piece)?;
                    i += 1;
                    continue;
                }
                let j = i + runs[i..]
                    .iter()
                    .position(|r| self.copied_by_kernel(r))
                    .unwrap_or(runs.len() - i);
                let stretch = &runs[i..j];
                let len = (stretch.iter().map(|r| r.rows).sum::<u64>() * rb) as usize;
                if out.len() < len {
                    out.resize(len, 0);
                }
                self.gather(stretch, &mut out[..len], span)?;
                write(run.out_row * rb, DirectPiece::Bytes(&out[..len]))?;
                i = j;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    /// The one tensor of a test file, and the file opened for positioned reads.
    fn opened(path: &std::path::Path) -> (Arc<Reader>, SourceTensor) {
        let ckpt = Checkpoint::open(path).unwrap();
        let input = Reader::open_all(&ckpt).unwrap().remove(0);
        (input, ckpt.tensors()[0].clone())
    }

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
        let (input, src) = opened(&path);
        let g = Gather::new(input, src, Some(2), Some(&[2, 0]), Some(&[1, 2, 3])).unwrap();
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
    fn scattered_columns_copied_as_blocks_are_exact_up_to_the_row_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        // 2 x 64 f32: element (r, c) = 100 r + c
        let data: Vec<u8> = (0..2u32)
            .flat_map(|r| (0..64u32).flat_map(move |c| ((100 * r + c) as f32).to_le_bytes()))
            .collect();
        let spec = formats::safetensors::TensorSpec::new("w", formats::Dtype::F32, vec![2, 64]);
        formats::safetensors::write_file(&path, &[(spec, &data)], None).unwrap();
        let (input, src) = opened(&path);
        let cols: Vec<usize> = (0..64).step_by(3).collect();
        let g = Gather::new(input, src, Some(4), None, Some(&cols)).unwrap();
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

    /// Bytes of output rows `first..first+rows` as `write_direct` hands them over, file
    /// ranges read back from the input.
    fn direct(g: &Gather, first: u64, rows: u64) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut out = vec![0u8; (rows * g.row_bytes()) as usize];
        let mut write = |at: u64, piece: DirectPiece<'_>| {
            let at = at as usize;
            match piece {
                DirectPiece::Bytes(b) => out[at..at + b.len()].copy_from_slice(b),
                DirectPiece::File {
                    file, offset, len, ..
                } => file
                    .read_exact_at(&mut out[at..at + len as usize], offset)
                    .unwrap(),
            }
            Ok(())
        };
        assert!(g.write_direct(first, rows, &mut write).unwrap());
        out
    }

    #[test]
    fn kept_rows_merge_into_runs_in_output_order() {
        let run = |out_row, src_row, rows| RowRun {
            out_row,
            src_row,
            rows,
        };
        assert_eq!(
            row_runs(&[0, 1, 2, 5, 7, 8, 3]),
            vec![run(0, 0, 3), run(3, 5, 1), run(4, 7, 2), run(6, 3, 1)]
        );
        // One read while the skipped rows stay within the kept ones; a later run that is
        // too far, or earlier in the source, starts a new read.
        let runs = [run(0, 0, 2), run(2, 3, 2), run(4, 20, 1), run(5, 1, 1)];
        let groups: Vec<usize> = reads(&runs).iter().map(|g| g.len()).collect();
        assert_eq!(groups, vec![2, 1, 1]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any kept rows, and kept columns or whole rows, made in any two chunks by `produce`
        /// or by `write_direct`, give the naive gather of the tensor: whole-row file ranges
        /// mixed with gathered stretches of short runs, both column paths (runs and scattered
        /// elements) and the grouped reads.
        #[test]
        fn gather_equals_the_naive_selection(
            rows in 1usize..24,
            cols in 1usize..80,
            row_mask in proptest::collection::vec(proptest::bool::ANY, 24),
            col_mask in proptest::collection::vec(proptest::bool::ANY, 80),
            whole_rows: bool,
            min_file_run in 0u64..400,
            piece_bytes in 1u64..600,
            split in 0usize..24,
        ) {
            let kept_rows: Vec<usize> = (0..rows).filter(|&r| row_mask[r]).collect();
            let kept_cols: Vec<usize> = (0..cols).filter(|&c| whole_rows || col_mask[c]).collect();
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
            let (input, src) = opened(&path);
            let col_list = (!whole_rows).then_some(kept_cols.as_slice());
            let mut g = Gather::new(input, src, Some(2), Some(&kept_rows), col_list).unwrap();
            g.min_file_run = min_file_run;
            g.piece_bytes = piece_bytes;
            let out_rows = kept_rows.len();
            proptest::prop_assert_eq!(g.rows(), out_rows as u64);
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
            let mut written = direct(&g, 0, first as u64);
            written.extend(direct(&g, first as u64, (out_rows - first) as u64));
            let want: Vec<u8> = kept_rows
                .iter()
                .flat_map(|&r| kept_cols.iter().map(move |&c| r * cols + c))
                .flat_map(|i| (i as u16).to_le_bytes())
                .collect();
            proptest::prop_assert_eq!(&out, &want);
            proptest::prop_assert_eq!(&written, &want);
        }

        /// Grouped reads cover every run once, in order, each a forward span at most twice
        /// the rows it keeps.
        #[test]
        fn reads_cover_runs_within_twice_their_rows(
            kept in proptest::collection::vec(0usize..200, 1..60),
        ) {
            let mut kept = kept;
            kept.sort_unstable();
            kept.dedup();
            let runs = row_runs(&kept);
            let groups = reads(&runs);
            let flat: Vec<RowRun> = groups.iter().flat_map(|g| g.iter().copied()).collect();
            proptest::prop_assert_eq!(&flat, &runs);
            for g in groups {
                let (first, last) = (g[0], g[g.len() - 1]);
                let span = last.src_row + last.rows - first.src_row;
                let rows: u64 = g.iter().map(|r| r.rows).sum();
                proptest::prop_assert!(span <= 2 * rows);
            }
        }
    }
}
