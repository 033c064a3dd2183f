// Symmetric integer weight quantizers, twins of the CPU ones in kernels/src/cpu/:
// - int8 per output channel (modelopt int8_wo / int8_sq weights, quant_utils.py
//   get_scaling_factor_from_weight with maxbound 127 and to_quantized_weight):
//   scale[r] = max(amax(row r) / 127, floor), q = clamp(rint(w / scale), -128, 127);
// - int4 group-wise along the input dimension (modelopt INT4_AWQ_CFG block_sizes {-1: group}):
//   scale[r, g] = max(amax(group) / 7, floor), q = clamp(rint(w / scale), -8, 7).
// `rint` is round-half-to-even like torch.round; the division is IEEE (__fdiv_rn), as `w / wsf`.
// Codes are written one signed byte per weight, row-major like the input; packing two int4 codes
// per byte is a layout step of the output format, not of the arithmetic.

__device__ __forceinline__ float floored_scale(float amax, float maxbound, float floor) {
    return fmaxf(__fdiv_rn(amax, maxbound), floor);
}

__device__ __forceinline__ i8 code_of(float w, float scale, float lo, float hi) {
    return (i8)(int)fminf(fmaxf(rintf(__fdiv_rn(w, scale)), lo), hi);
}

// One thread block per row (blockDim.x a multiple of 32, at most 1024).
extern "C" __global__ void quantize_int8_per_channel_f32(
    const float* w, i8* codes, float* scales, i64 cols, float floor, u32* flag) {
    __shared__ float warp_amax[32];
    __shared__ float row_scale;
    const float* row = w + (i64)blockIdx.x * cols;
    float m = 0.0f;
    bool bad = false;
    for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = row[c];
        bad |= !isfinite(v);
        m = fmaxf(m, fabsf(v));
    }
    m = warp_max(m);
    if (__any_sync(FULL_MASK, bad) && (threadIdx.x & 31) == 0) atomicOr(flag, 1u);
    if ((threadIdx.x & 31) == 0) warp_amax[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        int warps = blockDim.x >> 5;
        float v = threadIdx.x < warps ? warp_amax[threadIdx.x] : 0.0f;
        v = warp_max(v);
        if (threadIdx.x == 0) {
            row_scale = floored_scale(v, 127.0f, floor);
            scales[blockIdx.x] = row_scale;
        }
    }
    __syncthreads();
    float s = row_scale;
    i8* out = codes + (i64)blockIdx.x * cols;
    for (i64 c = threadIdx.x; c < cols; c += blockDim.x) out[c] = code_of(row[c], s, -128.0f, 127.0f);
}

// One warp per group of `group` consecutive weights of a row (group a multiple of 32, cols a
// multiple of group); ngroups = rows * cols / group.
extern "C" __global__ void quantize_int4_groupwise_f32(
    const float* w, i8* codes, float* scales, i64 ngroups, int group, float floor, u32* flag) {
    i64 g = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (g >= ngroups) return;
    int lane = threadIdx.x & 31;
    const float* x = w + g * group;
    float m = 0.0f;
    bool bad = false;
    for (int c = lane; c < group; c += 32) {
        float v = x[c];
        bad |= !isfinite(v);
        m = fmaxf(m, fabsf(v));
    }
    m = warp_max(m);
    if (__any_sync(FULL_MASK, bad) && lane == 0) atomicOr(flag, 1u);
    float s = floored_scale(m, 7.0f, floor);
    if (lane == 0) scales[g] = s;
    i8* out = codes + g * group;
    for (int c = lane; c < group; c += 32) out[c] = code_of(x[c], s, -8.0f, 7.0f);
}
