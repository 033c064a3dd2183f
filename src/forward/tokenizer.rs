//! The model's tokenizer through the `tokenizers` crate (pure-Rust regex backend): `tokenizer.json`
//! beside a Hugging Face checkpoint, or one rebuilt from GGUF metadata.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use std::path::Path;
use std::str::FromStr;
pub use tokenizers::Tokenizer;

/// Loads the tokenizer that belongs to `ckpt`.
pub fn load_tokenizer(ckpt: &Checkpoint) -> Result<Tokenizer> {
    match ckpt {
        Checkpoint::Safetensors(_) => load_tokenizer_json(&ckpt.root().join("tokenizer.json")),
        Checkpoint::Gguf(g) => {
            let path = ckpt.display_path();
            let files = crate::import::tokenizer::tokenizer_from_gguf(g.metadata(), &path)?;
            Tokenizer::from_str(&files.tokenizer_json.to_string())
                .map_err(|e| Error::tokenizer(&path, e.to_string()))
        }
    }
}

/// Loads a `tokenizer.json` file.
pub fn load_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(Error::tokenizer(path, "no tokenizer.json"));
    }
    Tokenizer::from_file(path).map_err(|e| Error::tokenizer(path, e.to_string()))
}

/// Token ids of `text` without special tokens (no BOS), as `tokenizer.encode(text,
/// add_special_tokens=False)` gives in Python. `path` names the tokenizer in errors.
pub fn encode(tok: &Tokenizer, text: &str, path: &Path) -> Result<Vec<u32>> {
    tok.encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| Error::tokenizer(path, e.to_string()))
}
