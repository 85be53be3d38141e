// An RWKV-4 stage on the CPU: blocks [first_block, end_block) and maybe the head.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "corvid/sdk/backend.h"
#include "kernels.h"
#include "thread_pool.h"

namespace corvid::cpu {

struct Rwkv4Block {
  // Vectors hold values of the activation type, widened to fp32.
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  std::vector<float> att_mk, att_mv, att_mr, att_1mk, att_1mv, att_1mr;  // mu and (1 - mu) in atype
  std::vector<float> ffn_mk, ffn_mr, ffn_1mk, ffn_1mr;
  const float *decay, *first;  // w = -exp(time_decay), u = time_first (fp32)
  Matrix att_k, att_v, att_r, att_o, ffn_k, ffn_v, ffn_r;
};

class Rwkv4State : public StageState {
 public:
  Rwkv4State(int n_blocks, int C, int A);
  std::unique_ptr<StageState> clone() const override { return std::make_unique<Rwkv4State>(*this); }
  void copy_from(const StageState& o) override;
  void reset() override;
  size_t serialized_floats() const override { return data_.size(); }
  void serialize(float* dst) const override;
  void deserialize(const float* src) override;

  // Per block, contiguous in the canonical order: att_shift[C], a[A], b[A], p[A], ffn_shift[C].
  float* block(int i) { return data_.data() + size_t(i) * per_block_; }
  int C, A;

 private:
  size_t per_block_;
  std::vector<float> data_;
};

class Rwkv4Stage : public Stage {
 public:
  Rwkv4Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w);
  std::unique_ptr<StageState> new_state() const override;
  void forward(float* x, int T, StageState& state, const ForwardOptions& opts) override;
  uint64_t resident_weight_bytes() const override;
  std::string describe() const override;

 private:
  template <bool BF16>
  void run(float* x, int T, Rwkv4State& st, const ForwardOptions& opts);
  // Y[T][rows] = X[T][cols] W^T: one product, or several independent ones of
  // a step as one pool job (kernels.h StageProducts).
  void matmul(const Matrix& W, const float* X, int T, float* Y) { products_.run(isa_, {{&W, X, Y}}, T, pool_); }
  void matmuls(std::initializer_list<StageProducts::Product> ps, int T) { products_.run(isa_, ps, T, pool_); }

  StageSpec spec_;
  ModelHParams hp_;
  Isa isa_;
  int threads_;
  bool bf16_act_;
  std::vector<Rwkv4Block> blocks_;
  // Head (when spec_.has_head).
  const float *lnout_w_ = nullptr, *lnout_b_ = nullptr;
  Matrix head_;
  // Scratch, sized once for chunk_len rows: no allocation per token.
  std::vector<float> xx_, kx_, vx_, rx_, r_, k_, v_, wkv_, tmp_, ffk_;
  ThreadPool pool_;          // the stage's threads (oneDNN runs inside them)
  StageProducts products_;   // GEMV scratch and GEMM tiles
};

}  // namespace corvid::cpu
