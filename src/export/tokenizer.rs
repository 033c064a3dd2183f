//! Hugging Face `tokenizer.json` (+ `tokenizer_config.json`, `config.json`) → GGUF
//! `tokenizer.ggml.*` metadata, written the way llama.cpp's `convert_hf_to_gguf.py` writes it.
//!
//! Which path the converter takes (LC `conversion/llama.py` `LlamaModel.set_vocab`, likewise
//! `conversion/qwen.py` `Qwen2Model.set_vocab`): it tries `_set_vocab_sentencepiece` (needs
//! `tokenizer.model`; read by [`crate::export::sentencepiece`]), then
//! `_set_vocab_llama_hf` (`gguf-py/gguf/vocab.py` `LlamaHfVocab.__init__`: a BPE model with
//! `byte_fallback: true` and a `Sequence` decoder, else `FileNotFoundError`/`TypeError`), then
//! `_set_vocab_gpt2` (`get_vocab_base` + `SpecialVocab(load_merges=True)`).
//!
//! Value types follow `gguf_writer.py`: `add_token_list`/`add_token_merges` = array of strings,
//! `add_token_types` = array of i32 (`GGUFValueType.get_type(int)`), `add_token_scores` = array
//! of f32, `add_{typ}_token_id` = u32, `add_add_{typ}_token` = bool, `add_chat_template` = string.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use formats::gguf::{MetadataValue, ValueType};
use serde_json::Value;

use crate::{Error, Result};

/// `TokenType` in LC `gguf-py/gguf/constants.py`.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_UNKNOWN: i32 = 2;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;
pub const TOKEN_UNUSED: i32 = 5;
pub const TOKEN_BYTE: i32 = 6;

/// Which llama.cpp tokenizer the vocabulary is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Byte-level BPE, `tokenizer.ggml.model = "gpt2"`.
    Gpt2Bpe,
    /// SentencePiece-style BPE with byte fallback, `tokenizer.ggml.model = "llama"`.
    Llama,
}

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template*` when present) in the order the
/// converter adds them.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocab {
    pub kind: VocabKind,
    pub metadata: Vec<(String, MetadataValue)>,
}

/// Pre-tokenizers we can name without running the converter's hash of a test string
/// (`get_vocab_base_pre`). Llama 3 and Qwen2 use a `Split` with these exact regexes followed by a
/// `ByteLevel` with `use_regex: false`; GPT-2 uses a plain `ByteLevel`.
pub(crate) const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(crate) const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SUPPORTED_PRE: &str = "a plain ByteLevel pre-tokenizer (use_regex true, add_prefix_space false) = \"gpt-2\", \
     or Split(Llama 3 regex | Qwen2 regex) + ByteLevel(use_regex false) = \"llama-bpe\" | \"qwen2\"";

/// The special-token kinds of `SpecialVocab.special_token_types` (LC `gguf-py/gguf/vocab.py`),
/// with the GGUF key each one is written to. `cls` has no `add_cls_token_id` handler in
/// `GGUFWriter`, so `add_to_gguf` skips it; we keep it for lookups only.
const SPECIAL_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

fn special_id_key(typ: &str) -> Option<&'static str> {
    // constants.py `Keys.Tokenizer` (note the converter's spelling "seperator").
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        _ => return None,
    })
}

fn add_flag_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.add_bos_token",
        "eos" => "tokenizer.ggml.add_eos_token",
        "sep" => "tokenizer.ggml.add_sep_token",
        _ => return None,
    })
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::tokenizer(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::tokenizer(path, format!("invalid JSON: {e}")))
}

fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn strings(items: Vec<String>) -> MetadataValue {
    MetadataValue::Array(
        ValueType::String,
        items.into_iter().map(MetadataValue::String).collect(),
    )
}

/// The text of a `tokenizer_config.json` token entry: a string or an `AddedToken` dict.
fn entry_content(entry: Option<&Value>) -> Option<String> {
    match entry? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

struct AddedToken {
    id: u64,
    content: String,
    special: bool,
}

fn added_tokens(tok: &Value, path: &Path) -> Result<Vec<AddedToken>> {
    let Some(list) = tok.get("added_tokens") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| Error::tokenizer(path, "`added_tokens` is not an array"))?;
    list.iter()
        .map(|t| {
            let id = t.get("id").and_then(Value::as_u64);
            let content = t.get("content").and_then(Value::as_str);
            match (id, content) {
                (Some(id), Some(content)) => Ok(AddedToken {
                    id,
                    content: content.to_owned(),
                    special: t.get("special").and_then(Value::as_bool).unwrap_or(false),
                }),
                _ => Err(Error::tokenizer(
                    path,
                    format!("added token without integer `id` and string `content`: {t}"),
                )),
            }
        })
        .collect()
}

/// `model.vocab` as (token, id).
fn model_vocab(model: &Value, path: &Path) -> Result<Vec<(String, u64)>> {
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::tokenizer(path, "`model.vocab` is missing or not an object"))?;
    vocab
        .iter()
        .map(|(k, v)| {
            v.as_u64().map(|id| (k.clone(), id)).ok_or_else(|| {
                Error::tokenizer(path, format!("vocab id of {k:?} is not an integer"))
            })
        })
        .collect()
}

/// `model.merges` as "a b" strings. tokenizers ≥ 0.20 writes pairs `["a", "b"]`; the converter
/// joins them with a space after encoding spaces inside a part as U+0120 (`chr(ord(' ') + 256)`)
/// (LC `vocab.py` `SpecialVocab._try_load_from_tokenizer_json`).
fn merges(model: &Value, path: &Path) -> Result<Vec<String>> {
    let Some(list) = model.get("merges").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        match m {
            Value::String(s) => out.push(s.clone()),
            Value::Array(pair) if pair.len() == 2 && pair.iter().all(Value::is_string) => {
                let enc = |v: &Value| v.as_str().unwrap_or_default().replace(' ', "\u{120}");
                out.push(format!("{} {}", enc(&pair[0]), enc(&pair[1])));
            }
            _ => {
                return Err(Error::tokenizer(
                    path,
                    format!("unknown tokenizer merges format: {m}"),
                ))
            }
        }
    }
    Ok(out)
}

/// `ModelBase.does_token_look_special` (LC `convert_hf_to_gguf.py`).
fn does_token_look_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Decide `tokenizer.ggml.pre` from the pre-tokenizer's structure. The converter hashes the ids
/// of a fixed test string (`get_vocab_base_pre`) and raises `NotImplementedError` for unknown
/// hashes; we cannot run the tokenizer, so we recognise structures instead, and we refuse the
/// rest rather than write "default", which llama.cpp loads with a different regex and so would
/// tokenize silently differently.
fn bpe_pre(tok: &Value, path: &Path) -> Result<String> {
    let pre = tok.get("pre_tokenizer").unwrap_or(&Value::Null);
    let is_plain_byte_level = |p: &Value, regex: bool| {
        p.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && !p
                .get("add_prefix_space")
                .and_then(Value::as_bool)
                .unwrap_or(true)
            && p.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex
    };
    if is_plain_byte_level(pre, true) {
        return Ok("gpt-2".into());
    }
    if pre.get("type").and_then(Value::as_str) == Some("Sequence") {
        if let Some([split, bl]) = pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            let regex = split
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Value::as_str);
            let split_ok = split.get("type").and_then(Value::as_str) == Some("Split")
                && split.get("behavior").and_then(Value::as_str) == Some("Isolated")
                && !split
                    .get("invert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            if split_ok && is_plain_byte_level(bl, false) {
                match regex {
                    Some(LLAMA3_REGEX) => return Ok("llama-bpe".into()),
                    Some(QWEN2_REGEX) => return Ok("qwen2".into()),
                    _ => {}
                }
            }
        }
    }
    Err(Error::tokenizer(
        path,
        format!("unrecognised BPE pre-tokenizer {pre}; supported: {SUPPORTED_PRE}"),
    ))
}

/// What `SpecialVocab` collects (LC `vocab.py`): merges, special ids, add flags, chat template.
#[derive(Default)]
struct SpecialVocab {
    merges: Vec<String>,
    ids: Vec<(String, u32)>,
    add: Vec<(String, bool)>,
    chat_template: Option<Value>,
}

impl SpecialVocab {
    fn set_add(&mut self, typ: &str, v: bool) {
        // A Python dict: re-assigning keeps the first insertion position.
        match self.add.iter_mut().find(|(t, _)| t == typ) {
            Some(e) => e.1 = v,
            None => self.add.push((typ.to_owned(), v)),
        }
    }

    /// `SpecialVocab._set_special_token`: first value wins, ids ≥ n_vocab are skipped.
    fn set_id(&mut self, typ: &str, id: Option<u64>, n_vocab: Option<u64>) {
        let Some(id) = id else { return };
        if n_vocab.is_some_and(|n| id >= n) || self.ids.iter().any(|(t, _)| t == typ) {
            return;
        }
        if let Ok(id) = u32::try_from(id) {
            self.ids.push((typ.to_owned(), id));
        }
    }

    /// `SpecialVocab._load` = `_try_load_from_tokenizer_json` + `_try_load_from_config_json`.
    fn load(dir: &Path, tok: &Value, load_merges: bool, n_vocab: Option<u64>) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        let mut sv = SpecialVocab::default();
        if load_merges {
            sv.merges = merges(tok.get("model").unwrap_or(&Value::Null), &tok_path)?;
        }
        let added = added_tokens(tok, &tok_path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut cfg = read_optional_json(&cfg_path)?.and_then(|v| match v {
            Value::Object(o) if !o.is_empty() => Some(o),
            _ => None,
        });
        let mut types: Vec<String> = SPECIAL_TYPES.iter().map(|s| s.to_string()).collect();

        let get = |cfg: &Option<serde_json::Map<String, Value>>, k: &str| {
            cfg.as_ref().and_then(|c| entry_content(c.get(k)))
        };
        let mut special_bos = get(&cfg, "bos_token");
        let special_cls = get(&cfg, "cls_token");
        let mut special_eos = get(&cfg, "eos_token");
        let special_sep = get(&cfg, "sep_token");
        if let Some(c) = cfg.as_mut() {
            if special_bos.is_none() && special_cls.is_some() {
                special_bos = special_cls.clone();
                c.insert(
                    "bos_token".into(),
                    Value::String(special_bos.clone().unwrap()),
                );
            }
            if special_eos.is_none() && special_sep.is_some() {
                special_eos = special_sep.clone();
                c.insert(
                    "eos_token".into(),
                    Value::String(special_eos.clone().unwrap()),
                );
            }
        }
        let post = tok.get("post_processor").filter(|p| !p.is_null());
        let procs: Vec<&Value> = match post {
            None => Vec::new(),
            Some(p) => match p.get("processors").and_then(Value::as_array) {
                Some(list) => list.iter().collect(),
                None => vec![p],
            },
        };
        let special_id = |v: &Value| {
            v.get("SpecialToken")
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        for p in procs {
            match p.get("type").and_then(Value::as_str) {
                Some("RobertaProcessing") => {
                    for t in ["bos", "eos", "sep"] {
                        sv.set_add(t, true);
                    }
                    if let Some(c) = cfg.as_mut() {
                        let first = |k: &str, dflt: &Option<String>| {
                            p.get(k)
                                .and_then(|v| v.get(0))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .or_else(|| dflt.clone())
                        };
                        if special_cls.is_none() {
                            if let Some(v) = first("cls", &special_bos) {
                                c.insert("cls_token".into(), Value::String(v));
                            }
                        }
                        if special_sep.is_none() {
                            if let Some(v) = first("sep", &special_eos) {
                                c.insert("sep_token".into(), Value::String(v));
                            }
                        }
                    }
                }
                Some("TemplateProcessing") => {
                    let empty = Vec::new();
                    let single = p.get("single").and_then(Value::as_array).unwrap_or(&empty);
                    let pair = p.get("pair").and_then(Value::as_array).unwrap_or(&empty);
                    let mut special_first = None;
                    let mut special_last = None;
                    if single.len() > 1 {
                        special_first = special_id(&single[0]);
                        if let Some(f) = &special_first {
                            if cfg.is_none() {
                                special_bos = Some(f.clone());
                            }
                            let is_bos =
                                Some(f) == special_bos.as_ref() || Some(f) == special_cls.as_ref();
                            sv.set_add("bos", is_bos);
                        }
                        special_last = special_id(&single[single.len() - 1]);
                        if let Some(l) = &special_last {
                            match cfg.as_mut() {
                                None => special_eos = Some(l.clone()),
                                Some(c) if Some(l) != special_eos.as_ref() => {
                                    // An EOS that differs from the template's last token becomes
                                    // EOT (or EOM), and the template's token becomes EOS.
                                    let old = special_eos.clone().map(Value::String);
                                    if !types.iter().any(|t| t == "eot") {
                                        types.push("eot".into());
                                        c.insert("eot_token".into(), old.unwrap_or(Value::Null));
                                    } else if !types.iter().any(|t| t == "eom") {
                                        types.push("eom".into());
                                        c.insert("eom_token".into(), old.unwrap_or(Value::Null));
                                    }
                                    c.insert("eos_token".into(), Value::String(l.clone()));
                                    special_eos = Some(l.clone());
                                }
                                Some(_) => {}
                            }
                            sv.set_add("eos", Some(l) == special_eos.as_ref());
                        }
                    }
                    if !pair.is_empty() {
                        let start = usize::from(
                            special_first.is_some() && special_id(&pair[0]) == special_first,
                        );
                        let stop_trim = special_last.is_some()
                            && special_id(&pair[pair.len() - 1]) == special_last;
                        let end = pair.len() - usize::from(stop_trim);
                        let mid = if start <= end {
                            &pair[start..end]
                        } else {
                            &[][..]
                        };
                        if !mid.is_empty() {
                            let seq = |v: &Value| {
                                v.get("Sequence")
                                    .and_then(|s| s.get("id"))
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            };
                            let a = seq(&mid[0]);
                            let b = seq(&mid[mid.len() - 1]);
                            if a.as_deref() == Some("A") && b.as_deref() == Some("B") {
                                let inner = if mid.len() >= 2 {
                                    &mid[1..mid.len() - 1]
                                } else {
                                    &[][..]
                                };
                                if !inner.is_empty() {
                                    let sep_or_eos = |e: &String| {
                                        Some(e) == special_sep.as_ref()
                                            || Some(e) == special_eos.as_ref()
                                    };
                                    let mut add_sep = false;
                                    if let Some(e) = special_id(&inner[0]) {
                                        if sep_or_eos(&e) && special_last.is_none() {
                                            add_sep = true;
                                        }
                                    }
                                    if inner.len() == 2 {
                                        if let Some(e) = special_id(&inner[1]) {
                                            if sep_or_eos(&e) {
                                                add_sep = true;
                                            }
                                        }
                                    }
                                    sv.set_add("sep", add_sep);
                                    if add_sep && special_sep.is_none() {
                                        if let (Some(c), Some(e)) = (cfg.as_mut(), &special_eos) {
                                            c.insert("sep_token".into(), Value::String(e.clone()));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(cfg) = &cfg {
            // chat_template from tokenizer_config.json, else chat_template.jinja / .json.
            let alt = if let Some(t) = read_text(&dir.join("chat_template.jinja"))? {
                Some(Value::String(t))
            } else {
                read_optional_json(&dir.join("chat_template.json"))?
                    .and_then(|v| v.get("chat_template").cloned())
            };
            let ct = cfg.get("chat_template").cloned().or(alt);
            if let Some(ct @ (Value::String(_) | Value::Array(_))) = ct {
                sv.chat_template = Some(ct);
            }
            for typ in &types {
                if let Some(b) = cfg
                    .get(&format!("add_{typ}_token"))
                    .and_then(Value::as_bool)
                {
                    sv.set_add(typ, b);
                }
                let Some(content) = entry_content(cfg.get(&format!("{typ}_token"))) else {
                    continue;
                };
                let id = added.iter().find(|a| a.content == content).map(|a| a.id);
                sv.set_id(typ, id, n_vocab);
            }
        }
        // `_try_load_from_config_json`: `{typ}_token_id` from config.json (or its text_config).
        if let Some(config) = read_optional_json(&dir.join("config.json"))? {
            for typ in &types {
                let k = format!("{typ}_token_id");
                let v = config
                    .get(&k)
                    .filter(|v| !v.is_null())
                    .or_else(|| config.get("text_config").and_then(|t| t.get(&k)));
                sv.set_id(typ, v.and_then(Value::as_u64), n_vocab);
            }
        }
        Ok(sv)
    }

    /// `SpecialVocab.add_to_gguf`.
    fn add_to(self, md: &mut Vec<(String, MetadataValue)>) {
        if !self.merges.is_empty() {
            md.push(("tokenizer.ggml.merges".into(), strings(self.merges)));
        }
        for (typ, id) in self.ids {
            if let Some(k) = special_id_key(&typ) {
                md.push((k.into(), MetadataValue::U32(id)));
            }
        }
        for (typ, v) in self.add {
            if let Some(k) = add_flag_key(&typ) {
                md.push((k.into(), MetadataValue::Bool(v)));
            }
        }
        match self.chat_template {
            Some(Value::String(s)) => {
                md.push(("tokenizer.chat_template".into(), MetadataValue::String(s)))
            }
            Some(Value::Array(list)) => {
                // `GGUFWriter.add_chat_template` with a list of {name, template}.
                let mut default = None;
                let mut names = Vec::new();
                for c in list {
                    let name: String = c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                        .collect();
                    let Some(t) = c.get("template").and_then(Value::as_str) else {
                        continue;
                    };
                    if name.is_empty() {
                        continue;
                    }
                    if name == "default" {
                        default = Some(t.to_owned());
                    } else {
                        md.push((
                            format!("tokenizer.chat_template.{name}"),
                            MetadataValue::String(t.to_owned()),
                        ));
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                if !names.is_empty() {
                    md.push(("tokenizer.chat_templates".into(), strings(names)));
                }
                if let Some(d) = default {
                    md.push(("tokenizer.chat_template".into(), MetadataValue::String(d)));
                }
            }
            _ => {}
        }
    }
}

fn read_text(path: &Path) -> Result<Option<String>> {
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| Error::tokenizer(path, format!("cannot read: {e}")))
}

/// Reads `dir/tokenizer.json` (required), `dir/tokenizer_config.json`, `dir/special_tokens_map.json`
/// and `dir/config.json` (optional) and builds the GGUF tokenizer metadata for a model whose
/// embedding has `vocab_size` rows.
pub fn vocab_from_hf(dir: &Path, vocab_size: u64) -> Result<GgufVocab> {
    if dir.join("tokenizer.model").is_file() {
        return sentencepiece_vocab(dir, vocab_size);
    }
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(Error::tokenizer(
            &tok_path,
            "file not found (need a Hugging Face tokenizer.json or a SentencePiece tokenizer.model)",
        ));
    }
    let tok = read_json(&tok_path)?;
    let model = tok
        .get("model")
        .ok_or_else(|| Error::tokenizer(&tok_path, "no `model` section"))?;
    let mtype = model.get("type").and_then(Value::as_str).unwrap_or("");
    if mtype != "BPE" {
        return Err(Error::tokenizer(
            &tok_path,
            format!(
                "unsupported tokenizer model type `{mtype}` (supported: BPE, either byte-level \
                 → GGUF \"gpt2\" or with byte_fallback → GGUF \"llama\")"
            ),
        ));
    }
    // LC vocab.py `LlamaHfVocab.__init__`: the Llama path needs byte_fallback and a Sequence
    // decoder; everything else falls through to `_set_vocab_gpt2`.
    let byte_fallback = model
        .get("byte_fallback")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let seq_decoder = tok
        .get("decoder")
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("Sequence");
    if byte_fallback && seq_decoder {
        llama_vocab(dir, &tok, model, vocab_size)
    } else {
        gpt2_vocab(dir, &tok, model, vocab_size)
    }
}

/// `_set_vocab_sentencepiece` = `_create_vocab_sentencepiece` (LC `conversion/base.py`) +
/// `SpecialVocab(dir, n_vocab=len(tokens))`. `vocab_size` is config.json's (`find_hparam`), so
/// ids the model lacks stay `[PAD{id}]` (score -10000, UNUSED) and pieces beyond it are dropped.
fn sentencepiece_vocab(dir: &Path, vocab_size: u64) -> Result<GgufVocab> {
    use crate::export::sentencepiece::{read_model, SP_BYTE, SP_CONTROL, SP_UNKNOWN, SP_UNUSED};
    let n = usize::try_from(vocab_size)
        .map_err(|_| Error::tokenizer(dir.join("config.json"), "vocab_size too large"))?;
    let pieces = read_model(&dir.join("tokenizer.model"))?;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![TOKEN_UNUSED; n];
    for (id, p) in pieces.into_iter().enumerate().take(n) {
        // The converter's if/elif chain over IsUnknown/IsControl/IsUnused/IsByte; anything else
        // (NORMAL, and sentencepiece's USER_DEFINED) is NORMAL.
        types[id] = match p.kind {
            SP_UNKNOWN => TOKEN_UNKNOWN,
            SP_CONTROL => TOKEN_CONTROL,
            SP_UNUSED => TOKEN_UNUSED,
            SP_BYTE => TOKEN_BYTE,
            _ => TOKEN_NORMAL,
        };
        tokens[id] = p.piece;
        scores[id] = p.score;
    }
    let added_path = dir.join("added_tokens.json");
    if let Some(added) = read_optional_json(&added_path)? {
        let obj = added
            .as_object()
            .ok_or_else(|| Error::tokenizer(&added_path, "not a JSON object"))?;
        for (text, id) in obj {
            let id = id.as_u64().ok_or_else(|| {
                Error::tokenizer(&added_path, format!("id of {text:?} is not an integer"))
            })?;
            if let Some(i) = usize::try_from(id).ok().filter(|&i| i < n) {
                tokens[i] = text.clone();
                scores[i] = -1000.0;
                types[i] = TOKEN_USER_DEFINED;
            }
        }
    }
    let cfg_path = dir.join("tokenizer_config.json");
    if let Some(cfg) = read_optional_json(&cfg_path)? {
        if let Some(decoder) = cfg.get("added_tokens_decoder").and_then(Value::as_object) {
            for (key, data) in decoder {
                let bad = |what: &str| {
                    Error::tokenizer(&cfg_path, format!("added_tokens_decoder[{key:?}]: {what}"))
                };
                let id: u64 = key
                    .trim()
                    .parse()
                    .map_err(|_| bad("key is not an integer"))?;
                let content = data
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("no string `content`"))?;
                let Some(i) = usize::try_from(id).ok().filter(|&i| i < n) else {
                    continue;
                };
                let special = data.get("special").and_then(Value::as_bool) == Some(true);
                if special || does_token_look_special(content) {
                    types[i] = TOKEN_CONTROL;
                    tokens[i] = content.to_owned();
                } else {
                    types[i] = TOKEN_USER_DEFINED; // pre-normalize user-defined spaces
                    tokens[i] = content.replace('\u{2581}', " ");
                }
                scores[i] = -1000.0;
            }
        }
    }
    let n_vocab = tokens.len() as u64;
    let mut md = vec![
        (
            "tokenizer.ggml.model".into(),
            MetadataValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            MetadataValue::String("default".into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        (
            "tokenizer.ggml.scores".into(),
            MetadataValue::Array(
                ValueType::F32,
                scores.into_iter().map(MetadataValue::F32).collect(),
            ),
        ),
        ("tokenizer.ggml.token_type".into(), i32s(types)),
    ];
    // `SpecialVocab` reads tokenizer.json only when it exists.
    let tok = read_optional_json(&dir.join("tokenizer.json"))?.unwrap_or(Value::Null);
    SpecialVocab::load(dir, &tok, false, Some(n_vocab))?.add_to(&mut md);
    Ok(GgufVocab {
        kind: VocabKind::Llama,
        metadata: md,
    })
}

/// `_set_vocab_gpt2` = `get_vocab_base` + `SpecialVocab(dir, load_merges=True)`.
fn gpt2_vocab(dir: &Path, tok: &Value, model: &Value, vocab_size: u64) -> Result<GgufVocab> {
    let tok_path = dir.join("tokenizer.json");
    let pre = bpe_pre(tok, &tok_path)?;
    let added = added_tokens(tok, &tok_path)?;
    // `tokenizer.vocab` of a fast tokenizer includes added tokens.
    let mut reverse: HashMap<u64, String> = HashMap::new();
    for (t, id) in model_vocab(model, &tok_path)? {
        reverse.insert(id, t);
    }
    let mut added_by_content: HashMap<&str, &AddedToken> = HashMap::new();
    for a in &added {
        reverse.insert(a.id, a.content.clone());
        added_by_content.insert(&a.content, a);
    }
    check_fits(&reverse, vocab_size, &tok_path)?;
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    for i in 0..vocab_size {
        match reverse.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(TOKEN_UNUSED);
            }
            Some(t) => {
                let mut t = t.clone();
                // `added_vocab` is keyed by content; `added_tokens_decoder[i]` by id. The
                // converter also round-trips non-`normalized` added tokens through
                // encode/decode; we cannot run the tokenizer and keep their text as is (the same
                // for any token that decodes to itself).
                if let Some(a) = added_by_content.get(t.as_str()) {
                    let special = added
                        .iter()
                        .find(|x| x.id == i)
                        .map_or(a.special, |x| x.special);
                    if special || does_token_look_special(&t) {
                        types.push(TOKEN_CONTROL);
                    } else {
                        t = t.replace('\u{2581}', " "); // pre-normalize user-defined spaces
                        types.push(TOKEN_USER_DEFINED);
                    }
                } else {
                    types.push(TOKEN_NORMAL);
                }
                tokens.push(t);
            }
        }
    }
    let mut md = vec![
        (
            "tokenizer.ggml.model".into(),
            MetadataValue::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".into(), MetadataValue::String(pre)),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        ("tokenizer.ggml.token_type".into(), i32s(types)),
    ];
    let sv = SpecialVocab::load(dir, tok, true, None)?;
    if sv.merges.is_empty() {
        return Err(Error::tokenizer(&tok_path, "BPE model has no merges"));
    }
    sv.add_to(&mut md);
    Ok(GgufVocab {
        kind: VocabKind::Gpt2Bpe,
        metadata: md,
    })
}

fn check_fits(reverse: &HashMap<u64, String>, vocab_size: u64, path: &Path) -> Result<()> {
    // `assert max(tokenizer.vocab.values()) < vocab_size` in `get_vocab_base`.
    match reverse.keys().max() {
        Some(&m) if m >= vocab_size => Err(Error::tokenizer(
            path,
            format!("tokenizer has token id {m}, but the model's vocab_size is {vocab_size}"),
        )),
        _ => Ok(()),
    }
}

fn i32s(v: Vec<i32>) -> MetadataValue {
    MetadataValue::Array(
        ValueType::I32,
        v.into_iter().map(MetadataValue::I32).collect(),
    )
}

/// `all_special_tokens` of a transformers tokenizer: the named special tokens and
/// `additional_special_tokens` of `tokenizer_config.json` and `special_tokens_map.json`.
fn all_special_tokens(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Some(cfg) = read_optional_json(&dir.join(f))? else {
            continue;
        };
        for typ in SPECIAL_TYPES {
            if let Some(c) = entry_content(cfg.get(format!("{typ}_token"))) {
                out.push(c);
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            if let Some(list) = cfg.get(key).and_then(Value::as_array) {
                out.extend(list.iter().filter_map(|e| entry_content(Some(e))));
            }
        }
    }
    Ok(out)
}

/// `_set_vocab_llama_hf` = `LlamaHfVocab.all_tokens` (scores all -1000.0; `<0xNN>` BYTE; special
/// ids CONTROL — including `<unk>`, `get_token_type` has no UNKNOWN; other added tokens above the
/// base vocab USER_DEFINED) + `SpecialVocab(dir, n_vocab=len(tokens))` (no merges: llama.cpp's SPM
/// tokenizer uses scores).
fn llama_vocab(dir: &Path, tok: &Value, model: &Value, vocab_size: u64) -> Result<GgufVocab> {
    let tok_path = dir.join("tokenizer.json");
    let base = model_vocab(model, &tok_path)?;
    let added = added_tokens(tok, &tok_path)?;
    let mut vocab: BTreeMap<u64, String> = base.iter().map(|(t, i)| (*i, t.clone())).collect();
    let base_size = base.len() as u64;
    for a in &added {
        vocab.entry(a.id).or_insert_with(|| a.content.clone());
    }
    let by_text: HashMap<&str, u64> = vocab.iter().map(|(i, t)| (t.as_str(), *i)).collect();
    let special_ids: HashSet<u64> = all_special_tokens(dir)?
        .iter()
        .filter_map(|t| by_text.get(t.as_str()).copied())
        .collect();
    let is_byte = |t: &str| {
        t.len() == 6
            && t.starts_with("<0x")
            && t.ends_with('>')
            && t[3..5].chars().all(|c| c.is_ascii_hexdigit())
    };
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    for id in 0..base_size {
        let t = vocab.get(&id).ok_or_else(|| {
            Error::tokenizer(&tok_path, format!("vocab has no token with id {id}"))
        })?;
        types.push(if is_byte(t) {
            TOKEN_BYTE
        } else if special_ids.contains(&id) {
            TOKEN_CONTROL
        } else {
            TOKEN_NORMAL
        });
        tokens.push(t.clone());
    }
    let mut extra: Vec<&AddedToken> = added.iter().filter(|a| a.id >= base_size).collect();
    extra.sort_by_key(|a| a.id);
    for a in extra {
        if a.id != tokens.len() as u64 {
            return Err(Error::tokenizer(
                &tok_path,
                format!(
                    "added token {:?} has id {}, expected {} (ids must follow the base vocab without gaps)",
                    a.content,
                    a.id,
                    tokens.len()
                ),
            ));
        }
        types.push(if special_ids.contains(&a.id) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        });
        tokens.push(a.content.clone());
    }
    let n = tokens.len() as u64;
    if n > vocab_size {
        return Err(Error::tokenizer(
            &tok_path,
            format!("tokenizer has {n} tokens, but the model's vocab_size is {vocab_size}"),
        ));
    }
    // `_set_vocab_llama_hf` does not pad; we pad like `_create_vocab_sentencepiece`
    // ([PAD1].., score -1000, UNUSED) so that the token count matches the embedding rows.
    for i in 1..=(vocab_size - n) {
        tokens.push(format!("[PAD{i}]"));
        types.push(TOKEN_UNUSED);
    }
    let scores = vec![-1000.0f32; tokens.len()];
    let n_vocab = tokens.len() as u64;
    let mut md = vec![
        (
            "tokenizer.ggml.model".into(),
            MetadataValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            MetadataValue::String("default".into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        (
            "tokenizer.ggml.scores".into(),
            MetadataValue::Array(
                ValueType::F32,
                scores.into_iter().map(MetadataValue::F32).collect(),
            ),
        ),
        ("tokenizer.ggml.token_type".into(), i32s(types)),
    ];
    SpecialVocab::load(dir, tok, false, Some(n_vocab))?.add_to(&mut md);
    Ok(GgufVocab {
        kind: VocabKind::Llama,
        metadata: md,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, v: &Value) {
        std::fs::write(dir.join(name), serde_json::to_string(v).unwrap()).unwrap();
    }

    fn gpt2_json() -> Value {
        serde_json::json!({
            "added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3}, "merges": [["a", "b"]]}
        })
    }

    #[test]
    fn missing_tokenizer_json_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = vocab_from_hf(d.path(), 10).unwrap_err();
        assert!(matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("not found")));
    }

    #[test]
    fn wordpiece_and_unigram_are_refused_naming_bpe() {
        for ty in ["WordPiece", "Unigram"] {
            let d = tempfile::tempdir().unwrap();
            write(
                d.path(),
                "tokenizer.json",
                &serde_json::json!({"model": {"type": ty}}),
            );
            let e = vocab_from_hf(d.path(), 10).unwrap_err();
            assert!(
                matches!(&e, Error::Tokenizer { reason, .. } if reason.contains(ty) && reason.contains("supported: BPE")),
                "{e}"
            );
        }
    }

    #[test]
    fn vocab_larger_than_model_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "tokenizer.json", &gpt2_json());
        let e = vocab_from_hf(d.path(), 4).unwrap_err();
        assert!(
            matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("vocab_size is 4"))
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut j = gpt2_json();
        j["pre_tokenizer"]["add_prefix_space"] = Value::Bool(true);
        write(d.path(), "tokenizer.json", &j);
        let e = vocab_from_hf(d.path(), 8).unwrap_err();
        assert!(matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("gpt-2")));
    }

    #[test]
    fn unknown_merges_format_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let mut j = gpt2_json();
        j["model"]["merges"] = serde_json::json!([["a", "b", "c"]]);
        write(d.path(), "tokenizer.json", &j);
        let e = vocab_from_hf(d.path(), 8).unwrap_err();
        assert!(matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("merges format")));
    }

    #[test]
    fn llama_added_token_gap_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let j = serde_json::json!({
            "added_tokens": [{"id": 9, "content": "<x>", "special": true}],
            "decoder": {"type": "Sequence", "decoders": []},
            "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 1}, "merges": []}
        });
        write(d.path(), "tokenizer.json", &j);
        let e = vocab_from_hf(d.path(), 16).unwrap_err();
        assert!(matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("without gaps")));
    }

    fn md_get<'a>(v: &'a GgufVocab, k: &str) -> &'a MetadataValue {
        &v.metadata.iter().find(|(key, _)| key == k).unwrap().1
    }

    fn md_array(v: &GgufVocab, k: &str) -> Vec<MetadataValue> {
        match md_get(v, k) {
            MetadataValue::Array(_, a) => a.clone(),
            other => panic!("{k}: {other:?}"),
        }
    }

    #[test]
    fn sentencepiece_model_takes_precedence_with_scores_types_and_added_tokens() {
        use crate::export::sentencepiece::*;
        let d = tempfile::tempdir().unwrap();
        let m = encode_model(&[
            ("<unk>", 0.0, SP_UNKNOWN),
            ("<s>", 0.0, SP_CONTROL),
            ("<0x0A>", 0.0, SP_BYTE),
            ("▁a", -1.0, SP_NORMAL),
            ("u", -2.0, SP_USER_DEFINED),
            ("x", -3.0, SP_UNUSED),
            ("<extra>", -4.0, SP_NORMAL),
            ("▁b", -5.0, SP_NORMAL),
        ]);
        std::fs::write(d.path().join("tokenizer.model"), m).unwrap();
        // A tokenizer.json that would fail on its own: the sentencepiece path never reads its vocab.
        write(
            d.path(),
            "tokenizer.json",
            &serde_json::json!({"model": {"type": "Unigram"}}),
        );
        write(
            d.path(),
            "added_tokens.json",
            &serde_json::json!({"<add>": 5, "<far>": 99}),
        );
        write(
            d.path(),
            "tokenizer_config.json",
            &serde_json::json!({
                "bos_token": "<s>",
                "added_tokens_decoder": {
                    "6": {"content": "▁user", "special": false},
                    "1": {"content": "<s>", "special": true},
                    "7": {"content": "<|im|>", "special": false},
                    "50": {"content": "<far>", "special": true}
                }
            }),
        );
        // vocab_size 9: id 8 is padding; ids >= 9 (added "<far>" 99 / 50) are ignored.
        let v = vocab_from_hf(d.path(), 9).unwrap();
        assert_eq!(v.kind, VocabKind::Llama);
        let toks: Vec<String> = md_array(&v, "tokenizer.ggml.tokens")
            .into_iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            toks,
            ["<unk>", "<s>", "<0x0A>", "▁a", "u", "<add>", " user", "<|im|>", "[PAD8]"]
        );
        let types: Vec<MetadataValue> = md_array(&v, "tokenizer.ggml.token_type");
        let want = [
            TOKEN_UNKNOWN,
            TOKEN_CONTROL,
            TOKEN_BYTE,
            TOKEN_NORMAL,
            TOKEN_NORMAL,
            TOKEN_USER_DEFINED,
            TOKEN_USER_DEFINED,
            TOKEN_CONTROL,
            TOKEN_UNUSED,
        ];
        assert_eq!(types, want.map(MetadataValue::I32).to_vec());
        let scores = md_array(&v, "tokenizer.ggml.scores");
        let want = [
            0.0, -1000.0, 0.0, -1.0, -2.0, -1000.0, -1000.0, -1000.0, -10000.0,
        ];
        assert_eq!(scores, want.map(MetadataValue::F32).to_vec());
        assert_eq!(
            md_get(&v, "tokenizer.ggml.model"),
            &MetadataValue::String("llama".into())
        );
    }

    #[test]
    fn malformed_sentencepiece_model_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokenizer.model"), b"\x0a\xff").unwrap();
        let e = vocab_from_hf(d.path(), 8).unwrap_err();
        assert!(
            matches!(&e, Error::Tokenizer { path, reason } if path.ends_with("tokenizer.model") && reason.contains("malformed")),
            "{e}"
        );
    }

    #[test]
    fn sentencepiece_bad_added_tokens_decoder_key_is_an_error() {
        use crate::export::sentencepiece::*;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("tokenizer.model"),
            encode_model(&[("a", 0.0, SP_NORMAL)]),
        )
        .unwrap();
        write(
            d.path(),
            "tokenizer_config.json",
            &serde_json::json!({"added_tokens_decoder": {"x": {"content": "<x>"}}}),
        );
        let e = vocab_from_hf(d.path(), 4).unwrap_err();
        assert!(
            matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("not an integer")),
            "{e}"
        );
    }

    #[test]
    fn invalid_json_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokenizer.json"), "{").unwrap();
        let e = vocab_from_hf(d.path(), 8).unwrap_err();
        assert!(matches!(&e, Error::Tokenizer { reason, .. } if reason.contains("invalid JSON")));
    }

    #[test]
    fn gpt2_pads_and_types_and_joins_pair_merges() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "tokenizer.json", &gpt2_json());
        write(
            d.path(),
            "tokenizer_config.json",
            &serde_json::json!({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": false, "chat_template": "{{x}}"}),
        );
        let v = vocab_from_hf(d.path(), 6).unwrap();
        assert_eq!(v.kind, VocabKind::Gpt2Bpe);
        let keys: Vec<&str> = v.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tokenizer.ggml.model",
                "tokenizer.ggml.pre",
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token",
                "tokenizer.chat_template"
            ]
        );
        let tokens = v.metadata[2].1.as_array().unwrap();
        assert_eq!(tokens[5].as_str(), Some("[PAD5]"));
        let types: Vec<_> = v.metadata[3].1.as_array().unwrap().to_vec();
        assert_eq!(types[4], MetadataValue::I32(TOKEN_CONTROL));
        assert_eq!(types[5], MetadataValue::I32(TOKEN_UNUSED));
        assert_eq!(v.metadata[4].1.as_array().unwrap()[0].as_str(), Some("a b"));
    }
}
