//! `ckpt-opt.json`: the audit record every export writes beside its output — command line, tool
//! version, options, input and output files with sizes and blake3 checksums, and the quality
//! summary when the job measured one. Deployment pipelines cache and audit on it; `verify`
//! checks the output files against it.
//!
//! Where it goes: inside an output folder as `ckpt-opt.json`; beside a file output (a GGUF file
//! or split set, a single safetensors file) as `<first output file>.ckpt-opt.json`.

use crate::error::{Error, Result};
use formats::mmap::MappedFile;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// File name of the manifest inside an output folder.
pub const MANIFEST_NAME: &str = "ckpt-opt.json";
/// Suffix of the manifest beside a file output.
pub const MANIFEST_SUFFIX: &str = ".ckpt-opt.json";
/// Schema version of the manifest, bumped on incompatible changes.
pub const SCHEMA: u32 = 1;
/// Bytes hashed between two page releases: keeps checksumming within bounded memory.
const HASH_WINDOW: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// Path relative to the manifest's folder (output files) or as given (input files).
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub tool: String,
    pub version: String,
    /// The command line, program name first.
    pub command: Vec<String>,
    /// The subcommand (convert, quantize, reshard, prune).
    pub job: String,
    pub options: Value,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
    /// The job's quality report summary (perplexity, KL...), when it measured one.
    #[serde(default)]
    pub quality: Option<Value>,
}

/// What a job tells the manifest writer.
pub struct JobRecord<'a> {
    pub job: &'a str,
    pub input: &'a Path,
    pub output: &'a Path,
    pub options: Value,
    pub quality: Option<Value>,
}

/// Where the manifest of `output` goes: inside a folder, beside a file.
pub fn manifest_path(output: &Path) -> PathBuf {
    if output.is_dir() {
        output.join(MANIFEST_NAME)
    } else {
        let mut name = output.as_os_str().to_os_string();
        name.push(MANIFEST_SUFFIX);
        PathBuf::from(name)
    }
}

/// Streams `path` through blake3 via the page cache, releasing pages behind the hasher so a
/// file of any size costs at most one window of resident memory; hashing within a window
/// runs on the rayon pool.
pub fn hash_file(path: &Path) -> Result<FileRecord> {
    let map = MappedFile::open(path)?;
    let bytes = map.bytes();
    let mut hasher = blake3::Hasher::new();
    let mut start = 0u64;
    while start < map.len() {
        let len = HASH_WINDOW.min(map.len() - start);
        map.will_need(start, len);
        hasher.update_rayon(&bytes[start as usize..(start + len) as usize]);
        map.release(start, len);
        start += len;
    }
    Ok(FileRecord {
        path: path.display().to_string(),
        size: map.len(),
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

/// Regular files of `path`: the file itself, or every file under a folder (recursively, so
/// Megatron's `mp_rank_*/` folders count; sorted; manifests and hidden entries excluded).
fn files_of(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let read =
            std::fs::read_dir(&dir).map_err(|e| formats::FormatError::io(&dir, "read", e))?;
        for entry in read {
            let entry = entry.map_err(|e| formats::FormatError::io(&dir, "read", e))?;
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // Hidden entries (.git, a download tool's .cache) are not part of the model.
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() && name != MANIFEST_NAME && !name.ends_with(MANIFEST_SUFFIX) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The input files of a job: a folder's files, or a file plus the other members of its GGUF
/// split set.
fn input_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_dir() {
        return files_of(input);
    }
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some((prefix, _, count)) = name
        .as_deref()
        .and_then(formats::gguf::split::parse_split_file_name)
    {
        let dir = input.parent().unwrap_or(Path::new(""));
        return Ok((0..count)
            .map(|i| dir.join(formats::gguf::split::split_file_name(prefix, i, count)))
            .collect());
    }
    Ok(vec![input.to_path_buf()])
}

/// Writes the manifest of a finished job atomically. `written` lists the output files (for a
/// folder output, every file of the folder is recorded instead).
pub fn write(rec: &JobRecord, written: &[PathBuf]) -> Result<PathBuf> {
    let (base, outputs) = if rec.output.is_dir() {
        (rec.output.to_path_buf(), files_of(rec.output)?)
    } else {
        let first = written.first().map_or(rec.output, PathBuf::as_path);
        let dir = first.parent().unwrap_or(Path::new("")).to_path_buf();
        let files = if written.is_empty() {
            vec![rec.output.to_path_buf()]
        } else {
            written.to_vec()
        };
        (dir, files)
    };
    let target = if rec.output.is_dir() {
        rec.output.join(MANIFEST_NAME)
    } else {
        manifest_path(written.first().map_or(rec.output, PathBuf::as_path))
    };
    let mut out_records = Vec::new();
    for f in &outputs {
        let mut r = hash_file(f)?;
        r.path = relative(f, &base);
        out_records.push(r);
    }
    let mut in_records = Vec::new();
    for f in input_files(rec.input)? {
        in_records.push(hash_file(&f)?);
    }
    let manifest = Manifest {
        schema: SCHEMA,
        tool: env!("CARGO_PKG_NAME").into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        job: rec.job.into(),
        options: rec.options.clone(),
        inputs: in_records,
        outputs: out_records,
        quality: rec.quality.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
    text.push(b'\n');
    formats::atomic::write_file_atomic(&target, &text)?;
    Ok(target)
}

fn relative(file: &Path, base: &Path) -> String {
    file.strip_prefix(base)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

/// Reads a manifest written by [`write`].
pub fn load(path: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(path).map_err(|e| formats::FormatError::io(path, "read", e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::config(path, format!("not a ckpt-opt manifest: {e}")))
}

/// Problems of the files a manifest lists: missing, other size, other checksum.
pub fn check(manifest_file: &Path, m: &Manifest) -> Vec<String> {
    let base = manifest_file.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for r in &m.outputs {
        let p = base.join(&r.path);
        if !p.is_file() {
            problems.push(format!(
                "{}: listed in {} but missing",
                p.display(),
                manifest_file.display()
            ));
            continue;
        }
        match hash_file(&p) {
            Err(e) => problems.push(e.to_string()),
            Ok(h) if h.size != r.size => problems.push(format!(
                "{}: size {} but the manifest says {}",
                p.display(),
                h.size,
                r.size
            )),
            Ok(h) if h.blake3 != r.blake3 => problems.push(format!(
                "{}: blake3 checksum {} does not match the manifest's {}",
                p.display(),
                h.blake3,
                r.blake3
            )),
            Ok(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_hash_equals_one_shot_hash_across_windows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        // Two windows and a tail: the windowed update must equal hashing the whole buffer.
        let data: Vec<u8> = (0..(HASH_WINDOW as usize * 2 + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let r = hash_file(&p).unwrap();
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.blake3, blake3::hash(&data).to_hex().to_string());
    }

    #[test]
    fn known_vector_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        // BLAKE3 of the empty input (the reference implementation's test vector).
        assert_eq!(
            hash_file(&p).unwrap().blake3,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn check_names_missing_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a"), b"alpha").unwrap();
        std::fs::write(out.join("b"), b"beta").unwrap();
        let input = dir.path().join("in.bin");
        std::fs::write(&input, b"input").unwrap();
        let rec = JobRecord {
            job: "convert",
            input: &input,
            output: &out,
            options: Value::Null,
            quality: None,
        };
        let mpath = write(&rec, &[]).unwrap();
        assert_eq!(mpath, out.join(MANIFEST_NAME));
        let m = load(&mpath).unwrap();
        assert_eq!(m.outputs.len(), 2);
        assert_eq!(m.inputs[0].size, 5);
        assert!(check(&mpath, &m).is_empty());
        std::fs::write(out.join("a"), b"alphA").unwrap();
        std::fs::remove_file(out.join("b")).unwrap();
        let p = check(&mpath, &m);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("blake3 checksum"), "{p:?}");
        assert!(p[1].contains("missing"), "{p:?}");
    }
}
