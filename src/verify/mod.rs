//! `ckpt-opt verify PATH`: structural validation of a TensorRT-LLM checkpoint, a GGUF file or
//! split set, or a Hugging Face folder, plus the files' checksums against a `ckpt-opt.json`
//! manifest when one is there. Problems are collected, not raised: the caller prints them one
//! per line and exits 1. Only headers and scale tensors are read, unless `deep`.

mod finite;
mod gguf;
mod hf;
mod hf_mixed;
mod trtllm;

use crate::manifest;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Also read every weight (NaN/Inf in float weights, GGUF block scales).
    pub deep: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// `trtllm`, `gguf` or `hf`.
    pub kind: &'static str,
    pub files: usize,
    pub tensors: usize,
    /// The manifest checked, when there was one.
    pub manifest: Option<PathBuf>,
    pub problems: Vec<String>,
}

/// What one checker found.
#[derive(Default)]
pub(crate) struct Findings {
    pub files: usize,
    pub tensors: usize,
    pub problems: Vec<String>,
}

impl Findings {
    pub fn tensor(&mut self, file: impl AsRef<Path>, tensor: &str, why: impl std::fmt::Display) {
        let file = file.as_ref();
        self.problems
            .push(format!("{}: tensor `{tensor}`: {why}", file.display()));
    }

    pub fn file(&mut self, file: &Path, why: impl std::fmt::Display) {
        self.problems.push(format!("{}: {why}", file.display()));
    }
}

/// Verifies `path`; the report's `problems` is empty when it is sound.
pub fn verify(path: &Path, opts: &VerifyOptions) -> VerifyReport {
    let megatron = path.is_dir()
        && matches!(
            crate::shard::input::detect(path),
            Ok(crate::shard::ShardLayout::Megatron)
        );
    let (kind, found) = if megatron {
        ("megatron", megatron_check(path))
    } else if path.is_dir() && path.join("config.json").is_file() && is_trtllm(path) {
        ("trtllm", trtllm::check(path, opts))
    } else if path.is_dir() {
        ("hf", hf::check(path, opts))
    } else if is_gguf(path) {
        ("gguf", gguf::check(path, opts))
    } else {
        ("hf", hf::check(path, opts))
    };
    let mut problems = found.problems;
    let manifest_file = manifest_of(path);
    if let Some(m) = &manifest_file {
        match manifest::load(m) {
            Ok(man) => problems.extend(manifest::check(m, &man)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    VerifyReport {
        path: path.to_path_buf(),
        kind,
        files: found.files,
        tensors: found.tensors,
        manifest: manifest_file,
        problems,
    }
}

/// Megatron folder (`mp_rank_*/model.safetensors`): every rank present and every tensor
/// where `reshard`'s layout rules put it, checked by the reshard input reader, which stops at
/// the first problem.
fn megatron_check(path: &Path) -> Findings {
    let mut f = Findings::default();
    match crate::shard::input::open(path) {
        Ok(input) => {
            f.files = input.files.len();
            f.tensors = input.files.iter().map(|c| c.tensors().len()).sum();
        }
        Err(e) => f.problems.push(e.to_string()),
    }
    f
}

/// A TensorRT-LLM config has `architecture` (singular) and no `architectures`.
fn is_trtllm(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("architecture").is_some() && v.get("architectures").is_none())
}

fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let mut magic = [0u8; 4];
    let magic_ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF";
    named || magic_ok
}

/// The manifest of `path`: inside a folder, or beside the file (for a split set, beside its
/// first member).
fn manifest_of(path: &Path) -> Option<PathBuf> {
    let direct = manifest::manifest_path(path);
    if direct.is_file() {
        return Some(direct);
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let (prefix, _, count) = formats::gguf::split::parse_split_file_name(&name)?;
    let first = path
        .parent()
        .unwrap_or(Path::new(""))
        .join(formats::gguf::split::split_file_name(prefix, 0, count));
    Some(manifest::manifest_path(&first)).filter(|p| p.is_file())
}

/// The human output: one problem per line, or a one-line summary.
pub fn render(r: &VerifyReport) -> String {
    if r.problems.is_empty() {
        let m = r
            .manifest
            .as_ref()
            .map(|m| format!(", checksums match {}", m.display()))
            .unwrap_or_default();
        return format!(
            "ok: {} ({}, {} files, {} tensors{m})\n",
            r.path.display(),
            r.kind,
            r.files,
            r.tensors
        );
    }
    let mut s = String::new();
    for p in &r.problems {
        s.push_str(p);
        s.push('\n');
    }
    s
}
