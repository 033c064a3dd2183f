//! GGUF `tokenizer.ggml.*` metadata → a Hugging Face `tokenizer.json` + `tokenizer_config.json`
//! that the Python `tokenizers` package loads and that tokenizes like the original.
//!
//! - `gpt2`: a byte-level BPE (vocab + the stored merges), with the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (see [`crate::export::tokenizer`] for the names we know).
//! - `llama`: a BPE with `byte_fallback`, a Metaspace("▁", prepend always, no split)
//!   pre-tokenizer and the Llama `tokenizer.json` Replace/ByteFallback/Fuse/Strip decoder.
//!   GGUF stores no merges for it, so they are rebuilt from the vocabulary and the scores with
//!   the algorithm of transformers' `convert_slow_tokenizer.py` `SentencePieceExtractor.extract`
//!   (`generate_merges`): every split of a vocab piece into two vocab pieces is a merge, ranked by
//!   the merged piece's score (higher first); within one piece the splits are ordered by the ids
//!   of their parts. Ties in score (the converter's `_set_vocab_llama_hf` writes -1000.0 for all)
//!   keep id order, which is the order in which a BPE trainer created the pieces.

use std::collections::HashMap;
use std::path::Path;

use formats::gguf::MetadataValue;
use serde_json::{json, Map, Value};

use crate::export::tokenizer::{
    LLAMA3_REGEX, QWEN2_REGEX, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN,
    TOKEN_USER_DEFINED,
};
use crate::{Error, Result};

/// The two files of a Hugging Face fast tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTokenizerFiles {
    pub tokenizer_json: Value,
    pub tokenizer_config: Value,
}

struct Md<'a> {
    map: HashMap<&'a str, &'a MetadataValue>,
    path: &'a Path,
}

impl<'a> Md<'a> {
    fn get(&self, k: &str) -> Option<&'a MetadataValue> {
        self.map.get(k).copied()
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::tokenizer(self.path, reason)
    }

    fn string(&self, k: &str) -> Result<Option<&'a str>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` is not a string"))),
        }
    }

    fn array(&self, k: &str) -> Result<Option<&'a [MetadataValue]>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` is not an array"))),
        }
    }

    fn id(&self, k: &str, n: usize) -> Result<Option<usize>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let id = v
            .as_u64()
            .ok_or_else(|| self.err(format!("`{k}` is not an integer")))?;
        if id >= n as u64 {
            return Err(self.err(format!("`{k}` = {id} is outside the {n}-token vocabulary")));
        }
        Ok(Some(id as usize))
    }

    fn flag(&self, k: &str) -> Result<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` is not a bool"))),
        }
    }
}

/// Builds `tokenizer.json` and `tokenizer_config.json` from GGUF metadata; `path` names the GGUF
/// file in errors.
pub fn tokenizer_from_gguf(
    metadata: &[(String, MetadataValue)],
    path: &Path,
) -> Result<HfTokenizerFiles> {
    let md = Md {
        map: metadata.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        path,
    };
    let model = md
        .string("tokenizer.ggml.model")?
        .ok_or_else(|| md.err("no `tokenizer.ggml.model`"))?;
    let tokens: Vec<String> = md
        .array("tokenizer.ggml.tokens")?
        .ok_or_else(|| md.err("no `tokenizer.ggml.tokens`"))?
        .iter()
        .map(|t| t.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| md.err("`tokenizer.ggml.tokens` holds a non-string"))?;
    let n = tokens.len();
    let types: Vec<i32> = match md.array("tokenizer.ggml.token_type")? {
        None => vec![TOKEN_NORMAL; n],
        Some(a) => a
            .iter()
            .map(|t| t.as_u64().and_then(|v| i32::try_from(v).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| md.err("`tokenizer.ggml.token_type` holds a non-integer"))?,
    };
    if types.len() != n {
        return Err(md.err(format!("{} token types for {n} tokens", types.len())));
    }

    // Vocabulary: every token at its id; a repeated text keeps its first id (a JSON map cannot
    // hold two), so the later id is unreachable by encoding.
    let mut vocab = Map::new();
    for (i, t) in tokens.iter().enumerate() {
        if !vocab.contains_key(t) {
            vocab.insert(t.clone(), json!(i));
        }
    }
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED)
        .map(|(i, (t, &ty))| {
            let special = ty == TOKEN_CONTROL;
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": !special, "special": special})
        })
        .collect();

    let bos = md.id("tokenizer.ggml.bos_token_id", n)?;
    let eos = md.id("tokenizer.ggml.eos_token_id", n)?;
    let unk = md.id("tokenizer.ggml.unknown_token_id", n)?;
    let pad = md.id("tokenizer.ggml.padding_token_id", n)?;
    let sep = md.id("tokenizer.ggml.seperator_token_id", n)?;
    let mask = md.id("tokenizer.ggml.mask_token_id", n)?;

    let (tokenizer_json, default_add_bos) = match model {
        "gpt2" => (gpt2_json(&md, vocab, added)?, false),
        "llama" => {
            let unk = unk.or_else(|| types.iter().position(|&t| t == TOKEN_UNKNOWN));
            (llama_json(&md, &tokens, &types, vocab, added, unk)?, true)
        }
        other => {
            return Err(md.err(format!(
                "unsupported tokenizer.ggml.model `{other}` (supported: gpt2, llama)"
            )))
        }
    };
    // llama.cpp's defaults when the flags are absent (`llama_vocab::impl::load`): SPM adds BOS,
    // BPE does not; neither adds EOS.
    let add_bos = md
        .flag("tokenizer.ggml.add_bos_token")?
        .unwrap_or(default_add_bos);
    let add_eos = md.flag("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let mut tokenizer_json = tokenizer_json;
    tokenizer_json["post_processor"] = post_processor(
        &tokens,
        bos.filter(|_| add_bos),
        eos.filter(|_| add_eos),
        model,
    );

    let mut cfg = Map::new();
    cfg.insert("add_bos_token".into(), json!(add_bos));
    cfg.insert("add_eos_token".into(), json!(add_eos));
    for (k, id) in [
        ("bos_token", bos),
        ("eos_token", eos),
        ("unk_token", unk),
        ("pad_token", pad),
        ("sep_token", sep),
        ("mask_token", mask),
    ] {
        if let Some(id) = id {
            cfg.insert(k.into(), json!(tokens[id]));
        }
    }
    if let Some(t) = md.string("tokenizer.chat_template")? {
        cfg.insert("chat_template".into(), json!(t));
    }
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    cfg.insert(
        "model_max_length".into(),
        json!(1_000_000_000_000_000_000u64),
    );
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    Ok(HfTokenizerFiles {
        tokenizer_json,
        tokenizer_config: Value::Object(cfg),
    })
}

fn post_processor(tokens: &[String], bos: Option<usize>, eos: Option<usize>, model: &str) -> Value {
    if bos.is_none() && eos.is_none() {
        return if model == "gpt2" {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        } else {
            Value::Null
        };
    }
    let sp = |id: usize| json!({"SpecialToken": {"id": tokens[id], "type_id": 0}});
    let seq = |s: &str, t: u32| json!({"Sequence": {"id": s, "type_id": t}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Map::new();
    if let Some(b) = bos {
        single.push(sp(b));
    }
    single.push(seq("A", 0));
    if let Some(e) = eos {
        single.push(sp(e));
    }
    pair.extend(single.iter().cloned());
    if let Some(b) = bos {
        pair.push(sp(b));
    }
    pair.push(seq("B", 1));
    if let Some(e) = eos {
        pair.push(sp(e));
    }
    for id in [bos, eos].into_iter().flatten() {
        specials.insert(
            tokens[id].clone(),
            json!({"id": tokens[id], "ids": [id], "tokens": [tokens[id]]}),
        );
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn gpt2_json(md: &Md, vocab: Map<String, Value>, added: Vec<Value>) -> Result<Value> {
    let pre = md.string("tokenizer.ggml.pre")?.unwrap_or("default");
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false)]})
    };
    let pre_tokenizer = match pre {
        "gpt-2" => byte_level(true),
        "llama-bpe" => split(LLAMA3_REGEX),
        "qwen2" => split(QWEN2_REGEX),
        other => {
            return Err(md.err(format!(
                "unsupported tokenizer.ggml.pre `{other}` (supported: gpt-2, llama-bpe, qwen2)"
            )))
        }
    };
    let merges: Vec<Value> = md
        .array("tokenizer.ggml.merges")?
        .ok_or_else(|| md.err("gpt2 vocabulary without `tokenizer.ggml.merges`"))?
        .iter()
        .map(|m| {
            let s = m
                .as_str()
                .ok_or_else(|| md.err("`tokenizer.ggml.merges` holds a non-string"))?;
            match s.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => Ok(json!([a, b])),
                _ => Err(md.err(format!("malformed merge {s:?} (expected \"a b\")"))),
            }
        })
        .collect::<Result<_>>()?;
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    }))
}

/// transformers `convert_slow_tokenizer.py` `SentencePieceExtractor.extract` / `generate_merges`,
/// over the NORMAL pieces only (byte, control, user-defined and unused pieces never take part in
/// SentencePiece BPE merges).
pub(crate) fn merges_from_scores(
    tokens: &[String],
    types: &[i32],
    scores: &[f32],
) -> Vec<(String, String)> {
    let mut piece_id: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] == TOKEN_NORMAL {
            piece_id.entry(t.as_str()).or_insert(i);
        }
    }
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new(); // (score, id, l, r)
    for (i, t) in tokens.iter().enumerate() {
        if types[i] != TOKEN_NORMAL || piece_id.get(t.as_str()) != Some(&i) {
            continue;
        }
        let mut local = Vec::new();
        for (pos, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(pos);
            if let (Some(&li), Some(&ri)) = (piece_id.get(l), piece_id.get(r)) {
                local.push((scores[i], i, li, ri));
            }
        }
        local.sort_by_key(|&(_, _, l, r)| (l, r));
        merges.extend(local);
    }
    // Stable sort by score, highest first; ties keep id order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    merges
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

fn llama_json(
    md: &Md,
    tokens: &[String],
    types: &[i32],
    vocab: Map<String, Value>,
    added: Vec<Value>,
    unk: Option<usize>,
) -> Result<Value> {
    let n = tokens.len();
    let scores: Vec<f32> = match md.array("tokenizer.ggml.scores")? {
        None => vec![0.0; n],
        Some(a) => a
            .iter()
            .map(|s| s.as_f64().map(|v| v as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| md.err("`tokenizer.ggml.scores` holds a non-number"))?,
    };
    if scores.len() != n {
        return Err(md.err(format!("{} scores for {n} tokens", scores.len())));
    }
    if !(0..256).all(|b| {
        let t = format!("<0x{b:02X}>");
        tokens
            .iter()
            .zip(types)
            .any(|(x, &ty)| *x == t && ty == TOKEN_BYTE)
    }) {
        return Err(md.err("llama vocabulary lacks some of the 256 <0xNN> byte tokens"));
    }
    let merges: Vec<Value> = merges_from_scores(tokens, types, &scores)
        .into_iter()
        .map(|(a, b)| json!([a, b]))
        .collect();
    // Metaspace without splitting: spaces become "▁" and one "▁" is prepended unless the text
    // already starts with one (llama.cpp always prepends; that edge case is the only difference).
    // A Metaspace-trained (split) vocabulary has no piece with an inner "▁", so not splitting
    // gives the same ids for it, and Llama-2-style vocabularies with "▁▁" pieces need it.
    let add_prefix = md.flag("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let pre_tokenizer = json!({"type": "Metaspace", "replacement": "\u{2581}",
        "prepend_scheme": if add_prefix { "always" } else { "never" }, "split": false});
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk.map(|u| tokens[u].clone()),
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use formats::gguf::ValueType;

    fn strs(v: &[&str]) -> MetadataValue {
        MetadataValue::Array(
            ValueType::String,
            v.iter()
                .map(|s| MetadataValue::String(s.to_string()))
                .collect(),
        )
    }

    fn md(model: &str) -> Vec<(String, MetadataValue)> {
        vec![
            (
                "tokenizer.ggml.model".into(),
                MetadataValue::String(model.into()),
            ),
            (
                "tokenizer.ggml.pre".into(),
                MetadataValue::String("gpt-2".into()),
            ),
            ("tokenizer.ggml.tokens".into(), strs(&["a", "b", "ab"])),
            ("tokenizer.ggml.merges".into(), strs(&["a b"])),
        ]
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Tokenizer { reason, .. } => reason,
            other => panic!("not a tokenizer error: {other}"),
        }
    }

    #[test]
    fn gpt2_builds_vocab_and_pair_merges() {
        let f = tokenizer_from_gguf(&md("gpt2"), Path::new("m.gguf")).unwrap();
        assert_eq!(f.tokenizer_json["model"]["vocab"]["ab"], json!(2));
        assert_eq!(f.tokenizer_json["model"]["merges"], json!([["a", "b"]]));
        assert_eq!(f.tokenizer_config["add_bos_token"], json!(false));
    }

    #[test]
    fn missing_model_key_is_an_error() {
        let m = md("gpt2")[1..].to_vec();
        assert!(reason(tokenizer_from_gguf(&m, Path::new("m")).unwrap_err())
            .contains("tokenizer.ggml.model"));
    }

    #[test]
    fn unsupported_model_is_an_error() {
        assert!(
            reason(tokenizer_from_gguf(&md("bert"), Path::new("m")).unwrap_err())
                .contains("supported: gpt2, llama")
        );
    }

    #[test]
    fn unsupported_pre_is_an_error() {
        let mut m = md("gpt2");
        m[1].1 = MetadataValue::String("falcon".into());
        assert!(reason(tokenizer_from_gguf(&m, Path::new("m")).unwrap_err()).contains("falcon"));
    }

    #[test]
    fn malformed_merge_is_an_error() {
        let mut m = md("gpt2");
        m[3].1 = strs(&["ab"]);
        assert!(reason(tokenizer_from_gguf(&m, Path::new("m")).unwrap_err())
            .contains("malformed merge"));
    }

    #[test]
    fn special_id_out_of_range_is_an_error() {
        let mut m = md("gpt2");
        m.push(("tokenizer.ggml.bos_token_id".into(), MetadataValue::U32(9)));
        assert!(reason(tokenizer_from_gguf(&m, Path::new("m")).unwrap_err()).contains("outside"));
    }

    #[test]
    fn type_count_mismatch_is_an_error() {
        let mut m = md("gpt2");
        m.push((
            "tokenizer.ggml.token_type".into(),
            MetadataValue::Array(ValueType::I32, vec![MetadataValue::I32(1)]),
        ));
        assert!(
            reason(tokenizer_from_gguf(&m, Path::new("m")).unwrap_err()).contains("token types")
        );
    }

    #[test]
    fn llama_without_byte_tokens_is_an_error() {
        assert!(
            reason(tokenizer_from_gguf(&md("llama"), Path::new("m")).unwrap_err())
                .contains("byte tokens")
        );
    }

    #[test]
    fn merges_follow_score_then_id() {
        let toks: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types = vec![TOKEN_NORMAL; 6];
        // Equal scores: id order of the merged piece; "abc" splits as (a, bc) and (ab, c), ordered
        // by the ids of their parts.
        let m = merges_from_scores(&toks, &types, &[-1000.0; 6]);
        let m: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(m, [("a", "b"), ("a", "bc"), ("ab", "c"), ("b", "c")]);
        // Real SentencePiece scores: higher first.
        let m = merges_from_scores(&toks, &types, &[0.0, 0.0, 0.0, -1.0, -3.0, -2.0]);
        assert_eq!(m[0], ("a".to_string(), "b".to_string()));
        assert_eq!(m[1], ("b".to_string(), "c".to_string()));
    }
}
