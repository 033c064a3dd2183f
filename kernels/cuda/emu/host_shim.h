// Host (C++) stand-ins for the CUDA built-ins kquant.cu uses, so its sequential per-thread code
// can be compiled with a C++ compiler and checked against the CPU kernels on machines without a
// GPU (kernels/tests/cuda_emulation.rs). Replaces common.cuh and ggml_quant.cu's store_f16.
//
// GPU behaviour that differs from the host and matters is modelled: an arithmetic NaN from the
// adder is the GPU's canonical 0x7FFFFFFF, not x86's 0xFFC00000. Everything else (IEEE f32
// +, -, *, /, sqrt with subnormals, no FMA: compile with -ffp-contract=off) is the same.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>

using std::isfinite;
using std::isnan;
using std::max;
using std::min;
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define __device__
#define __forceinline__ inline
#define __global__

struct Dim3 { unsigned x; };
static Dim3 blockIdx{0}, blockDim{1}, threadIdx{0};

static inline u32 __float_as_uint(float f) { u32 u; std::memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(u32 u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r != r ? __uint_as_float(0x7fffffffu) : r;
}
static inline void atomicOr(u32* p, u32 v) { *p |= v; }

// IEEE f32 -> f16, round to nearest even (the `half` crate's software path); NaN as common.cuh.
static inline u16 f32_to_f16_bits(float value) {
    u32 x = __float_as_uint(value);
    u32 sign = x & 0x80000000u, exp = x & 0x7f800000u, man = x & 0x007fffffu;
    if (exp == 0x7f800000u) return (u16)((sign >> 16) | 0x7c00u | (man ? 0x0200u : 0u) | (man >> 13));
    u32 half_sign = sign >> 16;
    int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1f) return (u16)(half_sign | 0x7c00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (u16)half_sign;
        man |= 0x00800000u;
        u32 half_man = man >> (14 - half_exp);
        u32 round_bit = 1u << (13 - half_exp);
        if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) half_man += 1;
        return (u16)(half_sign | half_man);
    }
    u32 h = half_sign | ((u32)half_exp << 10) | (man >> 13);
    u32 round_bit = 0x1000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) h += 1;
    return (u16)h;
}

static inline float f16_bits_to_f32(u16 h) {
    u32 sign = (u32)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        float v = std::ldexp((float)man, -24);
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline void store_f16(u8* p, float v) {
    u16 h = f32_to_f16_bits(v);
    p[0] = (u8)(h & 0xff);
    p[1] = (u8)(h >> 8);
}
