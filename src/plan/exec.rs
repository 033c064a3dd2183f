//! The executor: runs a [`Plan`] on a bounded rayon pool.
//!
//! Work is cut into chunks of whole rows (whole heads where rows are permuted), each at most
//! `chunk_bytes`, so working memory is `threads × chunk_bytes × 2` whatever the tensor or model
//! size. A chunk of a source tensor's rows is made by [`super::rows`] (verbatim rows copied
//! file to file, others read with `pread` into reused per-thread buffers) and written at its
//! planned offset, so the resident set does not grow with the model either.

use super::rows::{run_rows, Rows};
use super::{Op, OutputLayout, Plan, PlannedTensor};
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use formats::atomic::{AtomicFile, StagedDir};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Upper bound of one chunk's input or output bytes.
    pub chunk_bytes: u64,
    pub progress: bool,
    /// Replace an existing output.
    pub force: bool,
    /// Where GGML block quantization runs (`--device`).
    pub device: super::Device,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: 0,
            chunk_bytes: 8 << 20,
            progress: false,
            force: false,
            device: super::Device::Cpu,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecStats {
    pub files: Vec<PathBuf>,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// One unit of work: `rows` rows of one output tensor starting at `first_row`.
struct Chunk {
    file: usize,
    tensor: usize,
    first_row: u64,
    rows: u64,
}

fn rows_of(input: &Path, planned: &PlannedTensor, src: &SourceTensor) -> Result<Rows> {
    let fail = |why: &str| Error::tensor(input, &src.name, why.to_string());
    let row_elements = planned.recipe.row_elements.max(1);
    let numel = src.numel();
    if !numel.is_multiple_of(row_elements) {
        return Err(fail("element count is not a whole number of rows"));
    }
    let count = (numel / row_elements).max(1);
    if !src.len.is_multiple_of(count) || !planned.len.is_multiple_of(count) {
        return Err(fail("byte size is not a whole number of rows"));
    }
    let mut group = 1;
    for op in &planned.recipe.ops {
        if let Op::PermuteQk { n_head, .. } = op {
            if *n_head == 0 || !count.is_multiple_of(2 * n_head) {
                return Err(fail(
                    "rows do not divide into 2 x heads for the q/k permutation",
                ));
            }
            group = count / n_head;
        }
    }
    Ok(Rows {
        count,
        src_bytes: src.len / count,
        dst_bytes: planned.len / count,
        group,
    })
}

/// Runs `plan` reading from `input`. On any error nothing is left at the target paths.
pub fn execute(plan: &Plan, input: &Checkpoint, opts: &ExecOptions) -> Result<ExecStats> {
    run(plan, Some(input), opts)
}

/// Runs a plan whose every tensor is inline or made by a [`TensorProducer`] (which reads its
/// own inputs), e.g. a tensor-parallel reshard reading several rank files.
///
/// [`TensorProducer`]: super::TensorProducer
pub fn execute_produced(plan: &Plan, opts: &ExecOptions) -> Result<ExecStats> {
    run(plan, None, opts)
}

/// How one planned tensor is made, with its row geometry.
enum Work {
    Inline,
    Rows(Rows),
    Produced,
}

fn run(plan: &Plan, input: Option<&Checkpoint>, opts: &ExecOptions) -> Result<ExecStats> {
    let started = Instant::now();
    let device = opts.device.resolve()?;
    let sources = input.map(|i| i.tensors()).unwrap_or_default();
    let staged = match plan.layout {
        OutputLayout::Folder => {
            if plan.target.exists() && !opts.force {
                return Err(Error::Usage(format!(
                    "{} already exists (use --force to replace it)",
                    plan.target.display()
                )));
            }
            Some(StagedDir::create(&staging_target(
                &plan.target,
                opts.force,
            ))?)
        }
        OutputLayout::Files => {
            std::fs::create_dir_all(&plan.target)
                .map_err(|e| formats::FormatError::io(&plan.target, "create output folder", e))?;
            for f in &plan.files {
                let path = plan.target.join(&f.name);
                if path.exists() && !opts.force {
                    return Err(Error::Usage(format!(
                        "{} already exists (use --force to replace it)",
                        path.display()
                    )));
                }
            }
            None
        }
    };
    let dir = staged
        .as_ref()
        .map(|s| s.path().to_path_buf())
        .unwrap_or_else(|| plan.target.clone());

    // Input files opened once, for verbatim rows copied inside the kernel (`copy_file_range`).
    let input_files = match input {
        Some(i) => i
            .file_paths()
            .into_iter()
            .map(|p| {
                std::fs::File::open(&p)
                    .map(|f| (f, p.clone()))
                    .map_err(|e| formats::FormatError::io(&p, "open", e).into())
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let outputs = plan
        .files
        .iter()
        .map(|f| {
            let path = dir.join(&f.name);
            // Rank folders (Megatron's `mp_rank_00/model.safetensors`) live below the target.
            if let Some(parent) = path.parent().filter(|p| *p != dir) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| formats::FormatError::io(parent, "create folder", e))?;
            }
            let out = AtomicFile::create(&path, f.size)?;
            out.write_at(0, &f.header)?;
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;

    let mut chunks = Vec::new();
    let mut geometry = Vec::with_capacity(plan.files.len());
    for (fi, file) in plan.files.iter().enumerate() {
        let mut per_file = Vec::with_capacity(file.tensors.len());
        for (ti, planned) in file.tensors.iter().enumerate() {
            let (work, rows, widest, group) = if let Some(bytes) = &planned.inline {
                outputs[fi].write_at(planned.offset, bytes)?;
                (Work::Inline, 0, 1, 1)
            } else if let Some(producer) = &planned.producer {
                let (count, row_bytes) = (producer.rows(), producer.row_bytes());
                if count.checked_mul(row_bytes) != Some(planned.len) {
                    return Err(Error::tensor(
                        plan.target.join(&file.name),
                        &planned.name,
                        format!(
                            "planned {} bytes but its producer makes {count} rows of {row_bytes}",
                            planned.len
                        ),
                    ));
                }
                let widest = row_bytes.max(producer.input_row_bytes()).max(1);
                (Work::Produced, count, widest, producer.row_group().max(1))
            } else {
                let input = input.ok_or_else(|| {
                    Error::tensor(
                        plan.target.join(&file.name),
                        &planned.name,
                        "the plan reads a source tensor but no input checkpoint was given"
                            .to_string(),
                    )
                })?;
                let src = &sources[planned.recipe.source_index];
                let rows = rows_of(&input.file_paths()[src.file], planned, src)?;
                let (count, widest) = (rows.count, rows.src_bytes.max(rows.dst_bytes).max(1));
                let group = rows.group;
                (Work::Rows(rows), count, widest, group)
            };
            let per_chunk = (opts.chunk_bytes / widest).max(1);
            let per_chunk = (per_chunk / group).max(1) * group;
            let mut first = 0;
            while first < rows {
                let n = per_chunk.min(rows - first);
                chunks.push(Chunk {
                    file: fi,
                    tensor: ti,
                    first_row: first,
                    rows: n,
                });
                first += n;
            }
            per_file.push(work);
        }
        geometry.push(per_file);
    }

    if input.is_none() {
        // Produced plans (tensor-parallel ranks) have files of matching tensors: the same
        // rows of tensor i of every rank file are made one after the other, so producers
        // slicing one input span for several ranks find it still cached.
        chunks.sort_by_key(|c| (c.tensor, c.first_row, c.file));
    }
    let total: u64 = plan
        .files
        .iter()
        .flat_map(|f| f.tensors.iter().map(|t| t.len))
        .sum();
    let bar = progress_bar(opts.progress, total);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start worker threads: {e}")))?;

    pool.install(|| {
        chunks.par_iter().try_for_each(|chunk| {
            let planned = &plan.files[chunk.file].tensors[chunk.tensor];
            let out = &outputs[chunk.file];
            let work = &geometry[chunk.file][chunk.tensor];
            let written = match (work, input, &planned.producer) {
                (Work::Rows(rows), Some(_), _) => {
                    let src = &sources[planned.recipe.source_index];
                    run_rows(
                        &input_files,
                        src,
                        planned,
                        rows,
                        chunk.first_row,
                        chunk.rows,
                        out,
                        device,
                    )?
                }
                (Work::Produced, _, Some(producer)) => {
                    produce_chunk(producer.as_ref(), planned, chunk, out)?
                }
                _ => 0,
            };
            // Writeback of each finished chunk starts now, overlapping the rest of the job, so
            // the final fsync waits only for the tail (the 1.09 GB f16 cast: 0.77 s → 0.42 s).
            if written > 0 {
                let row_bytes = match work {
                    Work::Rows(rows) => rows.dst_bytes,
                    _ => written / chunk.rows.max(1),
                };
                out.start_writeback(planned.offset + chunk.first_row * row_bytes, written);
            }
            bar.inc(written);
            Ok::<(), Error>(())
        })
    })?;
    bar.finish_and_clear();

    if outputs.len() > 1 {
        // Flush every output at once: one after the other, each waits for the disk alone.
        pool.install(|| outputs.par_iter().try_for_each(|o| o.sync()))?;
    }
    for side in &plan.side_files {
        formats::atomic::write_file_atomic(&dir.join(&side.name), &side.bytes)?;
    }
    let mut files = Vec::with_capacity(outputs.len());
    for out in outputs {
        match out.commit() {
            Ok(path) => files.push(path),
            Err(e) => {
                // A split set is only valid whole: take back the members already in place.
                for done in &files {
                    let _ = std::fs::remove_file(done);
                }
                return Err(e.into());
            }
        }
    }
    if let Some(staged) = staged {
        let staged_root = staged.target().to_path_buf();
        staged.commit()?;
        if staged_root != plan.target {
            // --force: the new folder is complete under a hidden name; only now replace the old.
            remove_existing(&plan.target)?;
            std::fs::rename(&staged_root, &plan.target)
                .map_err(|e| formats::FormatError::io(&plan.target, "rename", e))?;
        }
        files = plan
            .files
            .iter()
            .map(|f| plan.target.join(&f.name))
            .collect();
    }
    Ok(ExecStats {
        files,
        bytes_written: plan.output_bytes(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// With `--force` the new folder is staged beside the old one under its own name, so the old
/// output stays intact until the new one is complete.
fn staging_target(target: &Path, force: bool) -> PathBuf {
    if force && target.exists() {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        target.with_file_name(format!(".{name}.ckpt-opt-new-{}", std::process::id()))
    } else {
        target.to_path_buf()
    }
}

fn remove_existing(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(|e| formats::FormatError::io(path, "replace", e).into())
}

fn produce_chunk(
    producer: &dyn super::TensorProducer,
    planned: &PlannedTensor,
    chunk: &Chunk,
    out: &AtomicFile,
) -> Result<u64> {
    let row_bytes = producer.row_bytes();
    let base = planned.offset + chunk.first_row * row_bytes;
    let direct = producer.write_direct(chunk.first_row, chunk.rows, &mut |at, piece| {
        match piece {
            super::DirectPiece::Bytes(bytes) => out.write_at(base + at, bytes),
            super::DirectPiece::File {
                file,
                path,
                offset,
                len,
            } => out.copy_from(base + at, file, path, offset, len),
        }
        .map_err(Error::from)
    })?;
    if direct {
        return Ok(chunk.rows * row_bytes);
    }
    // One buffer per worker thread, reused: a fresh multi-MiB allocation per chunk costs a
    // page fault and a zeroed page per 4 KiB (a fifth of an FP8 export's CPU time). Taken out
    // of the cell while in use, so a producer that runs nested rayon work stays correct.
    thread_local! {
        static PRODUCE_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    // Made and written WRITE_PIECE_BYTES of the widest row side at a time, so `pwrite` copies
    // bytes still in the CPU cache into the page cache.
    let widest = row_bytes.max(producer.input_row_bytes()).max(1);
    let group = producer.row_group().max(1);
    let piece_rows = ((WRITE_PIECE_BYTES / widest).max(1) / group).max(1) * group;
    let mut dst = PRODUCE_BUF.with(|b| b.take());
    let mut written = Ok(());
    let mut first = chunk.first_row;
    let end = chunk.first_row + chunk.rows;
    while first < end && written.is_ok() {
        let n = piece_rows.min(end - first);
        dst.clear();
        dst.resize((n * row_bytes) as usize, 0);
        written = producer
            .produce(first, n, &mut dst)
            .and_then(|()| Ok(out.write_at(planned.offset + first * row_bytes, &dst)?));
        first += n;
    }
    PRODUCE_BUF.with(|b| b.set(dst));
    written.map(|()| chunk.rows * row_bytes)
}

/// Bytes a producer makes (or a direct producer gathers) and writes at a time, about the
/// second-level cache: the kernel's copy into the page cache then reads them while they are
/// still cached. Measured on the bench model (2 threads): pruning's gather with 8 MiB pieces
/// (the executor's chunk) took twice the CPU time of 1 MiB ones, 256 KiB and 2 MiB were slower
/// than 1 MiB; the FP8 export's `pwrite` copy fell from 47% to 5% of its samples.
pub const WRITE_PIECE_BYTES: u64 = 1 << 20;

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DirectPiece, PlannedFile, Recipe, TensorProducer};
    use std::sync::Arc;

    /// Row `r` is `row_bytes` copies of the byte `r`.
    #[derive(Debug)]
    struct Counting {
        rows: u64,
        row_bytes: u64,
    }

    impl TensorProducer for Counting {
        fn rows(&self) -> u64 {
            self.rows
        }
        fn row_bytes(&self) -> u64 {
            self.row_bytes
        }
        fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
            assert_eq!(dst.len() as u64, rows * self.row_bytes);
            for (i, row) in dst.chunks_mut(self.row_bytes as usize).enumerate() {
                row.fill((first_row + i as u64) as u8);
            }
            Ok(())
        }
    }

    fn produced_plan(target: &Path, len: u64, producer: Counting) -> Plan {
        Plan {
            job: "test".into(),
            target: target.to_path_buf(),
            layout: OutputLayout::Files,
            files: vec![PlannedFile {
                name: "out.bin".into(),
                size: 4 + len,
                header: b"HEAD".to_vec(),
                tensors: vec![PlannedTensor {
                    name: "t".into(),
                    dtype: "U8".into(),
                    shape: vec![producer.rows, producer.row_bytes],
                    offset: 4,
                    len,
                    recipe: Recipe {
                        source: "produced".into(),
                        source_index: usize::MAX,
                        row_elements: producer.row_bytes,
                        ops: Vec::new(),
                    },
                    inline: None,
                    producer: Some(Arc::new(producer)),
                }],
            }],
            side_files: Vec::new(),
        }
    }

    #[test]
    fn producer_rows_land_at_their_offsets_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let plan = produced_plan(
            dir.path(),
            100 * 7,
            Counting {
                rows: 100,
                row_bytes: 7,
            },
        );
        let opts = ExecOptions {
            threads: 2,
            chunk_bytes: 20, // two rows per chunk: many chunks
            ..ExecOptions::default()
        };
        execute_produced(&plan, &opts).unwrap();
        let bytes = std::fs::read(dir.path().join("out.bin")).unwrap();
        assert_eq!(&bytes[..4], b"HEAD");
        for (r, row) in bytes[4..].chunks(7).enumerate() {
            assert!(row.iter().all(|&b| b == r as u8), "row {r}");
        }
    }

    /// Hands out rows of a held buffer without copying; `produce` must then never run.
    #[derive(Debug)]
    struct Borrowing(Vec<u8>);

    impl TensorProducer for Borrowing {
        fn rows(&self) -> u64 {
            self.0.len() as u64 / 5
        }
        fn row_bytes(&self) -> u64 {
            5
        }
        fn produce(&self, _: u64, _: u64, _: &mut [u8]) -> Result<()> {
            Err(Error::Usage("produce called on a direct producer".into()))
        }
        fn write_direct(
            &self,
            first_row: u64,
            rows: u64,
            write: &mut dyn FnMut(u64, DirectPiece<'_>) -> Result<()>,
        ) -> Result<bool> {
            // Two pieces per chunk, to check the offsets within the chunk.
            let (a, n) = ((first_row * 5) as usize, (rows * 5) as usize);
            write(0, DirectPiece::Bytes(&self.0[a..a + 3]))?;
            write(3, DirectPiece::Bytes(&self.0[a + 3..a + n]))?;
            Ok(true)
        }
    }

    #[test]
    fn direct_producers_are_written_without_produce() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200u8).collect();
        let mut plan = produced_plan(
            dir.path(),
            200,
            Counting {
                rows: 40,
                row_bytes: 5,
            },
        );
        plan.files[0].tensors[0].producer = Some(Arc::new(Borrowing(data.clone())));
        let opts = ExecOptions {
            threads: 2,
            chunk_bytes: 15,
            ..ExecOptions::default()
        };
        execute_produced(&plan, &opts).unwrap();
        let bytes = std::fs::read(dir.path().join("out.bin")).unwrap();
        assert_eq!(&bytes[4..], &data[..]);
    }

    #[test]
    fn producer_size_disagreeing_with_plan_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plan = produced_plan(
            dir.path(),
            99,
            Counting {
                rows: 10,
                row_bytes: 10,
            },
        );
        let err = execute_produced(&plan, &ExecOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("producer makes 10 rows of 10"),
            "{err}"
        );
        assert!(!dir.path().join("out.bin").exists());
    }
}
