//! The masks file: a pruning decision as kept-index lists, so it can be reviewed, edited and
//! applied again (to the same model in another format, or to every rank of a sharded one).
//!
//! A safetensors file of 1-D `I64` tensors, each the ascending original indices kept:
//! `layers`, `hidden`, and for every kept layer `N` (original index) `layers.N.ffn`,
//! `layers.N.heads`, `layers.N.query_groups`. `__metadata__` has `format`
//! (`ckpt-opt-prune-masks-v1`) and the unpruned model's dimensions (`num_hidden_layers`,
//! `hidden_size`, `intermediate_size`, `num_attention_heads`, `num_key_value_heads`,
//! `head_dim`), which must match the model the file is applied to.

use super::select::Kept;
use crate::calibrate::Dims;
use crate::error::{Error, Result};
use formats::safetensors::{SafetensorsFile, TensorSpec};
use formats::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

pub const FORMAT: &str = "ckpt-opt-prune-masks-v1";

const DIM_KEYS: [&str; 6] = [
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
];

fn dim_values(d: &Dims) -> [usize; 6] {
    [d.layers, d.hidden, d.ffn, d.heads, d.kv_heads, d.head_dim]
}

fn entries(kept: &Kept) -> Vec<(String, &[usize])> {
    let mut out = vec![
        ("layers".to_string(), kept.layers.as_slice()),
        ("hidden".to_string(), kept.hidden.as_slice()),
    ];
    for (at, l) in kept.layers.iter().enumerate() {
        out.push((format!("layers.{l}.ffn"), kept.ffn[at].as_slice()));
        out.push((format!("layers.{l}.heads"), kept.heads[at].as_slice()));
        out.push((
            format!("layers.{l}.query_groups"),
            kept.query_groups[at].as_slice(),
        ));
    }
    out
}

/// Writes `kept` to `path` atomically.
pub fn write(path: &Path, kept: &Kept) -> Result<()> {
    let mut metadata = BTreeMap::from([("format".to_string(), FORMAT.to_string())]);
    for (k, v) in DIM_KEYS.iter().zip(dim_values(&kept.source)) {
        metadata.insert((*k).to_string(), v.to_string());
    }
    let bytes: Vec<(TensorSpec, Vec<u8>)> = entries(kept)
        .into_iter()
        .map(|(name, v)| {
            let spec = TensorSpec::new(name, Dtype::I64, vec![v.len() as u64]);
            (
                spec,
                v.iter().flat_map(|&i| (i as i64).to_le_bytes()).collect(),
            )
        })
        .collect();
    let refs: Vec<(TensorSpec, &[u8])> = bytes
        .iter()
        .map(|(s, b)| (s.clone(), b.as_slice()))
        .collect();
    formats::safetensors::write_file(path, &refs, Some(&metadata))?;
    Ok(())
}

/// Reads a masks file for a model of dimensions `model`, checking that it was made for such a
/// model and that the selection is usable ([`Kept::check`]).
pub fn read(path: &Path, model: Dims) -> Result<Kept> {
    let file = SafetensorsFile::open(path)?;
    let metadata = file.header().metadata.clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::data(
            path,
            format!("not a pruning masks file (no __metadata__ format \"{FORMAT}\")"),
        ));
    }
    for (key, want) in DIM_KEYS.iter().zip(dim_values(&model)) {
        let got = metadata.get(*key).and_then(|v| v.parse::<usize>().ok());
        if got != Some(want) {
            let got = got.map_or("missing".to_string(), |g| g.to_string());
            return Err(Error::data(
                path,
                format!("the masks are for another model: __metadata__ {key} is {got}, this model has {want}"),
            ));
        }
    }
    let list = |name: &str| -> Result<Vec<usize>> {
        let info = file
            .get(name)
            .ok_or_else(|| Error::tensor(path, name, "missing"))?;
        if info.dtype != Dtype::I64 || info.shape.len() != 1 {
            return Err(Error::tensor(
                path,
                name,
                format!(
                    "{} {:?}, expected a 1-D I64 list of kept indices",
                    info.dtype.name(),
                    info.shape
                ),
            ));
        }
        file.data(info)
            .chunks_exact(8)
            .map(|b| {
                let v = i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                usize::try_from(v)
                    .map_err(|_| Error::tensor(path, name, format!("negative index {v}")))
            })
            .collect()
    };
    let layers = list("layers")?;
    let mut kept = Kept {
        source: model,
        hidden: list("hidden")?,
        ffn: Vec::new(),
        heads: Vec::new(),
        query_groups: Vec::new(),
        layers: Vec::new(),
    };
    for &l in &layers {
        if l >= model.layers {
            return Err(Error::tensor(
                path,
                "layers",
                format!("layer {l} is out of range ({} layers)", model.layers),
            ));
        }
        kept.ffn.push(list(&format!("layers.{l}.ffn"))?);
        kept.heads.push(list(&format!("layers.{l}.heads"))?);
        kept.query_groups
            .push(list(&format!("layers.{l}.query_groups"))?);
    }
    kept.layers = layers;
    kept.check()
        .map_err(|(name, why)| Error::tensor(path, name, why))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Dims {
        Dims {
            layers: 3,
            hidden: 8,
            ffn: 6,
            heads: 4,
            kv_heads: 2,
            head_dim: 2,
        }
    }

    #[test]
    fn round_trip_and_other_model_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut kept = Kept::all(dims());
        kept.layers = vec![0, 2];
        kept.ffn = vec![vec![1, 4], vec![0, 5]];
        kept.heads = vec![vec![0, 3]; 2];
        kept.query_groups = vec![vec![0, 1]; 2];
        kept.hidden = vec![0, 1, 2, 7];
        write(&path, &kept).unwrap();
        assert_eq!(read(&path, dims()).unwrap(), kept);

        let other = Dims { ffn: 12, ..dims() };
        let err = read(&path, other).unwrap_err().to_string();
        assert!(
            err.contains("another model") && err.contains("intermediate_size"),
            "{err}"
        );
    }

    #[test]
    fn bad_selection_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut kept = Kept::all(dims());
        kept.ffn[1] = vec![0, 1];
        write(&path, &kept).unwrap();
        let err = read(&path, dims()).unwrap_err().to_string();
        assert!(err.contains("layers.1.ffn"), "{err}");
    }
}
