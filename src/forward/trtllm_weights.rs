//! Reading a TensorRT-LLM checkpoint (`config.json` with `mapping` + `rank{N}.safetensors`) for
//! the forward pass, so `eval` measures the exported artifact itself.
//!
//! Where each row lives is the description `reshard` and the exporter write from
//! ([`crate::shard::layout::rank_files`]): every stored tensor is a stack of rectangles of
//! Hugging Face tensors (fused per-rank `[Q_r; K_r; V_r]` with KV heads duplicated when
//! `num_key_value_heads < tp`, `mlp.fc` = gate, `mlp.gate` = up, row-parallel `dense`/`proj`
//! column slices, replicated norms, zero-padded vocabulary rows, layers renumbered from 0 on
//! every pipeline stage). Reading inverts it: a Hugging Face tensor's rows are gathered from
//! its rectangles, each decoded from the stored rows that hold it, one layer at a time and
//! straight from the mmaps. Padding rows are never read; a KV head duplicated on several ranks is
//! read from its first copy, the others checked equal to it when the checkpoint is opened.
//!
//! A quantized linear (one with a `weights_scaling_factor`) is dequantized by its
//! [`QuantAlgo`] — config.json's for a single-scheme checkpoint, the module's own from
//! `quant_cfg.json` for MIXED_PRECISION ([`crate::model::trtllm_quant`]) — with the exporter's
//! rules (`quant::trtllm` `quantized_tensors`), to the same effective weight the Hugging Face
//! modelopt path of [`super::weights`] computes: `dequant(codes) · diag(prequant_scaling_factor)`.
//! Activation scales are applied only with `eval --act-quant` ([`TrtllmWeights::act_quant`]),
//! as for Hugging Face input. An FP8
//! KV cache's per-layer `attention.kv_cache_scaling_factor` is checked and ignored: K/V stay f32
//! here.

use super::act_quant::{ActKind, ActQuant};
use super::weights::{decode_par, Encoding};
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::model::trtllm_quant::{self, QuantizedLayers};
use crate::model::ModelConfig;
use crate::shard::config::model_config_from_trtllm;
use crate::shard::input::{extra_rank_files, open_rank_files, padded_vocab_of, read_json, Piece};
use crate::shard::layout::{self, BlockSource, Logical, StoredTensor};
use crate::shard::{Parallel, ShardLayout};
use formats::Dtype;
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `quantization.quant_algo` values this reader dequantizes. A new algorithm adds a variant
/// here, its tensor checks in [`TrtllmWeights::check_quantized`] and its decoding in
/// [`TrtllmWeights::decode_stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantAlgo {
    /// `null`: float weights only.
    None,
    /// F8_E4M3 `[out, in]`, per-tensor `weights_scaling_factor` `[]`.
    Fp8,
    /// I8 `[out, in]`, per-row `weights_scaling_factor` `[out]`.
    W8A16,
    /// I8 `[out/2, in]` (rows 2i, 2i+1 in the low, high nibble), `weights_scaling_factor`
    /// `[out, in/group]`, optional `prequant_scaling_factor` `[in]`.
    W4A16Awq { group: u64 },
    /// SmoothQuant: I8 `[out, in]` (of `W·diag(s)`), per-row `weights_scaling_factor` `[out]`,
    /// per-tensor `activation_scaling_factor`, `prequant_scaling_factor` `[in]` (`1/s`) on every
    /// linear, norms unfolded.
    W8A8Sq,
}

impl QuantAlgo {
    /// The `quant_algo` string.
    pub fn name(self) -> &'static str {
        match self {
            QuantAlgo::None => "null",
            QuantAlgo::Fp8 => "FP8",
            QuantAlgo::W8A16 => "W8A16",
            QuantAlgo::W4A16Awq { .. } => "W4A16_AWQ",
            QuantAlgo::W8A8Sq => "W8A8_SQ_PER_CHANNEL",
        }
    }

    fn from_config(path: &Path, tl: &Value) -> Result<Self> {
        Self::from_block(path, tl.get("quantization"), "quantization.")
    }

    /// One single-scheme block (`quant_algo`, `group_size`, …): config.json's `quantization`
    /// or one `quantized_layers` value of quant_cfg.json; `at` prefixes the field names in
    /// errors.
    fn from_block(path: &Path, q: Option<&Value>, at: &str) -> Result<Self> {
        let algo = q.and_then(|q| q.get("quant_algo")).unwrap_or(&Value::Null);
        match algo.as_str() {
            None if algo.is_null() => Ok(QuantAlgo::None),
            Some("FP8") => Ok(QuantAlgo::Fp8),
            Some("W8A16") => Ok(QuantAlgo::W8A16),
            Some("W8A8_SQ_PER_CHANNEL") => Ok(QuantAlgo::W8A8Sq),
            Some("W4A16_AWQ") => {
                let group = q
                    .and_then(|q| q.get("group_size"))
                    .and_then(Value::as_u64)
                    .filter(|&g| g > 0)
                    .ok_or_else(|| {
                        Error::config(
                            path,
                            format!("{at}group_size is missing or not a positive integer (W4A16_AWQ needs it)"),
                        )
                    })?;
                Ok(QuantAlgo::W4A16Awq { group })
            }
            _ => Err(Error::config(
                path,
                format!(
                    "{at}quant_algo {algo} cannot be evaluated (supported: null, FP8, W8A16, W4A16_AWQ, W8A8_SQ_PER_CHANNEL)"
                ),
            )),
        }
    }
}

/// The [`QuantAlgo`] of each linear.
#[derive(Debug)]
enum ModuleAlgos {
    /// config.json's one algo: a linear holding a `weights_scaling_factor` has it.
    Single(QuantAlgo),
    /// MIXED_PRECISION: quant_cfg.json's keys in file order (fnmatch, first match wins); a
    /// linear no key matches is unquantized.
    Mixed(Vec<(String, QuantAlgo)>),
}

impl ModuleAlgos {
    /// Reads config.json (`tl`, at `config_path`) and, for MIXED_PRECISION, quant_cfg.json
    /// beside it; a key whose algo this reader cannot decode is refused here.
    fn read(config_path: &Path, tl: &Value) -> Result<Self> {
        if !trtllm_quant::is_mixed(tl.get("quantization")) {
            return QuantAlgo::from_config(config_path, tl).map(ModuleAlgos::Single);
        }
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let q = QuantizedLayers::read_trtllm(dir, tl)?;
        let layers = q
            .layers
            .iter()
            .map(|(key, block)| {
                let at = format!("quantized_layers key `{key}`: ");
                Ok((
                    key.clone(),
                    QuantAlgo::from_block(&q.path, Some(block), &at)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(ModuleAlgos::Mixed(layers))
    }

    /// The algo of module `module` (stage-local TensorRT-LLM name).
    fn of(&self, module: &str) -> QuantAlgo {
        match self {
            ModuleAlgos::Single(a) => *a,
            ModuleAlgos::Mixed(layers) => layers
                .iter()
                .find(|(k, _)| trtllm_quant::fnmatch(k, module))
                .map_or(QuantAlgo::None, |(_, a)| *a),
        }
    }

    /// Why a module holding a `weights_scaling_factor` has no algo.
    fn unquantized_why(&self, module: &str) -> String {
        match self {
            ModuleAlgos::Single(_) => {
                "a weights_scaling_factor, but config.json's quantization.quant_algo is null".into()
            }
            ModuleAlgos::Mixed(_) => format!(
                "a weights_scaling_factor, but no quantized_layers key of quant_cfg.json matches {module} (null quant_algo)"
            ),
        }
    }
}

/// Whether `quantization.kv_cache_quant_algo` is FP8 (`null` otherwise; anything else is
/// refused). Only the scales' presence and values are checked: the forward pass keeps K/V in f32.
fn kv_cache_fp8(path: &Path, tl: &Value) -> Result<bool> {
    let kv = tl
        .get("quantization")
        .and_then(|q| q.get("kv_cache_quant_algo"))
        .unwrap_or(&Value::Null);
    match kv.as_str() {
        None if kv.is_null() => Ok(false),
        Some("FP8") => Ok(true),
        _ => Err(Error::config(
            path,
            format!(
                "quantization.kv_cache_quant_algo {kv} cannot be evaluated (supported: null, FP8)"
            ),
        )),
    }
}

/// The per-layer FP8 KV-cache scale beside fused qkv weight `qkv` (TensorRT-LLM `Attention`
/// `kv_cache_scaling_factor`, shape `(1,)`).
fn kv_scale_name(qkv: &str) -> Option<String> {
    qkv.strip_suffix(".attention.qkv.weight")
        .map(|layer| format!("{layer}.attention.kv_cache_scaling_factor"))
}

/// Tensors that may sit beside a quantized linear's `weight`.
const SCALE_SUFFIXES: [&str; 3] = [
    "weights_scaling_factor",
    "prequant_scaling_factor",
    "activation_scaling_factor",
];

/// A Hugging Face tensor (`rows × cols`, vectors `n × 1`) and the rectangles that hold it.
#[derive(Debug)]
struct Gathered {
    rows: u64,
    cols: u64,
    pieces: Vec<Piece>,
}

/// An opened TensorRT-LLM checkpoint: the model, the rank files, and where every rectangle of
/// every Hugging Face tensor is stored.
pub struct TrtllmWeights {
    root: PathBuf,
    config_path: PathBuf,
    cfg: ModelConfig,
    algos: ModuleAlgos,
    /// `kv_cache_quant_algo: "FP8"`: every layer holds a `kv_cache_scaling_factor`.
    kv_fp8: bool,
    files: Vec<Arc<Checkpoint>>,
    /// Each rank file's tensors by name.
    tensors: Vec<HashMap<String, SourceTensor>>,
    /// Hugging Face tensor name → its rows, columns and rectangles.
    pieces: HashMap<String, Gathered>,
}

impl TrtllmWeights {
    /// Opens the checkpoint folder `path`, checking every rank file against the layout its
    /// `config.json` implies (tensors present with their shapes and dtypes, scales that fit)
    /// before any weight is read.
    pub fn open(path: &Path) -> Result<Self> {
        let config_path = path.join("config.json");
        let tl = read_json(&config_path)?;
        let (hf, par) = model_config_from_trtllm(&config_path, &tl)?;
        let algos = ModuleAlgos::read(&config_path, &tl)?;
        let kv_fp8 = kv_cache_fp8(&config_path, &tl)?;
        let cfg = ModelConfig::from_json(&config_path, &hf.to_string())?;
        layout::check_parallel(&cfg, ShardLayout::Trtllm, par)
            .map_err(|why| Error::config(&config_path, why))?;
        extra_rank_files(path, par)?;
        let paths: Vec<PathBuf> = (0..par.world())
            .map(|r| path.join(format!("rank{r}.safetensors")))
            .collect();
        let files = open_rank_files(&paths, ShardLayout::Trtllm, par)?;
        let lg = Logical::new(cfg.clone());
        let padded = padded_vocab_of(&lg, ShardLayout::Trtllm, par, &files, &paths)?;
        let tensors = files
            .iter()
            .map(|f| {
                f.tensors()
                    .into_iter()
                    .map(|t| (t.name.clone(), t))
                    .collect()
            })
            .collect();
        let mut w = TrtllmWeights {
            root: path.to_path_buf(),
            config_path,
            cfg,
            algos,
            kv_fp8,
            files,
            tensors,
            pieces: HashMap::new(),
        };
        w.index(&lg, par, padded)?;
        Ok(w)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The checkpoint folder (tokenizer files are copied there by the exporter).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, file: usize, t: &SourceTensor) -> PathBuf {
        self.files[file].file_paths()[t.file].clone()
    }

    fn err(&self, file: usize, t: &SourceTensor, why: String) -> Error {
        Error::tensor(self.path_of(file, t), &t.name, why)
    }

    /// Checks every rank file against the layout and records each Hugging Face tensor's
    /// rectangles (the first copy of a duplicated KV head; never padding).
    fn index(&mut self, lg: &Logical, par: Parallel, padded: u64) -> Result<()> {
        let ranks = layout::rank_files(lg, ShardLayout::Trtllm, par, padded);
        for (t, e) in lg.tensors.iter().enumerate() {
            let (rows, cols) = lg.dims(t);
            self.pieces.insert(
                e.name.clone(),
                Gathered {
                    rows,
                    cols,
                    pieces: Vec::new(),
                },
            );
        }
        // (tensor, row, col, rows) → the first copy, to compare later copies with it.
        let mut covered: HashMap<(usize, u64, u64, u64), Piece> = HashMap::new();
        let mut copies: Vec<(Piece, Piece)> = Vec::new();
        for (fi, rank) in ranks.iter().enumerate() {
            let mut expected: Vec<String> = Vec::new();
            for want in &rank.tensors {
                self.check_stored(fi, want, &mut expected)?;
                if want.redundant {
                    continue;
                }
                let mut at = 0u64;
                for block in &want.blocks {
                    if let BlockSource::Logical { tensor, row, col } = block.source {
                        let piece = Piece {
                            row,
                            rows: block.rows,
                            col,
                            cols: want.width(),
                            file: fi,
                            tensor: self.tensors[fi][&want.name].clone(),
                            stored_row: at,
                        };
                        match covered.entry((tensor, row, col, block.rows)) {
                            Entry::Occupied(first) => copies.push((first.get().clone(), piece)),
                            Entry::Vacant(slot) => {
                                slot.insert(piece.clone());
                                let name = &lg.tensors[tensor].name;
                                if let Some(g) = self.pieces.get_mut(name) {
                                    g.pieces.push(piece);
                                }
                            }
                        }
                    }
                    at += block.rows;
                }
            }
            if self.kv_fp8 {
                self.check_kv_scales(fi, &mut expected)?;
            }
            let mut extra: Vec<&String> = self.tensors[fi]
                .keys()
                .filter(|n| !expected.contains(n))
                .collect();
            extra.sort();
            if let Some(name) = extra.first() {
                return Err(Error::tensor(
                    self.files[fi].display_path(),
                    *name,
                    format!(
                        "not a tensor of this model's TensorRT-LLM tp {} pp {} rank {fi} (a rank file of another model, or a quantization this reader does not know?)",
                        par.tp, par.pp
                    ),
                ));
            }
        }
        for (first, copy) in &copies {
            self.check_copy(first, copy)?;
        }
        for (name, g) in &self.pieces {
            let area: u64 = g.pieces.iter().map(|p| p.rows * p.cols).sum();
            if area != g.rows * g.cols {
                return Err(Error::tensor(
                    &self.config_path,
                    name,
                    "the layout does not cover this tensor exactly (internal error)",
                ));
            }
        }
        Ok(())
    }

    /// Rank `fi`'s FP8 KV-cache scales, one per layer (beside each fused qkv): F32 `[1]`,
    /// finite. They are listed in `names` and otherwise ignored.
    fn check_kv_scales(&self, fi: usize, names: &mut Vec<String>) -> Result<()> {
        let wanted: Vec<String> = names.iter().filter_map(|n| kv_scale_name(n)).collect();
        for name in wanted {
            let Some(t) = self.tensors[fi].get(&name) else {
                return Err(Error::tensor(
                    self.files[fi].display_path(),
                    &name,
                    "missing (config.json's kv_cache_quant_algo is FP8)",
                ));
            };
            if t.ty.dense() != Some(Dtype::F32) || t.shape != [1] {
                return Err(self.err(
                    fi,
                    t,
                    format!(
                        "{} {:?}, expected F32 [1] for an FP8 KV cache",
                        t.ty.name(),
                        t.shape
                    ),
                ));
            }
            let v = self.small(fi, t)?[0];
            if !v.is_finite() {
                return Err(self.err(fi, t, format!("{v} is not a finite KV-cache scale")));
            }
            names.push(name);
        }
        Ok(())
    }

    /// A KV head duplicated across ranks (`num_key_value_heads < tp`) must decode to the same
    /// values in every copy: the model read here is then the one every rank runs.
    fn check_copy(&self, first: &Piece, copy: &Piece) -> Result<()> {
        let rows = |p: &Piece| p.stored_row..p.stored_row + p.rows;
        let a = self.decode_stored(first.file, &first.tensor.name, rows(first))?;
        let b = self.decode_stored(copy.file, &copy.tensor.name, rows(copy))?;
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        if same {
            return Ok(());
        }
        Err(self.err(
            copy.file,
            &copy.tensor,
            format!(
                "rows {:?} duplicate a KV head held by rows {:?} of {} in {} but differ",
                rows(copy),
                rows(first),
                first.tensor.name,
                self.files[first.file].display_path().display()
            ),
        ))
    }

    /// Checks stored tensor `want` of rank `fi` (plain or quantized) and lists the names it
    /// accounts for in `names`.
    fn check_stored(&self, fi: usize, want: &StoredTensor, names: &mut Vec<String>) -> Result<()> {
        let Some(t) = self.tensors[fi].get(&want.name) else {
            return Err(Error::tensor(
                self.files[fi].display_path(),
                &want.name,
                "missing (expected in a TensorRT-LLM rank file of this model)",
            ));
        };
        names.push(want.name.clone());
        let module = want.name.strip_suffix(".weight");
        let scale = module.and_then(|m| {
            self.tensors[fi]
                .get(&format!("{m}.weights_scaling_factor"))
                .map(|s| (m, s))
        });
        match scale {
            Some((m, s)) => {
                for suffix in SCALE_SUFFIXES {
                    names.push(format!("{m}.{suffix}"));
                }
                self.check_quantized(fi, want, t, s, m)
            }
            None => {
                let listed = module.filter(|m| {
                    trtllm_quant::is_decoder_linear(m) && self.algos.of(m) != QuantAlgo::None
                });
                if let (Some(m), ModuleAlgos::Mixed(_)) = (listed, &self.algos) {
                    return Err(Error::tensor(
                        self.files[fi].display_path(),
                        format!("{m}.weights_scaling_factor"),
                        format!(
                            "missing (quant_cfg.json gives {m} quant_algo {})",
                            self.algos.of(m).name()
                        ),
                    ));
                }
                if t.shape != want.shape {
                    return Err(self.err(
                        fi,
                        t,
                        format!(
                            "shape {:?}, expected {:?} for this model and mapping",
                            t.shape, want.shape
                        ),
                    ));
                }
                if !t.ty.dense().is_some_and(|d| d.is_float()) {
                    return Err(self.err(
                        fi,
                        t,
                        format!(
                            "{} without a weights_scaling_factor: not a float weight nor a quantized one",
                            t.ty.name()
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The tensors of one quantized linear against `quant_algo` (layouts of
    /// `quant::trtllm` `quantized_tensors`).
    fn check_quantized(
        &self,
        fi: usize,
        want: &StoredTensor,
        w: &SourceTensor,
        scale: &SourceTensor,
        module: &str,
    ) -> Result<()> {
        let (rows, width) = (want.rows(), want.width());
        let dense = |t: &SourceTensor| t.ty.dense();
        let float = |t: &SourceTensor| dense(t).is_some_and(|d| d.is_float());
        let algo = self.algos.of(module);
        let (weight_ok, weight_want, scale_want): (bool, String, Vec<u64>) = match algo {
            QuantAlgo::None => return Err(self.err(fi, scale, self.algos.unquantized_why(module))),
            QuantAlgo::Fp8 => (
                dense(w) == Some(Dtype::F8E4M3) && w.shape == want.shape,
                format!("F8_E4M3 {:?}", want.shape),
                vec![],
            ),
            QuantAlgo::W8A16 | QuantAlgo::W8A8Sq => (
                dense(w) == Some(Dtype::I8) && w.shape == want.shape,
                format!("I8 {:?}", want.shape),
                vec![rows],
            ),
            QuantAlgo::W4A16Awq { group } => {
                if !(rows.is_multiple_of(2) && width.is_multiple_of(group)) {
                    return Err(self.err(
                        fi,
                        w,
                        format!(
                            "[{rows}, {width}] cannot hold W4A16_AWQ (rows must pair up, columns be whole groups of {group})"
                        ),
                    ));
                }
                (
                    matches!(dense(w), Some(Dtype::I8 | Dtype::U8)) && w.shape == [rows / 2, width],
                    format!("I8 [{}, {width}] (two rows per byte)", rows / 2),
                    vec![rows, width / group],
                )
            }
        };
        if !weight_ok {
            return Err(self.err(
                fi,
                w,
                format!(
                    "{} {:?}, expected {weight_want} for {}",
                    w.ty.name(),
                    w.shape,
                    algo.name()
                ),
            ));
        }
        let scale_fits = if scale_want.is_empty() {
            scale.numel() == 1
        } else {
            scale.shape == scale_want
        };
        if !float(scale) || !scale_fits {
            return Err(self.err(
                fi,
                scale,
                format!(
                    "{} {:?}, expected a float {scale_want:?} for {}",
                    scale.ty.name(),
                    scale.shape,
                    algo.name()
                ),
            ));
        }
        let sq = algo == QuantAlgo::W8A8Sq;
        let pqs = self.tensors[fi].get(&format!("{module}.prequant_scaling_factor"));
        if let Some(p) = pqs {
            if p.shape != [width] || !float(p) {
                return Err(self.err(
                    fi,
                    p,
                    format!("{} {:?}, expected a float [{width}]", p.ty.name(), p.shape),
                ));
            }
        } else if sq {
            // Without it the smoothing `1/s` would be lost: TensorRT-LLM multiplies every
            // SmoothQuant linear's input by it.
            return Err(Error::tensor(
                self.files[fi].display_path(),
                format!("{module}.prequant_scaling_factor"),
                "missing (W8A8_SQ_PER_CHANNEL linears carry one)",
            ));
        }
        let act_name = format!("{module}.activation_scaling_factor");
        match self.tensors[fi].get(&act_name) {
            Some(a) if sq && (a.numel() != 1 || !float(a)) => Err(self.err(
                fi,
                a,
                format!(
                    "{} {:?}, expected one float (per tensor)",
                    a.ty.name(),
                    a.shape
                ),
            )),
            None if sq => Err(Error::tensor(
                self.files[fi].display_path(),
                &act_name,
                "missing (W8A8_SQ_PER_CHANNEL linears carry one)",
            )),
            _ => Ok(()),
        }
    }

    fn stored(&self, file: usize, name: &str) -> Result<&SourceTensor> {
        self.tensors[file]
            .get(name)
            .ok_or_else(|| Error::tensor(self.files[file].display_path(), name, "missing"))
    }

    /// A small float tensor (scales) in f32.
    fn small(&self, file: usize, t: &SourceTensor) -> Result<Vec<f32>> {
        let dtype = t.ty.dense().unwrap_or(Dtype::F32);
        let mut out = vec![0.0f32; t.numel() as usize];
        decode_par(self.files[file].bytes(t), Encoding::Dense(dtype), &mut out)
            .map_err(|e| self.err(file, t, e))?;
        Ok(out)
    }

    /// Rows `rows` of stored tensor `name` of rank `file`, dequantized to f32 (`[rows, width]`).
    fn decode_stored(&self, file: usize, name: &str, rows: Range<u64>) -> Result<Vec<f32>> {
        use kernels::cpu::{fp8_quant, int4, int8};
        let t = self.stored(file, name)?;
        let ckpt = &self.files[file];
        let scale = name
            .strip_suffix(".weight")
            .and_then(|m| self.tensors[file].get(&format!("{m}.weights_scaling_factor")));
        let Some(scale) = scale else {
            let dtype = t.ty.dense().unwrap_or(Dtype::F32);
            let width = t.shape.iter().skip(1).product::<u64>() as usize;
            let rb = (width * dtype.size()) as u64;
            let src = &ckpt.bytes(t)[(rows.start * rb) as usize..(rows.end * rb) as usize];
            let mut out = vec![0.0f32; (rows.end - rows.start) as usize * width];
            decode_par(src, Encoding::Dense(dtype), &mut out).map_err(|e| self.err(file, t, e))?;
            self.release(file, t, rows.start * rb, src.len() as u64);
            return Ok(out);
        };
        let module = &name[..name.len() - ".weight".len()];
        let width = t.shape[1] as usize;
        let scales = self.small(file, scale)?;
        let raw = ckpt.bytes(t);
        let (r0, r1) = (rows.start as usize, rows.end as usize);
        let mut out = vec![0.0f32; (r1 - r0) * width];
        match self.algos.of(module) {
            QuantAlgo::Fp8 => {
                let codes = &raw[r0 * width..r1 * width];
                fp8_quant::dequantize_fp8_rows(codes, scales[0], &mut out);
                self.release(file, t, (r0 * width) as u64, codes.len() as u64);
            }
            QuantAlgo::W8A16 | QuantAlgo::W8A8Sq => {
                let codes: Vec<i8> = raw[r0 * width..r1 * width]
                    .iter()
                    .map(|&b| b as i8)
                    .collect();
                int8::dequantize_int8_rows(&codes, width, &scales[r0..r1], &mut out);
                self.release(file, t, (r0 * width) as u64, codes.len() as u64);
            }
            QuantAlgo::W4A16Awq { group } => {
                // Whole row pairs around the asked rows, then the asked rows cut out.
                let (p0, p1) = (r0 / 2, r1.div_ceil(2));
                let packed = &raw[p0 * width..p1 * width];
                let mut codes = vec![0i8; packed.len() * 2];
                int4::unpack_int4_row_pairs(packed, width, &mut codes);
                let per_row = width / group as usize;
                let s = &scales[2 * p0 * per_row..2 * p1 * per_row];
                let mut pairs = vec![0.0f32; codes.len()];
                int4::dequantize_int4_group_rows(&codes, group as usize, s, &mut pairs);
                let skip = (r0 - 2 * p0) * width;
                let n = out.len();
                out.copy_from_slice(&pairs[skip..skip + n]);
                self.release(file, t, (p0 * width) as u64, packed.len() as u64);
            }
            QuantAlgo::None => {
                return Err(self.err(file, scale, self.algos.unquantized_why(module)))
            }
        }
        if let Some(p) = self.tensors[file].get(&format!("{module}.prequant_scaling_factor")) {
            let p = self.small(file, p)?;
            for row in out.chunks_exact_mut(width) {
                row.iter_mut().zip(&p).for_each(|(v, s)| *v *= s);
            }
        }
        Ok(out)
    }

    /// Drops decoded mmap pages from the resident set, as the Hugging Face path does.
    fn release(&self, file: usize, t: &SourceTensor, from: u64, len: u64) {
        self.files[file].mapped(t.file).release(t.start + from, len);
    }

    /// How Hugging Face linear `module`'s input is quantized at run time (`eval --act-quant`):
    /// FP8 and W8A8_SQ_PER_CHANNEL linears hold an `activation_scaling_factor` (the same on
    /// every rank) and maybe a `prequant_scaling_factor` over this rank's input columns, which
    /// are put back in Hugging Face column order; weight-only algos give `None`.
    pub fn act_quant(&self, module: &str) -> Result<Option<ActQuant>> {
        let g = self.gathered(&format!("{module}.weight"))?;
        let mut act: Option<ActQuant> = None;
        for p in &g.pieces {
            let stored = p
                .tensor
                .name
                .strip_suffix(".weight")
                .unwrap_or(&p.tensor.name);
            let kind = match self.algos.of(stored) {
                QuantAlgo::Fp8 => ActKind::Fp8,
                QuantAlgo::W8A8Sq => ActKind::Int8,
                _ => return Ok(None),
            };
            let scale_name = format!("{stored}.activation_scaling_factor");
            let Some(s) = self.tensors[p.file].get(&scale_name) else {
                return Ok(None);
            };
            let scale = self.small(p.file, s)?.first().copied().unwrap_or(0.0);
            if !(scale.is_finite() && scale > 0.0) {
                return Err(self.err(p.file, s, format!("{scale}: not a positive scale")));
            }
            let a = act.get_or_insert(ActQuant {
                kind,
                scale,
                pre: None,
            });
            let pqs_name = format!("{stored}.prequant_scaling_factor");
            if let Some(t) = self.tensors[p.file].get(&pqs_name) {
                let v = self.small(p.file, t)?;
                let pre = a.pre.get_or_insert_with(|| vec![1.0; g.cols as usize]);
                let (c0, n) = (p.col as usize, (p.cols as usize).min(v.len()));
                pre[c0..c0 + n].copy_from_slice(&v[..n]);
            }
        }
        Ok(act)
    }

    fn gathered(&self, name: &str) -> Result<&Gathered> {
        self.pieces
            .get(name)
            .ok_or_else(|| Error::tensor(&self.config_path, name, "missing"))
    }

    /// Rows `rows` of Hugging Face tensor `name` in f32, gathered from the ranks.
    pub fn decode_rows(&self, name: &str, rows: Range<usize>) -> Result<Vec<f32>> {
        let g = self.gathered(name)?;
        let (r0, r1) = (rows.start as u64, rows.end as u64);
        if r0 > r1 || r1 > g.rows {
            return Err(Error::tensor(
                &self.config_path,
                name,
                format!("rows {rows:?} out of range of {}", g.rows),
            ));
        }
        let cols = g.cols as usize;
        let mut out = vec![0.0f32; rows.len() * cols];
        for p in &g.pieces {
            let (from, to) = (r0.max(p.row), r1.min(p.row + p.rows));
            if from >= to {
                continue;
            }
            let s0 = p.stored_row + (from - p.row);
            let part = self.decode_stored(p.file, &p.tensor.name, s0..s0 + (to - from))?;
            let w = p.cols as usize;
            for (i, src) in part.chunks_exact(w).enumerate() {
                let at = ((from - r0) as usize + i) * cols + p.col as usize;
                out[at..at + w].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    /// The whole Hugging Face tensor `name` in f32.
    pub fn decode(&self, name: &str) -> Result<Vec<f32>> {
        let rows = self.gathered(name)?.rows as usize;
        self.decode_rows(name, 0..rows)
    }

    /// Whether the model has Hugging Face tensor `name` (optional biases).
    pub fn has(&self, name: &str) -> bool {
        self.pieces.contains_key(name)
    }

    /// Asks the kernel to read layer `l`'s stored bytes ahead.
    pub fn prefetch_layer(&self, l: u64) {
        let prefix = format!("model.layers.{l}.");
        for (name, g) in &self.pieces {
            if !name.starts_with(&prefix) {
                continue;
            }
            for p in &g.pieces {
                let t = &p.tensor;
                self.files[p.file].mapped(t.file).will_need(t.start, t.len);
            }
        }
    }
}

/// Whether `path` is a TensorRT-LLM checkpoint folder (its `config.json` has `mapping`).
pub fn is_trtllm(path: &Path) -> Result<bool> {
    Ok(path.is_dir() && crate::shard::input::detect(path)? == ShardLayout::Trtllm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quant_algo_names_and_unknown_ones() {
        let p = Path::new("config.json");
        let algo = |q: Value| QuantAlgo::from_config(p, &json!({ "quantization": q }));
        assert_eq!(algo(json!({"quant_algo": null})).unwrap(), QuantAlgo::None);
        assert_eq!(
            QuantAlgo::from_config(p, &json!({})).unwrap(),
            QuantAlgo::None
        );
        assert_eq!(algo(json!({"quant_algo": "FP8"})).unwrap(), QuantAlgo::Fp8);
        assert_eq!(
            algo(json!({"quant_algo": "W8A8_SQ_PER_CHANNEL"})).unwrap(),
            QuantAlgo::W8A8Sq
        );
        assert_eq!(
            algo(json!({"quant_algo": "W4A16_AWQ", "group_size": 64})).unwrap(),
            QuantAlgo::W4A16Awq { group: 64 }
        );
        let e = algo(json!({"quant_algo": "W4A16_AWQ"})).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let e = algo(json!({"quant_algo": "NVFP4"})).unwrap_err();
        assert!(
            e.to_string().contains("config.json") && e.to_string().contains("NVFP4"),
            "{e}"
        );
    }

    #[test]
    fn kv_cache_algo_and_scale_names() {
        let p = Path::new("config.json");
        let kv = |q: Value| kv_cache_fp8(p, &json!({ "quantization": q }));
        assert!(!kv(json!({"kv_cache_quant_algo": null})).unwrap());
        assert!(!kv(json!({})).unwrap());
        assert!(kv(json!({"kv_cache_quant_algo": "FP8"})).unwrap());
        let e = kv(json!({"kv_cache_quant_algo": "INT4"})).unwrap_err();
        assert!(e.to_string().contains("INT4"), "{e}");
        assert_eq!(
            kv_scale_name("transformer.layers.3.attention.qkv.weight").as_deref(),
            Some("transformer.layers.3.attention.kv_cache_scaling_factor")
        );
        assert_eq!(kv_scale_name("transformer.layers.3.mlp.fc.weight"), None);
    }

    #[test]
    fn mixed_precision_algos_come_from_quant_cfg() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.json");
        let tl = json!({"quantization": {"quant_algo": "MIXED_PRECISION"}});
        let cfg = |layers: Value| {
            let q = json!({"quant_algo": "MIXED_PRECISION", "quantized_layers": layers});
            std::fs::write(tmp.path().join("quant_cfg.json"), q.to_string()).unwrap();
            ModuleAlgos::read(&config, &tl)
        };
        let a = cfg(json!({
            "transformer.layers.0.mlp.*": {"quant_algo": "W4A16_AWQ", "group_size": 32},
            "transformer.layers.*": {"quant_algo": "FP8"}}))
        .unwrap();
        assert_eq!(
            a.of("transformer.layers.0.mlp.fc"),
            QuantAlgo::W4A16Awq { group: 32 }
        );
        assert_eq!(a.of("transformer.layers.0.attention.qkv"), QuantAlgo::Fp8);
        assert_eq!(a.of("lm_head"), QuantAlgo::None);
        let e = cfg(json!({"transformer.layers.0.mlp.fc": {"quant_algo": "W4A16_AWQ"}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quant_cfg.json")
                && e.contains("`transformer.layers.0.mlp.fc`")
                && e.contains("group_size"),
            "{e}"
        );
        let single = ModuleAlgos::read(&config, &json!({"quantization": {"quant_algo": "FP8"}}));
        assert_eq!(single.unwrap().of("lm_head"), QuantAlgo::Fp8);
    }
}
