// Plugin "cuda_int8": RWKV-4 on NVIDIA GPUs with the reference's uint8 weights
// (rwkv-reference 2.6): fp16i8, bf16i8, fp32i8. Shares plugins/cuda_common.
#include "backend.h"
#include "corvid/sdk/plugin.h"

namespace {

const corvid::ServedPair kServed[] = {{"cuda", "fp16i8"}, {"cuda", "fp32i8"}, {"cuda", "bf16i8"}};

corvid::Backend* create_backend() { return corvid::cuda::make_backend("cuda_int8", /*quantized=*/true).release(); }

const corvid::PluginEntry kEntry = {
    CORVID_ABI_VERSION,
    sizeof(corvid::PluginEntry),
    corvid::PluginKind::Backend,
    "cuda_int8",
    "0.1.0",
    "CUDA RWKV-4, int8 weights: dequantising GEMV decode (1 byte/weight), tiled fp16 GEMMs, *N+ streaming",
    kServed,
    sizeof(kServed) / sizeof(kServed[0]),
    &create_backend,
    nullptr,
    nullptr,
};

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
