//! The executor: runs a [`Plan`] on a bounded rayon pool.
//!
//! Work is cut into chunks of whole rows (whole heads where rows are permuted), each at most
//! `chunk_bytes`, so working memory is `threads × chunk_bytes × 2` whatever the tensor or model
//! size. A chunk reads its rows straight from the input mmap, applies the recipe's ops, writes
//! the result at its planned offset, and releases the input pages it read, so the resident
//! set does not grow with the model either.

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
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: 0,
            chunk_bytes: 8 << 20,
            progress: false,
            force: false,
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

/// Row geometry of one planned tensor: how many rows, and bytes per row on each side.
struct Rows {
    count: u64,
    src_bytes: u64,
    dst_bytes: u64,
    /// Rows that must stay together (one head when rows are permuted).
    group: u64,
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
    let started = Instant::now();
    let sources = input.tensors();
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

    let outputs = plan
        .files
        .iter()
        .map(|f| {
            let out = AtomicFile::create(&dir.join(&f.name), f.size)?;
            out.write_at(0, &f.header)?;
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;

    let mut chunks = Vec::new();
    let mut geometry = Vec::with_capacity(plan.files.len());
    for (fi, file) in plan.files.iter().enumerate() {
        let mut per_file = Vec::with_capacity(file.tensors.len());
        for (ti, planned) in file.tensors.iter().enumerate() {
            if let Some(bytes) = &planned.inline {
                outputs[fi].write_at(planned.offset, bytes)?;
                per_file.push(None);
                continue;
            }
            let src = &sources[planned.recipe.source_index];
            let rows = rows_of(&input.file_paths()[src.file], planned, src)?;
            let widest = rows.src_bytes.max(rows.dst_bytes).max(1);
            let per_chunk = (opts.chunk_bytes / widest).max(1);
            let per_chunk = (per_chunk / rows.group).max(1) * rows.group;
            let mut first = 0;
            while first < rows.count {
                let n = per_chunk.min(rows.count - first);
                chunks.push(Chunk {
                    file: fi,
                    tensor: ti,
                    first_row: first,
                    rows: n,
                });
                first += n;
            }
            per_file.push(Some(rows));
        }
        geometry.push(per_file);
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
            // Only tensors made from a source have chunks, and those have their geometry.
            let Some(rows) = &geometry[chunk.file][chunk.tensor] else {
                return Ok(());
            };
            let src = &sources[planned.recipe.source_index];
            let written = run_chunk(input, src, planned, rows, chunk, &outputs[chunk.file])?;
            bar.inc(written);
            Ok::<(), Error>(())
        })
    })?;
    bar.finish_and_clear();

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
        files = files
            .into_iter()
            .map(|p| plan.target.join(p.file_name().unwrap_or_default()))
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

fn run_chunk(
    input: &Checkpoint,
    src: &SourceTensor,
    planned: &PlannedTensor,
    rows: &Rows,
    chunk: &Chunk,
    out: &AtomicFile,
) -> Result<u64> {
    let all = input.bytes(src);
    let from = (chunk.first_row * rows.src_bytes) as usize;
    let to = from + (chunk.rows * rows.src_bytes) as usize;
    let bytes = &all[from..to];
    let dst_offset = planned.offset + chunk.first_row * rows.dst_bytes;
    if planned.recipe.ops.is_empty() {
        out.write_at(dst_offset, bytes)?;
    } else {
        let mut current: Vec<u8> = Vec::new();
        let mut row_bytes = rows.src_bytes as usize;
        for op in &planned.recipe.ops {
            let input_bytes: &[u8] = if current.is_empty() { bytes } else { &current };
            let next = match *op {
                Op::PermuteQk { inverse, .. } => {
                    let mut dst = vec![0u8; input_bytes.len()];
                    let heads = (chunk.rows / rows.group) as usize;
                    crate::model::permute::permute_qk_rows(
                        input_bytes,
                        &mut dst,
                        chunk.rows as usize,
                        row_bytes,
                        heads,
                        inverse,
                    )
                    .map_err(|why| Error::tensor(out.target(), &planned.name, why))?;
                    dst
                }
                Op::Cast { from, to } => {
                    let n = input_bytes.len() / from.size();
                    let mut dst = vec![0u8; n * to.size()];
                    kernels::cpu::cast::cast_bytes(input_bytes, from, &mut dst, to)
                        .map_err(|e| Error::tensor(out.target(), &planned.name, e.to_string()))?;
                    row_bytes = row_bytes / from.size() * to.size();
                    dst
                }
                Op::QuantizeGgml {
                    from,
                    ty,
                    ref importance,
                } => {
                    let row_elements = row_bytes / from.size();
                    let dst =
                        quantize_rows(input_bytes, from, ty, importance.as_deref(), row_elements)
                            .map_err(|(index, e)| {
                            let cols = row_elements.max(1) as u64;
                            let row = chunk.first_row + index / cols;
                            let reason = match e {
                                kernels::KernelError::NotFinite { .. } => format!(
                                    "row {row}, column {}: NaN or infinite weight (quantizing \
                                     to {ty} stopped)",
                                    index % cols
                                ),
                                other => format!("quantizing to {ty}: {other}"),
                            };
                            Error::tensor(&input.file_paths()[src.file], &src.name, reason)
                        })?;
                    row_bytes = row_elements / ty.block_size() as usize * ty.type_size() as usize;
                    dst
                }
            };
            current = next;
        }
        out.write_at(dst_offset, &current)?;
    }
    input
        .mapped(src.file)
        .release(src.start + from as u64, (to - from) as u64);
    Ok(chunk.rows * rows.dst_bytes)
}

/// Quantizes rows of `row_elements` little-endian `from` values, decoding about 64 Ki values at
/// a time into one reused f32 buffer. On error returns the index of the offending value (for a
/// non-finite input) with the kernel's error.
fn quantize_rows(
    bytes: &[u8],
    from: formats::Dtype,
    ty: formats::gguf::GgmlType,
    importance: Option<&[f32]>,
    row_elements: usize,
) -> std::result::Result<Vec<u8>, (u64, kernels::KernelError)> {
    use kernels::cpu::ggml;
    let row_elements = row_elements.max(1);
    let src_row = row_elements * from.size();
    let dst_row = ggml::quantized_len(ty, row_elements).map_err(|e| (0, e))?;
    let rows = bytes.len() / src_row;
    if let Some(w) = importance {
        if w.len() != row_elements {
            let e = kernels::KernelError::ImportanceLength {
                row: w.len(),
                elements: row_elements,
            };
            return Err((0, e));
        }
    }
    let per = ((1 << 16) / row_elements).max(1);
    let mut buf = vec![0f32; per.min(rows) * row_elements];
    let mut dst = vec![0u8; rows * dst_row];
    let mut r0 = 0;
    while r0 < rows {
        let k = per.min(rows - r0);
        let vals = &mut buf[..k * row_elements];
        kernels::cpu::cast::decode_f32(&bytes[r0 * src_row..(r0 + k) * src_row], from, vals)
            .map_err(|e| (0, e))?;
        let out = &mut dst[r0 * dst_row..(r0 + k) * dst_row];
        ggml::quantize(ty, vals, out, importance).map_err(|e| match e {
            kernels::KernelError::NotFinite { index } => ((r0 * row_elements + index) as u64, e),
            other => (0, other),
        })?;
        r0 += k;
    }
    Ok(dst)
}

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
