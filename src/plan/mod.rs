//! Plans: every job is metadata-only planning followed by streaming execution.
//!
//! A [`Plan`] lists the output files with their final headers and, for each output tensor,
//! its offset, size and [`Recipe`]. Because every size is known before any data is touched,
//! headers are written first and tensors can be produced independently and in parallel
//! ([`execute`]). `--dry-run` prints the plan as JSON.

mod device;
mod exec;
mod rows;

pub use device::{with_quantizer, Device};

pub use exec::{execute, execute_produced, ExecOptions, ExecStats, WRITE_PIECE_BYTES};

use crate::error::Result;
use formats::gguf::GgmlType;
use formats::Dtype;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// How the outputs land on disk.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLayout {
    /// A folder built under a temp name and renamed as a whole (HF checkpoints).
    Folder,
    /// One or more sibling files (a GGUF file or split set), each renamed when complete.
    Files,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// What the job does, e.g. "convert safetensors -> gguf".
    pub job: String,
    /// The output folder (`Folder`) or the folder the files go in (`Files`).
    pub target: PathBuf,
    pub layout: OutputLayout,
    pub files: Vec<PlannedFile>,
    /// Small files written whole (config.json, tokenizer files, shard index).
    pub side_files: Vec<SideFile>,
}

impl Plan {
    pub fn output_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum::<u64>()
            + self
                .side_files
                .iter()
                .map(|f| f.bytes.len() as u64)
                .sum::<u64>()
    }

    pub fn tensor_count(&self) -> usize {
        self.files.iter().map(|f| f.tensors.len()).sum()
    }

    /// The largest single tensor written, which bounds per-tensor working memory.
    pub fn largest_tensor_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.tensors.iter().map(|t| t.len))
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    /// File name relative to the plan's target.
    pub name: String,
    pub size: u64,
    /// The exact bytes at offset 0 (format header, offsets final).
    #[serde(skip)]
    pub header: Vec<u8>,
    pub tensors: Vec<PlannedTensor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedTensor {
    pub name: String,
    /// Output element type name (safetensors dtype or ggml type).
    pub dtype: String,
    /// Row-major shape of the output.
    pub shape: Vec<u64>,
    /// Absolute offset in the output file.
    pub offset: u64,
    pub len: u64,
    pub recipe: Recipe,
    /// Data computed at plan time (for example llama.cpp's `rope_freqs`), written as is.
    #[serde(skip)]
    pub inline: Option<Vec<u8>>,
    /// Made by a [`TensorProducer`] (slices of several inputs, gathers, quantization with
    /// state) instead of row ops on one source; `recipe` then only describes it.
    #[serde(skip)]
    pub producer: Option<Arc<dyn TensorProducer>>,
}

/// Makes one output tensor in independent row ranges, for jobs whose output rows are not a
/// row-for-row image of one source tensor (tensor-parallel slicing and merging, pruning
/// gathers). The executor cuts `rows()` into chunks of at most its chunk size, calls
/// `produce` for each on a worker thread and writes the bytes at the planned offset, so
/// working memory stays `threads × chunk` whatever the tensor size. A producer reads its
/// inputs itself (it holds them, e.g. `Arc<Checkpoint>`s of several rank files) and should
/// release the input pages it has finished with.
pub trait TensorProducer: Send + Sync + std::fmt::Debug {
    /// Output rows; `rows() × row_bytes()` is the tensor's planned byte length.
    fn rows(&self) -> u64;
    /// Output bytes per row.
    fn row_bytes(&self) -> u64;
    /// Rows that must stay in one chunk (1 unless the producer needs whole groups).
    fn row_group(&self) -> u64 {
        1
    }
    /// Input bytes read per output row, to size chunks (defaults to `row_bytes`).
    fn input_row_bytes(&self) -> u64 {
        self.row_bytes()
    }
    /// Fills `dst` (exactly `rows × row_bytes()` bytes) with output rows
    /// `first_row .. first_row + rows`.
    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()>;
    /// When rows `first_row .. first_row + rows` are whole slices of the inputs, hands them to
    /// `write(byte offset within the chunk, piece)` — bytes it holds, or a range of an input
    /// file that the executor copies inside the kernel — and returns true; false (the default)
    /// makes the executor call `produce` instead.
    fn write_direct(
        &self,
        _first_row: u64,
        _rows: u64,
        _write: &mut dyn FnMut(u64, DirectPiece<'_>) -> Result<()>,
    ) -> Result<bool> {
        Ok(false)
    }
}

/// A byte range of a chunk that a [`TensorProducer`] writes directly.
pub enum DirectPiece<'a> {
    Bytes(&'a [u8]),
    /// `len` bytes of an input file at `offset` (`copy_file_range`, as `cp` copies).
    File {
        file: &'a std::fs::File,
        path: &'a std::path::Path,
        offset: u64,
        len: u64,
    },
}

/// How an output tensor is made from one input tensor.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    /// Input tensor name.
    pub source: String,
    /// Index into the input's tensor list (`Checkpoint::tensors`).
    #[serde(skip)]
    pub source_index: usize,
    /// Elements per row of the source (its innermost dimension); rows are the unit of work.
    pub row_elements: u64,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Element-wise dtype conversion.
    Cast { from: Dtype, to: Dtype },
    /// llama.cpp's rotary row order for q/k (see `model::permute`): rows regrouped within
    /// each of `n_head` heads; `inverse` undoes it (GGUF -> Hugging Face).
    PermuteQk { n_head: u64, inverse: bool },
    /// Rows of float `from` → GGML blocks of `ty` (`kernels::cpu::ggml::quantize`), each row on
    /// its own, so a chunk of rows is independent of the others. The rows are decoded to f32 a
    /// few at a time into a small buffer (no chunk-sized f32 copy). `importance`: llama.cpp's
    /// imatrix, one weight per column (`quant::gguf::importance_for`); the plan prints its length.
    QuantizeGgml {
        from: Dtype,
        ty: GgmlType,
        #[serde(rename = "importance_columns", serialize_with = "importance_len")]
        importance: Option<Arc<[f32]>>,
    },
}

fn importance_len<S: serde::Serializer>(
    w: &Option<Arc<[f32]>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match w {
        Some(w) => s.serialize_some(&w.len()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SideFile {
    pub name: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl SideFile {
    pub fn json(name: &str, value: &serde_json::Value) -> Self {
        let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        bytes.push(b'\n');
        SideFile {
            name: name.to_string(),
            bytes,
        }
    }
}
