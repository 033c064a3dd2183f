//! safetensors: reader (single file and sharded), streaming writer. (Being written.)
