//! Where every row of every Hugging Face tensor lives in each parallel layout.
//!
//! A layout is described as data: for each rank file, its stored tensors, and for each stored
//! tensor a vertical stack of [`Block`]s, each a rectangle of one *logical* tensor (the
//! unsharded Hugging Face tensor) or zero padding. The same description serves to write a
//! layout (output rows come from the blocks) and to read one (each block says which logical
//! rows and columns the stored rows hold), so any layout converts to any other directly.
//!
//! One-dimensional tensors (norms, biases) are treated as `n × 1`.

use crate::model::{ModelConfig, TensorRole};
use std::collections::{BTreeMap, HashMap};

/// The three on-disk layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardLayout {
    /// Hugging Face: unsharded weights, possibly split by size into several files.
    Hf,
    /// TensorRT-LLM checkpoint: `config.json` with `mapping` + `rank{N}.safetensors`.
    Trtllm,
    /// Megatron-core names in `mp_rank_TT[_PPP]/model.safetensors` rank folders.
    Megatron,
}

impl ShardLayout {
    pub fn name(self) -> &'static str {
        match self {
            ShardLayout::Hf => "hf",
            ShardLayout::Trtllm => "trtllm",
            ShardLayout::Megatron => "megatron",
        }
    }
}

/// Tensor- and pipeline-parallel sizes. Rank `r` is `pp_rank * tp + tp_rank`, as TensorRT-LLM's
/// `Mapping` numbers them (`tp_rank = rank % tp_size`, `pp_rank = rank // tp_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Parallel {
    pub tp: u64,
    pub pp: u64,
}

impl Parallel {
    pub fn world(self) -> u64 {
        self.tp * self.pp
    }
}

/// How a weight is cut across tensor-parallel ranks (Megatron's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SplitDim {
    /// Whole on every rank (norms).
    Replicated,
    /// Output rows split (dim 0): q/k/v, gate/up, embedding and LM head (vocab).
    Column,
    /// Input columns split (dim 1): o_proj, down_proj.
    Row,
}

/// How each Hugging Face role is split under tensor parallelism (TensorRT-LLM
/// `models/llama/convert.py` `convert_layer`; Megatron `tools/checkpoint/saver_*.py`).
pub fn split_dim(role: TensorRole) -> SplitDim {
    match role {
        TensorRole::AttnNorm | TensorRole::FfnNorm | TensorRole::OutputNorm => SplitDim::Replicated,
        TensorRole::AttnOutput | TensorRole::Down => SplitDim::Row,
        _ => SplitDim::Column,
    }
}

/// Where a block's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSource {
    /// Rows `row..row + rows` and columns `col..col + width` of logical tensor `tensor`.
    Logical { tensor: usize, row: u64, col: u64 },
    /// Zero rows (vocabulary padding).
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub rows: u64,
    pub source: BlockSource,
}

/// One tensor of a rank file: its name, shape and the blocks stacked in it.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub blocks: Vec<Block>,
    /// A copy the format wants although another tensor holds the same data (the LM head of a
    /// model with tied embeddings): written, never read back.
    pub redundant: bool,
}

impl StoredTensor {
    /// Elements per row (1 for vectors).
    pub fn width(&self) -> u64 {
        if self.shape.len() >= 2 {
            self.shape[1..].iter().product()
        } else {
            1
        }
    }

    pub fn rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// One output or input file of a layout.
#[derive(Debug, Clone)]
pub struct RankFile {
    /// Path relative to the checkpoint folder, e.g. `rank3.safetensors`.
    pub name: String,
    pub tensors: Vec<StoredTensor>,
    /// safetensors `__metadata__` to write.
    pub metadata: BTreeMap<String, String>,
}

/// The unsharded (Hugging Face) tensors of a model, by index.
#[derive(Debug, Clone)]
pub struct Logical {
    pub config: ModelConfig,
    pub tensors: Vec<crate::model::ExpectedTensor>,
    by_name: HashMap<String, usize>,
}

impl Logical {
    pub fn new(config: ModelConfig) -> Self {
        let tensors = config.expected_tensors();
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Logical {
            config,
            tensors,
            by_name,
        }
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Rows and columns of logical tensor `t` in the `n × 1` convention for vectors.
    pub fn dims(&self, t: usize) -> (u64, u64) {
        let shape = &self.tensors[t].shape;
        let rows = shape.first().copied().unwrap_or(1);
        let cols = if shape.len() >= 2 {
            shape[1..].iter().product()
        } else {
            1
        };
        (rows, cols)
    }

    fn must(&self, name: &str) -> usize {
        // Builders only ask for names `expected_tensors` produces for this config.
        self.by_name[name]
    }

    fn layer(&self, l: u64, suffix: &str) -> usize {
        self.must(&format!("model.layers.{l}.{suffix}"))
    }

    /// The logical LM head: `lm_head.weight`, or the embedding when tied.
    fn lm_head(&self) -> (usize, bool) {
        match self.id("lm_head.weight") {
            Some(t) => (t, false),
            None => (self.must("model.embed_tokens.weight"), true),
        }
    }
}

fn rows_of(tensor: usize, row: u64, rows: u64) -> Block {
    Block {
        rows,
        source: BlockSource::Logical {
            tensor,
            row,
            col: 0,
        },
    }
}

/// The whole logical tensor, under another name.
fn whole(lg: &Logical, name: String, t: usize) -> StoredTensor {
    let (rows, _) = lg.dims(t);
    StoredTensor {
        name,
        shape: lg.tensors[t].shape.clone(),
        blocks: vec![rows_of(t, 0, rows)],
        redundant: false,
    }
}

/// Row-parallel slice: every row, columns `rank·w .. (rank+1)·w` with `w = cols / tp`.
fn column_slice(lg: &Logical, name: String, t: usize, tp: u64, rank: u64) -> StoredTensor {
    let (rows, cols) = lg.dims(t);
    let w = cols / tp;
    StoredTensor {
        name,
        shape: vec![rows, w],
        blocks: vec![Block {
            rows,
            source: BlockSource::Logical {
                tensor: t,
                row: 0,
                col: rank * w,
            },
        }],
        redundant: false,
    }
}

/// Stacked row blocks of tensors that share a width.
fn stacked(lg: &Logical, name: String, blocks: Vec<Block>, vector: bool) -> StoredTensor {
    let rows: u64 = blocks.iter().map(|b| b.rows).sum();
    let width = blocks
        .iter()
        .find_map(|b| match b.source {
            BlockSource::Logical { tensor, .. } => Some(lg.dims(tensor).1),
            BlockSource::Zero => None,
        })
        .unwrap_or(1);
    StoredTensor {
        name,
        shape: if vector {
            vec![rows]
        } else {
            vec![rows, width]
        },
        blocks,
        redundant: false,
    }
}

/// Vocabulary rows of one rank: `padded / tp` rows, the ones past the true vocabulary zero.
/// TensorRT-LLM's llama converter zero-pads `lm_head` to a multiple of tp (`_utils.py`
/// `pad_vocab_size`, `models/llama/convert.py` before `split_matrix_tp`); a parallel
/// embedding split on dim 0 is padded the same way, as modelopt's export does
/// (`export/postprocess.py` `pad_embedding_lm_head`). Megatron pads likewise and records the
/// true size separately (`true_vocab_size` in `tools/checkpoint/loader_llama_mistral.py`).
fn vocab_rows(t: usize, vocab: u64, padded: u64, tp: u64, rank: u64) -> Vec<Block> {
    let per = padded / tp;
    let start = rank * per;
    let real = vocab.saturating_sub(start).min(per);
    let mut blocks = Vec::new();
    if real > 0 {
        blocks.push(rows_of(t, start, real));
    }
    if per > real {
        blocks.push(Block {
            rows: per - real,
            source: BlockSource::Zero,
        });
    }
    blocks
}

/// `ceil(vocab / tp) · tp` (TensorRT-LLM `_utils.py` `pad_vocab_size`).
pub fn padded_vocab(vocab: u64, tp: u64) -> u64 {
    vocab.div_ceil(tp) * tp
}

/// The rows of the K (or V) projection a TensorRT-LLM rank holds. With fewer KV heads than
/// ranks, each head is duplicated `tp / kv_heads` times and rank `r` gets head
/// `r / (tp / kv_heads)` (TensorRT-LLM `models/convert_utils.py` `dup_kv_weight`, which
/// repeats each head in place before `split_matrix_tp`).
fn kv_rows(cfg: &ModelConfig, tp: u64, rank: u64) -> (u64, u64) {
    let (kv, d) = (cfg.num_key_value_heads, cfg.head_dim);
    if kv >= tp {
        let per = kv / tp * d;
        (rank * per, per)
    } else {
        ((rank / (tp / kv)) * d, d)
    }
}

/// First layer and layer count of pipeline stage `pp_rank` (layers divide evenly, as
/// checked by `check_parallel`; TensorRT-LLM `Mapping.pp_layers`).
pub fn stage_layers(layers: u64, pp: u64, pp_rank: u64) -> (u64, u64) {
    let per = layers / pp;
    (pp_rank * per, per)
}

/// The divisibility rules of a layout, on the config alone.
pub fn check_parallel(cfg: &ModelConfig, layout: ShardLayout, par: Parallel) -> Result<(), String> {
    let Parallel { tp, pp } = par;
    if tp == 0 || pp == 0 {
        return Err("tp and pp must be at least 1".into());
    }
    if layout == ShardLayout::Hf {
        return if tp == 1 && pp == 1 {
            Ok(())
        } else {
            Err("the hf layout is unsharded: use --tp 1 --pp 1".into())
        };
    }
    let (heads, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    if !heads.is_multiple_of(tp) {
        return Err(format!(
            "num_attention_heads {heads} is not divisible by tp {tp}"
        ));
    }
    match layout {
        ShardLayout::Megatron if !kv.is_multiple_of(tp) => {
            // Megatron-core splits whole query groups (`num_query_groups // tp`).
            return Err(format!(
                "num_key_value_heads {kv} is not divisible by tp {tp} (Megatron splits whole query groups)"
            ));
        }
        _ if !(kv.is_multiple_of(tp) || tp.is_multiple_of(kv)) => {
            return Err(format!(
                "num_key_value_heads {kv} must be divisible by tp {tp} or divide it"
            ));
        }
        _ => {}
    }
    let ffn = cfg.intermediate_size;
    if !ffn.is_multiple_of(tp) {
        return Err(format!(
            "intermediate_size {ffn} is not divisible by tp {tp}"
        ));
    }
    let q = cfg.q_rows();
    if !q.is_multiple_of(tp) {
        return Err(format!("q rows {q} are not divisible by tp {tp}"));
    }
    let layers = cfg.num_hidden_layers;
    if !layers.is_multiple_of(pp) {
        return Err(format!(
            "num_hidden_layers {layers} is not divisible by pp {pp}"
        ));
    }
    Ok(())
}

/// Every file of `layout` at `par` (`padded` vocabulary rows for sharded layouts).
pub fn rank_files(lg: &Logical, layout: ShardLayout, par: Parallel, padded: u64) -> Vec<RankFile> {
    match layout {
        ShardLayout::Hf => vec![hf_file(lg)],
        ShardLayout::Trtllm => (0..par.world())
            .map(|rank| trtllm_rank(lg, par, rank, padded))
            .collect(),
        ShardLayout::Megatron => (0..par.world())
            .map(|rank| megatron_rank(lg, par, rank, padded))
            .collect(),
    }
}

/// The Hugging Face checkpoint as one logical file (split by size when written).
fn hf_file(lg: &Logical) -> RankFile {
    RankFile {
        name: "model.safetensors".into(),
        tensors: (0..lg.tensors.len())
            .map(|t| whole(lg, lg.tensors[t].name.clone(), t))
            .collect(),
        metadata: BTreeMap::from([("format".to_string(), "pt".to_string())]),
    }
}

/// Names of the attention/MLP tensors of one decoder layer in a sharded layout.
struct LayerNames {
    attn_norm: &'static str,
    qkv: &'static str,
    qkv_bias: &'static str,
    dense: &'static str,
    ffn_norm: &'static str,
    proj: &'static str,
}

/// One TensorRT-LLM rank (names: TensorRT-LLM `models/llama/convert.py` `convert_layer`;
/// FORMATS.md 1.3): `attention.qkv` is this rank's `[Q_r; K_r; V_r]`, `mlp.fc` is HF
/// `gate_proj` and `mlp.gate` is HF `up_proj`; layers numbered from 0 on every stage.
fn trtllm_rank(lg: &Logical, par: Parallel, rank: u64, padded: u64) -> RankFile {
    let cfg = &lg.config;
    let (tp_rank, pp_rank) = (rank % par.tp, rank / par.tp);
    let names = LayerNames {
        attn_norm: "input_layernorm.weight",
        qkv: "attention.qkv.weight",
        qkv_bias: "attention.qkv.bias",
        dense: "attention.dense.weight",
        ffn_norm: "post_layernorm.weight",
        proj: "mlp.proj.weight",
    };
    let mut tensors = Vec::new();
    if pp_rank == 0 {
        // use_parallel_embedding with embedding_sharding_dim 0, as modelopt exports.
        let t = lg.must("model.embed_tokens.weight");
        let blocks = vocab_rows(t, cfg.vocab_size, padded, par.tp, tp_rank);
        tensors.push(stacked(
            lg,
            "transformer.vocab_embedding.weight".into(),
            blocks,
            false,
        ));
    }
    let (first, count) = stage_layers(cfg.num_hidden_layers, par.pp, pp_rank);
    for local in 0..count {
        let l = first + local;
        let p = format!("transformer.layers.{local}");
        let qkv = |suffix: &str| {
            let (q, k, v) = (
                lg.layer(l, &format!("self_attn.q_proj.{suffix}")),
                lg.layer(l, &format!("self_attn.k_proj.{suffix}")),
                lg.layer(l, &format!("self_attn.v_proj.{suffix}")),
            );
            let q_per = cfg.q_rows() / par.tp;
            let (kv_start, kv_n) = kv_rows(cfg, par.tp, tp_rank);
            vec![
                rows_of(q, tp_rank * q_per, q_per),
                rows_of(k, kv_start, kv_n),
                rows_of(v, kv_start, kv_n),
            ]
        };
        layer_tensors(
            lg,
            par,
            tp_rank,
            l,
            &p,
            &names,
            &mut tensors,
            qkv,
            |gate, up| {
                let per = cfg.intermediate_size / par.tp;
                vec![
                    ("mlp.fc.weight", vec![rows_of(gate, tp_rank * per, per)]),
                    ("mlp.gate.weight", vec![rows_of(up, tp_rank * per, per)]),
                ]
            },
        );
    }
    if pp_rank == par.pp - 1 {
        let norm = lg.must("model.norm.weight");
        tensors.push(whole(lg, "transformer.ln_f.weight".into(), norm));
        // Tied embeddings: TensorRT-LLM's llama convert writes lm_head as a copy of the
        // embedding (and `share_embedding_table` lets the builder drop it again).
        let (head, tied) = lg.lm_head();
        let blocks = vocab_rows(head, cfg.vocab_size, padded, par.tp, tp_rank);
        let mut t = stacked(lg, "lm_head.weight".into(), blocks, false);
        t.redundant = tied;
        tensors.push(t);
    }
    RankFile {
        name: format!("rank{rank}.safetensors"),
        tensors,
        metadata: BTreeMap::from([("format".to_string(), "pt".to_string())]),
    }
}

/// Folder of a Megatron rank: `mp_rank_TT` with pp 1, `mp_rank_TT_PPP` otherwise (Megatron
/// `megatron/training/checkpointing.py` `get_checkpoint_name`).
pub fn megatron_folder(par: Parallel, rank: u64) -> String {
    let (tp_rank, pp_rank) = (rank % par.tp, rank / par.tp);
    if par.pp == 1 {
        format!("mp_rank_{tp_rank:02}")
    } else {
        format!("mp_rank_{tp_rank:02}_{pp_rank:03}")
    }
}

/// One Megatron-core rank (names: modelopt `export/plugins/mcore_llama.py`; FORMATS.md 4.1):
/// `linear_qkv` holds this rank's query groups, each `[q heads of the group; k_g; v_g]`
/// (Megatron `tools/checkpoint/loader_llama_mistral.py` `set_attn_state`), `linear_fc1` is
/// `[gate_r; up_r]` (the savers' `cat(W_r, V_r)`).
fn megatron_rank(lg: &Logical, par: Parallel, rank: u64, padded: u64) -> RankFile {
    let cfg = &lg.config;
    let (tp_rank, pp_rank) = (rank % par.tp, rank / par.tp);
    let names = LayerNames {
        attn_norm: "input_layernorm.weight",
        qkv: "self_attention.linear_qkv.weight",
        qkv_bias: "self_attention.linear_qkv.bias",
        dense: "self_attention.linear_proj.weight",
        ffn_norm: "pre_mlp_layernorm.weight",
        proj: "mlp.linear_fc2.weight",
    };
    let mut tensors = Vec::new();
    if pp_rank == 0 {
        let t = lg.must("model.embed_tokens.weight");
        let blocks = vocab_rows(t, cfg.vocab_size, padded, par.tp, tp_rank);
        tensors.push(stacked(
            lg,
            "embedding.word_embeddings.weight".into(),
            blocks,
            false,
        ));
    }
    let (first, count) = stage_layers(cfg.num_hidden_layers, par.pp, pp_rank);
    for local in 0..count {
        let l = first + local;
        let p = format!("decoder.layers.{local}");
        let qkv = |suffix: &str| {
            let (q, k, v) = (
                lg.layer(l, &format!("self_attn.q_proj.{suffix}")),
                lg.layer(l, &format!("self_attn.k_proj.{suffix}")),
                lg.layer(l, &format!("self_attn.v_proj.{suffix}")),
            );
            let d = cfg.head_dim;
            let groups = cfg.num_key_value_heads;
            let per_group = cfg.num_attention_heads / groups;
            let local_groups = groups / par.tp;
            let mut blocks = Vec::new();
            for g in tp_rank * local_groups..(tp_rank + 1) * local_groups {
                blocks.push(rows_of(q, g * per_group * d, per_group * d));
                blocks.push(rows_of(k, g * d, d));
                blocks.push(rows_of(v, g * d, d));
            }
            blocks
        };
        layer_tensors(
            lg,
            par,
            tp_rank,
            l,
            &p,
            &names,
            &mut tensors,
            qkv,
            |gate, up| {
                let per = cfg.intermediate_size / par.tp;
                vec![(
                    "mlp.linear_fc1.weight",
                    vec![
                        rows_of(gate, tp_rank * per, per),
                        rows_of(up, tp_rank * per, per),
                    ],
                )]
            },
        );
    }
    if pp_rank == par.pp - 1 {
        let norm = lg.must("model.norm.weight");
        tensors.push(whole(lg, "decoder.final_layernorm.weight".into(), norm));
        let (head, tied) = lg.lm_head();
        let blocks = vocab_rows(head, cfg.vocab_size, padded, par.tp, tp_rank);
        let mut t = stacked(lg, "output_layer.weight".into(), blocks, false);
        t.redundant = tied;
        tensors.push(t);
    }
    let mut metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    for (k, v) in [
        ("tensor_model_parallel_size", par.tp),
        ("pipeline_model_parallel_size", par.pp),
        ("tensor_model_parallel_rank", tp_rank),
        ("pipeline_model_parallel_rank", pp_rank),
        ("padded_vocab_size", padded),
        ("num_layers", cfg.num_hidden_layers),
        ("hidden_size", cfg.hidden_size),
        ("ffn_hidden_size", cfg.intermediate_size),
        ("num_attention_heads", cfg.num_attention_heads),
        ("num_query_groups", cfg.num_key_value_heads),
        ("kv_channels", cfg.head_dim),
    ] {
        metadata.insert(k.to_string(), v.to_string());
    }
    RankFile {
        name: format!("{}/model.safetensors", megatron_folder(par, rank)),
        tensors,
        metadata,
    }
}

/// The tensors of decoder layer `l` under prefix `p`, shared by the sharded layouts: norms
/// replicated, fused qkv (and its bias) from `qkv`, row-parallel dense/proj, MLP from `mlp`.
#[allow(clippy::too_many_arguments)]
fn layer_tensors(
    lg: &Logical,
    par: Parallel,
    tp_rank: u64,
    l: u64,
    p: &str,
    names: &LayerNames,
    out: &mut Vec<StoredTensor>,
    qkv: impl Fn(&str) -> Vec<Block>,
    mlp: impl Fn(usize, usize) -> Vec<(&'static str, Vec<Block>)>,
) {
    let cfg = &lg.config;
    out.push(whole(
        lg,
        format!("{p}.{}", names.attn_norm),
        lg.layer(l, "input_layernorm.weight"),
    ));
    out.push(stacked(
        lg,
        format!("{p}.{}", names.qkv),
        qkv("weight"),
        false,
    ));
    if cfg.attention_bias {
        out.push(stacked(
            lg,
            format!("{p}.{}", names.qkv_bias),
            qkv("bias"),
            true,
        ));
    }
    out.push(column_slice(
        lg,
        format!("{p}.{}", names.dense),
        lg.layer(l, "self_attn.o_proj.weight"),
        par.tp,
        tp_rank,
    ));
    out.push(whole(
        lg,
        format!("{p}.{}", names.ffn_norm),
        lg.layer(l, "post_attention_layernorm.weight"),
    ));
    let (gate, up) = (
        lg.layer(l, "mlp.gate_proj.weight"),
        lg.layer(l, "mlp.up_proj.weight"),
    );
    for (name, blocks) in mlp(gate, up) {
        out.push(stacked(lg, format!("{p}.{name}"), blocks, false));
    }
    out.push(column_slice(
        lg,
        format!("{p}.{}", names.proj),
        lg.layer(l, "mlp.down_proj.weight"),
        par.tp,
        tp_rank,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn gqa() -> Logical {
        let json = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":96,
            "num_hidden_layers":2,"num_attention_heads":8,"num_key_value_heads":2,"vocab_size":10}"#;
        Logical::new(ModelConfig::from_json(Path::new("c.json"), json).unwrap())
    }

    fn blocks_of<'a>(f: &'a RankFile, name: &str) -> &'a [Block] {
        &f.tensors.iter().find(|t| t.name == name).unwrap().blocks
    }

    #[test]
    fn trtllm_duplicates_kv_heads_when_tp_exceeds_them() {
        let lg = gqa();
        let par = Parallel { tp: 4, pp: 1 };
        let files = rank_files(&lg, ShardLayout::Trtllm, par, padded_vocab(10, 4));
        let k = lg.id("model.layers.0.self_attn.k_proj.weight").unwrap();
        // head_dim 8, 2 KV heads, tp 4: ranks 0,1 hold head 0 and ranks 2,3 head 1.
        for (rank, head) in [(0, 0), (1, 0), (2, 1), (3, 1)] {
            let b = blocks_of(&files[rank], "transformer.layers.0.attention.qkv.weight");
            assert_eq!(b[0].rows, 16); // 8 q heads / 4 ranks × 8 rows
            assert_eq!(
                b[1],
                Block {
                    rows: 8,
                    source: BlockSource::Logical {
                        tensor: k,
                        row: head * 8,
                        col: 0
                    }
                }
            );
        }
        // vocab 10 padded to 12: the last rank has 1 real row and 2 zero rows.
        let e = blocks_of(&files[3], "transformer.vocab_embedding.weight");
        assert_eq!(e[0].rows, 1);
        assert_eq!(e[1].source, BlockSource::Zero);
        assert_eq!(e[1].rows, 2);
    }

    #[test]
    fn megatron_interleaves_query_groups() {
        let lg = gqa();
        let files = rank_files(&lg, ShardLayout::Megatron, Parallel { tp: 2, pp: 1 }, 10);
        let b = blocks_of(
            &files[1],
            "decoder.layers.1.self_attention.linear_qkv.weight",
        );
        // rank 1 holds group 1: q heads 4..8 (32 rows from row 32), k head 1, v head 1.
        let rows: Vec<(u64, u64)> = b
            .iter()
            .map(|b| match b.source {
                BlockSource::Logical { row, .. } => (row, b.rows),
                BlockSource::Zero => (u64::MAX, 0),
            })
            .collect();
        assert_eq!(rows, vec![(32, 32), (8, 8), (8, 8)]);
        assert_eq!(files[1].name, "mp_rank_01/model.safetensors");
    }

    #[test]
    fn pipeline_stages_renumber_layers() {
        let lg = gqa();
        let files = rank_files(&lg, ShardLayout::Trtllm, Parallel { tp: 1, pp: 2 }, 10);
        let names: Vec<&str> = files[1].tensors.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"transformer.layers.0.attention.dense.weight"));
        assert!(!names.iter().any(|n| n.contains("layers.1")));
        assert!(names.contains(&"lm_head.weight"));
        assert!(!names.contains(&"transformer.vocab_embedding.weight"));
    }

    #[test]
    fn divisibility_rules() {
        let cfg = gqa().config;
        let t = |layout, tp, pp| check_parallel(&cfg, layout, Parallel { tp, pp });
        assert!(t(ShardLayout::Trtllm, 4, 2).is_ok());
        assert!(t(ShardLayout::Trtllm, 8, 1).is_ok());
        assert!(t(ShardLayout::Trtllm, 3, 1)
            .unwrap_err()
            .contains("num_attention_heads"));
        assert!(t(ShardLayout::Megatron, 4, 1)
            .unwrap_err()
            .contains("query groups"));
        assert!(t(ShardLayout::Trtllm, 1, 3)
            .unwrap_err()
            .contains("num_hidden_layers"));
        assert!(t(ShardLayout::Hf, 2, 1).is_err());
    }
}
