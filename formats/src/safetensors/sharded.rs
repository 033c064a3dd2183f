//! One logical checkpoint: a single `.safetensors` file, or a Hugging Face folder whose
//! `model.safetensors.index.json` maps every tensor name to the shard file holding it.

use super::header::TensorInfo;
use super::reader::SafetensorsFile;
use crate::error::{FormatError, Result};
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The index file name transformers writes (`SAFE_WEIGHTS_INDEX_NAME`).
pub const INDEX_FILE_NAME: &str = "model.safetensors.index.json";

pub struct SafetensorsModel {
    root: PathBuf,
    files: Vec<SafetensorsFile>,
    index_path: Option<PathBuf>,
    /// name -> (file index, tensor index within that file)
    by_name: HashMap<String, (usize, usize)>,
}

impl SafetensorsModel {
    /// Opens a `.safetensors` file; or a folder with `model.safetensors.index.json` (or exactly
    /// one `*.safetensors.index.json`); or a folder holding exactly one `*.safetensors` file.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, "open", e))?;
        if !meta.is_dir() {
            let root = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            return Self::from_files(root, vec![SafetensorsFile::open(path)?], None);
        }
        let index = path.join(INDEX_FILE_NAME);
        if index.is_file() {
            return Self::open_index(path, &index);
        }
        let indexes = list(path, ".safetensors.index.json")?;
        match indexes.as_slice() {
            [one] => return Self::open_index(path, one),
            [] => {}
            many => {
                return Err(FormatError::Unsupported {
                    path: path.to_path_buf(),
                    tensor: None,
                    reason: format!(
                        "{} index files and no {INDEX_FILE_NAME}; open one file instead",
                        many.len()
                    ),
                })
            }
        }
        let shards = list(path, ".safetensors")?;
        match shards.as_slice() {
            [one] => Self::from_files(path.to_path_buf(), vec![SafetensorsFile::open(one)?], None),
            [] => Err(FormatError::io(
                path,
                "find *.safetensors",
                std::io::Error::new(std::io::ErrorKind::NotFound, "no .safetensors file"),
            )),
            many => Err(FormatError::Unsupported {
                path: path.to_path_buf(),
                tensor: None,
                reason: format!("{} .safetensors files but no {INDEX_FILE_NAME}", many.len()),
            }),
        }
    }

    fn open_index(root: &Path, index_path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(index_path).map_err(|e| FormatError::io(index_path, "read", e))?;
        let weight_map = parse_index(&bytes).map_err(|e| e.at(index_path))?;

        // Shards in file-name order, which is shard-number order for `model-0000i-of-0000n`.
        let shard_names: BTreeSet<&str> = weight_map.iter().map(|(_, f)| f.as_str()).collect();
        let mut files = Vec::with_capacity(shard_names.len());
        let mut file_index = HashMap::new();
        for name in shard_names {
            let shard = root.join(name);
            if !shard.is_file() {
                let tensor = weight_map
                    .iter()
                    .find(|(_, f)| f == name)
                    .map(|(t, _)| t.clone())
                    .unwrap_or_default();
                return Err(FormatError::MissingTensor {
                    path: index_path.to_path_buf(),
                    tensor,
                    in_file: Some(shard),
                });
            }
            file_index.insert(name, files.len());
            files.push(SafetensorsFile::open(&shard)?);
        }
        let model = Self::from_files(root.to_path_buf(), files, Some(index_path.to_path_buf()))?;
        for (tensor, file) in &weight_map {
            let wanted = file_index.get(file.as_str()).copied();
            match model.by_name.get(tensor) {
                Some((i, _)) if Some(*i) == wanted => {}
                _ => {
                    return Err(FormatError::MissingTensor {
                        path: index_path.to_path_buf(),
                        tensor: tensor.clone(),
                        in_file: Some(root.join(file)),
                    })
                }
            }
        }
        Ok(model)
    }

    fn from_files(
        root: PathBuf,
        files: Vec<SafetensorsFile>,
        index_path: Option<PathBuf>,
    ) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (fi, file) in files.iter().enumerate() {
            for (ti, t) in file.tensors().iter().enumerate() {
                if by_name.insert(t.name.clone(), (fi, ti)).is_some() {
                    return Err(FormatError::DuplicateTensor {
                        path: file.path().to_path_buf(),
                        tensor: t.name.clone(),
                    });
                }
            }
        }
        Ok(SafetensorsModel {
            root,
            files,
            index_path,
            by_name,
        })
    }

    /// The folder (or the single file's parent).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// Every tensor as (file index, info): files in order, each file's tensors in offset order.
    pub fn tensors(&self) -> Vec<(usize, &TensorInfo)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.tensors().iter().map(move |t| (i, t)))
            .collect()
    }

    pub fn find(&self, name: &str) -> Option<(usize, &TensorInfo)> {
        let &(fi, ti) = self.by_name.get(name)?;
        Some((fi, &self.files[fi].tensors()[ti]))
    }

    pub fn index_path(&self) -> Option<&Path> {
        self.index_path.as_deref()
    }

    /// Sum of tensor byte lengths (what the index's `total_size` counts).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.tensors())
            .map(TensorInfo::byte_len)
            .sum()
    }
}

impl fmt::Debug for SafetensorsModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsModel")
            .field("root", &self.root)
            .field("files", &self.files)
            .field("index_path", &self.index_path)
            .finish()
    }
}

/// Files in `dir` whose name ends with `suffix`, sorted.
fn list(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| FormatError::io(dir, "list", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FormatError::io(dir, "list", e))?;
        let name = entry.file_name();
        let is_match = name.to_str().is_some_and(|n| n.ends_with(suffix));
        if is_match && entry.path().is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The `weight_map` of an index as (tensor, shard file name) pairs, in file order.
/// Pure: errors have an empty path.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: UniqueMap,
    }
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::header("", format!("invalid index JSON: {e}")))?;
    for (tensor, file) in &index.weight_map.0 {
        // A shard must be a plain file name beside the index, never a path out of the folder.
        let plain = Path::new(file).file_name().and_then(|n| n.to_str()) == Some(file.as_str());
        if !plain {
            let reason = format!("index places it in `{file}`, which is not a plain file name");
            return Err(FormatError::tensor("", tensor, reason));
        }
    }
    Ok(index.weight_map.0)
}

/// A JSON object of strings that rejects duplicate keys (serde_json keeps only the last).
struct UniqueMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping tensor names to shard file names")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueMap, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!(
                            "tensor `{k}` appears twice in weight_map"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parsing() {
        let ok = br#"{"metadata":{"total_size":8},"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}}"#;
        assert_eq!(parse_index(ok).unwrap().len(), 2);
        assert!(matches!(
            parse_index(b"{\"weight_map\":"),
            Err(FormatError::InvalidHeader { .. })
        ));
        assert!(matches!(
            parse_index(br#"{"metadata":{}}"#),
            Err(FormatError::InvalidHeader { .. })
        ));
        assert!(matches!(
            parse_index(br#"{"weight_map":{"a":1}}"#),
            Err(FormatError::InvalidHeader { .. })
        ));
        let dup = br#"{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}"#;
        assert!(
            matches!(parse_index(dup), Err(FormatError::InvalidHeader { reason, .. }) if reason.contains("`a`"))
        );
        let escape = br#"{"weight_map":{"a":"../x.safetensors"}}"#;
        assert!(
            matches!(parse_index(escape), Err(FormatError::InvalidTensor { tensor, .. }) if tensor == "a")
        );
    }
}
