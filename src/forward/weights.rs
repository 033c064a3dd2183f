//! Finds the model's tensors in a checkpoint and decodes them to f32 one layer at a time, straight
//! from the mmap. GGUF names are mapped to HF names and GGUF q/k rows are un-permuted back to the
//! rotate-half layout, so the rest of the forward pass sees one (Hugging Face) convention.
//! Block-quantized GGUF tensors (Q8_0, Q4_0..Q5_1, Q2_K..Q6_K) are dequantized on the fly with
//! the `kernels::cpu::ggml` kernels, so `eval` measures a quantized file exactly as written.

use super::act_quant::{ActKind, ActQuant, LinearActs};
use crate::checkpoint::{Checkpoint, ElementType, SourceTensor};
use crate::error::{Error, Result};
use crate::model::{self, ModelConfig};
use std::collections::HashMap;

/// The checkpoint's tensors by Hugging Face name, with the config that says their shapes.
pub struct WeightIndex<'a> {
    ckpt: &'a Checkpoint,
    cfg: ModelConfig,
    by_name: HashMap<String, SourceTensor>,
    gguf: bool,
    /// llama.cpp's `rope_freqs.weight` (llama3 scaling), which has no HF name.
    rope_freqs: Option<SourceTensor>,
}

/// One decoder layer's weights in f32, `nn.Linear` layout (`[out, in]`).
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    pub o: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    /// Run-time quantization of the linears' inputs (`eval --act-quant`; none by default).
    pub acts: LinearActs,
}

impl LayerWeights {
    /// Layer `l` from `decode` (a Hugging Face name to its f32 values); the q/k/v biases when
    /// `has` says the model has them.
    pub fn gather(
        l: u64,
        decode: impl Fn(&str) -> Result<Vec<f32>>,
        has: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let bias = |s: &str| -> Result<Option<Vec<f32>>> {
            let name = p(s);
            if has(&name) {
                decode(&name).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(LayerWeights {
            attn_norm: decode(&p("input_layernorm.weight"))?,
            q: decode(&p("self_attn.q_proj.weight"))?,
            k: decode(&p("self_attn.k_proj.weight"))?,
            v: decode(&p("self_attn.v_proj.weight"))?,
            q_bias: bias("self_attn.q_proj.bias")?,
            k_bias: bias("self_attn.k_proj.bias")?,
            v_bias: bias("self_attn.v_proj.bias")?,
            o: decode(&p("self_attn.o_proj.weight"))?,
            ffn_norm: decode(&p("post_attention_layernorm.weight"))?,
            gate: decode(&p("mlp.gate_proj.weight"))?,
            up: decode(&p("mlp.up_proj.weight"))?,
            down: decode(&p("mlp.down_proj.weight"))?,
            acts: LinearActs::default(),
        })
    }
}

impl<'a> WeightIndex<'a> {
    /// Indexes `ckpt` against `cfg.expected_tensors()`: every expected tensor must be present with
    /// its expected shape (checked here, before any bytes are read).
    pub fn new(ckpt: &'a Checkpoint, cfg: ModelConfig) -> Result<Self> {
        let gguf = matches!(ckpt, Checkpoint::Gguf(_));
        let paths = ckpt.file_paths();
        let mut by_name = HashMap::new();
        let mut rope_freqs = None;
        for t in ckpt.tensors() {
            let hf = if gguf {
                if t.name == model::ROPE_FREQS_GGUF_NAME {
                    rope_freqs = Some(t);
                    continue;
                }
                match model::gguf_to_hf_name(&t.name) {
                    Some(n) => n,
                    None => continue,
                }
            } else {
                t.name.clone()
            };
            by_name.insert(hf, t);
        }
        for e in cfg.expected_tensors() {
            if !by_name.contains_key(&e.name) && transformers_layout::stands_for(&by_name, &e.name)
            {
                // AutoAWQ GEMM tensors (`qweight`, ...): checked when the layer is decoded.
                continue;
            }
            let Some(t) = by_name.get(&e.name) else {
                return Err(Error::tensor(
                    ckpt.display_path(),
                    &e.name,
                    "missing (the config implies it)",
                ));
            };
            if quantized_shape(&by_name, &e.name, t) != e.shape {
                return Err(Error::tensor(
                    &paths[t.file],
                    &t.name,
                    format!(
                        "shape {:?} does not match the config (expected {:?})",
                        t.shape, e.shape
                    ),
                ));
            }
        }
        Ok(WeightIndex {
            ckpt,
            cfg,
            by_name,
            gguf,
            rope_freqs,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn get(&self, name: &str) -> Result<&SourceTensor> {
        self.by_name
            .get(name)
            .ok_or_else(|| Error::tensor(self.ckpt.display_path(), name, "missing"))
    }

    fn dtype_of(&self, t: &SourceTensor) -> Result<Encoding> {
        match t.ty {
            ElementType::Dense(d) if d.is_float() => Ok(Encoding::Dense(d)),
            ElementType::Ggml(g) if kernels::cpu::ggml::is_supported(g) => {
                // Rows must be whole blocks (ne[0] is the innermost, row, dimension).
                let row_len = t.shape.last().copied().unwrap_or(1);
                if row_len.is_multiple_of(g.block_size()) {
                    Ok(Encoding::Blocks(g))
                } else {
                    Err(self.err(
                        t,
                        format!("rows of {row_len} values are not whole {g} blocks"),
                    ))
                }
            }
            _ => Err(crate::checkpoint::unsupported_type(
                self.ckpt,
                t,
                "used by the forward pass (no dequantization kernel for this type)",
            )),
        }
    }

    /// Rows `rows` of a 2-D tensor (or all of a 1-D one) decoded to f32.
    pub fn decode_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let t = self.get(name)?;
        let dtype = self.dtype_of(t)?;
        let row_len = t.shape.iter().skip(1).product::<u64>() as usize;
        let bytes = self.ckpt.bytes(t);
        let row_bytes = dtype.bytes_for(row_len);
        let src = bytes
            .get(rows.start * row_bytes..rows.end * row_bytes)
            .ok_or_else(|| self.err(t, format!("rows {rows:?} out of range")))?;
        let mut out = vec![0.0f32; rows.len() * row_len];
        decode_par(src, dtype, &mut out).map_err(|e| self.err(t, e))?;
        self.release(t, (rows.start * row_bytes) as u64, src.len() as u64);
        Ok(out)
    }

    /// The whole tensor in f32, q/k rows un-permuted when it came from a llama GGUF.
    pub fn decode(&self, name: &str) -> Result<Vec<f32>> {
        if let Some(w) = self.decode_quantized(name)? {
            return Ok(w);
        }
        let t = self.get(name)?;
        let dtype = self.dtype_of(t)?;
        let rows = t.shape.first().copied().unwrap_or(1) as usize;
        let heads = if self.gguf {
            model::role_of_hf_name(name)
                .and_then(|(role, _)| model::qk_permutation_heads(&self.cfg, role))
        } else {
            None
        };
        let raw = self.ckpt.bytes(t);
        let mut out = vec![0.0f32; t.numel() as usize];
        let decode =
            |src: &[u8], out: &mut [f32]| decode_par(src, dtype, out).map_err(|e| self.err(t, e));
        match heads {
            // Rows are whole blocks, so un-permuting the raw rows before dequantizing equals
            // dequantizing then un-permuting (FORMATS.md 3.5), without an f32 copy.
            Some(n_head) => {
                let mut unpermuted = vec![0u8; raw.len()];
                let row_bytes = raw.len() / rows.max(1);
                model::permute_qk_rows(raw, &mut unpermuted, rows, row_bytes, n_head, true)
                    .map_err(|e| self.err(t, e))?;
                decode(&unpermuted, &mut out)?;
            }
            None => decode(raw, &mut out)?,
        }
        self.release(t, 0, t.len);
        Ok(out)
    }

    /// The GGUF `rope_freqs` divisors, when the file has them.
    pub fn rope_freqs(&self) -> Result<Option<Vec<f32>>> {
        let Some(t) = &self.rope_freqs else {
            return Ok(None);
        };
        let dtype = self.dtype_of(t)?;
        let mut out = vec![0.0f32; t.numel() as usize];
        decode_par(self.ckpt.bytes(t), dtype, &mut out).map_err(|e| self.err(t, e))?;
        Ok(Some(out))
    }

    /// Drops the mmap pages of `t[from..from + len]` from the resident set once decoded, so RSS
    /// stays near one layer rather than growing to the whole file.
    fn release(&self, t: &SourceTensor, from: u64, len: u64) {
        self.ckpt.mapped(t.file).release(t.start + from, len);
    }

    /// Asks the kernel to read layer `l`'s bytes ahead while the current layer computes.
    pub fn prefetch_layer(&self, l: u64) {
        let prefix = format!("model.layers.{l}.");
        for (name, t) in &self.by_name {
            if name.starts_with(&prefix) {
                self.ckpt.mapped(t.file).will_need(t.start, t.len);
            }
        }
    }

    fn err(&self, t: &SourceTensor, reason: String) -> Error {
        Error::tensor(&self.ckpt.file_paths()[t.file], &t.name, reason)
    }

    /// Decodes layer `l`.
    pub fn layer(&self, l: u64) -> Result<LayerWeights> {
        LayerWeights::gather(l, |n| self.decode(n), |n| self.by_name.contains_key(n))
    }

    /// Name of the output projection: `lm_head.weight`, or the embedding when tied.
    pub fn lm_head_name(&self) -> &'static str {
        if self.cfg.tie_word_embeddings || !self.by_name.contains_key("lm_head.weight") {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        }
    }

    /// Checks every tensor's element type up front, so a quantized model fails before any work.
    pub fn check_types(&self) -> Result<()> {
        for e in self.cfg.expected_tensors() {
            if self.transformers_quantized(&e.name)?.is_some() {
                continue;
            }
            let t = self.get(&e.name)?;
            if self.quantized_parts(&e.name)?.is_none() {
                self.dtype_of(t)?;
            }
        }
        Ok(())
    }
}

/// The shape a weight stands for: packed INT4 weights (`[out/2, in]` u8 with a
/// `weight_scale`) stand for `[out, in]`.
fn quantized_shape(
    by_name: &HashMap<String, SourceTensor>,
    name: &str,
    t: &SourceTensor,
) -> Vec<u64> {
    let packed = t.ty == ElementType::Dense(formats::Dtype::U8)
        && t.shape.len() == 2
        && name
            .strip_suffix(".weight")
            .is_some_and(|m| by_name.contains_key(&format!("{m}.weight_scale")));
    if packed {
        vec![t.shape[0] * 2, t.shape[1]]
    } else {
        t.shape.clone()
    }
}

/// The tensors of one linear quantized in modelopt's unified HF layout (see `quant::hf`).
struct QuantizedParts<'t> {
    weight: &'t SourceTensor,
    scale: &'t SourceTensor,
    pre_quant_scale: Option<&'t SourceTensor>,
}

/// Reading checkpoints written by `quantize`: each quantized linear is dequantized to the
/// effective f32 weight `dequant(codes) · diag(pre_quant_scale)` when its layer is decoded, so
/// `eval` measures exactly the written weights. Activation scales (`input_scale`) are applied
/// only with `eval --act-quant` ([`WeightIndex::act_quant`]); otherwise activations stay f32.
impl WeightIndex<'_> {
    /// The parts of `name` when it is a quantized linear weight (it has a `weight_scale`),
    /// with dtypes and shapes checked.
    fn quantized_parts(&self, name: &str) -> Result<Option<QuantizedParts<'_>>> {
        let Some(module) = name.strip_suffix(".weight") else {
            return Ok(None);
        };
        let Some(scale) = self.by_name.get(&format!("{module}.weight_scale")) else {
            return Ok(None);
        };
        let weight = self.get(name)?;
        let pre_quant_scale = self.by_name.get(&format!("{module}.pre_quant_scale"));
        let (rows, cols) = match weight.shape[..] {
            [r, c] => (r, c),
            _ => return Err(self.err(weight, "a quantized weight must be 2-D".into())),
        };
        let scale_ok = scale.ty.dense().is_some_and(|d| d.is_float());
        let expected_scales = match weight.ty {
            ElementType::Dense(formats::Dtype::F8E4M3) => scale.numel() == 1,
            ElementType::Dense(formats::Dtype::I8) => scale.shape == [rows],
            ElementType::Dense(formats::Dtype::U8) => {
                scale.shape.len() == 2
                    && scale.shape[0] == 2 * rows
                    && scale.shape[1] > 0
                    && cols.is_multiple_of(scale.shape[1])
                    && (cols / scale.shape[1]).is_multiple_of(2)
            }
            _ => {
                return Err(self.err(
                    weight,
                    format!(
                        "{} weights with a weight_scale are not a known quantized layout",
                        weight.ty.name()
                    ),
                ))
            }
        };
        if !scale_ok || !expected_scales {
            return Err(self.err(
                scale,
                format!(
                    "{} {:?} does not fit weight {} {:?}",
                    scale.ty.name(),
                    scale.shape,
                    weight.ty.name(),
                    weight.shape
                ),
            ));
        }
        if let Some(p) = pre_quant_scale {
            if p.shape != [cols] || !p.ty.dense().is_some_and(|d| d.is_float()) {
                return Err(self.err(
                    p,
                    format!("{} {:?}, expected a float [{cols}]", p.ty.name(), p.shape),
                ));
            }
        }
        Ok(Some(QuantizedParts {
            weight,
            scale,
            pre_quant_scale,
        }))
    }

    /// A small float tensor (scales) in f32.
    fn decode_small(&self, t: &SourceTensor) -> Result<Vec<f32>> {
        let dtype = self.dtype_of(t)?;
        let mut out = vec![0.0f32; t.numel() as usize];
        decode_par(self.ckpt.bytes(t), dtype, &mut out).map_err(|e| self.err(t, e))?;
        Ok(out)
    }

    /// How linear `module`'s input is quantized at run time (`eval --act-quant`): FP8 and INT8
    /// linears with an `input_scale` (fp8, int8_sq), with their `pre_quant_scale`; `None` for
    /// the rest (weight-only schemes, transformers' dynamic FP8, unquantized linears).
    pub fn act_quant(&self, module: &str) -> Result<Option<ActQuant>> {
        let Some(s) = self.by_name.get(&format!("{module}.input_scale")) else {
            return Ok(None);
        };
        let w = self.get(&format!("{module}.weight"))?;
        let kind = match w.ty {
            ElementType::Dense(formats::Dtype::F8E4M3) => ActKind::Fp8,
            ElementType::Dense(formats::Dtype::I8) => ActKind::Int8,
            _ => {
                let why = format!(
                    "beside a {} weight: only FP8 and INT8 linears quantize their input",
                    w.ty.name()
                );
                return Err(self.err(s, why));
            }
        };
        let scale = self.decode_small(s)?;
        let scale = match scale[..] {
            [v] if v.is_finite() && v > 0.0 => v,
            _ => return Err(self.err(s, format!("{scale:?}: expected one positive scale"))),
        };
        let pre = match self.by_name.get(&format!("{module}.pre_quant_scale")) {
            Some(p) => Some(self.decode_small(p)?),
            None => None,
        };
        Ok(Some(ActQuant { kind, scale, pre }))
    }

    /// The effective f32 weight of a quantized linear, or `None` when `name` is not one.
    fn decode_quantized(&self, name: &str) -> Result<Option<Vec<f32>>> {
        use kernels::cpu::{fp8_quant, int4, int8};
        if let Some(parts) = self.transformers_quantized(name)? {
            return self.decode_transformers(parts).map(Some);
        }
        let Some(parts) = self.quantized_parts(name)? else {
            return Ok(None);
        };
        let w = parts.weight;
        let scales = self.decode_small(parts.scale)?;
        let raw = self.ckpt.bytes(w);
        let cols = w.shape[1] as usize;
        let mut out;
        match w.ty {
            ElementType::Dense(formats::Dtype::F8E4M3) => {
                out = vec![0.0f32; raw.len()];
                fp8_quant::dequantize_fp8_rows(raw, scales[0], &mut out);
            }
            ElementType::Dense(formats::Dtype::I8) => {
                let codes: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
                out = vec![0.0f32; raw.len()];
                int8::dequantize_int8_rows(&codes, cols, &scales, &mut out);
            }
            _ => {
                let mut codes = vec![0i8; raw.len() * 2];
                int4::unpack_int4_row_pairs(raw, cols, &mut codes);
                let group = cols / parts.scale.shape[1] as usize;
                out = vec![0.0f32; codes.len()];
                int4::dequantize_int4_group_rows(&codes, group, &scales, &mut out);
            }
        }
        if let Some(p) = parts.pre_quant_scale {
            let p = self.decode_small(p)?;
            for row in out.chunks_exact_mut(cols) {
                row.iter_mut().zip(&p).for_each(|(v, s)| *v *= s);
            }
        }
        self.release(w, 0, w.len);
        Ok(Some(out))
    }
}

mod transformers_layout {
    use super::*;

    /// Whether `name` (`….weight`) is stored as AutoAWQ GEMM tensors (`….qweight`).
    pub(super) fn stands_for(by_name: &HashMap<String, SourceTensor>, name: &str) -> bool {
        name.strip_suffix(".weight")
            .is_some_and(|m| by_name.contains_key(&format!("{m}.qweight")))
    }

    /// A linear in one of transformers' own quantized layouts (`quant::transformers`).
    pub(super) enum Parts<'t> {
        /// AutoAWQ GEMM: `qweight` I32 `[in, out/8]`, `qzeros` I32 `[in/g, out/8]`,
        /// `scales` float `[in/g, out]`.
        Awq {
            qweight: &'t SourceTensor,
            qzeros: &'t SourceTensor,
            scales: &'t SourceTensor,
            out: usize,
        },
        /// FineGrainedFP8: `weight` F8_E4M3 `[out, in]`, `weight_scale_inv` F32 per 128×128
        /// block.
        Fp8Block {
            weight: &'t SourceTensor,
            scale_inv: &'t SourceTensor,
        },
    }

    /// FineGrainedFP8's block edge (the `[128, 128]` every such checkpoint uses).
    pub(super) const FP8_BLOCK: u64 = 128;
}

/// Reading transformers' own quantized layouts (AutoAWQ GEMM, FineGrainedFP8): dequantized to
/// f32 when the layer is decoded, as modelopt's.
impl WeightIndex<'_> {
    fn transformers_quantized(&self, name: &str) -> Result<Option<transformers_layout::Parts<'_>>> {
        use formats::Dtype::{F8E4M3, I32};
        use transformers_layout::{Parts, FP8_BLOCK};
        let Some(module) = name.strip_suffix(".weight") else {
            return Ok(None);
        };
        let part = |s: &str| self.by_name.get(&format!("{module}.{s}"));
        let expected = self.cfg.expected_tensors();
        let Some(shape) = expected
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.shape.clone())
        else {
            return Ok(None);
        };
        let (out, cols) = match shape[..] {
            [o, c] => (o, c),
            _ => return Ok(None),
        };
        if let Some(qweight) = part("qweight") {
            let (Some(qzeros), Some(scales)) = (part("qzeros"), part("scales")) else {
                return Err(self.err(qweight, "qweight without qzeros and scales".into()));
            };
            let groups = scales.shape.first().copied().unwrap_or(0);
            let fits = qweight.ty == ElementType::Dense(I32)
                && qzeros.ty == ElementType::Dense(I32)
                && scales.ty.dense().is_some_and(|d| d.is_float())
                && out.is_multiple_of(8)
                && qweight.shape == [cols, out / 8]
                && groups > 0
                && cols.is_multiple_of(groups)
                && qzeros.shape == [groups, out / 8]
                && scales.shape == [groups, out];
            if !fits {
                return Err(self.err(
                    qweight,
                    format!(
                        "AWQ GEMM tensors qweight {} {:?}, qzeros {} {:?}, scales {} {:?} do not fit a [{out}, {cols}] weight",
                        qweight.ty.name(), qweight.shape, qzeros.ty.name(), qzeros.shape,
                        scales.ty.name(), scales.shape
                    ),
                ));
            }
            return Ok(Some(Parts::Awq {
                qweight,
                qzeros,
                scales,
                out: out as usize,
            }));
        }
        let Some(scale_inv) = part("weight_scale_inv") else {
            return Ok(None);
        };
        let weight = self.get(name)?;
        let blocks = [out.div_ceil(FP8_BLOCK), cols.div_ceil(FP8_BLOCK)];
        if weight.ty != ElementType::Dense(F8E4M3)
            || weight.shape != [out, cols]
            || scale_inv.shape != blocks
            || !scale_inv.ty.dense().is_some_and(|d| d.is_float())
        {
            return Err(self.err(
                scale_inv,
                format!(
                    "{} {:?} with weight {} {:?}: expected F8_E4M3 [{out}, {cols}] and float {blocks:?} (128x128 blocks)",
                    scale_inv.ty.name(), scale_inv.shape, weight.ty.name(), weight.shape
                ),
            ));
        }
        Ok(Some(Parts::Fp8Block { weight, scale_inv }))
    }

    fn decode_transformers(&self, parts: transformers_layout::Parts<'_>) -> Result<Vec<f32>> {
        use kernels::cpu::{awq_gemm, f8};
        use transformers_layout::{Parts, FP8_BLOCK};
        match parts {
            Parts::Awq {
                qweight,
                qzeros,
                scales,
                out,
            } => {
                let cols = qweight.shape[0] as usize;
                let group = cols / scales.shape[0] as usize;
                let mut q = vec![0u8; cols * out];
                awq_gemm::unpack_awq_gemm(self.ckpt.bytes(qweight), &mut q);
                let mut z = vec![0u8; cols / group * out];
                awq_gemm::unpack_awq_gemm(self.ckpt.bytes(qzeros), &mut z);
                let s = self.decode_small(scales)?;
                let mut w = vec![0.0f32; out * cols];
                for (k, qk) in q.chunks_exact(out).enumerate() {
                    let at = k / group * out;
                    for (o, &c) in qk.iter().enumerate() {
                        w[o * cols + k] = (f32::from(c) - f32::from(z[at + o])) * s[at + o];
                    }
                }
                self.release(qweight, 0, qweight.len);
                Ok(w)
            }
            Parts::Fp8Block { weight, scale_inv } => {
                let cols = weight.shape[1] as usize;
                let per_row = cols.div_ceil(FP8_BLOCK as usize);
                let s = self.decode_small(scale_inv)?;
                let mut w = vec![0.0f32; weight.numel() as usize];
                let codes = self.ckpt.bytes(weight);
                for (r, (row, c)) in w
                    .chunks_exact_mut(cols)
                    .zip(codes.chunks_exact(cols))
                    .enumerate()
                {
                    let block_row = &s[r / FP8_BLOCK as usize * per_row..];
                    for (j, (v, &b)) in row.iter_mut().zip(c).enumerate() {
                        *v = f8::e4m3_to_f32(b) * block_row[j / FP8_BLOCK as usize];
                    }
                }
                self.release(weight, 0, weight.len);
                Ok(w)
            }
        }
    }
}

/// How a tensor's bytes encode its values.
#[derive(Debug, Clone, Copy)]
pub(super) enum Encoding {
    Dense(formats::Dtype),
    /// GGML blocks along each row.
    Blocks(formats::gguf::GgmlType),
}

impl Encoding {
    /// Bytes of `n` values (`n` a whole number of blocks for block types).
    fn bytes_for(self, n: usize) -> usize {
        match self {
            Encoding::Dense(d) => n * d.size(),
            Encoding::Blocks(g) => n / g.block_size() as usize * g.type_size() as usize,
        }
    }
}

/// Decoding spread over the rayon pool in chunks (decoding a layer is otherwise serial).
pub(super) fn decode_par(
    src: &[u8],
    enc: Encoding,
    out: &mut [f32],
) -> std::result::Result<(), String> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    match enc {
        Encoding::Dense(dtype) => {
            let size = dtype.size();
            if src.len() != out.len() * size {
                return Err(format!(
                    "{} bytes for {} {} values",
                    src.len(),
                    out.len(),
                    dtype.name()
                ));
            }
            src.par_chunks(CHUNK * size)
                .zip(out.par_chunks_mut(CHUNK))
                .try_for_each(|(s, o)| kernels::cpu::cast::decode_f32(s, dtype, o))
                .map_err(|e| e.to_string())
        }
        Encoding::Blocks(ty) => {
            let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
            let blocks = CHUNK / bs;
            if !out.len().is_multiple_of(bs) || src.len() != out.len() / bs * ts {
                return Err(format!(
                    "{} bytes for {} {} values",
                    src.len(),
                    out.len(),
                    ty.name()
                ));
            }
            src.par_chunks(blocks * ts)
                .zip(out.par_chunks_mut(blocks * bs))
                .try_for_each(|(s, o)| kernels::cpu::ggml::dequantize(ty, s, o))
                .map_err(|e| e.to_string())
        }
    }
}
