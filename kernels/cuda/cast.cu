// Dtype casts, twins of kernels/src/cpu/cast.rs (f32 -> f16, f32 -> bf16) and
// kernels/src/cpu/f8.rs (f32 -> f8 e4m3fn, saturating). Bit-exact, including NaN payloads.

extern "C" __global__ void cast_f32_to_f16(const float* src, u16* dst, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dst[i] = f32_to_f16_bits(src[i]);
}

// Same bit trick as cpu::cast::f32_to_bf16_bits: add 0x7FFF + lsb to round to nearest even; NaN
// -> quiet NaN with sign and top payload bits.
extern "C" __global__ void cast_f32_to_bf16(const float* src, u16* dst, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        u32 b = __float_as_uint(src[i]);
        u32 rounded = (b + (0x7fffu + ((b >> 16) & 1u))) >> 16;
        u32 nan = (b >> 16) | 0x0040u;
        dst[i] = (u16)((b & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
    }
}

// Port of cpu::f8::f32_to_e4m3: RNE, finite overflow and Inf saturate to +-448, NaN -> 0x7F|sign.
__device__ __forceinline__ u8 f32_to_e4m3(float x) {
    u32 bits = __float_as_uint(x);
    u32 sign = (bits >> 24) & 0x80u;
    u32 abs = bits & 0x7fffffffu;
    u32 normal = (abs - (120u << 23) + (0x7ffffu + ((abs >> 20) & 1u))) >> 20;
    // Subnormal range: the FPU's RNE (no FTZ: --ftz=false, __fadd_rn) rounds to a multiple of 2^-9.
    const u32 magic = (127u + 14u) << 23;
    u32 sub = __float_as_uint(__fadd_rn(__uint_as_float(abs), __uint_as_float(magic))) - magic;
    u32 code = abs < (121u << 23) ? sub : normal;
    code = abs >= 0x43e00000u ? 0x7eu : code;
    code = abs > 0x7f800000u ? 0x7fu : code;
    return (u8)(sign | code);
}

extern "C" __global__ void cast_f32_to_f8e4m3(const float* src, u8* dst, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dst[i] = f32_to_e4m3(src[i]);
}
