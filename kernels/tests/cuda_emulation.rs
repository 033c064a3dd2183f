//! The k-quant CUDA kernels (`kernels/cuda/kquant.cu`) compiled as C++ and run on the host, one
//! "thread" per super-block, against the CPU kernels: catches a wrong port of llama.cpp's
//! searches on machines without a GPU. The kernels' per-thread code is sequential f32 arithmetic,
//! which the host performs identically (IEEE, no FMA with `-ffp-contract=off`); the GPU's
//! canonical NaN is modelled in `kernels/cuda/emu/host_shim.h` (it is what the H100 run caught).
//! The 32-value types use warp intrinsics and are checked on a GPU only (`cuda_twins.rs`).
//!
//! Skips with a message when no C++ compiler (`$CXX`, `c++`, `g++`, `clang++`) is found.

use formats::gguf::GgmlType;
use kernels::cpu::ggml;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{finite_rows, Rng};

fn compiler() -> Option<String> {
    let candidates = std::env::var("CXX")
        .into_iter()
        .chain(["c++", "g++", "clang++"].map(String::from));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Builds the emulator into `dir`.
fn build(cxx: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda/emu/kquant_main.cpp");
    let exe = dir.join("kquant_emu");
    let out = Command::new(cxx)
        .args(["-O2", "-std=c++17", "-ffp-contract=off", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run the C++ compiler");
    assert!(
        out.status.success(),
        "{cxx} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn kquant_kernels_match_cpu_when_emulated() {
    let Some(cxx) = compiler() else {
        eprintln!("SKIPPED kquant_kernels_match_cpu_when_emulated: no C++ compiler found");
        return;
    };
    let dir = std::env::temp_dir().join(format!("ckpt-opt-kquant-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build(&cxx, &dir);

    let mut x = finite_rows();
    let mut r = Rng(99);
    for scale in [0.01f32, 0.3, 7.0] {
        x.extend((0..256 * 64).map(|_| r.weight(scale)));
    }
    let input = dir.join("in.f32");
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();

    let mut failures = Vec::new();
    for (ty, arg, block) in [
        (GgmlType::Q4K, "4", 144),
        (GgmlType::Q5K, "5", 176),
        (GgmlType::Q6K, "6", 210),
    ] {
        let mut cpu = vec![0u8; x.len() / 256 * block];
        ggml::quantize(ty, &x, &mut cpu, None).unwrap();
        let out = dir.join(format!("out{arg}.bin"));
        let status = Command::new(&exe)
            .arg(&input)
            .arg(arg)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "{ty:?}: emulator exited with {status}");
        let emu = std::fs::read(&out).unwrap();
        let bad: Vec<usize> = (0..cpu.len() / block)
            .filter(|b| cpu[b * block..(b + 1) * block] != emu[b * block..(b + 1) * block])
            .collect();
        if let Some(&b) = bad.first() {
            failures.push(format!(
                "{ty:?}: {} of {} super-blocks differ, first {b}",
                bad.len(),
                cpu.len() / block
            ));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
