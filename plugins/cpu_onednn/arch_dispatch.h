// One entry per RWKV generation: how the cpu_onednn backend prepares and runs it.
// plugin.cpp picks the row for ModelHParams::arch; each generation's layout and
// forward pass live in their own files (rwkv4_stage.*, rwkv5_stage.* for v5.x and
// v6, rwkv7_stage.*), so a version can be read in one sitting next to its equations.
#pragma once

#include <memory>
#include <string>

#include "corvid/sdk/backend.h"

namespace corvid::cpu {

// RWKV-5.0/5.1/5.2 and RWKV-6.0 (rwkv5_stage.cpp).
uint64_t prepared_bytes_v5(const StageSpec& spec, const ModelHParams& hp);
void prepare_stage_v5(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                      const ProgressFn& progress);
std::unique_ptr<Stage> make_rwkv5_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared);

// RWKV-7 (rwkv7_stage.cpp).
uint64_t prepared_bytes_v7(const StageSpec& spec, const ModelHParams& hp);
void prepare_stage_v7(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                      const ProgressFn& progress);
std::unique_ptr<Stage> make_rwkv7_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared);

}  // namespace corvid::cpu
