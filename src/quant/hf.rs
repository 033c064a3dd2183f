//! The output plan of `quantize` for a Hugging Face folder: modelopt's unified HF checkpoint
//! layout (what `modelopt.torch.export.export_hf_checkpoint` writes: modelopt
//! `export/unified_export_hf.py`, `export/quant_utils.py`). Per quantized linear `L`:
//!
//! | scheme | `L.weight` | `L.weight_scale` | `L.input_scale` | `L.pre_quant_scale` |
//! |---|---|---|---|---|
//! | fp8 | F8_E4M3 `[out, in]` | F32 `[]` amax/448 | F32 `[]` act amax/448 | — |
//! | int8_wo | I8 `[out, in]` | F32 `[out]` row amax/127 | — | — |
//! | int8_sq | I8 `[out, in]` (of `W·diag(s)`) | F32 `[out]` | F32 `[]` | F32 `[in]` = 1/s on o_proj, down_proj |
//! | int4_awq | U8 `[out/2, in]` (pairs of rows) | F32 `[out, in/group]` group amax/7 | — | F32 `[in]` = 1/s (none with `--awq-fold`: folded into norms / v_proj, up_proj rows) |
//! | int4_rtn | U8 `[out/2, in]` | F32 `[out, in/group]` | — | — |
//!
//! `config.json` gets `quantization_config` (`quant_method: "modelopt"`) and
//! `hf_quant_config.json` is written beside it. Other tensors are copied byte for byte, except
//! norms that absorbed a SmoothQuant factor (`norm / s`, in the norm's dtype).

use super::producer::{ErrorSums, Part, QuantProducer, RowDivProducer};
use super::scheme::QuantScheme;
use super::transformers::{self, AwqGemmProducer, AwqPart, HfFormat};
use crate::checkpoint::{Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::plan::{
    OutputLayout, Plan, PlannedFile, PlannedTensor, Recipe, SideFile, TensorProducer,
};
use formats::safetensors::{self, TensorSpec};
use formats::Dtype;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Everything decided about one quantized linear before streaming.
#[derive(Debug, Clone)]
pub struct LinearState {
    /// e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    pub source_index: usize,
    pub scheme: QuantScheme,
    /// Weight column multiplier `s` (SmoothQuant / AWQ).
    pub col_scale: Option<Arc<Vec<f32>>>,
    /// Output-row divisor (a folded AWQ scale of the next linear: v_proj, up_proj).
    pub row_divisor: Option<Arc<Vec<f32>>>,
    /// Written as `pre_quant_scale` (`1/s` where no norm absorbs it).
    pub pre_quant_scale: Option<Vec<f32>>,
    pub input_scale: Option<f32>,
    /// FP8 per-tensor weight scale.
    pub fp8_scale: Option<f32>,
    /// INT4 clip ratios `[out, in / group]` (AWQ clip search).
    pub clip: Option<Arc<Vec<f32>>>,
    pub errors: Arc<ErrorSums>,
}

pub struct HfJob<'a> {
    pub ckpt: &'a Arc<Checkpoint>,
    /// The scheme of every quantized linear; `None` when they differ (MIXED_PRECISION).
    pub scheme: Option<QuantScheme>,
    pub group: usize,
    pub linears: &'a [LinearState],
    /// 1-D tensors (norm weights, biases) divided elementwise by a smoothing or folded AWQ
    /// factor, by tensor name.
    pub norm_divisors: &'a BTreeMap<String, Vec<f32>>,
    /// Unquantized 2-D weights whose output rows are divided (folded AWQ scales), by name.
    pub divided_rows: &'a BTreeMap<String, Arc<Vec<f32>>>,
    /// AWQ scales folded into the previous ops (no `pre_quant_scale`).
    pub awq_fold: bool,
    /// modelopt's layout or transformers' own ([`super::transformers`]).
    pub format: HfFormat,
    /// Candidate linears left unquantized (listed in `exclude_modules`).
    pub excluded: &'a [String],
    /// FP8 KV-cache scales (k, v) per layer (`--kv-cache fp8`).
    pub kv_scales: Option<&'a [(f32, f32)]>,
    /// Where the codes are made (`--device`, resolved; the transformers AWQ layout is made on
    /// the CPU).
    pub device: crate::plan::Device,
    pub max_shard_size: u64,
    /// Extra `quantization_config` fields (AWQ ratios etc. are not included: loaders reject
    /// unknown keys in some versions).
    pub output: &'a Path,
}

enum How {
    Copy(usize),
    Produced(Arc<dyn TensorProducer>, usize),
    Inline(Vec<u8>),
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn plan(job: &HfJob) -> Result<Plan> {
    let Checkpoint::Safetensors(model) = job.ckpt.as_ref() else {
        return Err(Error::Usage(
            "expected a Hugging Face safetensors input".into(),
        ));
    };
    let sources = job.ckpt.tensors();
    let by_source: HashMap<usize, &LinearState> =
        job.linears.iter().map(|l| (l.source_index, l)).collect();
    let mut specs = Vec::new();
    let mut how: HashMap<String, How> = HashMap::new();
    let mut add = |specs: &mut Vec<TensorSpec>, name: String, dtype, shape, h: How| {
        specs.push(TensorSpec::new(name.clone(), dtype, shape));
        how.insert(name, h);
    };
    for (index, src) in sources.iter().enumerate() {
        let dtype = dense(job.ckpt, src)?;
        if let Some(l) = by_source.get(&index) {
            let (out, cols) = (src.shape[0], src.shape[1]);
            let producer = |part: Part, errors: bool| -> Arc<dyn TensorProducer> {
                Arc::new(QuantProducer {
                    ckpt: Arc::clone(job.ckpt),
                    src: src.clone(),
                    dtype,
                    part,
                    col_scale: l.col_scale.clone(),
                    row_divisor: l.row_divisor.clone(),
                    clip: l.clip.clone(),
                    errors: errors.then(|| Arc::clone(&l.errors)),
                    device: job.device,
                })
            };
            let m = &l.module;
            let g = job.group;
            if job.format == HfFormat::Transformers {
                let awq = |part: AwqPart, errors: bool| -> Arc<dyn TensorProducer> {
                    Arc::new(AwqGemmProducer {
                        ckpt: Arc::clone(job.ckpt),
                        src: src.clone(),
                        dtype,
                        part,
                        group: g,
                        col_scale: l.col_scale.clone(),
                        row_divisor: l.row_divisor.clone(),
                        clip: l.clip.clone(),
                        errors: errors.then(|| Arc::clone(&l.errors)),
                    })
                };
                let packed = out / transformers::AWQ_PACK;
                let groups = cols / g as u64;
                let tensors = match l.scheme {
                    QuantScheme::Fp8 => {
                        let scale = l.fp8_scale.unwrap_or(1.0);
                        let shape = transformers::fp8_block_shape(out, cols);
                        let blocks = (shape[0] * shape[1]) as usize;
                        vec![
                            (
                                "weight",
                                Dtype::F8E4M3,
                                vec![out, cols],
                                How::Produced(producer(Part::Fp8Codes { scale }, true), index),
                            ),
                            (
                                "weight_scale_inv",
                                Dtype::F32,
                                shape,
                                How::Inline(f32_bytes(&vec![scale; blocks])),
                            ),
                        ]
                    }
                    _ => vec![
                        (
                            "qweight",
                            Dtype::I32,
                            vec![cols, packed],
                            How::Produced(awq(AwqPart::Qweight, true), index),
                        ),
                        (
                            "qzeros",
                            Dtype::I32,
                            vec![groups, packed],
                            How::Inline(
                                kernels::cpu::awq_gemm::AWQ_ZERO_WORD
                                    .to_le_bytes()
                                    .repeat((groups * packed) as usize),
                            ),
                        ),
                        (
                            "scales",
                            Dtype::F16,
                            vec![groups, out],
                            How::Produced(awq(AwqPart::Scales, false), index),
                        ),
                    ],
                };
                for (suffix, dtype, shape, h) in tensors {
                    add(&mut specs, format!("{m}.{suffix}"), dtype, shape, h);
                }
                continue;
            }
            match l.scheme {
                QuantScheme::Fp8 => {
                    let scale = l.fp8_scale.unwrap_or(1.0);
                    let codes = producer(Part::Fp8Codes { scale }, true);
                    add(
                        &mut specs,
                        format!("{m}.weight"),
                        Dtype::F8E4M3,
                        vec![out, cols],
                        How::Produced(codes, index),
                    );
                    add(
                        &mut specs,
                        format!("{m}.weight_scale"),
                        Dtype::F32,
                        vec![],
                        How::Inline(f32_bytes(&[scale])),
                    );
                }
                QuantScheme::Int8Wo | QuantScheme::Int8Sq => {
                    let codes = producer(Part::Int8Codes, true);
                    let scales = producer(Part::Int8Scales, false);
                    add(
                        &mut specs,
                        format!("{m}.weight"),
                        Dtype::I8,
                        vec![out, cols],
                        How::Produced(codes, index),
                    );
                    add(
                        &mut specs,
                        format!("{m}.weight_scale"),
                        Dtype::F32,
                        vec![out],
                        How::Produced(scales, index),
                    );
                }
                QuantScheme::Int4Awq | QuantScheme::Int4Rtn => {
                    let codes = producer(Part::Int4Packed { group: g }, true);
                    let scales = producer(Part::Int4Scales { group: g }, false);
                    add(
                        &mut specs,
                        format!("{m}.weight"),
                        Dtype::U8,
                        vec![out / 2, cols],
                        How::Produced(codes, index),
                    );
                    add(
                        &mut specs,
                        format!("{m}.weight_scale"),
                        Dtype::F32,
                        vec![out, cols / g as u64],
                        How::Produced(scales, index),
                    );
                }
            }
            if let Some(s) = l.input_scale {
                add(
                    &mut specs,
                    format!("{m}.input_scale"),
                    Dtype::F32,
                    vec![],
                    How::Inline(f32_bytes(&[s])),
                );
            }
            if let Some(p) = &l.pre_quant_scale {
                add(
                    &mut specs,
                    format!("{m}.pre_quant_scale"),
                    Dtype::F32,
                    vec![cols],
                    How::Inline(f32_bytes(p)),
                );
            }
        } else if let Some(div) = job.norm_divisors.get(&src.name) {
            let mut v = vec![0.0f32; src.numel() as usize];
            let fail = |e: kernels::KernelError| {
                Error::tensor(&job.ckpt.file_paths()[src.file], &src.name, e.to_string())
            };
            kernels::cpu::cast::decode_f32(job.ckpt.bytes(src), dtype, &mut v).map_err(fail)?;
            v.iter_mut().zip(div).for_each(|(x, d)| *x /= d);
            let mut bytes = vec![0u8; src.len as usize];
            kernels::cpu::cast::encode_f32(&v, dtype, &mut bytes).map_err(fail)?;
            add(
                &mut specs,
                src.name.clone(),
                dtype,
                src.shape.clone(),
                How::Inline(bytes),
            );
        } else if let Some(div) = job.divided_rows.get(&src.name) {
            let rows: Arc<dyn TensorProducer> = Arc::new(RowDivProducer {
                ckpt: Arc::clone(job.ckpt),
                src: src.clone(),
                dtype,
                divisor: Arc::clone(div),
            });
            add(
                &mut specs,
                src.name.clone(),
                dtype,
                src.shape.clone(),
                How::Produced(rows, index),
            );
        } else {
            add(
                &mut specs,
                src.name.clone(),
                dtype,
                src.shape.clone(),
                How::Copy(index),
            );
        }
    }
    // modelopt's unified HF export puts the KV-cache scales on the k/v projections as
    // `self_attn.k_proj.k_scale` / `self_attn.v_proj.v_scale`, F32 scalars (vLLM's
    // `maybe_remap_kv_scale_name` reads these names).
    for (l, &(k, v)) in job.kv_scales.unwrap_or(&[]).iter().enumerate() {
        for (c, scale) in [('k', k), ('v', v)] {
            add(
                &mut specs,
                format!("model.layers.{l}.self_attn.{c}_proj.{c}_scale"),
                Dtype::F32,
                vec![],
                How::Inline(f32_bytes(&[scale])),
            );
        }
    }
    let metadata: Option<BTreeMap<String, String>> = model.files()[0].header().metadata.clone();
    let shards = safetensors::plan_shards(specs, job.max_shard_size, metadata.as_ref())?;
    let files = shards
        .files
        .into_iter()
        .map(|(name, layout)| PlannedFile {
            name,
            size: layout.total_size,
            tensors: layout
                .tensors
                .iter()
                .map(|t| planned(t, &how, &sources))
                .collect(),
            header: layout.header,
        })
        .collect();

    let mut side_files = Vec::new();
    if let Some(index) = shards.index_json {
        side_files.push(SideFile {
            name: "model.safetensors.index.json".into(),
            bytes: index,
        });
    }
    let root = job.ckpt.root();
    let quant = quantization_fields(job);
    let config_path = root.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| formats::FormatError::io(&config_path, "read", e))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(&config_path, format!("invalid JSON: {e}")))?;
    let qc = match job.format {
        HfFormat::Modelopt => {
            let mut qc = json!({ "quant_method": "modelopt" });
            if let (Some(qc), Some(q)) = (qc.as_object_mut(), quant.as_object()) {
                qc.extend(q.clone());
            }
            qc
        }
        HfFormat::Transformers => {
            let scheme = job
                .scheme
                .ok_or_else(|| Error::Usage("--hf-format transformers holds one scheme".into()))?;
            transformers::quantization_config(scheme, job.group, job.excluded)
        }
    };
    if let Some(obj) = config.as_object_mut() {
        obj.insert("quantization_config".into(), qc);
    }
    side_files.push(SideFile::json("config.json", &config));
    // vLLM and TensorRT-LLM take a folder with hf_quant_config.json for modelopt's layout.
    if job.format == HfFormat::Modelopt {
        side_files.push(SideFile::json(
            "hf_quant_config.json",
            &json!({
                "producer": { "name": "ckpt-opt", "version": env!("CARGO_PKG_VERSION") },
                "quantization": quant,
            }),
        ));
    }
    side_files.extend(crate::convert::carried_files(&root)?);
    Ok(Plan {
        job: format!(
            "quantize safetensors -> safetensors ({})",
            job.scheme.map_or("mixed", QuantScheme::name)
        ),
        target: job.output.to_path_buf(),
        layout: OutputLayout::Folder,
        files,
        side_files,
    })
}

/// The `quantization` object of `hf_quant_config.json` (modelopt `get_quant_config` fields),
/// also merged into `config.json`'s `quantization_config`. Linears of differing schemes make
/// it `MIXED_PRECISION` with one `quantized_layers` entry per quantized module (modelopt
/// `export/quant_utils.py` `process_layer_quant_config`; vLLM's and TensorRT-LLM's modelopt
/// loaders read the same map).
fn quantization_fields(job: &HfJob) -> serde_json::Value {
    let mut exclude: Vec<String> = job.excluded.to_vec();
    exclude.push("lm_head".into());
    let keeps_pre_quant_scale = |s: QuantScheme| s == QuantScheme::Int4Awq && !job.awq_fold;
    let mut q = match job.scheme {
        Some(s) => s.layer_config(job.group, keeps_pre_quant_scale(s)),
        None => {
            let layers: serde_json::Map<String, serde_json::Value> = job
                .linears
                .iter()
                .map(|l| {
                    let c = l
                        .scheme
                        .layer_config(job.group, keeps_pre_quant_scale(l.scheme));
                    (l.module.clone(), c)
                })
                .collect();
            json!({ "quant_algo": super::MIXED_PRECISION, "quantized_layers": layers })
        }
    };
    q["kv_cache_quant_algo"] = json!(job.kv_scales.map(|_| "FP8"));
    q["exclude_modules"] = json!(exclude);
    q
}

fn planned(
    t: &safetensors::writer::PlannedTensor,
    how: &HashMap<String, How>,
    sources: &[SourceTensor],
) -> PlannedTensor {
    let name = t.spec.name.clone();
    let base = |source: &str, source_index: usize, row_elements: u64| PlannedTensor {
        name: name.clone(),
        dtype: t.spec.dtype.name().to_string(),
        shape: t.spec.shape.clone(),
        offset: t.start,
        len: t.len,
        recipe: Recipe {
            source: source.to_string(),
            source_index,
            row_elements,
            ops: Vec::new(),
        },
        inline: None,
        producer: None,
    };
    match &how[&t.spec.name] {
        How::Copy(i) => {
            let src = &sources[*i];
            base(&src.name, *i, src.shape.last().copied().unwrap_or(1))
        }
        How::Produced(p, i) => PlannedTensor {
            producer: Some(Arc::clone(p)),
            ..base(&sources[*i].name, usize::MAX, 1)
        },
        How::Inline(bytes) => PlannedTensor {
            inline: Some(bytes.clone()),
            ..base("", usize::MAX, 1)
        },
    }
}

fn dense(ckpt: &Checkpoint, t: &SourceTensor) -> Result<Dtype> {
    t.ty.dense()
        .ok_or_else(|| crate::checkpoint::unsupported_type(ckpt, t, "quantized"))
}
