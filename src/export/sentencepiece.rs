//! A minimal reader for SentencePiece's `tokenizer.model` (a serialized `ModelProto`, see
//! sentencepiece's `sentencepiece_model.proto`). We only need what llama.cpp's converter reads
//! through `SentencePieceProcessor` in `_create_vocab_sentencepiece` (LC `conversion/base.py`):
//! every piece's text (`IdToPiece`), score (`GetScore`) and type (`IsUnknown`/`IsControl`/
//! `IsUnused`/`IsByte`). All other fields (`trainer_spec`, `normalizer_spec`, ...) are skipped
//! by wire type; the converter does not look at them.
//!
//! Every read is bounds-checked; malformed input is an `Error::Tokenizer`, never a panic.

use std::path::Path;

use crate::{Error, Result};

/// `SentencePiece.Type` (sentencepiece_model.proto); a missing `type` field means NORMAL.
pub const SP_NORMAL: i32 = 1;
pub const SP_UNKNOWN: i32 = 2;
pub const SP_CONTROL: i32 = 3;
pub const SP_USER_DEFINED: i32 = 4;
pub const SP_UNUSED: i32 = 5;
pub const SP_BYTE: i32 = 6;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: i32,
}

/// Protobuf wire types we accept (groups, 3 and 4, are deprecated and never used by SentencePiece).
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, n: u64) -> std::result::Result<&'a [u8], String> {
        let left = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(format!(
                "field of {n} bytes at byte {} runs past the end ({left} bytes left)",
                self.pos
            )),
        }
    }

    /// (field number, wire type)
    fn tag(&mut self) -> std::result::Result<(u64, u64), String> {
        let t = self.varint()?;
        let (field, wire) = (t >> 3, t & 7);
        if field == 0 {
            return Err(format!("field number 0 before byte {}", self.pos));
        }
        Ok((field, wire))
    }

    fn skip(&mut self, wire: u64) -> std::result::Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8).map(drop),
            LEN => {
                let n = self.varint()?;
                self.take(n).map(drop)
            }
            I32 => self.take(4).map(drop),
            w => Err(format!(
                "unsupported wire type {w} before byte {}",
                self.pos
            )),
        }
    }
}

fn expect(wire: u64, want: u64, what: &str) -> std::result::Result<(), String> {
    if wire == want {
        Ok(())
    } else {
        Err(format!("`{what}` has wire type {wire}, expected {want}"))
    }
}

fn parse_piece(buf: &[u8]) -> std::result::Result<Piece, String> {
    let mut r = Reader::new(buf);
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: SP_NORMAL,
    };
    while !r.done() {
        match r.tag()? {
            (1, w) => {
                expect(w, LEN, "piece")?;
                let n = r.varint()?;
                p.piece = std::str::from_utf8(r.take(n)?)
                    .map_err(|e| format!("piece is not UTF-8: {e}"))?
                    .to_owned();
            }
            (2, w) => {
                expect(w, I32, "score")?;
                let b = r.take(4)?;
                p.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, w) => {
                expect(w, VARINT, "type")?;
                // An enum is an int32 on the wire; out-of-range values are kept as is and
                // count as NORMAL below, as none of sentencepiece's Is* predicates matches.
                p.kind = r.varint()? as i32;
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(p)
}

/// Parses a serialized `ModelProto` into its pieces (field 1, in id order).
pub fn parse_model(buf: &[u8]) -> std::result::Result<Vec<Piece>, String> {
    let mut r = Reader::new(buf);
    let mut pieces = Vec::new();
    while !r.done() {
        match r.tag()? {
            (1, w) => {
                expect(w, LEN, "pieces")?;
                let n = r.varint()?;
                let id = pieces.len();
                pieces.push(parse_piece(r.take(n)?).map_err(|e| format!("piece {id}: {e}"))?);
            }
            (_, w) => r.skip(w)?,
        }
    }
    if pieces.is_empty() {
        return Err("no pieces (not a SentencePiece model?)".into());
    }
    Ok(pieces)
}

/// Reads and parses `path` (a `tokenizer.model`).
pub fn read_model(path: &Path) -> Result<Vec<Piece>> {
    let buf =
        std::fs::read(path).map_err(|e| Error::tokenizer(path, format!("cannot read: {e}")))?;
    parse_model(&buf)
        .map_err(|e| Error::tokenizer(path, format!("malformed SentencePiece model: {e}")))
}

/// Serializes `(piece, score, type)` triples as a `ModelProto` (for tests elsewhere).
#[cfg(test)]
pub(crate) fn encode_model(pieces: &[(&str, f32, i32)]) -> Vec<u8> {
    let bufs: Vec<Vec<u8>> = pieces
        .iter()
        .map(|(t, s, k)| tests::piece(t, *s, Some(*k as u64)))
        .collect();
    tests::model(&bufs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(field: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | LEN, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    pub(crate) fn piece(text: &str, score: f32, kind: Option<u64>) -> Vec<u8> {
        let mut p = Vec::new();
        len_field(1, text.as_bytes(), &mut p);
        varint(2 << 3 | I32, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        if let Some(k) = kind {
            varint(3 << 3 | VARINT, &mut p);
            varint(k, &mut p);
        }
        p
    }

    pub(crate) fn model(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        for p in pieces {
            len_field(1, p, &mut m);
        }
        // trainer_spec { model_type: BPE } and normalizer_spec { add_dummy_prefix: true }: skipped.
        len_field(2, &[3 << 3, 2], &mut m);
        len_field(3, &[3 << 3, 1], &mut m);
        m
    }

    #[test]
    fn parses_pieces_scores_types() {
        let m = model(&[
            piece("<unk>", 0.0, Some(2)),
            piece("<s>", 0.0, Some(3)),
            piece("<0x0A>", 0.0, Some(6)),
            piece("▁the", -1.5, None),
        ]);
        let p = parse_model(&m).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].kind, SP_UNKNOWN);
        assert_eq!(p[1].kind, SP_CONTROL);
        assert_eq!(p[2].kind, SP_BYTE);
        assert_eq!(
            p[3],
            Piece {
                piece: "▁the".into(),
                score: -1.5,
                kind: SP_NORMAL
            }
        );
    }

    fn err(buf: &[u8]) -> String {
        parse_model(buf).unwrap_err()
    }

    #[test]
    fn empty_model_is_an_error() {
        assert!(err(&[]).contains("no pieces"));
        assert!(err(&model(&[])).contains("no pieces"));
    }

    #[test]
    fn truncated_varint_is_an_error() {
        assert!(err(&[0x0a, 0x80]).contains("truncated varint"));
    }

    #[test]
    fn overlong_varint_is_an_error() {
        assert!(err(&[0x80; 11]).contains("longer than 10 bytes"));
    }

    #[test]
    fn length_past_end_is_an_error() {
        assert!(err(&[0x0a, 0x05, 1, 2]).contains("runs past the end"));
        // A huge length must not overflow the position arithmetic.
        let mut m = vec![0x0a];
        varint(u64::MAX, &mut m);
        assert!(err(&m).contains("runs past the end"));
    }

    #[test]
    fn group_wire_type_is_an_error() {
        assert!(err(&[(4 << 3) | 3]).contains("unsupported wire type 3"));
    }

    #[test]
    fn field_zero_is_an_error() {
        assert!(err(&[0x00]).contains("field number 0"));
    }

    #[test]
    fn wrong_wire_type_for_known_field_is_an_error() {
        assert!(err(&[0x08, 0x01]).contains("`pieces` has wire type 0"));
        let mut m = Vec::new();
        len_field(1, &[0x10, 0x01], &mut m); // score as a varint
        assert!(err(&m).contains("piece 0: `score` has wire type 0"));
    }

    #[test]
    fn invalid_utf8_piece_is_an_error() {
        let mut p = Vec::new();
        len_field(1, &[0xff, 0xfe], &mut p);
        let mut m = Vec::new();
        len_field(1, &p, &mut m);
        assert!(err(&m).contains("not UTF-8"));
    }

    #[test]
    fn read_model_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.model");
        std::fs::write(&path, b"\x0a\x05").unwrap();
        let e = read_model(&path).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.model") && e.contains("malformed SentencePiece model"),
            "{e}"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_model(&bytes);
        }

        #[test]
        fn valid_models_round_trip(pieces in proptest::collection::vec(("\\PC{0,8}", -100.0f32..0.0, 1u64..7), 1..20)) {
            let bufs: Vec<Vec<u8>> = pieces.iter().map(|(t, s, k)| piece(t, *s, Some(*k))).collect();
            let got = parse_model(&model(&bufs)).unwrap();
            proptest::prop_assert_eq!(got.len(), pieces.len());
            for (g, (t, s, k)) in got.iter().zip(&pieces) {
                proptest::prop_assert_eq!(&g.piece, t);
                proptest::prop_assert_eq!(g.score, *s);
                proptest::prop_assert_eq!(g.kind as u64, *k);
            }
        }
    }
}
