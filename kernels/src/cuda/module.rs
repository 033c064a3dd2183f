//! The embedded CUDA sources and their NVRTC compilation, done once per process.

use super::CudaError;
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use std::sync::OnceLock;

/// Every `.cu` file, in dependency order (`common.cuh` first: the others use its helpers, and
/// `fp8_quant.cu` uses the E4M3 encoder of `cast.cu`, `kquant.cu` the f16 store of
/// `ggml_quant.cu`). One translation unit keeps NVRTC to a
/// single compile.
const SOURCES: [(&str, &str); 6] = [
    ("common.cuh", include_str!("../../cuda/common.cuh")),
    ("cast.cu", include_str!("../../cuda/cast.cu")),
    ("ggml_quant.cu", include_str!("../../cuda/ggml_quant.cu")),
    ("kquant.cu", include_str!("../../cuda/kquant.cu")),
    ("fp8_quant.cu", include_str!("../../cuda/fp8_quant.cu")),
    ("int_quant.cu", include_str!("../../cuda/int_quant.cu")),
];

/// Names of the `extern "C"` kernels, looked up once after loading.
pub(crate) const KERNELS: [&str; 15] = [
    "cast_f32_to_f16",
    "cast_f32_to_bf16",
    "cast_f32_to_f8e4m3",
    "quantize_q8_0_f32",
    "quantize_q4_0_f32",
    "quantize_q4_1_f32",
    "quantize_q5_0_f32",
    "quantize_q5_1_f32",
    "quantize_q4_k_f32",
    "quantize_q5_k_f32",
    "quantize_q6_k_f32",
    "amax_abs_f32",
    "quantize_fp8_e4m3_f32",
    "quantize_int8_per_channel_f32",
    "quantize_int4_groupwise_f32",
];

/// The concatenated source, with `#line` markers so NVRTC errors name the original file.
pub(crate) fn source() -> String {
    let mut s = String::new();
    for (name, text) in SOURCES {
        s.push_str(&format!("#line 1 \"{name}\"\n"));
        s.push_str(text);
        s.push('\n');
    }
    s
}

/// PTX for `compute_<major><minor>`, compiled on first use and kept for the process.
pub(crate) fn ptx(major: i32, minor: i32) -> Result<Ptx, CudaError> {
    static PTX: OnceLock<Result<Ptx, CudaError>> = OnceLock::new();
    PTX.get_or_init(|| compile(major, minor)).clone()
}

fn compile(major: i32, minor: i32) -> Result<Ptx, CudaError> {
    let opts = CompileOptions {
        // Exactness (see common.cuh): no FMA contraction, no flush-to-zero, IEEE div and sqrt.
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
        name: Some("ckpt_opt_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(source(), opts).map_err(|e| CudaError::Compile(one_line(&e.to_string())))
}

/// NVRTC logs span lines; our errors are one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_defined_in_the_sources() {
        let src = source();
        for name in KERNELS {
            let def = format!("extern \"C\" __global__ void {name}(");
            assert_eq!(src.matches(&def).count(), 1, "{name} defined once");
        }
    }

    /// NVRTC needs no GPU, so wherever libnvrtc is found the sources are compiled for Hopper
    /// and every kernel must be in the PTX. Skips (with a message) without libnvrtc, unless
    /// `CKPT_OPT_REQUIRE_CUDA=1`.
    #[test]
    fn sources_compile_with_nvrtc_when_present() {
        // SAFETY: a dlopen attempt.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            let required = std::env::var("CKPT_OPT_REQUIRE_CUDA").as_deref() == Ok("1");
            assert!(
                !required,
                "CKPT_OPT_REQUIRE_CUDA=1 but libnvrtc.so not found"
            );
            eprintln!("SKIPPED sources_compile_with_nvrtc_when_present: libnvrtc.so not found");
            return;
        }
        let ptx = compile(9, 0).unwrap().to_src();
        for name in KERNELS {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name} in PTX");
        }
        // --fmad=false: no fused multiply-add anywhere in the generated code.
        assert!(!ptx.contains("fma."), "PTX holds an FMA");
    }
}
