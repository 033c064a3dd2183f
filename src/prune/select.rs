//! What a pruned model keeps: for every prunable dimension, the original indices that stay, in
//! ascending order (so the kept layers, channels, heads and neurons keep their relative order).
//!
//! Ranking follows Minitron as modelopt implements it (`modelopt/torch/prune/plugins/
//! mcore_minitron.py`, `modelopt/torch/nas/plugins/megatron.py`): each dimension keeps its
//! highest-importance entries; FFN neurons, heads and query groups are ranked per layer but
//! every layer keeps the same count (one `intermediate_size`, one head count in the config);
//! attention is pruned as `num_query_groups × num_heads_per_group`, so every kept group keeps
//! the same number of heads (modelopt converts `num_attention_heads` to `num_heads_per_group`
//! and ranks heads within their group).

use crate::calibrate::Dims;

/// The kept original indices of every prunable dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The unpruned model's dimensions.
    pub source: Dims,
    /// Kept decoder layers (original indices).
    pub layers: Vec<usize>,
    /// Kept hidden (embedding) channels.
    pub hidden: Vec<usize>,
    /// Per kept layer (same order as `layers`): kept FFN neurons.
    pub ffn: Vec<Vec<usize>>,
    /// Per kept layer: kept query heads (original head indices).
    pub heads: Vec<Vec<usize>>,
    /// Per kept layer: kept query groups (= KV heads).
    pub query_groups: Vec<Vec<usize>>,
}

impl Kept {
    /// Everything kept.
    pub fn all(source: Dims) -> Self {
        let n = source.layers;
        Kept {
            source,
            layers: (0..n).collect(),
            hidden: (0..source.hidden).collect(),
            ffn: vec![(0..source.ffn).collect(); n],
            heads: vec![(0..source.heads).collect(); n],
            query_groups: vec![(0..source.kv_heads).collect(); n],
        }
    }

    /// The pruned model's dimensions (`head_dim` is never pruned).
    pub fn target(&self) -> Dims {
        let first = |v: &[Vec<usize>], default: usize| v.first().map_or(default, Vec::len);
        Dims {
            layers: self.layers.len(),
            hidden: self.hidden.len(),
            ffn: first(&self.ffn, self.source.ffn),
            heads: first(&self.heads, self.source.heads),
            kv_heads: first(&self.query_groups, self.source.kv_heads),
            head_dim: self.source.head_dim,
        }
    }

    /// Position of original layer `layer` among the kept ones.
    pub fn layer_position(&self, layer: usize) -> Option<usize> {
        self.layers.binary_search(&layer).ok()
    }

    /// Rows of `q_proj` kept at kept-layer position `at` (whole heads of `head_dim` rows; in
    /// GGUF the llama.cpp rotary permutation only reorders rows inside a head, so the same
    /// head blocks are selected in either layout).
    pub fn q_rows(&self, at: usize) -> Vec<usize> {
        head_rows(&self.heads[at], self.source.head_dim)
    }

    /// Rows of `k_proj` / `v_proj` kept at kept-layer position `at`.
    pub fn kv_rows(&self, at: usize) -> Vec<usize> {
        head_rows(&self.query_groups[at], self.source.head_dim)
    }

    /// Checks every rule a usable selection follows; the message names the offending entry
    /// (`layers.3.heads`, ...) as the masks file names it.
    pub fn check(&self) -> Result<(), (String, String)> {
        let s = self.source;
        let fail = |name: &str, why: String| Err((name.to_string(), why));
        if self.layers.is_empty() {
            return fail("layers", "every layer would be dropped".into());
        }
        check_indices(&self.layers, s.layers).or_else(|why| fail("layers", why))?;
        check_indices(&self.hidden, s.hidden).or_else(|why| fail("hidden", why))?;
        let n = self.layers.len();
        if self.ffn.len() != n || self.heads.len() != n || self.query_groups.len() != n {
            return fail(
                "layers",
                "per-layer selections do not match the kept layers".into(),
            );
        }
        let target = self.target();
        let per_group = s.heads / s.kv_heads.max(1);
        for (at, &layer) in self.layers.iter().enumerate() {
            let name = |what: &str| format!("layers.{layer}.{what}");
            check_indices(&self.ffn[at], s.ffn).or_else(|why| fail(&name("ffn"), why))?;
            check_indices(&self.heads[at], s.heads).or_else(|why| fail(&name("heads"), why))?;
            let groups = &self.query_groups[at];
            check_indices(groups, s.kv_heads).or_else(|why| fail(&name("query_groups"), why))?;
            for (what, len, want) in [
                ("ffn", self.ffn[at].len(), target.ffn),
                ("heads", self.heads[at].len(), target.heads),
                ("query_groups", groups.len(), target.kv_heads),
            ] {
                if len != want {
                    return fail(
                        &name(what),
                        format!("keeps {len}, but the first kept layer keeps {want} (one size for every layer)"),
                    );
                }
            }
            if !target.heads.is_multiple_of(target.kv_heads) {
                return fail(
                    &name("heads"),
                    format!(
                        "{} heads do not divide into {} query groups",
                        target.heads, target.kv_heads
                    ),
                );
            }
            let want = target.heads / target.kv_heads;
            for &g in groups {
                let in_group = self.heads[at]
                    .iter()
                    .filter(|&&h| h / per_group == g)
                    .count();
                if in_group != want {
                    return fail(
                        &name("heads"),
                        format!("query group {g} keeps {in_group} heads, expected {want} in every kept group (modelopt keeps heads per group uniform)"),
                    );
                }
            }
            if let Some(h) = self.heads[at]
                .iter()
                .find(|&&h| groups.binary_search(&(h / per_group)).is_err())
            {
                return fail(
                    &name("heads"),
                    format!(
                        "head {h} belongs to query group {}, which is not kept",
                        h / per_group
                    ),
                );
            }
        }
        Ok(())
    }
}

fn head_rows(heads: &[usize], head_dim: usize) -> Vec<usize> {
    heads
        .iter()
        .flat_map(|&h| h * head_dim..(h + 1) * head_dim)
        .collect()
}

/// Strictly increasing, below `size`, not empty.
fn check_indices(v: &[usize], size: usize) -> Result<(), String> {
    if v.is_empty() {
        return Err("keeps nothing".into());
    }
    if let Some(w) = v.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "indices must be strictly increasing ({} then {})",
            w[0], w[1]
        ));
    }
    match v.last() {
        Some(&last) if last >= size => Err(format!("index {last} is out of range (size {size})")),
        _ => Ok(()),
    }
}

/// The `k` highest-scoring indices, ties to the lower index, returned ascending. NaN ranks
/// lowest.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let key = |i: usize| {
        let v = scores[i];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// Kept heads of one layer: in each kept group, its `per_group_kept` most important heads
/// (heads `g·per_group .. (g+1)·per_group` form group `g`, as transformers' `repeat_kv` and
/// Megatron's query groups lay them out).
pub fn heads_in_groups(
    head_scores: &[f32],
    groups: &[usize],
    per_group: usize,
    per_group_kept: usize,
) -> Vec<usize> {
    let mut kept = Vec::with_capacity(groups.len() * per_group_kept);
    for &g in groups {
        let first = g * per_group;
        let scores = &head_scores[first..first + per_group];
        kept.extend(top_k(scores, per_group_kept).into_iter().map(|h| first + h));
    }
    kept
}

/// Parses `3,5-7` (0-based, inclusive ranges) into sorted unique indices.
pub fn parse_layer_list(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{part}` is not a layer index or range like 5-7"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` is empty"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(format!("`{text}` names no layers"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Dims {
        Dims {
            layers: 4,
            hidden: 8,
            ffn: 6,
            heads: 4,
            kv_heads: 2,
            head_dim: 2,
        }
    }

    #[test]
    fn top_k_keeps_the_highest_in_original_order() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 2), vec![1, 3]);
        assert_eq!(top_k(&[0.3, f32::NAN, 0.2], 2), vec![0, 2]);
        assert_eq!(top_k(&[1.0, 1.0, 1.0], 1), vec![0]);
    }

    #[test]
    fn heads_are_ranked_within_their_group() {
        // group 0 = heads 0,1; group 1 = heads 2,3
        let scores = [0.1, 0.2, 0.9, 0.8];
        assert_eq!(heads_in_groups(&scores, &[0, 1], 2, 1), vec![1, 2]);
        assert_eq!(heads_in_groups(&scores, &[1], 2, 2), vec![2, 3]);
    }

    #[test]
    fn layer_lists() {
        assert_eq!(parse_layer_list("3,5-7").unwrap(), vec![3, 5, 6, 7]);
        assert_eq!(parse_layer_list("1, 1,0").unwrap(), vec![0, 1]);
        assert!(parse_layer_list("7-5").is_err());
        assert!(parse_layer_list("a").is_err());
        assert!(parse_layer_list(",").is_err());
    }

    #[test]
    fn check_accepts_all_and_names_bad_entries() {
        let all = Kept::all(dims());
        assert_eq!(all.check(), Ok(()));
        assert_eq!(all.target(), dims());
        assert_eq!(all.q_rows(0), (0..8).collect::<Vec<_>>());

        let mut k = all.clone();
        k.layers.clear();
        k.ffn.clear();
        k.heads.clear();
        k.query_groups.clear();
        assert_eq!(k.check().unwrap_err().0, "layers");

        let mut k = all.clone();
        k.ffn[1] = vec![0, 1];
        assert_eq!(k.check().unwrap_err().0, "layers.1.ffn");

        let mut k = all.clone();
        k.hidden = vec![3, 2];
        assert_eq!(k.check().unwrap_err().0, "hidden");

        // uneven heads per group
        let mut k = all.clone();
        for h in k.heads.iter_mut() {
            *h = vec![0, 1];
        }
        let err = k.check().unwrap_err();
        assert_eq!(err.0, "layers.0.heads");
        assert!(err.1.contains("query group 0 keeps 2 heads"), "{}", err.1);

        // one group dropped with its heads: fine, and rows follow the heads
        let mut k = all.clone();
        for at in 0..4 {
            k.heads[at] = vec![2, 3];
            k.query_groups[at] = vec![1];
        }
        assert_eq!(k.check(), Ok(()));
        assert_eq!(k.q_rows(0), vec![4, 5, 6, 7]);
        assert_eq!(k.kv_rows(0), vec![2, 3]);
        assert_eq!(k.target().heads, 2);
        assert_eq!(k.target().kv_heads, 1);
    }
}
