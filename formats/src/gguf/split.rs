//! llama.cpp split sets (`gguf-split`): `<prefix>-00001-of-00003.gguf`, ...
//!
//! Every split is a complete GGUF file with its own header, tensor infos and data blob (offsets
//! relative to its own blob). The first split carries the full metadata; every split carries
//! `split.no` (u16, 0-based), `split.count` (u16) and `split.tensors.count` (i32, total), appended
//! after the metadata in that order. Source: llama.cpp `tools/gguf-split/gguf-split.cpp`
//! (`split_strategy`, `new_ctx_out`) and `src/llama-model-loader.cpp`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::header::{align_up, GgufTensorInfo};
use super::reader::GgufFile;
use super::types::MetadataValue;
use super::writer::{alignment_of, plan_file, GgufLayout, GgufTensorSpec};
use crate::error::{FormatError, Result};

pub const KEY_SPLIT_NO: &str = "split.no";
pub const KEY_SPLIT_COUNT: &str = "split.count";
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";
/// gguf-split's `--split-max-tensors` default.
pub const DEFAULT_MAX_TENSORS: usize = 128;

/// When to start a new split. Both limits may be set; either one closes a split.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitOptions {
    pub max_tensors: Option<usize>,
    /// Limit on a split's data blob (tensor sizes padded to the alignment). A tensor larger
    /// than this sits alone in its split.
    pub max_bytes: Option<u64>,
}

/// `<prefix>-%05d-of-%05d.gguf` with a 1-based index (`llama_split_path` in llama.cpp).
pub fn split_file_name(prefix: &str, index0: usize, count: usize) -> String {
    format!("{prefix}-{:05}-of-{count:05}.gguf", index0 + 1)
}

/// Parses `<prefix>-NNNNN-of-MMMMM.gguf` into (prefix, 0-based index, count).
pub fn parse_split_file_name(file_name: &str) -> Option<(&str, usize, usize)> {
    let stem = file_name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    let index: usize = index.parse().ok()?;
    let count: usize = count.parse().ok()?;
    (index >= 1 && index <= count).then_some((prefix, index - 1, count))
}

fn is_split_key(k: &str) -> bool {
    k == KEY_SPLIT_NO || k == KEY_SPLIT_COUNT || k == KEY_SPLIT_TENSORS_COUNT
}

/// Plans a split set: one layout per file, in order. With no limit reached this is a single
/// layout without `split.*` keys. Existing `split.*` keys in `metadata` are dropped.
pub fn plan_split(
    metadata: &[(String, MetadataValue)],
    tensors: Vec<GgufTensorSpec>,
    opts: &SplitOptions,
) -> Result<Vec<GgufLayout>> {
    if opts.max_tensors == Some(0) {
        return Err(FormatError::header(
            "",
            "split max_tensors must be at least 1",
        ));
    }
    let base: Vec<(String, MetadataValue)> = metadata
        .iter()
        .filter(|(k, _)| !is_split_key(k))
        .cloned()
        .collect();
    let alignment = alignment_of(&base)?;
    let total = tensors.len();

    // Group like gguf-split: close the current split (if it holds any tensor) before the
    // tensor that would exceed either limit.
    let mut groups: Vec<Vec<GgufTensorSpec>> = vec![Vec::new()];
    let mut cur_bytes = 0u64;
    for t in tensors {
        let padded = align_up(t.byte_size()?, alignment).unwrap_or(u64::MAX);
        let cur = groups.last_mut().expect("groups is never empty");
        let over_count = opts.max_tensors.is_some_and(|m| cur.len() >= m);
        let over_bytes = opts
            .max_bytes
            .is_some_and(|m| cur_bytes.saturating_add(padded) > m);
        if !cur.is_empty() && (over_count || over_bytes) {
            groups.push(vec![t]);
            cur_bytes = padded;
        } else {
            cur.push(t);
            cur_bytes = cur_bytes.saturating_add(padded);
        }
    }

    if groups.len() == 1 {
        let only = groups.pop().unwrap_or_default();
        return Ok(vec![plan_file(&base, only)?]);
    }
    let count = u16::try_from(groups.len()).map_err(|_| {
        FormatError::header(
            "",
            format!("{} splits, gguf-split allows 65535", groups.len()),
        )
    })?;
    let total = i32::try_from(total).map_err(|_| {
        FormatError::header(
            "",
            format!("{total} tensors do not fit split.tensors.count (i32)"),
        )
    })?;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let mut md = if i == 0 { base.clone() } else { Vec::new() };
            md.push((KEY_SPLIT_NO.into(), MetadataValue::U16(i as u16)));
            md.push((KEY_SPLIT_COUNT.into(), MetadataValue::U16(count)));
            md.push((KEY_SPLIT_TENSORS_COUNT.into(), MetadataValue::I32(total)));
            plan_file(&md, group)
        })
        .collect()
}

/// A model stored as one GGUF file or as a llama.cpp split set.
pub struct GgufModel {
    files: Vec<GgufFile>,
    index: HashMap<String, (usize, usize)>,
}

impl GgufModel {
    /// Opens a single file, or a whole split set from any of its members.
    pub fn open(path: &Path) -> Result<Self> {
        let given = GgufFile::open(path)?;
        let count = match given.header().get(KEY_SPLIT_COUNT) {
            None => 1,
            Some(v) => v.as_u64().filter(|c| *c >= 1).ok_or_else(|| {
                FormatError::header(
                    path,
                    format!("`{KEY_SPLIT_COUNT}` is {v:?}, expected a u16 >= 1"),
                )
            })?,
        };
        let files = if count == 1 {
            vec![given]
        } else {
            open_members(path, given, count as usize)?
        };
        let mut index = HashMap::new();
        for (fi, f) in files.iter().enumerate() {
            for (ti, t) in f.header().tensors.iter().enumerate() {
                if index.insert(t.name.clone(), (fi, ti)).is_some() {
                    return Err(FormatError::DuplicateTensor {
                        path: f.path().to_path_buf(),
                        tensor: t.name.clone(),
                    });
                }
            }
        }
        if files.len() > 1 {
            let declared = split_value(&files[0], KEY_SPLIT_TENSORS_COUNT)?;
            if declared != index.len() as u64 {
                return Err(FormatError::header(
                    files[0].path(),
                    format!(
                        "`{KEY_SPLIT_TENSORS_COUNT}` = {declared} but the {} splits hold {} tensors",
                        files.len(),
                        index.len()
                    ),
                ));
            }
        }
        Ok(GgufModel { files, index })
    }

    pub fn files(&self) -> &[GgufFile] {
        &self.files
    }

    /// The first split's metadata (the only split with the model's metadata).
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.files[0].header().metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.files[0].header().get(key)
    }

    /// Every tensor with the index of the file holding it, in split then file order.
    pub fn tensors(&self) -> Vec<(usize, &GgufTensorInfo)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.header().tensors.iter().map(move |t| (i, t)))
            .collect()
    }

    pub fn find(&self, name: &str) -> Option<(usize, &GgufTensorInfo)> {
        let &(fi, ti) = self.index.get(name)?;
        Some((fi, &self.files[fi].header().tensors[ti]))
    }

    /// The tensor's bytes, from whichever split holds it.
    pub fn data(&self, file: usize, t: &GgufTensorInfo) -> &[u8] {
        self.files.get(file).map(|f| f.data(t)).unwrap_or(&[])
    }

    /// Sum of all tensors' data sizes (padding excluded), across splits.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.header().tensors.iter())
            .map(|t| t.size)
            .sum()
    }
}

fn split_value(f: &GgufFile, key: &str) -> Result<u64> {
    f.header()
        .get(key)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| FormatError::header(f.path(), format!("split member lacks integer `{key}`")))
}

fn open_members(path: &Path, given: GgufFile, count: usize) -> Result<Vec<GgufFile>> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (prefix, index0, name_count) = parse_split_file_name(file_name).ok_or_else(|| {
        FormatError::header(
            path,
            format!(
                "`{KEY_SPLIT_COUNT}` = {count} but the name is not <prefix>-NNNNN-of-NNNNN.gguf"
            ),
        )
    })?;
    let no = split_value(&given, KEY_SPLIT_NO)? as usize;
    if name_count != count || index0 != no {
        return Err(FormatError::header(
            path,
            format!(
                "name says split {} of {name_count} but metadata says split {} of {count}",
                index0 + 1,
                no + 1
            ),
        ));
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let first_tensors = split_value(&given, KEY_SPLIT_TENSORS_COUNT)?;
    let mut given = Some(given);
    let mut files = Vec::with_capacity(count);
    for i in 0..count {
        let f = if i == index0 {
            given
                .take()
                .ok_or_else(|| FormatError::header(path, "split index repeats"))?
        } else {
            let p: PathBuf = dir.join(split_file_name(prefix, i, count));
            if !p.exists() {
                return Err(FormatError::io(
                    &p,
                    "open split member (missing from the set)",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            GgufFile::open(&p)?
        };
        let (no, n, total) = (
            split_value(&f, KEY_SPLIT_NO)?,
            split_value(&f, KEY_SPLIT_COUNT)?,
            split_value(&f, KEY_SPLIT_TENSORS_COUNT)?,
        );
        if no != i as u64 || n != count as u64 || total != first_tensors {
            return Err(FormatError::header(
                f.path(),
                format!(
                    "split keys (no {no}, count {n}, tensors {total}) disagree with split {} of {count} ({first_tensors} tensors)",
                    i
                ),
            ));
        }
        files.push(f);
    }
    Ok(files)
}
