//! One view over every input we read: a safetensors file or Hugging Face folder, or a GGUF file
//! or split set. Jobs plan against [`SourceTensor`]s and read bytes straight from the mmaps.

use crate::error::{Error, Result};
use formats::gguf::{GgmlType, GgufModel};
use formats::mmap::MappedFile;
use formats::safetensors::SafetensorsModel;
use formats::Dtype;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What one element (or block) of a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Dense(Dtype),
    /// A block-quantized ggml type (dense ggml types are reported as `Dense`).
    Ggml(GgmlType),
}

impl ElementType {
    pub fn name(self) -> String {
        match self {
            ElementType::Dense(d) => d.name().to_string(),
            ElementType::Ggml(t) => t.name().to_string(),
        }
    }

    pub fn dense(self) -> Option<Dtype> {
        match self {
            ElementType::Dense(d) => Some(d),
            ElementType::Ggml(_) => None,
        }
    }
}

impl serde::Serialize for ElementType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A tensor of the input, located in one of its files.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    pub name: String,
    pub ty: ElementType,
    /// Row-major (numpy) order, outermost first, for both formats.
    pub shape: Vec<u64>,
    /// Index into the checkpoint's files.
    pub file: usize,
    /// Absolute byte offset in that file.
    pub start: u64,
    pub len: u64,
}

impl SourceTensor {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointFormat {
    Safetensors,
    Gguf,
}

pub enum Checkpoint {
    Safetensors(SafetensorsModel),
    Gguf(GgufModel),
}

impl Checkpoint {
    /// Opens `path`: a folder is a Hugging Face safetensors checkpoint; a file named `.gguf` or
    /// starting with the GGUF magic is GGUF (so a damaged GGUF gets GGUF's error messages);
    /// any other file is read as safetensors.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(Checkpoint::Safetensors(SafetensorsModel::open(path)?));
        }
        let mut magic = [0u8; 4];
        let mut file =
            std::fs::File::open(path).map_err(|e| formats::FormatError::io(path, "open", e))?;
        let n = file
            .read(&mut magic)
            .map_err(|e| formats::FormatError::io(path, "read", e))?;
        let named_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if named_gguf || (n == 4 && &magic == b"GGUF") {
            Ok(Checkpoint::Gguf(GgufModel::open(path)?))
        } else {
            Ok(Checkpoint::Safetensors(SafetensorsModel::open(path)?))
        }
    }

    pub fn format(&self) -> CheckpointFormat {
        match self {
            Checkpoint::Safetensors(_) => CheckpointFormat::Safetensors,
            Checkpoint::Gguf(_) => CheckpointFormat::Gguf,
        }
    }

    /// Every tensor, in file order then offset order.
    pub fn tensors(&self) -> Vec<SourceTensor> {
        match self {
            Checkpoint::Safetensors(m) => m
                .tensors()
                .into_iter()
                .map(|(file, t)| SourceTensor {
                    name: t.name.clone(),
                    ty: ElementType::Dense(t.dtype),
                    shape: t.shape.clone(),
                    file,
                    start: t.start,
                    len: t.byte_len(),
                })
                .collect(),
            Checkpoint::Gguf(m) => m
                .tensors()
                .into_iter()
                .map(|(file, t)| SourceTensor {
                    name: t.name.clone(),
                    ty: match t.ggml_type.to_dtype() {
                        Some(d) => ElementType::Dense(d),
                        None => ElementType::Ggml(t.ggml_type),
                    },
                    shape: t.shape(),
                    file,
                    start: t.start,
                    len: t.size,
                })
                .collect(),
        }
    }

    pub fn mapped(&self, file: usize) -> &MappedFile {
        match self {
            Checkpoint::Safetensors(m) => m.files()[file].mapped(),
            Checkpoint::Gguf(m) => m.files()[file].mapped(),
        }
    }

    pub fn file_paths(&self) -> Vec<PathBuf> {
        (0..self.file_count())
            .map(|i| self.mapped(i).path().to_path_buf())
            .collect()
    }

    pub fn file_count(&self) -> usize {
        match self {
            Checkpoint::Safetensors(m) => m.files().len(),
            Checkpoint::Gguf(m) => m.files().len(),
        }
    }

    /// The bytes of `t`, borrowed from the mmap.
    pub fn bytes(&self, t: &SourceTensor) -> &[u8] {
        let all = self.mapped(t.file).bytes();
        // Offsets were validated against the file length when the header was parsed.
        &all[t.start as usize..(t.start + t.len) as usize]
    }

    /// Folder holding the checkpoint (where `config.json` and tokenizer files live).
    pub fn root(&self) -> PathBuf {
        match self {
            Checkpoint::Safetensors(m) => m.root().to_path_buf(),
            Checkpoint::Gguf(m) => m.files()[0]
                .path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// The path to name in messages about the checkpoint as a whole.
    pub fn display_path(&self) -> PathBuf {
        match self {
            Checkpoint::Safetensors(m) => m
                .index_path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| m.files()[0].path().to_path_buf()),
            Checkpoint::Gguf(m) => m.files()[0].path().to_path_buf(),
        }
    }

    pub fn tensor_bytes(&self) -> u64 {
        match self {
            Checkpoint::Safetensors(m) => m.total_bytes(),
            Checkpoint::Gguf(m) => m.total_bytes(),
        }
    }
}

/// Error for a tensor whose element type an operation cannot handle.
pub fn unsupported_type(ckpt: &Checkpoint, t: &SourceTensor, what: &str) -> Error {
    Error::tensor(
        &ckpt.file_paths()[t.file],
        &t.name,
        format!("{} tensors cannot be {what}", t.ty.name()),
    )
}
