//! The quantization schemes of `quantize` / `convert --quant` for Hugging Face output, and how
//! each is written (modelopt's `quant_algo` names, see the README's quantize section).

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantScheme {
    /// FP8 E4M3 weights, per-tensor weight and activation scales.
    Fp8,
    /// INT8 weights, per-output-channel scale; activations stay in the model dtype.
    Int8Wo,
    /// SmoothQuant W8A8: smoothing folded into the preceding norm (or a pre-quant scale),
    /// per-channel INT8 weights, per-tensor INT8 activation scale.
    Int8Sq,
    /// INT4 group-wise weights with an activation-aware scale search (AWQ).
    Int4Awq,
    /// INT4 group-wise weights, plain round to nearest (AWQ's baseline).
    Int4Rtn,
}

/// What `--quant` names: a scheme, or `auto` (chosen per `--target`, see [`super::auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantRequest {
    Scheme(QuantScheme),
    Auto,
}

/// GGUF block types and presets: made by `convert --format gguf --quant TYPE`, not here.
const GGUF_TYPES: [&str; 14] = [
    "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_s",
    "q4_k_m", "q5_k_m", "q6_k_m",
];

impl QuantScheme {
    pub const ALL: [QuantScheme; 5] = [
        QuantScheme::Fp8,
        QuantScheme::Int8Wo,
        QuantScheme::Int8Sq,
        QuantScheme::Int4Awq,
        QuantScheme::Int4Rtn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuantScheme::Fp8 => "fp8",
            QuantScheme::Int8Wo => "int8_wo",
            QuantScheme::Int8Sq => "int8_sq",
            QuantScheme::Int4Awq => "int4_awq",
            QuantScheme::Int4Rtn => "int4_rtn",
        }
    }

    /// modelopt / TensorRT-LLM `quant_algo` (TensorRT-LLM `QuantAlgo`; modelopt
    /// `export/model_config.py` `QUANTIZATION_*` → `hf_quant_config.json`). RTN has no
    /// modelopt name of its own: its tensors have the W4A16_AWQ layout with unit pre-quant
    /// scales left out, which loaders of W4A16_AWQ accept.
    pub fn quant_algo(self) -> &'static str {
        match self {
            QuantScheme::Fp8 => "FP8",
            QuantScheme::Int8Wo => "W8A16",
            QuantScheme::Int8Sq => "W8A8_SQ_PER_CHANNEL",
            QuantScheme::Int4Awq | QuantScheme::Int4Rtn => "W4A16_AWQ",
        }
    }

    /// Needs activation statistics (AWQ needs activation samples instead).
    pub fn needs_statistics(self) -> bool {
        matches!(self, QuantScheme::Fp8 | QuantScheme::Int8Sq)
    }

    /// Group-wise INT4.
    pub fn is_int4(self) -> bool {
        matches!(self, QuantScheme::Int4Awq | QuantScheme::Int4Rtn)
    }

    /// The scheme named `text` (`fp8`, `int8_wo`, …), case-insensitive.
    pub fn from_name(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        QuantScheme::ALL.into_iter().find(|s| s.name() == t)
    }

    /// One module's quantization fields as TensorRT-LLM's `QuantConfig` / modelopt write them:
    /// the whole `quantization` object of a single-scheme checkpoint, one `quantized_layers`
    /// entry of a MIXED_PRECISION one (modelopt `export/quant_utils.py`
    /// `process_layer_quant_config`). `pre_quant_scale`: the INT4 linears keep AWQ's input
    /// scale as a tensor (not folded into the previous op).
    pub fn layer_config(self, group: usize, pre_quant_scale: bool) -> serde_json::Value {
        let mut q = serde_json::json!({ "quant_algo": self.quant_algo() });
        if self.is_int4() {
            q["group_size"] = serde_json::json!(group);
            q["has_zero_point"] = serde_json::json!(false);
            q["pre_quant_scale"] = serde_json::json!(pre_quant_scale);
        }
        q
    }
}

impl QuantRequest {
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        if t == "auto" {
            return Ok(QuantRequest::Auto);
        }
        if let Some(s) = QuantScheme::from_name(&t) {
            return Ok(QuantRequest::Scheme(s));
        }
        if GGUF_TYPES.contains(&t.as_str()) {
            return Err(Error::Usage(format!(
                "--quant {t} is a GGUF block type: use `ckpt-opt convert IN OUT.gguf --format gguf --quant {t}`"
            )));
        }
        let names: Vec<&str> = QuantScheme::ALL.iter().map(|s| s.name()).collect();
        Err(Error::Usage(format!(
            "unknown --quant `{text}` (schemes: {}, auto)",
            names.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_auto_and_points_gguf_types_elsewhere() {
        for s in QuantScheme::ALL {
            assert_eq!(
                QuantRequest::parse(s.name()).ok(),
                Some(QuantRequest::Scheme(s))
            );
        }
        assert_eq!(QuantRequest::parse("AUTO").ok(), Some(QuantRequest::Auto));
        let e = QuantRequest::parse("q4_k_m").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--format gguf")));
        assert!(QuantRequest::parse("int3").is_err());
    }
}
