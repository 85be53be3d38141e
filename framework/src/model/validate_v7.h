// RWKV-7 checkpoint validation (rwkv-reference §1.3), called from
// detect_hparams once the version is known, so a malformed v7 file gives one
// line naming the tensor instead of failing inside a backend.
#pragma once

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/model.h"

namespace corvid {

// Throws corvid::Error "<path>: tensor '<name>' has shape ..., expected (...)"
// (or "... missing tensor ...", or the DeepEmbed refusal) on the first problem.
void validate_v7(const Checkpoint& ckpt, const ModelHParams& hp);

}  // namespace corvid
