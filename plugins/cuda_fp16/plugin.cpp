// Plugin "cuda_fp16": RWKV-4 on NVIDIA GPUs with float weights (fp16, bf16, fp32).
// All the work is in plugins/cuda_common (shared with cuda_int8).
#include "backend.h"
#include "corvid/sdk/plugin.h"

namespace {

const corvid::ServedPair kServed[] = {{"cuda", "fp16"}, {"cuda", "fp32"}, {"cuda", "bf16"}};

corvid::Backend* create_backend() { return corvid::cuda::make_backend("cuda_fp16", /*quantized=*/false).release(); }

const corvid::PluginEntry kEntry = {
    CORVID_ABI_VERSION,
    sizeof(corvid::PluginEntry),
    corvid::PluginKind::Backend,
    "cuda_fp16",
    "0.1.0",
    "CUDA RWKV-4, float weights: cuBLAS sequence GEMMs, graph-replayed GEMV decode, *N+ streaming",
    kServed,
    sizeof(kServed) / sizeof(kServed[0]),
    &create_backend,
    nullptr,
    nullptr,
};

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
