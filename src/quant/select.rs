//! Which tensors a scheme quantizes. Candidates are the linear weights of the decoder layers
//! (`model.layers.N.{self_attn,mlp}.*_proj.weight`, 2-D); the LM head, embeddings, norms and
//! MoE routers are never quantized (modelopt's `_default_disabled_quantizer_cfg` disables
//! `*lm_head*`, `*router*`, `*mlp.gate.*`, `*output_layer*`; embeddings and norms have no
//! quantizer at all). `--include GLOB` keeps only candidates it matches; `--exclude GLOB`
//! drops candidates it matches (exclude wins). A glob matches the module name
//! (`model.layers.0.mlp.down_proj`) or the weight's full name.

use crate::error::{Error, Result};
use glob::Pattern;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

/// Projections a decoder layer may hold (Llama, Mistral, Qwen2 names).
const LINEAR_SUFFIXES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let compile = |flag: &str, globs: &[String]| -> Result<Vec<Pattern>> {
            globs
                .iter()
                .map(|g| {
                    Pattern::new(g)
                        .map_err(|e| Error::Usage(format!("{flag} `{g}` is not a glob: {e}")))
                })
                .collect()
        };
        Ok(Selection {
            include: compile("--include", include)?,
            exclude: compile("--exclude", exclude)?,
        })
    }

    /// The module name (`…q_proj`) when `name` is a candidate linear weight of `shape`.
    pub fn candidate<'a>(name: &'a str, shape: &[u64]) -> Option<&'a str> {
        let module = name.strip_suffix(".weight")?;
        let rest = module.strip_prefix("model.layers.")?;
        let (layer, suffix) = rest.split_once('.')?;
        (shape.len() == 2 && layer.parse::<u64>().is_ok() && LINEAR_SUFFIXES.contains(&suffix))
            .then_some(module)
    }

    /// Whether the tensor `name` of `shape` is quantized.
    pub fn quantizes(&self, name: &str, shape: &[u64]) -> bool {
        let Some(module) = Self::candidate(name, shape) else {
            return false;
        };
        let hit = |p: &Pattern| p.matches(module) || p.matches(name);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(inc: &[&str], exc: &[&str]) -> Selection {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&v(inc), &v(exc)).expect("valid globs")
    }

    #[test]
    fn defaults_skip_head_embeddings_norms_routers() {
        let s = sel(&[], &[]);
        let m = [4, 4];
        assert!(s.quantizes("model.layers.0.self_attn.q_proj.weight", &m));
        assert!(s.quantizes("model.layers.11.mlp.down_proj.weight", &m));
        assert!(!s.quantizes("model.layers.0.self_attn.q_proj.bias", &[4]));
        assert!(!s.quantizes("lm_head.weight", &m));
        assert!(!s.quantizes("model.embed_tokens.weight", &m));
        assert!(!s.quantizes("model.layers.0.input_layernorm.weight", &[4]));
        assert!(!s.quantizes("model.norm.weight", &[4]));
        assert!(!s.quantizes("model.layers.0.mlp.gate.weight", &m));
        assert!(!s.quantizes("model.layers.0.block_sparse_moe.gate.weight", &m));
    }

    #[test]
    fn include_narrows_exclude_wins() {
        let s = sel(&["*.mlp.*"], &["model.layers.1.*"]);
        let m = [4, 4];
        assert!(s.quantizes("model.layers.0.mlp.up_proj.weight", &m));
        assert!(!s.quantizes("model.layers.0.self_attn.v_proj.weight", &m));
        assert!(!s.quantizes("model.layers.1.mlp.up_proj.weight", &m));
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }
}
