//! Reading a checkpoint in any layout: find its layout, open every rank file as its own
//! [`Checkpoint`], check each against the layout it claims, and index where every rectangle
//! of every logical tensor is stored.
//!
//! All checks happen here, before any output byte is written: missing or extra rank files,
//! rank configs that disagree, tensors missing, extra (a rank file of another model) or of the
//! wrong shape or dtype, non-zero vocabulary padding and duplicated KV heads that differ.

use super::config::{hf_config_from_trtllm, TRTLLM_MAPPING};
use super::layout::{
    check_parallel, megatron_folder, rank_files, BlockSource, Logical, Parallel, RankFile,
    ShardLayout,
};
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use formats::Dtype;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An opened input: its layout, the model, and one checkpoint per rank file.
pub struct Input {
    pub layout: ShardLayout,
    pub par: Parallel,
    pub logical: Logical,
    /// The Hugging Face `config.json` of the model (rebuilt for TensorRT-LLM inputs).
    pub hf_config: Value,
    /// Folder holding tokenizer files.
    pub root: PathBuf,
    pub files: Vec<Arc<Checkpoint>>,
    /// The same files opened for positioned reads, per checkpoint and part.
    pub readers: Vec<Vec<Arc<Reader>>>,
    /// Dtype of each logical tensor.
    pub dtypes: Vec<Dtype>,
    /// Distinct stored rectangles of each logical tensor.
    pub pieces: Vec<Vec<Piece>>,
    pub input_bytes: u64,
}

/// An input file opened for positioned reads (`pread`), which stream through the page cache
/// faster than faulting an mmap in and leave nothing in the resident set.
#[derive(Debug)]
pub struct Reader {
    pub path: PathBuf,
    pub file: std::fs::File,
}

impl Reader {
    /// Every file of `ckpt`, opened for positioned reads.
    pub fn open_all(ckpt: &Checkpoint) -> Result<Vec<Arc<Reader>>> {
        ckpt.file_paths()
            .into_iter()
            .map(|path| {
                let file = std::fs::File::open(&path)
                    .map_err(|e| formats::FormatError::io(&path, "open", e))?;
                Ok(Arc::new(Reader { path, file }))
            })
            .collect()
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| formats::FormatError::io(&self.path, "read", e).into())
    }
}

/// Rows `row..row+rows`, columns `col..col+cols` of a logical tensor, stored from row
/// `stored_row` of a tensor of `file` (columns from 0).
#[derive(Debug, Clone)]
pub struct Piece {
    pub row: u64,
    pub rows: u64,
    pub col: u64,
    pub cols: u64,
    pub file: usize,
    pub tensor: SourceTensor,
    pub stored_row: u64,
}

impl Piece {
    /// Bytes per row of the stored tensor.
    pub fn row_bytes(&self) -> u64 {
        self.tensor.len / self.tensor.shape.first().copied().unwrap_or(1).max(1)
    }
}

/// Finds the layout of `path`: a folder whose `config.json` has TensorRT-LLM's `mapping`,
/// a folder of `mp_rank_*` rank folders (Megatron), otherwise Hugging Face.
pub fn detect(path: &Path) -> Result<ShardLayout> {
    if path.join("mp_rank_00").is_dir() || path.join("mp_rank_00_000").is_dir() {
        return Ok(ShardLayout::Megatron);
    }
    let config = path.join("config.json");
    if config.is_file() {
        let v = read_json(&config)?;
        if v.get(TRTLLM_MAPPING).is_some() {
            return Ok(ShardLayout::Trtllm);
        }
    }
    Ok(ShardLayout::Hf)
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, format!("invalid JSON: {e}")))
}

fn parse_config(path: &Path, value: &Value) -> Result<ModelConfig> {
    ModelConfig::from_json(path, &value.to_string())
}

/// Opens and checks `path`.
pub fn open(path: &Path) -> Result<Input> {
    let layout = detect(path)?;
    let (hf_config, config_path, par, file_paths) = match layout {
        ShardLayout::Hf => {
            let root = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let config_path = root.join("config.json");
            let hf = read_json(&config_path)?;
            let par = Parallel { tp: 1, pp: 1 };
            (hf, config_path, par, vec![path.to_path_buf()])
        }
        ShardLayout::Trtllm => {
            let config_path = path.join("config.json");
            let tl = read_json(&config_path)?;
            let (hf, par) = hf_config_from_trtllm(&config_path, &tl)?;
            let files = (0..par.world())
                .map(|r| path.join(format!("rank{r}.safetensors")))
                .collect();
            (hf, config_path, par, files)
        }
        ShardLayout::Megatron => {
            let config_path = path.join("config.json");
            let hf = read_json(&config_path)?;
            let par = megatron_parallel(path)?;
            let files = (0..par.world())
                .map(|r| path.join(megatron_folder(par, r)).join("model.safetensors"))
                .collect();
            (hf, config_path, par, files)
        }
    };
    let config = parse_config(&config_path, &hf_config)?;
    check_parallel(&config, layout, par).map_err(|why| Error::config(&config_path, why))?;
    if layout == ShardLayout::Trtllm {
        extra_rank_files(path, par)?;
    }
    let files = open_rank_files(&file_paths, layout, par)?;
    if layout == ShardLayout::Megatron {
        check_megatron_metadata(&files, &file_paths, par)?;
    }
    let readers = files
        .iter()
        .map(|f| Reader::open_all(f))
        .collect::<Result<Vec<_>>>()?;
    let logical = Logical::new(config);
    let padded = padded_vocab_of(&logical, layout, par, &files, &file_paths)?;
    let expected = rank_files(&logical, layout, par, padded);
    let root = hf_root(path, layout);
    let mut input = Input {
        layout,
        par,
        hf_config,
        root,
        input_bytes: files.iter().map(|f| f.tensor_bytes()).sum(),
        dtypes: Vec::new(),
        pieces: vec![Vec::new(); logical.tensors.len()],
        logical,
        files,
        readers,
    };
    index(&mut input, &expected)?;
    Ok(input)
}

fn hf_root(path: &Path, layout: ShardLayout) -> PathBuf {
    if layout == ShardLayout::Hf && !path.is_dir() {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

/// tp and pp of a Megatron folder, from its `mp_rank_*` folder names.
fn megatron_parallel(path: &Path) -> Result<Parallel> {
    let entries = std::fs::read_dir(path).map_err(|e| formats::FormatError::io(path, "list", e))?;
    let (mut tp, mut pp, mut with_pp) = (0u64, 0u64, false);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mp_rank_") else {
            continue;
        };
        let mut parts = rest.split('_');
        let t = parts.next().and_then(|s| s.parse::<u64>().ok());
        let p = parts.next().map(|s| s.parse::<u64>().ok());
        match (t, p) {
            (Some(t), None) => tp = tp.max(t + 1),
            (Some(t), Some(Some(p))) => {
                with_pp = true;
                tp = tp.max(t + 1);
                pp = pp.max(p + 1);
            }
            _ => {
                return Err(Error::config(
                    path.join(&name),
                    "not a Megatron rank folder name (mp_rank_TT or mp_rank_TT_PPP)",
                ))
            }
        }
    }
    Ok(Parallel {
        tp: tp.max(1),
        pp: if with_pp { pp.max(1) } else { 1 },
    })
}

/// Opens every rank file of a sharded checkpoint; a missing one is named.
pub(crate) fn open_rank_files(
    paths: &[PathBuf],
    layout: ShardLayout,
    par: Parallel,
) -> Result<Vec<Arc<Checkpoint>>> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        if !p.exists() {
            return Err(Error::config(
                p,
                format!(
                    "rank file missing: the {} checkpoint has tp {} × pp {} ranks",
                    layout.name(),
                    par.tp,
                    par.pp
                ),
            ));
        }
        files.push(Arc::new(Checkpoint::open(p)?));
    }
    Ok(files)
}

/// A `rankN.safetensors` beyond the world size means the config and the files disagree.
pub(crate) fn extra_rank_files(path: &Path, par: Parallel) -> Result<()> {
    let entries = std::fs::read_dir(path).map_err(|e| formats::FormatError::io(path, "list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let n = name
            .strip_prefix("rank")
            .and_then(|s| s.strip_suffix(".safetensors"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = n {
            if n >= par.world() {
                return Err(Error::config(
                    path.join(&name),
                    format!(
                        "rank file beyond mapping.world_size {} in config.json",
                        par.world()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every Megatron rank records the parallel sizes and model geometry: they must agree with
/// the folder structure and with rank 0.
fn check_megatron_metadata(
    files: &[Arc<Checkpoint>],
    paths: &[PathBuf],
    par: Parallel,
) -> Result<()> {
    let meta = |f: &Checkpoint| -> std::collections::BTreeMap<String, String> {
        match f {
            Checkpoint::Safetensors(m) => {
                m.files()[0].header().metadata.clone().unwrap_or_default()
            }
            Checkpoint::Gguf(_) => Default::default(),
        }
    };
    let first = meta(&files[0]);
    for (rank, (f, p)) in files.iter().zip(paths).enumerate() {
        let m = meta(f);
        let rank = rank as u64;
        let want = [
            ("tensor_model_parallel_size", par.tp),
            ("pipeline_model_parallel_size", par.pp),
            ("tensor_model_parallel_rank", rank % par.tp),
            ("pipeline_model_parallel_rank", rank / par.tp),
        ];
        for (key, value) in want {
            if let Some(found) = m.get(key) {
                if found != &value.to_string() {
                    return Err(Error::config(
                        p,
                        format!("metadata {key} = {found}, but the rank folders say {value}"),
                    ));
                }
            }
        }
        for (key, value) in &first {
            if key.ends_with("_rank") {
                continue;
            }
            if m.get(key) != Some(value) {
                return Err(Error::config(
                    p,
                    format!(
                        "metadata {key} = {} differs from rank 0's {value} (a rank of another model?)",
                        m.get(key).map(String::as_str).unwrap_or("(missing)")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Padded vocabulary of a sharded input, from the rows of its first embedding shard (so a
/// checkpoint padded to 64 or 128 by another exporter reads too).
pub(crate) fn padded_vocab_of(
    lg: &Logical,
    layout: ShardLayout,
    par: Parallel,
    files: &[Arc<Checkpoint>],
    paths: &[PathBuf],
) -> Result<u64> {
    let vocab = lg.config.vocab_size;
    let name = match layout {
        ShardLayout::Hf => return Ok(vocab),
        ShardLayout::Trtllm => "transformer.vocab_embedding.weight",
        ShardLayout::Megatron => "embedding.word_embeddings.weight",
    };
    let t = files[0]
        .tensors()
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::tensor(&paths[0], name, "missing from the first rank"))?;
    let padded = t.shape.first().copied().unwrap_or(0) * par.tp;
    if padded < vocab {
        return Err(Error::tensor(
            &paths[0],
            name,
            format!(
                "{} rows × tp {} is less than vocab_size {vocab}",
                padded / par.tp,
                par.tp
            ),
        ));
    }
    Ok(padded)
}

/// Checks every rank file against the layout and indexes its pieces.
fn index(input: &mut Input, expected: &[RankFile]) -> Result<()> {
    let lg = &input.logical;
    let mut dtypes: Vec<Option<Dtype>> = vec![None; lg.tensors.len()];
    // (tensor, row, rows, col, cols) -> index into pieces[tensor], to spot duplicates.
    let mut seen: HashMap<(usize, u64, u64, u64, u64), usize> = HashMap::new();
    let mut duplicates: Vec<(usize, usize, Piece)> = Vec::new();
    let mut zeros: Vec<(usize, SourceTensor, u64, u64)> = Vec::new();
    for (fi, rank) in expected.iter().enumerate() {
        let ckpt = &input.files[fi];
        let paths = ckpt.file_paths();
        let mut stored: HashMap<String, SourceTensor> = ckpt
            .tensors()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let display = ckpt.display_path();
        for want in &rank.tensors {
            let Some(src) = stored.remove(&want.name) else {
                return Err(Error::tensor(
                    &display,
                    &want.name,
                    format!(
                        "missing (expected in a {} rank file of this model)",
                        input.layout.name()
                    ),
                ));
            };
            let path = &paths[src.file];
            if src.shape != want.shape {
                return Err(Error::tensor(
                    path,
                    &want.name,
                    format!(
                        "shape {:?}, expected {:?} for this model at tp {} pp {}",
                        src.shape, want.shape, input.par.tp, input.par.pp
                    ),
                ));
            }
            let dtype = src
                .ty
                .dense()
                .ok_or_else(|| crate::checkpoint::unsupported_type(ckpt, &src, "resharded"))?;
            if want.redundant {
                continue;
            }
            let mut at = 0u64;
            for block in &want.blocks {
                match block.source {
                    BlockSource::Zero => zeros.push((fi, src.clone(), at, block.rows)),
                    BlockSource::Logical { tensor, row, col } => {
                        match dtypes[tensor] {
                            None => dtypes[tensor] = Some(dtype),
                            Some(d) if d != dtype => {
                                return Err(Error::tensor(
                                    path,
                                    &want.name,
                                    format!(
                                        "dtype {} differs from {} elsewhere for {}",
                                        dtype.name(),
                                        d.name(),
                                        lg.tensors[tensor].name
                                    ),
                                ))
                            }
                            _ => {}
                        }
                        let piece = Piece {
                            row,
                            rows: block.rows,
                            col,
                            cols: want.width(),
                            file: fi,
                            tensor: src.clone(),
                            stored_row: at,
                        };
                        let key = (tensor, row, block.rows, col, want.width());
                        match seen.get(&key) {
                            Some(&first) => duplicates.push((tensor, first, piece)),
                            None => {
                                seen.insert(key, input.pieces[tensor].len());
                                input.pieces[tensor].push(piece);
                            }
                        }
                    }
                }
                at += block.rows;
            }
        }
        // Hugging Face checkpoints may carry buffers transformers ignores (rotary inv_freq).
        let mut extra: Vec<&String> = stored
            .keys()
            .filter(|n| !(input.layout == ShardLayout::Hf && crate::model::is_skipped_hf_tensor(n)))
            .collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(Error::tensor(
                &display,
                *name,
                format!(
                    "not a tensor of this model's {} tp {} pp {} rank {fi} (a rank file of another model?)",
                    input.layout.name(),
                    input.par.tp,
                    input.par.pp
                ),
            ));
        }
    }
    for (t, pieces) in input.pieces.iter().enumerate() {
        let (rows, cols) = lg.dims(t);
        let area: u64 = pieces.iter().map(|p| p.rows * p.cols).sum();
        if area != rows * cols {
            return Err(Error::tensor(
                input.files[0].display_path(),
                &lg.tensors[t].name,
                "the layout does not cover this tensor exactly (internal error)",
            ));
        }
    }
    input.dtypes = dtypes
        .into_iter()
        .map(|d| d.unwrap_or(Dtype::BF16))
        .collect();
    for (fi, src, at, rows) in zeros {
        check_zero_rows(&input.files[fi], &src, at, rows)?;
    }
    for (t, first, dup) in duplicates {
        check_duplicate(input, t, &input.pieces[t][first], &dup)?;
    }
    Ok(())
}

/// Padded vocabulary rows must be zero when merging (TensorRT-LLM pads with zeros).
fn check_zero_rows(ckpt: &Checkpoint, src: &SourceTensor, at: u64, rows: u64) -> Result<()> {
    let row_bytes = src.len / src.shape.first().copied().unwrap_or(1).max(1);
    let bytes = ckpt.bytes(src);
    let (from, to) = (
        (at * row_bytes) as usize,
        ((at + rows) * row_bytes) as usize,
    );
    if let Some(pos) = bytes[from..to].iter().position(|&b| b != 0) {
        let row = at + pos as u64 / row_bytes;
        return Err(Error::tensor(
            &ckpt.file_paths()[src.file],
            &src.name,
            format!("vocabulary padding row {row} is not zero"),
        ));
    }
    Ok(())
}

/// A KV head duplicated across ranks must be identical in every copy.
fn check_duplicate(input: &Input, t: usize, a: &Piece, b: &Piece) -> Result<()> {
    let es = input.dtypes[t].size() as u64;
    let (fa, fb) = (&input.files[a.file], &input.files[b.file]);
    let (ra, rb) = (a.row_bytes(), b.row_bytes());
    let (ba, bb) = (fa.bytes(&a.tensor), fb.bytes(&b.tensor));
    let width = (a.cols * es) as usize;
    for r in 0..a.rows {
        let oa = ((a.stored_row + r) * ra) as usize;
        let ob = ((b.stored_row + r) * rb) as usize;
        if ba[oa..oa + width] != bb[ob..ob + width] {
            return Err(Error::tensor(
                &fb.file_paths()[b.tensor.file],
                &b.tensor.name,
                format!(
                    "row {} duplicates row {} of {} in {} ({} rows {}..{}) but differs",
                    b.stored_row + r,
                    a.stored_row + r,
                    a.tensor.name,
                    fa.file_paths()[a.tensor.file].display(),
                    input.logical.tensors[t].name,
                    a.row,
                    a.row + a.rows
                ),
            ));
        }
    }
    Ok(())
}
