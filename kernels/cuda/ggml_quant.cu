// GGML 32-element block quantizers, twins of the CPU ports in kernels/src/cpu/ggml/, which follow
// gguf-py's reference (llama.cpp gguf-py/gguf/quants.py, Q8_0/Q4_0/Q4_1/Q5_0/Q5_1.quantize_blocks)
// operation for operation. Block layouts: llama.cpp ggml/src/ggml-common.h (block_q8_0 ...).
//
// One warp per block, lane j holds element j. Scales come from warp reductions whose result does
// not depend on the reduction order (max/min/argmax with first-index ties), and every element
// then goes through the same correctly rounded f32 operations as gguf-py's numpy code:
//   id = d == 0 ? 0 : 1 / d;  q = trunc(x * id + 8.5)  (two roundings, never an FMA)
// so codes and f16 scales are bit-identical to the CPU twin.
//
// Arguments: x = nb * 32 floats, out = nb * block bytes, flag set when x holds NaN/Inf (the
// block bytes are then meaningless and the caller reports an error).

__device__ __forceinline__ void store_f16(u8* p, float v) {
    u16 h = f32_to_f16_bits(v);
    p[0] = (u8)(h & 0xff);
    p[1] = (u8)(h >> 8);
}

__device__ __forceinline__ float inverse_or_zero(float d) {
    return d == 0.0f ? 0.0f : __fdiv_rn(1.0f, d);
}

// Block index of this warp, or -1 past the end (warp-uniform, so full-mask shuffles are safe).
__device__ __forceinline__ i64 warp_block(i64 nb) {
    i64 b = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    return b < nb ? b : -1;
}

// block_q8_0 { f16 d; i8 qs[32]; } = 34 bytes. d = amax / 127, q = roundf(x * id)
// (gguf-py's np_roundf is round-half-away-from-zero, which is roundf).
extern "C" __global__ void quantize_q8_0_f32(const float* x, u8* out, i64 nb, u32* flag) {
    i64 b = warp_block(nb);
    if (b < 0) return;
    int lane = threadIdx.x & 31;
    float v = x[b * 32 + lane];
    flag_nonfinite(v, flag);
    float amax = warp_max(fabsf(v));
    float d = __fdiv_rn(amax, 127.0f);
    float id = inverse_or_zero(d);
    // A tiny subnormal d makes id infinite: zero codes, as llama.cpp writes on x86 and the CPU
    // twin does (see `quantize_q8_0` there).
    if (isinf(id)) id = 0.0f;
    int q = (int)roundf(__fmul_rn(v, id));
    u8* blk = out + b * 34;
    if (lane == 0) store_f16(blk, d);
    blk[2 + lane] = (u8)(i8)min(127, max(-128, q));
}

// Signed element of largest magnitude, the first one on ties (numpy argmax of abs).
__device__ __forceinline__ float signed_absmax(float v, int lane) {
    float m;
    WARP_FIRST_BEST(fabsf(v), GREATER_FIRST, v, lane, m);
    return m;
}

// Code of a symmetric type: trunc(x * id + bias) clipped to [0, qmax]. CUDA's float -> int
// conversion truncates and saturates (+-Inf -> INT_MAX/INT_MIN, NaN -> 0), so with the clamp this
// is Rust's saturating `(x * id + 8.5) as u8` followed by `.min(15)`, also for the infinite id
// of a subnormal d.
__device__ __forceinline__ int symmetric_code(float v, float id, float bias, int qmax) {
    float t = truncf(__fadd_rn(__fmul_rn(v, id), bias));
    return min(qmax, max(0, (int)t));
}

// Code of an asymmetric type: trunc((x - min) * id + 0.5) clipped to [0, qmax].
__device__ __forceinline__ int asymmetric_code(float v, float mn, float id, int qmax) {
    float t = truncf(__fadd_rn(__fmul_rn(__fsub_rn(v, mn), id), 0.5f));
    return min(qmax, max(0, (int)t));
}

// Nibbles: low nibble of qs[j] = element j, high nibble = element j + 16 (quants.py packing).
__device__ __forceinline__ void store_nibbles(u8* qs, int q, int lane) {
    int hi = __shfl_down_sync(FULL_MASK, q, 16);
    if (lane < 16) qs[lane] = (u8)((q & 0x0f) | ((hi << 4) & 0xf0));
}

// qh bit j = bit 4 of element j's code, little-endian u32 (np.packbits(..., bitorder="little")).
__device__ __forceinline__ void store_high_bits(u8* qh, int q, int lane) {
    u32 bits = __ballot_sync(FULL_MASK, (q >> 4) & 1);
    if (lane == 0) {
        qh[0] = (u8)bits;
        qh[1] = (u8)(bits >> 8);
        qh[2] = (u8)(bits >> 16);
        qh[3] = (u8)(bits >> 24);
    }
}

// block_q4_0 { f16 d; u8 qs[16]; } = 18 bytes. d = max / -8, q = trunc(x * id + 8.5) in [0, 15].
extern "C" __global__ void quantize_q4_0_f32(const float* x, u8* out, i64 nb, u32* flag) {
    i64 b = warp_block(nb);
    if (b < 0) return;
    int lane = threadIdx.x & 31;
    float v = x[b * 32 + lane];
    flag_nonfinite(v, flag);
    float d = __fdiv_rn(signed_absmax(v, lane), -8.0f);
    int q = symmetric_code(v, inverse_or_zero(d), 8.5f, 15);
    u8* blk = out + b * 18;
    if (lane == 0) store_f16(blk, d);
    store_nibbles(blk + 2, q, lane);
}

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; } = 22 bytes. d = max / -16, q = trunc(x * id + 16.5)
// in [0, 31].
extern "C" __global__ void quantize_q5_0_f32(const float* x, u8* out, i64 nb, u32* flag) {
    i64 b = warp_block(nb);
    if (b < 0) return;
    int lane = threadIdx.x & 31;
    float v = x[b * 32 + lane];
    flag_nonfinite(v, flag);
    float d = __fdiv_rn(signed_absmax(v, lane), -16.0f);
    int q = symmetric_code(v, inverse_or_zero(d), 16.5f, 31);
    u8* blk = out + b * 22;
    if (lane == 0) store_f16(blk, d);
    store_high_bits(blk + 2, q, lane);
    store_nibbles(blk + 6, q, lane);
}

// max and min of the block (first occurrence on ties, which only matters for the sign of zero).
__device__ __forceinline__ void block_max_min(float v, int lane, float* mx, float* mn) {
    WARP_FIRST_BEST(v, GREATER_FIRST, v, lane, *mx);
    WARP_FIRST_BEST(v, LESS_FIRST, v, lane, *mn);
}

// block_q4_1 { f16 d; f16 m; u8 qs[16]; } = 20 bytes. d = (max - min) / 15, m = min.
extern "C" __global__ void quantize_q4_1_f32(const float* x, u8* out, i64 nb, u32* flag) {
    i64 b = warp_block(nb);
    if (b < 0) return;
    int lane = threadIdx.x & 31;
    float v = x[b * 32 + lane];
    flag_nonfinite(v, flag);
    float mx, mn;
    block_max_min(v, lane, &mx, &mn);
    float d = __fdiv_rn(__fsub_rn(mx, mn), 15.0f);
    int q = asymmetric_code(v, mn, inverse_or_zero(d), 15);
    u8* blk = out + b * 20;
    if (lane == 0) {
        store_f16(blk, d);
        store_f16(blk + 2, mn);
    }
    store_nibbles(blk + 4, q, lane);
}

// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; } = 24 bytes. d = (max - min) / 31, m = min.
extern "C" __global__ void quantize_q5_1_f32(const float* x, u8* out, i64 nb, u32* flag) {
    i64 b = warp_block(nb);
    if (b < 0) return;
    int lane = threadIdx.x & 31;
    float v = x[b * 32 + lane];
    flag_nonfinite(v, flag);
    float mx, mn;
    block_max_min(v, lane, &mx, &mn);
    float d = __fdiv_rn(__fsub_rn(mx, mn), 31.0f);
    int q = asymmetric_code(v, mn, inverse_or_zero(d), 31);
    u8* blk = out + b * 24;
    if (lane == 0) {
        store_f16(blk, d);
        store_f16(blk + 2, mn);
    }
    store_high_bits(blk + 4, q, lane);
    store_nibbles(blk + 8, q, lane);
}
