//! The safetensors header parser must return Ok or Err, never panic, on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = formats::safetensors::header::parse(data);
});
