// Architecture and sizes of a checkpoint (rwkv-reference §1.4), and the
// load-time transforms shared by every backend (§2.1-2.4).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/model.h"
#include "corvid/sdk/weights.h"

namespace corvid {

// Detects version and sizes from tensor names and shapes. Unlike the
// reference's key-order scan, v7 is recognised by `att.r_k`/`att.x_r`, and
// n_head/head_size come from the shapes. Throws Error naming the file and the
// tensor that did not fit (missing emb, inconsistent shapes, absurd sizes).
// rescale_layer is left 0: it depends on the strategy.
ModelHParams detect_hparams(const Checkpoint& ckpt);

// Human-readable one-line summary: "RWKV v4, 12 layers, n_embd 768, vocab 50277".
std::string describe_hparams(const ModelHParams& hp);

// A WeightSource over a raw checkpoint with the backend-independent transforms
// applied (see sdk/weights.h for the exact contract): time_faaaa renamed,
// .time_* squeezed, decay/bonus in their fp32 forms, emb/ln0 hidden.
class RawWeights : public WeightSource {
 public:
  RawWeights(const Checkpoint& ckpt, const ModelHParams& hp);
  const TensorView* find(std::string_view name) const override;
  std::string origin() const override;

 private:
  const Checkpoint& ckpt_;
  ModelHParams hp_;
  std::unordered_map<std::string, TensorView> views_;             // renamed/squeezed views
  std::vector<std::unique_ptr<std::vector<float>>> owned_;        // transformed fp32 tensors
};

// The embedding with blocks.0.ln0 folded in (rwkv-reference §2.1 step 2),
// rounded like the reference: LayerNorm computed in the file's dtype when torch
// can (bf16/fp32: fp32 math, result rounded to the file dtype), else in fp32;
// then cast to the activation type of layer 0. Stored as fp32 [V][C] holding
// exactly those values.
std::vector<float> fold_embedding(const Checkpoint& ckpt, const ModelHParams& hp, DType layer0_atype);

}  // namespace corvid
