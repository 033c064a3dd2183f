//! ckpt-opt: streaming transforms of sharded, memory-mapped LLM checkpoints.
