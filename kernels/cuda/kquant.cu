// GGML k-quants Q4_K, Q5_K and Q6_K (256-value super-blocks), twins of the CPU ports in
// kernels/src/cpu/ggml/{k_quants,search}.rs, which port llama.cpp ggml/src/ggml-quants.c
// (quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref, make_qkx2_quants,
// make_qx_quants, nearest_int) statement by statement. Only the reference path (no importance
// weights) is twinned; the imatrix path stays on the CPU.
//
// One thread per super-block runs the same sequential search as the CPU, with the same f32
// operations in the same order: sums accumulate left to right, nothing is contracted into an FMA
// (--fmad=false; module.rs's test checks the PTX holds no fma), division and sqrt are IEEE
// (--prec-div/--prec-sqrt), and integer conversions follow Rust's `as` (u8/i8 truncate the bits).

#define GROUP_MAX_EPS 1e-15f

// nearest_int: round half to even through the float adder (ggml-quants.c).
// NaN reaches it from blocks whose values overflow the searches (inf / inf when |x| ~ 1e30), and
// the result then depends on the NaN's bits: the CPU's default NaN (x86 0xFFC00000, Arm
// 0x7FC00000) has mantissa 0x400000 and gives 0, the GPU's canonical NaN 0x7FFFFFFF would give
// 0x3FFFFF. Returning 0 for NaN keeps the twin bit-exact (found by the H100 run of cuda_twins).
__device__ __forceinline__ int nearest_int(float fval) {
    if (isnan(fval)) return 0;
    float val = __fadd_rn(fval, 12582912.0f);
    return (int)(__float_as_uint(val) & 0x007fffffu) - 0x00400000;
}

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return min(hi, max(lo, v)); }

__device__ __forceinline__ float load_f16(const u8* p) {
    return f16_bits_to_f32((u16)(p[0] | (p[1] << 8)));
}

// Sets *flag if any of the n values is NaN or Inf.
__device__ __forceinline__ void flag_nonfinite_span(const float* x, int n, u32* flag) {
    bool bad = false;
    for (int i = 0; i < n; ++i) bad |= !isfinite(x[i]);
    if (bad) atomicOr(flag, 1u);
}

// make_qx_quants with rmse_type 1 (weights x^2) and no importance: levels l + nmax in [0, 2 nmax).
__device__ float make_qx_quants_rmse1(int n, int nmax, const float* x, i8* L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float nmaxf = (float)nmax;
    float iscale = -nmaxf / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (i8)(l + nmax);
        float w = x[i] * x[i];
        float lf = (float)l;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmaxf + 0.1f * (float)is) / max;
        sumlx = 0.0f;
        suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            float lf = (float)clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = (i8)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_qkx2_quants over 32 values with use_mad = false; returns the scale, *neg_min = -min.
__device__ float make_qkx2_quants32(int nmax, const float* x, const float* weights, u8* L,
                                    u8* laux, float rmin, float rdelta, int nstep, float* neg_min) {
    const int n = 32;
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *neg_min = -min;
        return 0.0f;
    }
    float nmaxf = (float)nmax;
    float iscale = nmaxf / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
        L[i] = (u8)l;
        float diff = scale * (float)l + min - x[i];
        diff = diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * (float)is + nmaxf) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            laux[i] = (u8)l;
            float w = weights[i];
            float lf = (float)l;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        float d = sum_w * sum_l2 - sum_l * sum_l;
        if (d > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * (float)laux[i] + this_min - x[i];
                diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

// get_scale_min_k4 (ggml-quants.c): six-bit scale and min j of the 12 packed bytes q.
__device__ __forceinline__ void scale_min_k4(int j, const u8* q, u8* sc, u8* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (u8)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (u8)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Q4_K / Q5_K scale search (the CPU's k4_search, reference path): writes d, dmin and the 12
// scale bytes of y, and the final levels L[256] in [0, nmax].
__device__ void k4_search_ref(const float* x, u8* y, int nmax, u8* L) {
    u8 laux[32];
    float weights[32], mins[8], scales[8];
    u8 ls[8], lm[8];
    float rmin = nmax == 15 ? -1.0f : -0.5f;
    float rdelta = 0.1f;
    int nstep = nmax == 15 ? 20 : 15;
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0.0f;
        for (int k = 0; k < 32; ++k) sum_x2 += xs[k] * xs[k];
        float av_x = sqrtf(sum_x2 / 32.0f);
        for (int k = 0; k < 32; ++k) weights[k] = av_x + fabsf(xs[k]);
        float m;
        float s = make_qkx2_quants32(nmax, xs, weights, L + 32 * j, laux, rmin, rdelta, nstep, &m);
        scales[j] = s;
        mins[j] = m;
        if (s > max_scale) max_scale = s;
        if (m > max_min) max_min = m;
    }
    float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        ls[j] = (u8)min((u8)nearest_int(inv_scale * scales[j]), (u8)63);
        lm[j] = (u8)min((u8)nearest_int(inv_min * mins[j]), (u8)63);
    }
    store_f16(y, max_scale / 63.0f);
    store_f16(y + 2, max_min / 63.0f);
    u8* q = y + 4;
    for (int j = 0; j < 12; ++j) q[j] = 0;
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (u8)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (u8)((ls[j] >> 4) << 6);
            q[j] |= (u8)((lm[j] >> 4) << 6);
        }
    }
    float d_all = load_f16(y), m_all = load_f16(y + 2);
    for (int j = 0; j < 8; ++j) {
        u8 sc, m;
        scale_min_k4(j, q, &sc, &m);
        float d = d_all * (float)sc;
        if (d == 0.0f) continue;
        float dm = m_all * (float)m;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = (u8)clampi(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; } = 144 bytes.
extern "C" __global__ void quantize_q4_k_f32(const float* xg, u8* out, i64 nb, u32* flag) {
    i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float* x = xg + b * 256;
    u8* y = out + b * 144;
    flag_nonfinite_span(x, 256, flag);
    u8 L[256];
    k4_search_ref(x, y, 15, L);
    u8* q = y + 16;
    for (int c = 0; c < 4; ++c)
        for (int k = 0; k < 32; ++k) q[32 * c + k] = (u8)(L[64 * c + k] | (L[64 * c + k + 32] << 4));
}

// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; } = 176 bytes.
extern "C" __global__ void quantize_q5_k_f32(const float* xg, u8* out, i64 nb, u32* flag) {
    i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float* x = xg + b * 256;
    u8* y = out + b * 176;
    flag_nonfinite_span(x, 256, flag);
    u8 L[256];
    k4_search_ref(x, y, 31, L);
    u8* qh = y + 16;
    u8* ql = y + 48;
    for (int j = 0; j < 32; ++j) qh[j] = 0;
    for (int c = 0; c < 4; ++c) {
        u8 m1 = (u8)(1u << (2 * c)), m2 = (u8)(2u << (2 * c));
        for (int j = 0; j < 32; ++j) {
            u8 l1 = L[64 * c + j], l2 = L[64 * c + j + 32];
            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
            ql[32 * c + j] = (u8)(l1 | (l2 << 4));
        }
    }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; } = 210 bytes.
extern "C" __global__ void quantize_q6_k_f32(const float* xg, u8* out, i64 nb, u32* flag) {
    i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float* x = xg + b * 256;
    u8* y = out + b * 210;
    flag_nonfinite_span(x, 256, flag);
    i8 L[256];
    float scales[16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ++ib) {
        float scale = make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    for (int i = 0; i < 210; ++i) y[i] = 0;
    if (max_abs_scale < GROUP_MAX_EPS) return;
    float iscale = -128.0f / max_scale;
    store_f16(y + 208, 1.0f / iscale);
    for (int ib = 0; ib < 16; ++ib) y[192 + ib] = (u8)(i8)min(nearest_int(iscale * scales[ib]), 127);
    float d_all = load_f16(y + 208);
    for (int j = 0; j < 16; ++j) {
        float d = d_all * (float)(i8)y[192 + j];
        if (d == 0.0f) continue;
        for (int ii = 0; ii < 16; ++ii) {
            int q = clampi(nearest_int(x[16 * j + ii] / d), -32, 31);
            L[16 * j + ii] = (i8)(q + 32);
        }
    }
    u8* ql = y;
    u8* qh = y + 128;
    for (int c = 0; c < 2; ++c) {
        for (int k = 0; k < 32; ++k) {
            int j = 128 * c + k;
            u8 v0 = (u8)L[j], v32 = (u8)L[j + 32], v64 = (u8)L[j + 64], v96 = (u8)L[j + 96];
            ql[64 * c + k] = (u8)((v0 & 0xF) | ((v64 & 0xF) << 4));
            ql[64 * c + k + 32] = (u8)((v32 & 0xF) | ((v96 & 0xF) << 4));
            qh[32 * c + k] = (u8)((v0 >> 4) | ((v32 >> 4) << 2) | ((v64 >> 4) << 4) | ((v96 >> 4) << 6));
        }
    }
}
