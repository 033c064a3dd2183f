// FP8 E4M3 with one per-tensor scale (modelopt FP8_DEFAULT_CFG, quant_utils.py get_scaling_factor /
// to_quantized_weight): scale = amax / 448, code = e4m3(x / scale) saturating. Twin of the CPU
// per-tensor fp8 quantizer in kernels/src/cpu/. Two passes: amax_abs_f32 reduces |x| (max is
// order-independent, so exact); the host computes the scale with the CPU's f32 arithmetic; then
// quantize_fp8_e4m3_f32 divides (IEEE __fdiv_rn, as `w / wsf`) and encodes.

// Max of |x| over n floats into *amax_bits (non-negative floats order like their bit patterns, so
// an integer atomicMax is a float max). Sets *flag on NaN/Inf.
extern "C" __global__ void amax_abs_f32(const float* x, i64 n, u32* amax_bits, u32* flag) {
    float m = 0.0f;
    bool bad = false;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float v = x[i];
        bad |= !isfinite(v);
        m = fmaxf(m, fabsf(v));
    }
    m = warp_max(m);
    bad = __any_sync(FULL_MASK, bad);
    if ((threadIdx.x & 31) == 0) {
        atomicMax(amax_bits, __float_as_uint(m));
        if (bad) atomicOr(flag, 1u);
    }
}

extern "C" __global__ void quantize_fp8_e4m3_f32(const float* x, u8* codes, i64 n, float scale) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        codes[i] = f32_to_e4m3(__fdiv_rn(x[i], scale));
}
