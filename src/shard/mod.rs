//! `reshard`: tensor- and pipeline-parallel split and merge between the Hugging Face,
//! TensorRT-LLM and Megatron-core layouts, any (tp, pp) to any other, directly.
//!
//! [`layout`] says, as data, which rectangle of which Hugging Face tensor each stored row
//! holds in each layout. Reading an input ([`input`]) checks every rank file against that
//! description and indexes the stored pieces; each output tensor then becomes a short copy
//! program over those pieces ([`slices`]), run by the plan executor in row chunks read
//! straight from the rank files. Nothing is ever assembled at tp 1, on disk or in memory.

pub mod config;
pub mod input;
pub mod layout;
pub mod pipeline;
pub mod slices;

pub use input::Input;
pub use layout::{Parallel, ShardLayout, SplitDim};

use crate::error::{Error, Result};
use crate::plan::{OutputLayout, Plan, PlannedFile, PlannedTensor, Recipe, SideFile};
use formats::safetensors::{self, TensorSpec};
use layout::{padded_vocab, rank_files, BlockSource, RankFile, StoredTensor};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ReshardOptions {
    pub layout: ShardLayout,
    pub par: Parallel,
    /// Write only this rank's file (and the small side files), so ranks can be made by
    /// separate processes or machines.
    pub rank: Option<u64>,
    /// Hugging Face output: largest shard in bytes.
    pub max_shard_size: u64,
}

/// Opens `input` (checking it whole) and plans writing it to `output` in the asked layout.
pub fn plan_reshard(input: &Path, output: &Path, opts: &ReshardOptions) -> Result<(Input, Plan)> {
    let input = input::open(input)?;
    let plan = plan_from(&input, output, opts)?;
    Ok((input, plan))
}

/// Plans writing an opened input to `output`.
pub fn plan_from(input: &Input, output: &Path, opts: &ReshardOptions) -> Result<Plan> {
    let par = opts.par;
    let cfg = &input.logical.config;
    layout::check_parallel(cfg, opts.layout, par).map_err(|why| {
        Error::Usage(format!(
            "cannot write {} at tp {} pp {}: {why}",
            opts.layout.name(),
            par.tp,
            par.pp
        ))
    })?;
    if let Some(rank) = opts.rank {
        if opts.layout == ShardLayout::Hf {
            return Err(Error::Usage(
                "--rank applies to trtllm and megatron output".into(),
            ));
        }
        if rank >= par.world() {
            return Err(Error::Usage(format!(
                "--rank {rank} is out of range: tp {} × pp {} has ranks 0..{}",
                par.tp,
                par.pp,
                par.world() - 1
            )));
        }
    }
    let padded = padded_vocab(cfg.vocab_size, par.tp);
    let mut ranks = rank_files(&input.logical, opts.layout, par, padded);
    let mut side_files = Vec::new();
    let share = Arc::new(slices::SpanShare::default());
    let files = if opts.layout == ShardLayout::Hf {
        let rank = ranks.remove(0);
        let specs = rank
            .tensors
            .iter()
            .map(|t| spec_of(input, t))
            .collect::<Result<Vec<_>>>()?;
        let shards = safetensors::plan_shards(specs, opts.max_shard_size, Some(&rank.metadata))?;
        if let Some(index) = shards.index_json {
            side_files.push(SideFile {
                name: "model.safetensors.index.json".into(),
                bytes: index,
            });
        }
        let by_name: std::collections::HashMap<&str, &StoredTensor> =
            rank.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        shards
            .files
            .into_iter()
            .map(|(name, layout)| planned_file(&share, input, output, name, layout, &by_name))
            .collect::<Result<Vec<_>>>()?
    } else {
        let chosen: Vec<RankFile> = match opts.rank {
            Some(r) => vec![ranks.swap_remove(r as usize)],
            None => ranks,
        };
        chosen
            .into_iter()
            .map(|rank| {
                let specs = rank
                    .tensors
                    .iter()
                    .map(|t| spec_of(input, t))
                    .collect::<Result<Vec<_>>>()?;
                let layout = safetensors::plan_file(specs, Some(&rank.metadata))?;
                let by_name = rank.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
                planned_file(&share, input, output, rank.name.clone(), layout, &by_name)
            })
            .collect::<Result<Vec<_>>>()?
    };
    let config = match opts.layout {
        ShardLayout::Trtllm => config::trtllm_config(cfg, par, input.dtypes[0]),
        ShardLayout::Hf | ShardLayout::Megatron => input.hf_config.clone(),
    };
    side_files.push(SideFile::json("config.json", &config));
    side_files.extend(crate::convert::carried_files(&input.root)?);
    Ok(Plan {
        job: format!(
            "reshard {} tp {} pp {} -> {} tp {} pp {}",
            input.layout.name(),
            input.par.tp,
            input.par.pp,
            opts.layout.name(),
            par.tp,
            par.pp
        ),
        target: output.to_path_buf(),
        layout: if opts.rank.is_some() {
            OutputLayout::Files
        } else {
            OutputLayout::Folder
        },
        files,
        side_files,
    })
}

/// The safetensors spec of a stored tensor: its blocks' dtype (all the same).
pub(crate) fn spec_of(input: &Input, t: &StoredTensor) -> Result<TensorSpec> {
    let mut dtype = None;
    for b in &t.blocks {
        if let BlockSource::Logical { tensor, .. } = b.source {
            let d = input.dtypes[tensor];
            match dtype {
                None => dtype = Some(d),
                Some(prev) if prev != d => {
                    return Err(Error::tensor(
                        input.files[0].display_path(),
                        &input.logical.tensors[tensor].name,
                        format!(
                            "dtype {} cannot be fused with {} in {}",
                            d.name(),
                            prev.name(),
                            t.name
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(TensorSpec {
        name: t.name.clone(),
        dtype: dtype.unwrap_or(formats::Dtype::BF16),
        shape: t.shape.clone(),
    })
}

fn planned_file(
    share: &Arc<slices::SpanShare>,
    input: &Input,
    output: &Path,
    name: String,
    layout: safetensors::FileLayout,
    by_name: &std::collections::HashMap<&str, &StoredTensor>,
) -> Result<PlannedFile> {
    let target = output.join(&name);
    let tensors = layout
        .tensors
        .iter()
        .map(|pt| {
            let stored = by_name[pt.spec.name.as_str()];
            let es = pt.spec.dtype.size() as u64;
            let producer = slices::SliceProducer::new(input, stored, es, &target, share)?;
            Ok(PlannedTensor {
                name: pt.spec.name.clone(),
                dtype: pt.spec.dtype.name().to_string(),
                shape: pt.spec.shape.clone(),
                offset: pt.start,
                len: pt.len,
                recipe: Recipe {
                    source: describe(input, stored),
                    source_index: usize::MAX,
                    row_elements: stored.width(),
                    ops: Vec::new(),
                },
                inline: None,
                producer: Some(Arc::new(producer)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PlannedFile {
        name,
        size: layout.total_size,
        header: layout.header,
        tensors,
    })
}

/// `q_proj[0..64] + k_proj[0..16] + zeros[2]` style summary for `--dry-run`.
pub(crate) fn describe(input: &Input, t: &StoredTensor) -> String {
    t.blocks
        .iter()
        .map(|b| match b.source {
            BlockSource::Zero => format!("zeros[{}]", b.rows),
            BlockSource::Logical { tensor, row, col } => {
                let name = &input.logical.tensors[tensor].name;
                if col > 0 || t.width() != input.logical.dims(tensor).1 {
                    format!(
                        "{name}[{row}..{}, {col}..{}]",
                        row + b.rows,
                        col + t.width()
                    )
                } else {
                    format!("{name}[{row}..{}]", row + b.rows)
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}
