//! Which tensors a scheme quantizes. Candidates are the linear weights of the decoder layers
//! (`model.layers.N.{self_attn,mlp}.*_proj.weight`, 2-D); the LM head, embeddings, norms and
//! MoE routers are never quantized (modelopt's `_default_disabled_quantizer_cfg` disables
//! `*lm_head*`, `*router*`, `*mlp.gate.*`, `*output_layer*`; embeddings and norms have no
//! quantizer at all). `--include GLOB` keeps only candidates it matches; `--exclude GLOB`
//! drops candidates it matches (exclude wins). A glob matches the module name
//! (`model.layers.0.mlp.down_proj`) or the weight's full name.
//!
//! `--layer-quant GLOB=SCHEME` gives the linears a glob matches another scheme than `--quant`
//! (`none`: left unquantized); the last matching rule wins, as later entries of modelopt's
//! `quant_cfg` override earlier ones. Schemes that differ per linear make a MIXED_PRECISION
//! checkpoint.

use super::scheme::QuantScheme;
use crate::error::{Error, Result};
use crate::model::LAYER_LINEARS;
use glob::Pattern;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    /// `--layer-quant` rules in order: a glob and its scheme (`None`: unquantized).
    rules: Vec<(Pattern, Option<QuantScheme>)>,
}

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
            rules: Vec::new(),
        })
    }

    /// Adds `--layer-quant GLOB=SCHEME` rules (SCHEME: a scheme name or `none`).
    pub fn with_layer_rules(mut self, rules: &[String]) -> Result<Self> {
        for rule in rules {
            let bad = |why: String| Error::Usage(format!("--layer-quant `{rule}`: {why}"));
            let (glob, scheme) = rule
                .rsplit_once('=')
                .ok_or_else(|| bad("expected GLOB=SCHEME".into()))?;
            let pattern = Pattern::new(glob.trim()).map_err(|e| bad(format!("not a glob: {e}")))?;
            let scheme = match scheme.trim().to_ascii_lowercase().as_str() {
                "none" => None,
                name => Some(QuantScheme::from_name(name).ok_or_else(|| {
                    let names: Vec<&str> = QuantScheme::ALL.iter().map(|s| s.name()).collect();
                    bad(format!(
                        "unknown scheme `{name}` (schemes: {}, none)",
                        names.join(", ")
                    ))
                })?),
            };
            self.rules.push((pattern, scheme));
        }
        Ok(self)
    }

    /// The module name (`…q_proj`) when `name` is a candidate linear weight of `shape`.
    pub fn candidate<'a>(name: &'a str, shape: &[u64]) -> Option<&'a str> {
        let module = name.strip_suffix(".weight")?;
        let rest = module.strip_prefix("model.layers.")?;
        let (layer, suffix) = rest.split_once('.')?;
        (shape.len() == 2 && layer.parse::<u64>().is_ok() && LAYER_LINEARS.contains(&suffix))
            .then_some(module)
    }

    /// The scheme the tensor `name` of `shape` is quantized with (`default` unless a
    /// `--layer-quant` rule says otherwise); `None` when it stays as it is.
    pub fn scheme_of(
        &self,
        name: &str,
        shape: &[u64],
        default: QuantScheme,
    ) -> Option<QuantScheme> {
        let module = Self::candidate(name, shape)?;
        let hit = |p: &Pattern| p.matches(module) || p.matches(name);
        let selected = (self.include.is_empty() || self.include.iter().any(hit))
            && !self.exclude.iter().any(hit);
        if !selected {
            return None;
        }
        match self.rules.iter().rev().find(|(p, _)| hit(p)) {
            Some((_, scheme)) => *scheme,
            None => Some(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantizes(s: &Selection, name: &str, shape: &[u64]) -> bool {
        s.scheme_of(name, shape, QuantScheme::Fp8).is_some()
    }

    fn sel(inc: &[&str], exc: &[&str]) -> Selection {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&v(inc), &v(exc)).expect("valid globs")
    }

    #[test]
    fn defaults_skip_head_embeddings_norms_routers() {
        let s = sel(&[], &[]);
        let m = [4, 4];
        assert!(quantizes(&s, "model.layers.0.self_attn.q_proj.weight", &m));
        assert!(quantizes(&s, "model.layers.11.mlp.down_proj.weight", &m));
        assert!(!quantizes(&s, "model.layers.0.self_attn.q_proj.bias", &[4]));
        assert!(!quantizes(&s, "lm_head.weight", &m));
        assert!(!quantizes(&s, "model.embed_tokens.weight", &m));
        assert!(!quantizes(
            &s,
            "model.layers.0.input_layernorm.weight",
            &[4]
        ));
        assert!(!quantizes(&s, "model.norm.weight", &[4]));
        assert!(!quantizes(&s, "model.layers.0.mlp.gate.weight", &m));
        assert!(!quantizes(
            &s,
            "model.layers.0.block_sparse_moe.gate.weight",
            &m
        ));
    }

    #[test]
    fn include_narrows_exclude_wins() {
        let s = sel(&["*.mlp.*"], &["model.layers.1.*"]);
        let m = [4, 4];
        assert!(quantizes(&s, "model.layers.0.mlp.up_proj.weight", &m));
        assert!(!quantizes(&s, "model.layers.0.self_attn.v_proj.weight", &m));
        assert!(!quantizes(&s, "model.layers.1.mlp.up_proj.weight", &m));
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }

    #[test]
    fn layer_rules_pick_schemes_last_match_wins() {
        let rules = |r: &[&str]| {
            let r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
            sel(&[], &["*.layers.3.*"]).with_layer_rules(&r)
        };
        let s = rules(&[
            "*.mlp.*=int4_awq",
            "model.layers.0.*=FP8",
            "*.down_proj = none",
        ])
        .expect("valid rules");
        let m = [4, 4];
        let of = |name: &str| s.scheme_of(name, &m, QuantScheme::Int8Wo);
        assert_eq!(
            of("model.layers.1.self_attn.q_proj.weight"),
            Some(QuantScheme::Int8Wo)
        );
        assert_eq!(
            of("model.layers.1.mlp.up_proj.weight"),
            Some(QuantScheme::Int4Awq)
        );
        assert_eq!(
            of("model.layers.0.mlp.up_proj.weight"),
            Some(QuantScheme::Fp8)
        );
        assert_eq!(of("model.layers.0.mlp.down_proj.weight"), None);
        // --exclude wins over every rule; non-candidates are never quantized.
        assert_eq!(of("model.layers.3.mlp.up_proj.weight"), None);
        assert_eq!(of("lm_head.weight"), None);
        for bad in ["*.mlp.*", "*.mlp.*=int3", "[=fp8"] {
            let e = rules(&[bad])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--layer-quant"), "{bad}: {e}");
        }
    }
}
