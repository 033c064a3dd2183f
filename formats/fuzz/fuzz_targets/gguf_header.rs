//! Fuzzes the pure GGUF header parser: it must return Ok or Err on any bytes, never panic,
//! and never allocate for a count the input cannot back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = formats::gguf::header::parse(data) {
        // Whatever parses must describe ranges inside the input.
        for t in &h.tensors {
            assert!(t.start.checked_add(t.size).is_some_and(|end| end <= data.len() as u64));
        }
    }
});
