//! The output plan of `quantize` / `convert --format trtllm --quant`: a TensorRT-LLM checkpoint
//! (`config.json` + `rank{N}.safetensors`) whose linears carry the tensors modelopt's
//! `export_tensorrt_llm_checkpoint` writes (FORMATS.md 1.6; modelopt
//! `export/model_config_export.py`, `export/quant_utils.py`, `export/postprocess.py`).
//!
//! The rank layout is the one `reshard` writes ([`crate::shard::layout::rank_files`]): every
//! stored tensor is a stack of rectangles of Hugging Face tensors. A stored tensor whose
//! rectangles are quantized linears becomes quantized tensors made by [`ShardedQuant`]: each
//! rectangle's *whole* source rows are quantized with the kernels of [`super::producer`] and
//! its columns cut out. Quantizing whole rows first is what makes the split match modelopt's
//! rules (`postprocess.py` split table): per-row INT8 scales of a row-parallel linear are
//! replicated (`ws S`), group scales are cut with their groups (`I4R: ws P1`), column-parallel
//! scales follow their rows (`ws P0`), and the fused `[Q_r; K_r; V_r]` takes the max of the
//! three FP8 scales and is quantized with it (`model_config.py` `QKVConfig`).

use super::hf::LinearState;
use super::producer::{Part, QuantProducer};
use super::scheme::QuantScheme;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{trtllm_quant, ModelConfig};
use crate::plan::TensorProducer;
use crate::plan::{OutputLayout, Plan, PlannedFile, PlannedTensor, Recipe, SideFile};
use crate::shard::layout::{self, BlockSource, StoredTensor};
use crate::shard::{Input, Parallel, ShardLayout};
use formats::safetensors::{self, TensorSpec};
use formats::Dtype;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub struct TrtllmJob<'a> {
    pub ckpt: &'a Arc<Checkpoint>,
    /// The same Hugging Face checkpoint opened as a `reshard` input (unquantized tensors).
    pub input: &'a Input,
    /// The scheme of every quantized linear; `None` when they differ (MIXED_PRECISION: the
    /// per-module schemes go to `quant_cfg.json`).
    pub scheme: Option<QuantScheme>,
    pub group: usize,
    pub par: Parallel,
    pub linears: &'a [LinearState],
    /// FP8 KV-cache scales (k, v) per layer (`--kv-cache fp8`).
    pub kv_scales: Option<&'a [(f32, f32)]>,
    /// Where the codes are made (`--device`, resolved).
    pub device: crate::plan::Device,
    pub output: &'a Path,
}

/// Refuses, before calibration, what this layout cannot hold (`row_parallel_int4`: an o_proj
/// or down_proj is quantized to INT4).
pub fn check_request(
    cfg: &ModelConfig,
    row_parallel_int4: bool,
    group: u64,
    par: Parallel,
    eval_data: bool,
) -> Result<()> {
    if eval_data {
        return Err(Error::Usage(
            "--eval-data applies to hf output: evaluate a TensorRT-LLM export's quantization with `quantize` to hf (same calibration, same weights)".into(),
        ));
    }
    layout::check_parallel(cfg, ShardLayout::Trtllm, par).map_err(|why| {
        Error::Usage(format!(
            "cannot write trtllm at tp {} pp {}: {why}",
            par.tp, par.pp
        ))
    })?;
    if row_parallel_int4 {
        // Row-parallel linears (o_proj, down_proj) split their input columns and with them
        // the scale groups (modelopt `postprocess.py` `check_weight_shape_valid`).
        for (what, cols) in [
            ("o_proj", cfg.q_rows()),
            ("down_proj", cfg.intermediate_size),
        ] {
            if !(cols / par.tp).is_multiple_of(group) {
                return Err(Error::Usage(format!(
                    "--tp {}: {what} gives each rank {} of its {cols} input columns, not a multiple of --group-size {group} (TensorRT-LLM splits row-parallel INT4 weights by whole groups)",
                    par.tp,
                    cols / par.tp
                )));
            }
        }
    }
    Ok(())
}

/// A stored tensor's quantized rectangles: (linear, first source row, source rows, first column).
struct QuantBlock<'a> {
    linear: &'a LinearState,
    row: u64,
    rows: u64,
    col: u64,
}

pub fn plan(job: &TrtllmJob) -> Result<Plan> {
    let input = job.input;
    let lg = &input.logical;
    let cfg = &lg.config;
    let par = job.par;
    let by_logical: HashMap<usize, &LinearState> = job
        .linears
        .iter()
        .filter_map(|l| lg.id(&format!("{}.weight", l.module)).map(|i| (i, l)))
        .collect();
    let candidates: Vec<usize> = lg
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| super::select::Selection::candidate(&t.name, &t.shape).is_some())
        .map(|(i, _)| i)
        .collect();
    let padded = layout::padded_vocab(cfg.vocab_size, par.tp);
    let ranks = layout::rank_files(lg, ShardLayout::Trtllm, par, padded);
    let mut excluded = std::collections::BTreeSet::new();
    // Per pp stage, the scheme of each quantized module by its stage-local name.
    let mut stage_layers: Vec<BTreeMap<String, QuantScheme>> =
        vec![BTreeMap::new(); par.pp as usize];
    let mut files = Vec::new();
    // Row-parallel slices of one input span are read once for all ranks (see `SpanShare`).
    let share = Arc::new(crate::shard::slices::SpanShare::default());
    for (r, rank) in ranks.iter().enumerate() {
        let target = job.output.join(&rank.name);
        let mut specs = Vec::new();
        let mut made: HashMap<String, Made> = HashMap::new();
        for t in &rank.tensors {
            let quant = quant_blocks(input, t, &by_logical)?;
            if quant.is_empty() {
                let uses_candidate = t.blocks.iter().any(|b| {
                    matches!(b.source, BlockSource::Logical { tensor, .. } if candidates.contains(&tensor))
                });
                if uses_candidate {
                    excluded.insert(module_of(&t.name).to_string());
                }
                let spec = crate::shard::spec_of(input, t)?;
                let es = spec.dtype.size() as u64;
                let p = crate::shard::slices::SliceProducer::new(input, t, es, &target, &share)?;
                made.insert(
                    t.name.clone(),
                    Made::new(crate::shard::describe(input, t), Arc::new(p)),
                );
                specs.push(spec);
            } else {
                let scheme = quantized_tensors(job, t, &quant, &mut specs, &mut made)?;
                let stage = r / par.tp as usize; // rank r = pp_rank × tp + tp_rank
                stage_layers[stage].insert(module_of(&t.name).to_string(), scheme);
            }
        }
        if let Some(kv) = job.kv_scales {
            // `attention.kv_cache_scaling_factor` [1] per stage-local layer, the same on every
            // tp rank: max of the k and v scales (TensorRT-LLM `Attention` has one
            // `kv_cache_scaling_factor` of shape (1,); `modeling_utils.py` `preprocess_weights`
            // merges separate k/v factors with `torch.max` the same way).
            let stage = r as u64 / par.tp; // rank r = pp_rank × tp + tp_rank
            let (first, count) = layout::stage_layers(cfg.num_hidden_layers, par.pp, stage);
            for local in 0..count {
                let (k, v) = kv[(first + local) as usize];
                let name = format!("transformer.layers.{local}.attention.kv_cache_scaling_factor");
                specs.push(TensorSpec::new(name.clone(), Dtype::F32, vec![1]));
                made.insert(name, Made::inline(&[k.max(v)]));
            }
        }
        let layout = safetensors::plan_file(specs, Some(&rank.metadata))?;
        let tensors = layout
            .tensors
            .iter()
            .map(|pt| made[&pt.spec.name].planned(pt))
            .collect();
        files.push(PlannedFile {
            name: rank.name.clone(),
            size: layout.total_size,
            header: layout.header,
            tensors,
        });
    }
    if par.pp > 1 && !excluded.is_empty() {
        return Err(Error::Usage(
            "--exclude with --pp > 1: TensorRT-LLM matches exclude_modules against stage-local layer names, which differ per stage; exclude nothing or use --pp 1".into(),
        ));
    }
    let layers = &stage_layers[0];
    if job.scheme.is_none() && stage_layers.iter().any(|s| s != layers) {
        return Err(Error::Usage(
            "--layer-quant with --pp > 1: TensorRT-LLM matches quant_cfg.json's quantized_layers against stage-local layer names, so every pipeline stage must quantize its layers alike; use --pp 1 or rules that do not depend on the layer number".into(),
        ));
    }
    excluded.insert("lm_head".into());
    let config = config_json(job, excluded.into_iter().collect());
    let mut side_files = vec![SideFile::json("config.json", &config)];
    if job.scheme.is_none() {
        side_files.push(SideFile::json(
            trtllm_quant::QUANT_CFG_FILE,
            &quant_cfg_json(job, layers),
        ));
    }
    // TensorRT-LLM runs take `--tokenizer_dir`; carrying the tokenizer makes the export one
    // self-contained folder.
    side_files.extend(crate::convert::carried_files(&input.root)?);
    Ok(Plan {
        job: format!(
            "quantize safetensors -> trtllm tp {} pp {} ({})",
            par.tp,
            par.pp,
            job.scheme.map_or("mixed", QuantScheme::name)
        ),
        target: job.output.to_path_buf(),
        layout: OutputLayout::Folder,
        files,
        side_files,
    })
}

/// `transformer.layers.0.attention.qkv.weight` → `transformer.layers.0.attention.qkv`.
fn module_of(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
}

/// The quantized rectangles of `t`; empty when none is quantized; an error when quantized and
/// unquantized rows would share one tensor (one TensorRT-LLM linear has one scheme).
fn quant_blocks<'a>(
    input: &Input,
    t: &StoredTensor,
    by_logical: &HashMap<usize, &'a LinearState>,
) -> Result<Vec<QuantBlock<'a>>> {
    let mut quant = Vec::new();
    let mut plain = None;
    for b in &t.blocks {
        match b.source {
            BlockSource::Logical { tensor, row, col } => match by_logical.get(&tensor) {
                Some(l) => quant.push(QuantBlock {
                    linear: l,
                    row,
                    rows: b.rows,
                    col,
                }),
                None => plain = Some(input.logical.tensors[tensor].name.clone()),
            },
            BlockSource::Zero => plain = Some("padding".into()),
        }
    }
    if let (Some(q), Some(p)) = (quant.first(), plain) {
        return Err(Error::tensor(
            input.files[0].display_path(),
            format!("{}.weight", q.linear.module),
            format!(
                "is quantized but {p} is not, and TensorRT-LLM fuses both into {}: quantize or exclude them together",
                t.name
            ),
        ));
    }
    Ok(quant)
}

/// How one planned tensor is made.
struct Made {
    source: String,
    producer: Option<Arc<dyn TensorProducer>>,
    inline: Option<Vec<u8>>,
}

impl Made {
    fn new(source: String, producer: Arc<dyn TensorProducer>) -> Self {
        Made {
            source,
            producer: Some(producer),
            inline: None,
        }
    }

    fn inline(values: &[f32]) -> Self {
        Made {
            source: String::new(),
            producer: None,
            inline: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    fn planned(&self, pt: &safetensors::writer::PlannedTensor) -> PlannedTensor {
        PlannedTensor {
            name: pt.spec.name.clone(),
            dtype: pt.spec.dtype.name().to_string(),
            shape: pt.spec.shape.clone(),
            offset: pt.start,
            len: pt.len,
            recipe: Recipe {
                source: self.source.clone(),
                source_index: usize::MAX,
                row_elements: 1,
                ops: Vec::new(),
            },
            inline: self.inline.clone(),
            producer: self.producer.clone(),
        }
    }
}

/// The tensors of one quantized TensorRT-LLM linear (FORMATS.md 1.6):
///
/// | quant_algo | `weight` | scales |
/// |---|---|---|
/// | FP8 | F8_E4M3 `[out, in]` | `weights_scaling_factor` F32 `[]`, `activation_scaling_factor` F32 `[]` (max over fused q/k/v) |
/// | W8A16 | I8 `[out, in]` | `weights_scaling_factor` F32 `[out]` (modelopt's name for its `[out, in]` codes) |
/// | W4A16_AWQ | I8 `[out/2, in]` (rows 2i, 2i+1 in the low, high nibble) | `weights_scaling_factor` F32 `[out, in/group]`, `prequant_scaling_factor` F32 `[in]` (AWQ only) |
/// | W8A8_SQ_PER_CHANNEL | I8 `[out, in]` (of `W·diag(s)`) | `weights_scaling_factor` F32 `[out]`, `activation_scaling_factor` F32 `[]` (max over fused linears), `prequant_scaling_factor` F32 `[in]` = `1/s` |
fn quantized_tensors(
    job: &TrtllmJob,
    t: &StoredTensor,
    blocks: &[QuantBlock],
    specs: &mut Vec<TensorSpec>,
    made: &mut HashMap<String, Made>,
) -> Result<QuantScheme> {
    let m = module_of(&t.name);
    let (rows, width) = (t.rows(), t.width());
    let group = job.group as u64;
    let path = job.input.files[0].display_path();
    let fail = |b: &QuantBlock, why: String| {
        Error::tensor(path.clone(), format!("{}.weight", b.linear.module), why)
    };
    // One TensorRT-LLM linear has one scheme (`quant::check_shared_inputs` ensures it for the
    // fused q/k/v).
    let scheme = blocks[0].linear.scheme;
    if let Some(b) = blocks.iter().find(|b| b.linear.scheme != scheme) {
        return Err(fail(
            b,
            format!(
                "is {} but {} is {}, and both go into {}",
                b.linear.scheme.name(),
                blocks[0].linear.module,
                scheme.name(),
                t.name
            ),
        ));
    }
    let sources = job.ckpt.tensors();
    // `unit_bytes` per `unit_cols` input columns; `unit_cols` 0: one value per whole row.
    let sharded = |part: Part, unit_bytes: u64, unit_cols: u64| {
        let pieces = blocks
            .iter()
            .map(|b| {
                let src = sources[b.linear.source_index].clone();
                let dtype = src.ty.dense().unwrap_or(Dtype::BF16);
                let p = part;
                let packed = matches!(p, Part::Int4Packed { .. });
                Piece {
                    first: if packed { b.row / 2 } else { b.row },
                    rows: if packed { b.rows / 2 } else { b.rows },
                    col_byte: b.col.checked_div(unit_cols).unwrap_or(0) * unit_bytes,
                    inner: QuantProducer {
                        ckpt: Arc::clone(job.ckpt),
                        src,
                        dtype,
                        part: p,
                        col_scale: b.linear.col_scale.clone(),
                        row_divisor: b.linear.row_divisor.clone(),
                        clip: b.linear.clip.clone(),
                        errors: matches!(
                            p,
                            Part::Fp8Codes { .. } | Part::Int8Codes | Part::Int4Packed { .. }
                        )
                        .then(|| Arc::clone(&b.linear.errors)),
                        device: job.device,
                    },
                }
            })
            .collect::<Vec<_>>();
        ShardedQuant {
            pieces,
            row_bytes: width.checked_div(unit_cols).unwrap_or(1) * unit_bytes,
        }
    };
    let source = |suffix: &str| {
        blocks
            .iter()
            .map(|b| {
                format!(
                    "{}.{suffix}[{}..{}]",
                    b.linear.module,
                    b.row,
                    b.row + b.rows
                )
            })
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mut add = |name: String, dtype: Dtype, shape: Vec<u64>, how: Made| {
        specs.push(TensorSpec::new(name.clone(), dtype, shape));
        made.insert(name, how);
    };
    match scheme {
        QuantScheme::Fp8 => {
            let max = |f: &dyn Fn(&LinearState) -> Option<f32>| {
                blocks
                    .iter()
                    .map(|b| f(b.linear).unwrap_or(1.0))
                    .fold(0.0f32, f32::max)
            };
            let scale = max(&|l| l.fp8_scale);
            let act = max(&|l| l.input_scale);
            let codes = sharded(Part::Fp8Codes { scale }, 1, 1);
            add(
                format!("{m}.weight"),
                Dtype::F8E4M3,
                vec![rows, width],
                Made::new(source("weight"), Arc::new(codes)),
            );
            add(
                format!("{m}.weights_scaling_factor"),
                Dtype::F32,
                vec![],
                Made::inline(&[scale]),
            );
            add(
                format!("{m}.activation_scaling_factor"),
                Dtype::F32,
                vec![],
                Made::inline(&[act]),
            );
        }
        QuantScheme::Int8Wo | QuantScheme::Int8Sq => {
            let codes = sharded(Part::Int8Codes, 1, 1);
            // Whole-row scales: a row-parallel split keeps all of `out` on every rank.
            let scales = sharded(Part::Int8Scales, 4, 0);
            add(
                format!("{m}.weight"),
                Dtype::I8,
                vec![rows, width],
                Made::new(source("weight"), Arc::new(codes)),
            );
            add(
                format!("{m}.weights_scaling_factor"),
                Dtype::F32,
                vec![rows],
                Made::new(source("weight_scale"), Arc::new(scales)),
            );
            if scheme == QuantScheme::Int8Sq {
                // TensorRT-LLM's `Int8SmoothQuantLinear` / `Int8SmoothQuantRowLinear`
                // (`quantization/layers.py`, made by `quantize.py` `smooth_quantize_ootb` for
                // W8A8_SQ_PER_CHANNEL) also hold `activation_scaling_factor` (per tensor) and
                // `prequant_scaling_factor` [in], which their forward multiplies into the input
                // on every linear (`x = mul(x, pqs)`) — so the smoothing `1/s` is written per
                // linear and no norm is changed.
                let act = blocks
                    .iter()
                    .map(|b| b.linear.input_scale.unwrap_or(1.0))
                    .fold(0.0f32, f32::max);
                let pqs = prequant_scale(blocks, width, &fail)?;
                add(
                    format!("{m}.activation_scaling_factor"),
                    Dtype::F32,
                    vec![],
                    Made::inline(&[act]),
                );
                add(
                    format!("{m}.prequant_scaling_factor"),
                    Dtype::F32,
                    vec![width],
                    Made::inline(&pqs),
                );
            }
        }
        QuantScheme::Int4Awq | QuantScheme::Int4Rtn => {
            for b in blocks {
                if !(b.row.is_multiple_of(2) && b.rows.is_multiple_of(2)) {
                    return Err(fail(
                        b,
                        format!(
                            "rows {}..{} go to {}: INT4 packs pairs of rows, so each rank's share must start and end on an even row",
                            b.row,
                            b.row + b.rows,
                            t.name
                        ),
                    ));
                }
                if !(b.col.is_multiple_of(group) && width.is_multiple_of(group)) {
                    return Err(fail(
                        b,
                        format!(
                            "columns {}..{} of {} are not whole groups of --group-size {group}",
                            b.col,
                            b.col + width,
                            t.name
                        ),
                    ));
                }
            }
            let g = job.group;
            let codes = sharded(Part::Int4Packed { group: g }, 1, 1);
            let scales = sharded(Part::Int4Scales { group: g }, 4, group);
            add(
                format!("{m}.weight"),
                Dtype::I8,
                vec![rows / 2, width],
                Made::new(source("weight"), Arc::new(codes)),
            );
            add(
                format!("{m}.weights_scaling_factor"),
                Dtype::F32,
                vec![rows, width / group],
                Made::new(source("weight_scale"), Arc::new(scales)),
            );
            if scheme == QuantScheme::Int4Awq {
                let pqs = prequant_scale(blocks, width, &fail)?;
                add(
                    format!("{m}.prequant_scaling_factor"),
                    Dtype::F32,
                    vec![width],
                    Made::inline(&pqs),
                );
            }
        }
    }
    Ok(scheme)
}

/// The AWQ pre-quant scale of this rank's input columns: one vector shared by the fused
/// linears (modelopt asserts q/k/v agree, `model_config.py` `QKVConfig`); ones where AWQ kept
/// a site unscaled.
fn prequant_scale(
    blocks: &[QuantBlock],
    width: u64,
    fail: &dyn Fn(&QuantBlock, String) -> Error,
) -> Result<Vec<f32>> {
    let slice = |b: &QuantBlock| -> Vec<f32> {
        let (from, to) = (b.col as usize, (b.col + width) as usize);
        match &b.linear.pre_quant_scale {
            Some(p) => p[from..to].to_vec(),
            None => vec![1.0; to - from],
        }
    };
    let first = slice(&blocks[0]);
    for b in &blocks[1..] {
        if slice(b) != first {
            return Err(fail(
                b,
                format!(
                    "its AWQ pre-quant scale differs from {}'s, and the two share one fused TensorRT-LLM linear",
                    blocks[0].linear.module
                ),
            ));
        }
    }
    Ok(first)
}

/// The TensorRT-LLM `config.json` of the export: `reshard`'s fields plus `quantization`
/// (modelopt `quant_utils.py` `process_layer_quant_config`; the schemes of FORMATS.md 1.2) and
/// `producer`. Mixed schemes write `quant_algo: MIXED_PRECISION` here and the per-module
/// schemes in `quant_cfg.json` ([`quant_cfg_json`]).
fn config_json(job: &TrtllmJob, exclude: Vec<String>) -> Value {
    let cfg = &job.input.logical.config;
    let mut config = crate::shard::config::trtllm_config(cfg, job.par, job.input.dtypes[0]);
    let mut q = match job.scheme {
        // TensorRT-LLM keeps AWQ's pre_quant_scale (no `--awq-fold` for this layout).
        Some(s) => s.layer_config(job.group, s == QuantScheme::Int4Awq),
        None => json!({ "quant_algo": super::MIXED_PRECISION }),
    };
    q["kv_cache_quant_algo"] = json!(job.kv_scales.map(|_| "FP8"));
    q["exclude_modules"] = json!(exclude);
    config["quantization"] = q;
    config["producer"] = json!({ "name": "ckpt-opt", "version": env!("CARGO_PKG_VERSION") });
    config
}

/// `quant_cfg.json` of a MIXED_PRECISION checkpoint, which TensorRT-LLM requires beside
/// `config.json` (`models/modeling_utils.py` `PretrainedConfig.from_json_file` →
/// `to_layer_quant_config` → `LayerQuantConfig`, a strict model: exactly these three keys).
/// `quantized_layers` maps each quantized module, by its stage-local name, to its own
/// `QuantConfig`; TensorRT-LLM leaves modules no key matches unquantized (`_get_quant_cfg`).
fn quant_cfg_json(job: &TrtllmJob, layers: &BTreeMap<String, QuantScheme>) -> Value {
    let layers: serde_json::Map<String, Value> = layers
        .iter()
        .map(|(m, s)| {
            (
                m.clone(),
                s.layer_config(job.group, *s == QuantScheme::Int4Awq),
            )
        })
        .collect();
    json!({
        "quant_algo": super::MIXED_PRECISION,
        "kv_cache_quant_algo": job.kv_scales.map(|_| "FP8"),
        "quantized_layers": layers,
    })
}

/// One rectangle of a sharded quantized tensor: output rows `rows` made from the inner
/// producer's rows `first..first + rows`, bytes `col_byte..col_byte + row_bytes` of each.
#[derive(Debug)]
struct Piece {
    first: u64,
    rows: u64,
    col_byte: u64,
    inner: QuantProducer,
}

/// Stacks the column windows of whole quantized rows (see the module notes).
#[derive(Debug)]
pub struct ShardedQuant {
    pieces: Vec<Piece>,
    row_bytes: u64,
}

impl TensorProducer for ShardedQuant {
    fn rows(&self) -> u64 {
        self.pieces.iter().map(|p| p.rows).sum()
    }

    fn row_bytes(&self) -> u64 {
        self.row_bytes
    }

    fn input_row_bytes(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| p.inner.input_row_bytes())
            .max()
            .unwrap_or(0)
    }

    fn produce(&self, first_row: u64, rows: u64, dst: &mut [u8]) -> Result<()> {
        let rb = self.row_bytes as usize;
        let (end, mut start) = (first_row + rows, 0u64);
        for p in &self.pieces {
            let (from, to) = (first_row.max(start), end.min(start + p.rows));
            if from < to {
                let n = to - from;
                let out =
                    &mut dst[((from - first_row) as usize * rb)..((to - first_row) as usize * rb)];
                let inner_rb = p.inner.row_bytes() as usize;
                let inner_first = p.first + (from - start);
                if inner_rb == rb {
                    p.inner.produce(inner_first, n, out)?;
                } else if p.inner.produce_columns(inner_first, n, p.col_byte, out)? {
                    // Elementwise (FP8): only this rank's columns were read and quantized.
                } else {
                    let mut whole = vec![0u8; n as usize * inner_rb];
                    p.inner.produce(inner_first, n, &mut whole)?;
                    let c = p.col_byte as usize;
                    for (o, w) in out.chunks_exact_mut(rb).zip(whole.chunks_exact(inner_rb)) {
                        o.copy_from_slice(&w[c..c + rb]);
                    }
                }
            }
            start += p.rows;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig::from_json(
            Path::new("c.json"),
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":256,"intermediate_size":384,
                "num_hidden_layers":2,"num_attention_heads":8,"num_key_value_heads":2}"#,
        )
        .unwrap()
    }

    #[test]
    fn row_parallel_int4_needs_whole_groups_per_rank() {
        let par = |tp| Parallel { tp, pp: 1 };
        assert!(check_request(&cfg(), true, 64, par(2), false).is_ok());
        // down_proj: 384 / 2 = 192 is 1.5 groups of 128.
        let e = check_request(&cfg(), true, 128, par(2), false).unwrap_err();
        assert!(
            e.to_string().contains("down_proj gives each rank 192"),
            "{e}"
        );
        // INT8 and FP8 have no groups.
        assert!(check_request(&cfg(), false, 128, par(2), false).is_ok());
        let e = check_request(&cfg(), false, 128, par(1), true).unwrap_err();
        assert!(e.to_string().contains("--eval-data"), "{e}");
        assert!(check_request(&cfg(), false, 128, par(3), false).is_err());
    }
}
