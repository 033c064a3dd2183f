//! CUDA twins against their CPU kernels: the same f32 input on both, then integer codes and
//! block bytes must be identical, and scales identical bit for bit (a ULP bound of 0: both sides
//! perform the same correctly rounded f32 operations, see `kernels/cuda/common.cuh`).
//!
//! Inputs: seeded random weights at several magnitudes plus edge cases (zeros of both signs,
//! subnormals, values near f32::MAX, rows of one sign, exact rounding ties, the block that holds
//! one outlier). Casts also get NaN/Inf and random bit patterns.
//!
//! Without a GPU (or without the `cuda` feature) every test prints `SKIPPED: ...` and passes;
//! with `CKPT_OPT_REQUIRE_CUDA=1` it fails instead.

use formats::gguf::GgmlType;
use kernels::cpu::cast::{f32_to_bf16, f32_to_f16, f32_to_f8e4m3};
use kernels::cpu::fp8_quant::{fp8_scale, quantize_fp8_rows};
use kernels::cpu::ggml;
use kernels::cpu::int4::quantize_int4_group_rows;
use kernels::cpu::int8::quantize_int8_rows;
use kernels::cpu::scale::amax;
use kernels::cuda::{CudaError, Quantizer};

mod common;
use common::{finite_rows, Rng};

/// The device, or `None` after printing why the test is skipped. Panics (fails the test) when
/// `CKPT_OPT_REQUIRE_CUDA=1` and there is no device.
fn quantizer(test: &str) -> Option<Quantizer> {
    match Quantizer::new() {
        Ok(q) => Some(q),
        Err(e) => {
            if std::env::var("CKPT_OPT_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("{test}: CKPT_OPT_REQUIRE_CUDA=1 but {e}");
            }
            eprintln!("SKIPPED {test}: {e} (set CKPT_OPT_REQUIRE_CUDA=1 to fail instead)");
            None
        }
    }
}

/// Everything for the casts: the finite rows, specials and random bit patterns.
fn cast_inputs() -> Vec<f32> {
    let mut v = finite_rows();
    v.extend([
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001),
        f32::from_bits(0xFFC0_1234),
        f32::INFINITY,
        f32::NEG_INFINITY,
        448.0,
        464.0,
        480.0,
        65504.0,
        65520.0,
    ]);
    let mut r = Rng(77);
    v.extend((0..1 << 16).map(|_| f32::from_bits(r.next() as u32)));
    v
}

/// Index of the first differing element, with both values, for a readable failure.
fn first_diff<T: PartialEq + Copy + std::fmt::Debug>(cpu: &[T], gpu: &[T]) -> Option<String> {
    assert_eq!(cpu.len(), gpu.len());
    let n = cpu.iter().zip(gpu).filter(|(a, b)| a != b).count();
    cpu.iter().zip(gpu).position(|(a, b)| a != b).map(|i| {
        format!(
            "{n} of {} differ; first at {i}: cpu {:?} gpu {:?}",
            cpu.len(),
            cpu[i],
            gpu[i]
        )
    })
}

fn assert_same<T: PartialEq + Copy + std::fmt::Debug>(what: &str, cpu: &[T], gpu: &[T]) {
    if let Some(d) = first_diff(cpu, gpu) {
        panic!("{what}: {d}");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs without a GPU: the shared test data is finite and every CPU twin accepts it, so a GPU
/// run can only fail on a real CPU/GPU difference.
#[test]
fn test_data_suits_every_cpu_twin() {
    let x = finite_rows();
    assert!(x.len().is_multiple_of(256), "whole rows of 256");
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        panic!("finite_rows()[{i}] = {}", x[i]);
    }
    for (ty, _, values, block) in GGML_TWINS {
        let mut out = vec![0u8; x.len() / values * block];
        ggml::quantize(ty, &x, &mut out, None).unwrap();
    }
    for cols in [256usize, 300, 4096] {
        let x = &x[..x.len() / cols * cols];
        let mut codes = vec![0i8; x.len()];
        quantize_int8_rows(x, cols, &mut codes, &mut vec![0.0; x.len() / cols]);
    }
    for (cols, group) in [(256usize, 128usize), (256, 32), (512, 64), (1024, 256)] {
        let x = &x[..x.len() / cols * cols];
        let mut codes = vec![0i8; x.len()];
        quantize_int4_group_rows(x, cols, group, &mut codes, &mut vec![0.0; x.len() / group]);
    }
    for x in x.chunks(2048) {
        quantize_fp8_rows(x, fp8_scale(amax(x)), &mut vec![0u8; x.len()]);
    }
}

#[test]
fn casts_match_cpu_bit_for_bit() {
    let Some(q) = quantizer("casts_match_cpu_bit_for_bit") else {
        return;
    };
    let x = cast_inputs();
    let (mut cpu, mut gpu) = (vec![0u16; x.len()], vec![0u16; x.len()]);
    f32_to_f16(&x, &mut cpu);
    q.f32_to_f16(&x, &mut gpu).unwrap();
    assert_same("f32 -> f16", &cpu, &gpu);
    f32_to_bf16(&x, &mut cpu);
    q.f32_to_bf16(&x, &mut gpu).unwrap();
    assert_same("f32 -> bf16", &cpu, &gpu);
    let (mut cpu, mut gpu) = (vec![0u8; x.len()], vec![0u8; x.len()]);
    f32_to_f8e4m3(&x, &mut cpu);
    q.f32_to_f8e4m3(&x, &mut gpu).unwrap();
    assert_same("f32 -> f8e4m3", &cpu, &gpu);
}

/// A GGUF block type on the GPU: the `Quantizer` method.
type GgmlTwin = fn(&Quantizer, &[f32], &mut [u8]) -> Result<(), CudaError>;

/// (type, twin, values per block, bytes per block).
const GGML_TWINS: [(GgmlType, GgmlTwin, usize, usize); 8] = [
    (GgmlType::Q8_0, Quantizer::q8_0, 32, 34),
    (GgmlType::Q4_0, Quantizer::q4_0, 32, 18),
    (GgmlType::Q4_1, Quantizer::q4_1, 32, 20),
    (GgmlType::Q5_0, Quantizer::q5_0, 32, 22),
    (GgmlType::Q5_1, Quantizer::q5_1, 32, 24),
    (GgmlType::Q4K, Quantizer::q4_k, 256, 144),
    (GgmlType::Q5K, Quantizer::q5_k, 256, 176),
    (GgmlType::Q6K, Quantizer::q6_k, 256, 210),
];

#[test]
fn ggml_blocks_match_cpu_byte_for_byte() {
    let Some(q) = quantizer("ggml_blocks_match_cpu_byte_for_byte") else {
        return;
    };
    let x = finite_rows();
    // Every type is checked before failing, so one run reports all that differ.
    let mut failures = Vec::new();
    for (ty, twin, values, block) in GGML_TWINS {
        let mut cpu = vec![0u8; x.len() / values * block];
        ggml::quantize(ty, &x, &mut cpu, None).unwrap();
        let mut gpu = vec![0u8; cpu.len()];
        twin(&q, &x, &mut gpu).unwrap();
        let bad: Vec<usize> = (0..cpu.len() / block)
            .filter(|b| cpu[b * block..(b + 1) * block] != gpu[b * block..(b + 1) * block])
            .collect();
        if let Some(&b) = bad.first() {
            failures.push(format!(
                "{ty:?}: {} of {} blocks differ; first block {b}\n input {:?}\n cpu {:?}\n gpu {:?}",
                bad.len(),
                cpu.len() / block,
                &x[b * values..(b + 1) * values],
                &cpu[b * block..(b + 1) * block],
                &gpu[b * block..(b + 1) * block]
            ));
        } else {
            eprintln!("{ty:?}: {} blocks identical", cpu.len() / block);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ggml_rejects_partial_blocks_and_non_finite() {
    let Some(q) = quantizer("ggml_rejects_partial_blocks_and_non_finite") else {
        return;
    };
    for (ty, twin, values, block) in GGML_TWINS {
        let invalid = |r| matches!(r, Err(CudaError::InvalidInput(_)));
        let mut out = vec![0u8; block];
        let ones = vec![1.0f32; values];
        assert!(
            invalid(twin(&q, &ones[1..], &mut out)),
            "{ty:?}: partial block"
        );
        assert!(
            invalid(twin(&q, &ones, &mut out[1..])),
            "{ty:?}: short output"
        );
        let mut x = vec![0.5f32; 2 * values];
        x[values + 8] = f32::NAN;
        let mut out = vec![9u8; 2 * block];
        assert_eq!(twin(&q, &x, &mut out), Err(CudaError::NonFinite), "{ty:?}");
        assert!(
            out.iter().all(|&b| b == 9),
            "{ty:?}: output untouched on error"
        );
    }
}

#[test]
fn fp8_per_tensor_matches_cpu() {
    let Some(q) = quantizer("fp8_per_tensor_matches_cpu") else {
        return;
    };
    let all = finite_rows();
    // Each 2048-value slice as its own tensor, so every magnitude sets its own scale.
    for (t, x) in all.chunks(2048).enumerate() {
        assert!(x.iter().all(|v| v.is_finite()), "tensor {t} finite");
        let scale = fp8_scale(amax(x));
        let mut cpu = vec![0u8; x.len()];
        quantize_fp8_rows(x, scale, &mut cpu);
        let mut gpu = vec![0u8; x.len()];
        let gpu_scale = q.fp8_e4m3_per_tensor(x, &mut gpu).unwrap();
        assert_eq!(scale.to_bits(), gpu_scale.to_bits(), "tensor {t}: scale");
        assert_eq!(
            q.amax(x).unwrap().to_bits(),
            amax(x).to_bits(),
            "tensor {t}: amax"
        );
        assert_same(&format!("tensor {t}: fp8 codes"), &cpu, &gpu);
        q.fp8_e4m3(x, scale, &mut gpu).unwrap();
        assert_same(&format!("tensor {t}: fp8 codes, given scale"), &cpu, &gpu);
    }
}

#[test]
fn int8_per_channel_matches_cpu() {
    let Some(q) = quantizer("int8_per_channel_matches_cpu") else {
        return;
    };
    let x = finite_rows();
    // 256 columns, plus a width that is not a multiple of the CUDA block (300 = 256 + 44).
    for cols in [256usize, 300, 4096] {
        let x = &x[..x.len() / cols * cols];
        let rows = x.len() / cols;
        let (mut cc, mut cs) = (vec![0i8; x.len()], vec![0f32; rows]);
        let (mut gc, mut gs) = (vec![0i8; x.len()], vec![0f32; rows]);
        quantize_int8_rows(x, cols, &mut cc, &mut cs);
        q.int8_per_channel(x, cols, &mut gc, &mut gs).unwrap();
        assert_same(&format!("int8 scales, cols {cols}"), &bits(&cs), &bits(&gs));
        assert_same(&format!("int8 codes, cols {cols}"), &cc, &gc);
    }
}

#[test]
fn int4_groupwise_matches_cpu() {
    let Some(q) = quantizer("int4_groupwise_matches_cpu") else {
        return;
    };
    let x = finite_rows();
    for (cols, group) in [(256usize, 128usize), (256, 32), (512, 64), (1024, 256)] {
        let x = &x[..x.len() / cols * cols];
        let (mut cc, mut cs) = (vec![0i8; x.len()], vec![0f32; x.len() / group]);
        let (mut gc, mut gs) = (vec![0i8; x.len()], vec![0f32; x.len() / group]);
        quantize_int4_group_rows(x, cols, group, &mut cc, &mut cs);
        q.int4_groupwise(x, cols, group, &mut gc, &mut gs).unwrap();
        assert_same(
            &format!("int4 scales, group {group}"),
            &bits(&cs),
            &bits(&gs),
        );
        assert_same(&format!("int4 codes, group {group}"), &cc, &gc);
    }
}

#[test]
fn non_finite_input_is_an_error_not_output() {
    let Some(q) = quantizer("non_finite_input_is_an_error_not_output") else {
        return;
    };
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = vec![0.25f32; 512];
        x[300] = bad;
        let mut codes = vec![7u8; 512];
        assert_eq!(
            q.fp8_e4m3_per_tensor(&x, &mut codes),
            Err(CudaError::NonFinite)
        );
        assert!(codes.iter().all(|&c| c == 7), "output untouched on error");
        let (mut c, mut s) = (vec![0i8; 512], vec![0f32; 2]);
        assert_eq!(
            q.int8_per_channel(&x, 256, &mut c, &mut s),
            Err(CudaError::NonFinite)
        );
        let mut s = vec![0f32; 4];
        assert_eq!(
            q.int4_groupwise(&x, 256, 128, &mut c, &mut s),
            Err(CudaError::NonFinite)
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let Some(q) = quantizer("bad_shapes_are_errors") else {
        return;
    };
    let x = vec![1.0f32; 96];
    let mut c = vec![0i8; 96];
    let invalid = |r: Result<(), CudaError>| matches!(r, Err(CudaError::InvalidInput(_)));
    assert!(invalid(q.int8_per_channel(&x, 50, &mut c, &mut [0.0; 2])));
    assert!(invalid(q.int4_groupwise(&x, 96, 48, &mut c, &mut [0.0; 2])));
    assert!(invalid(q.int4_groupwise(&x, 96, 64, &mut c, &mut [0.0; 1])));
    assert!(invalid(q.f32_to_f16(&x, &mut [0u16; 95])));
    assert!(invalid(q.fp8_e4m3(&x, 0.0, &mut [0u8; 96])));
}

#[test]
fn empty_input_is_fine() {
    let Some(q) = quantizer("empty_input_is_fine") else {
        return;
    };
    q.f32_to_f16(&[], &mut []).unwrap();
    assert_eq!(q.amax(&[]).unwrap(), 0.0);
    q.int8_per_channel(&[], 16, &mut [], &mut []).unwrap();
}
