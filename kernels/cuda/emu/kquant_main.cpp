// Runs kquant.cu's kernels on the host, one "thread" per super-block:
//   kquant_emu IN.f32 4|5|6 OUT.bin
// (see host_shim.h and kernels/tests/cuda_emulation.rs).
#include "host_shim.h"
#include "../kquant.cu"
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 4) return 2;
    FILE* in = std::fopen(argv[1], "rb");
    if (!in) return 3;
    std::vector<float> x;
    float v;
    while (std::fread(&v, 4, 1, in) == 1) x.push_back(v);
    std::fclose(in);
    int type = std::atoi(argv[2]);
    int bytes = type == 4 ? 144 : type == 5 ? 176 : type == 6 ? 210 : 0;
    if (bytes == 0 || x.size() % 256 != 0) return 4;
    i64 nb = (i64)(x.size() / 256);
    std::vector<u8> out((size_t)(nb * bytes));
    u32 flag = 0;
    blockDim.x = 1;
    for (i64 b = 0; b < nb; ++b) {
        blockIdx.x = (unsigned)b;
        if (type == 4) quantize_q4_k_f32(x.data(), out.data(), nb, &flag);
        if (type == 5) quantize_q5_k_f32(x.data(), out.data(), nb, &flag);
        if (type == 6) quantize_q6_k_f32(x.data(), out.data(), nb, &flag);
    }
    FILE* o = std::fopen(argv[3], "wb");
    if (!o) return 5;
    std::fwrite(out.data(), 1, out.size(), o);
    std::fclose(o);
    return flag ? 6 : 0;
}
