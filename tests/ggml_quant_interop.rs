//! Our GGML block kernels against the Python `gguf` package (tests/interop/ggml_quants.py):
//! byte-equal blocks for the types gguf-py quantizes, bit-equal dequantization for all.

mod common;

use common::*;
use formats::gguf::GgmlType;
use kernels::cpu::ggml;

const COLS: usize = 1024;

/// Deterministic rows: Gaussian, heavy-tailed, exact halves (x/d = k + 0.5, the rounding
/// corner), tiny values (fp16-subnormal scales), huge values, all-zero and constant blocks.
fn data() -> Vec<f32> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (a, b) = (uniform(), uniform());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    };
    let mut out = Vec::new();
    for row in 0..48 {
        for c in 0..COLS {
            let g = gauss();
            let v = match row % 8 {
                0 | 1 => g * 0.02,
                2 => g * if c % 37 == 0 { 0.4 } else { 0.02 },
                3 => {
                    // One 127 per 32-block, the rest k + 0.5: Q8_0's d = 1 exactly.
                    if c % 32 == 0 {
                        127.0
                    } else {
                        (g * 40.0).round().clamp(-126.0, 125.0) + 0.5
                    }
                }
                4 => g * 1e-6,
                5 => g * 1000.0,
                6 => {
                    if c < 256 {
                        0.0
                    } else if c < 512 {
                        0.25
                    } else {
                        g.abs() * 0.01
                    }
                }
                _ => g * 0.02 + 0.05,
            };
            out.push(v);
        }
    }
    out
}

#[test]
fn kernels_match_the_gguf_package() {
    let dir = tempfile::tempdir().unwrap();
    let x = data();
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let data_path = dir.path().join("data.f32");
    std::fs::write(&data_path, bytes).unwrap();
    let mut names = Vec::new();
    for ty in ggml::SUPPORTED {
        let mut q = vec![0u8; ggml::quantized_len(ty, x.len()).unwrap()];
        ggml::quantize(ty, &x, &mut q, None).unwrap();
        let mut y = vec![0f32; x.len()];
        ggml::dequantize(ty, &q, &mut y).unwrap();
        std::fs::write(dir.path().join(format!("{}.bin", ty.name())), &q).unwrap();
        let deq: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("{}.f32", ty.name())), deq).unwrap();
        names.push(ty.name());
    }
    let mut args = vec![s(&data_path).to_string(), COLS.to_string()];
    args.push(s(dir.path()).to_string());
    args.extend(names.iter().map(|n| n.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = run_python("ggml_quants.py", &args);
    eprintln!("{report}");
    // Every type reported, and the byte comparison covered all blocks of the gguf-py types.
    assert_eq!(report.lines().count(), ggml::SUPPORTED.len());
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ] {
        let blocks = x.len() / 32;
        let line = report
            .lines()
            .find(|l| l.contains(&format!("\"{}\"", ty.name())))
            .unwrap();
        assert!(
            line.contains(&format!("\"bytes_equal_blocks\": {blocks}")),
            "{line}"
        );
    }
}
