//! Pipeline-parallel planning, for training or distillation: each stage's layers and the
//! shapes of the activations it receives and sends.
//!
//! Megatron-core sends hidden states between stages as `(seq_length, micro_batch_size,
//! hidden_size)` (`megatron/core/pipeline_parallel/schedules.py` `get_tensor_shapes`, without
//! sequence or context parallelism). In pipeline-parallel distillation every stage also runs
//! its slice of the teacher, and the two outputs travel as one tensor concatenated on the last
//! dimension, which the receiver splits at the student's hidden size (modelopt
//! `torch/distill/plugins/megatron.py` `get_tensor_shapes_adjust_fn_for_distillation` and
//! `adjust_distillation_model_for_mcore`, as used by NeMo's distillation). The last stage
//! sends nothing: it computes the logits and the loss.

use super::layout::stage_layers;
use crate::model::ModelConfig;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PipelinePlan {
    pub pp: u64,
    pub seq_len: u64,
    pub micro_batch: u64,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub stage: u64,
    /// Student decoder layers `[first, end)`.
    pub student_layers: [u64; 2],
    /// Teacher decoder layers `[first, end)` when distilling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_layers: Option<[u64; 2]>,
    /// Holds the token embedding (first stage).
    pub embedding: bool,
    /// Holds the final norm and LM head (last stage).
    pub lm_head: bool,
    pub recv: Vec<Transfer>,
    pub send: Vec<Transfer>,
}

/// One tensor crossing a stage boundary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transfer {
    /// `student_hidden`, `teacher_hidden`, or `student+teacher_hidden` for the wire tensor.
    pub tensor: String,
    /// `[seq_len, micro_batch, width]`.
    pub shape: [u64; 3],
}

/// Plans `pp` stages for `student` (and `teacher`, run alongside in distillation).
/// Errors when a model's layers do not divide evenly, or sizes are zero.
pub fn plan_pipeline(
    student: &ModelConfig,
    teacher: Option<&ModelConfig>,
    pp: u64,
    seq_len: u64,
    micro_batch: u64,
) -> Result<PipelinePlan, String> {
    if pp == 0 || seq_len == 0 || micro_batch == 0 {
        return Err("pp, sequence length and micro-batch size must be at least 1".into());
    }
    for (who, cfg) in std::iter::once(("student", student)).chain(teacher.map(|t| ("teacher", t))) {
        if !cfg.num_hidden_layers.is_multiple_of(pp) {
            return Err(format!(
                "{who} num_hidden_layers {} is not divisible by pp {pp}",
                cfg.num_hidden_layers
            ));
        }
    }
    let range = |cfg: &ModelConfig, s: u64| {
        let (first, n) = stage_layers(cfg.num_hidden_layers, pp, s);
        [first, first + n]
    };
    let hidden = |tensor: &str, width: u64| Transfer {
        tensor: tensor.to_string(),
        shape: [seq_len, micro_batch, width],
    };
    let boundary = || -> Vec<Transfer> {
        let hs = student.hidden_size;
        match teacher {
            None => vec![hidden("student_hidden", hs)],
            Some(t) => vec![
                hidden("student+teacher_hidden", hs + t.hidden_size),
                hidden("student_hidden", hs),
                hidden("teacher_hidden", t.hidden_size),
            ],
        }
    };
    let stages = (0..pp)
        .map(|s| Stage {
            stage: s,
            student_layers: range(student, s),
            teacher_layers: teacher.map(|t| range(t, s)),
            embedding: s == 0,
            lm_head: s == pp - 1,
            recv: if s == 0 { Vec::new() } else { boundary() },
            send: if s == pp - 1 { Vec::new() } else { boundary() },
        })
        .collect();
    Ok(PipelinePlan {
        pp,
        seq_len,
        micro_batch,
        stages,
    })
}

/// The plan as text, one block per stage.
pub fn render(plan: &PipelinePlan) -> String {
    let mut text = format!(
        "pipeline: pp {}, seq_len {}, micro_batch {}\n",
        plan.pp, plan.seq_len, plan.micro_batch
    );
    let list = |ts: &[Transfer]| {
        if ts.is_empty() {
            return "-".to_string();
        }
        ts.iter()
            .map(|t| format!("{} {:?}", t.tensor, t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for s in &plan.stages {
        let [a, b] = s.student_layers;
        text.push_str(&format!("stage {}: student layers {a}..{b}", s.stage));
        if let Some([a, b]) = s.teacher_layers {
            text.push_str(&format!(", teacher layers {a}..{b}"));
        }
        if s.embedding {
            text.push_str(", embedding");
        }
        if s.lm_head {
            text.push_str(", final norm + lm_head");
        }
        text.push_str(&format!(
            "\n  recv: {}\n  send: {}\n",
            list(&s.recv),
            list(&s.send)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(layers: u64, hidden: u64) -> ModelConfig {
        let json = format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":{hidden},"num_attention_heads":8,"num_hidden_layers":{layers}}}"#
        );
        ModelConfig::from_json(Path::new("c.json"), &json).unwrap()
    }

    #[test]
    fn distillation_stages_carry_both_hidden_states() {
        let (s, t) = (cfg(4, 256), cfg(8, 512));
        let plan = plan_pipeline(&s, Some(&t), 2, 128, 4).unwrap();
        assert_eq!(plan.stages[0].student_layers, [0, 2]);
        assert_eq!(plan.stages[1].teacher_layers, Some([4, 8]));
        assert!(plan.stages[0].recv.is_empty() && plan.stages[1].send.is_empty());
        assert_eq!(plan.stages[0].send[0].shape, [128, 4, 768]);
        assert_eq!(plan.stages[1].recv[2].shape, [128, 4, 512]);
        assert!(plan_pipeline(&s, Some(&cfg(6, 512)), 4, 128, 1)
            .unwrap_err()
            .contains("teacher num_hidden_layers 6"));
    }

    #[test]
    fn single_model_sends_its_hidden_state() {
        let plan = plan_pipeline(&cfg(4, 256), None, 4, 64, 2).unwrap();
        assert_eq!(plan.stages.len(), 4);
        assert_eq!(
            plan.stages[2].recv,
            vec![Transfer {
                tensor: "student_hidden".into(),
                shape: [64, 2, 256]
            }]
        );
        assert!(render(&plan).contains("stage 3: student layers 3..4, final norm + lm_head"));
    }
}
