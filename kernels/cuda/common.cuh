// Helpers shared by every kernels/cuda/*.cu source; src/cuda/module.rs prepends this text to them
// before NVRTC compiles the whole set once per process.
//
// Exactness: the module is compiled with `--fmad=false --ftz=false --prec-div=true
// --prec-sqrt=true`, so `a * b + c` is never contracted into an FMA, subnormals are kept and `/`
// is IEEE division. On top of that, every operation that decides a code or a scale is written
// with an explicit round-to-nearest intrinsic (`__fmul_rn`, `__fadd_rn`, `__fsub_rn`,
// `__fdiv_rn`), which the compiler never fuses whatever the flags: the GPU then performs exactly
// the same sequence of correctly rounded f32 operations as the CPU twin in kernels/src/cpu/.

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define FULL_MASK 0xffffffffu

// Sets *flag when any lane of the warp holds a NaN or an Inf (one atomic per warp at most).
__device__ __forceinline__ void flag_nonfinite(float x, u32* flag) {
    unsigned bad = __ballot_sync(FULL_MASK, !isfinite(x));
    if (bad != 0 && (threadIdx.x & 31) == 0) atomicOr(flag, 1u);
}

// f32 -> IEEE f16 bits, round to nearest even (PTX cvt.rn), overflow -> Inf. NaN keeps its sign
// and top payload bits and is made quiet, like the `half` crate (F16C vcvtps2ph) on the CPU.
__device__ __forceinline__ u16 f32_to_f16_bits(float x) {
    u32 b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (u16)(((b >> 16) & 0x8000u) | 0x7e00u | ((b & 0x007fffffu) >> 13));
    }
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}

// IEEE f16 bits -> f32 (exact).
__device__ __forceinline__ float f16_bits_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// Value held by the lane that wins a warp-wide "best" reduction; ties go to the lowest lane, so
// the result is the *first* element with that key, as a sequential scan (and numpy's argmax) finds.
// `better(k, i, ok, oi)` is a strict total order on (key, lane).
#define WARP_FIRST_BEST(key_expr, better, x, lane, out)                          \
    do {                                                                         \
        float k_ = (key_expr);                                                   \
        int i_ = (lane);                                                         \
        for (int off_ = 16; off_ > 0; off_ >>= 1) {                              \
            float ok_ = __shfl_xor_sync(FULL_MASK, k_, off_);                    \
            int oi_ = __shfl_xor_sync(FULL_MASK, i_, off_);                      \
            if (better(ok_, oi_, k_, i_)) { k_ = ok_; i_ = oi_; }                \
        }                                                                        \
        (out) = __shfl_sync(FULL_MASK, (x), i_);                                 \
    } while (0)

#define GREATER_FIRST(ka, ia, kb, ib) ((ka) > (kb) || ((ka) == (kb) && (ia) < (ib)))
#define LESS_FIRST(ka, ia, kb, ib) ((ka) < (kb) || ((ka) == (kb) && (ia) < (ib)))

// Warp-wide max of non-negative floats (order-independent, so exact).
__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, off));
    return v;
}
