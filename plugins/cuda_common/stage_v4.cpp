// CUDA RWKV-4 stage (see stage_v4.h). The forward pass per block, in the
// reference's order (rwkv-reference 4.0-4.2):
//
//   xx = LN1(x);  xk/xv/xr = token-shift mixes of xx and the previous xx
//   k, v = xk Wk, xv Wv (fp32);  r = sigmoid(xr Wr)
//   wkv = WKV(k, v; a, b, p);    x += (r*wkv) Wo
//   xx = LN2(x);  xk/xr = mixes;  x += sigmoid(xr Wr') * (relu(xk Wk')^2 Wv')
//   x /= 2 after block l when (l+1) % RESCALE_LAYER == 0
//
// Decode (T = 1) runs 7 kernels per block (9 for int8: two input preps), the
// products as fused GEMVs with the elementwise tails in their epilogues, and
// the whole token is replayed as one CUDA graph. Sequence mode (T > 1) uses
// cuBLAS for the products and separate elementwise kernels.
#include "stage_v4.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_util.h"
#include "gemm.h"
#include "kernels.h"
#include "layout_v4.h"

namespace corvid::cuda {

namespace {

constexpr size_t kAlign = 256;
constexpr uint64_t kReserveBytes = 96ull << 20;  // cuBLAS handle + workspace, allocator slack
constexpr size_t kTileElems = size_t(8) << 20;   // int8 sequence path: dequantised tile budget

size_t align_up(size_t v, size_t a = kAlign) { return (v + a - 1) / a * a; }

k::AT to_at(DType d) {
  switch (d) {
    case DType::F16: return k::AT::F16;
    case DType::BF16: return k::AT::BF16;
    default: return k::AT::F32;
  }
}

// Rows of a matrix on the device are padded to 16 bytes so the GEMV can use
// 128-bit loads on every row (real models never need padding: C % 16 == 0).
int padded_ld(int64_t in, size_t wsize) {
  const int64_t per16 = int64_t(16 / wsize);
  return int(((in + per16 - 1) / per16) * per16);
}

// Byte offsets of everything in the stage's single device allocation.
struct ArenaPlan {
  struct Mat {
    size_t w = 0, mx = 0, rx = 0, my = 0, ry = 0;  // offsets (w: resident arena or stream slot)
    int in = 0, out = 0, ld = 0;
  };
  struct Block {
    size_t vec[9] = {};
    size_t decay = 0, first = 0;
    Mat m[kMatsPerBlock];
    bool streamed = false;
  };
  std::vector<Block> blocks;
  Mat head;
  size_t ln_out_w = 0, ln_out_b = 0;
  size_t weights_end = 0;
  size_t slot[2] = {0, 0}, slot_bytes = 0;
  // scratch
  size_t x_f32 = 0, x = 0, buf = 0, xk = 0, xv = 0, xr = 0, kf = 0, vf = 0, r = 0, rw = 0, kk = 0, y = 0;
  size_t xs = 0, sums = 0, tile = 0, logits = 0;
  size_t xs_stride = 0, tile_elems = 0;
  size_t total = 0;
  DeviceBudget budget;
};

ArenaPlan plan_arena(const StageSpec& spec, const ModelHParams& hp) {
  ArenaPlan p;
  const Precision pr = spec.precision;
  const size_t as = dtype_size(pr.atype);
  const size_t ws = pr.quantized() ? 1 : dtype_size(pr.wtype);
  const size_t C = size_t(hp.n_embd), A = size_t(hp.n_att), F = size_t(hp.n_ffn), V = size_t(hp.n_vocab);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t o = off;
    off = align_up(off + bytes);
    return o;
  };
  auto mat = [&](MatShape s, bool resident_codes, size_t slot_off) {
    ArenaPlan::Mat m;
    m.in = int(s.in);
    m.out = int(s.out);
    m.ld = padded_ld(s.in, ws);
    const size_t bytes = size_t(m.out) * size_t(m.ld) * ws;
    m.w = resident_codes ? take(bytes) : slot_off;
    if (pr.quantized()) {
      m.mx = take(size_t(m.out) * as);
      m.rx = take(size_t(m.out) * as);
      m.my = take(size_t(m.in) * as);
      m.ry = take(size_t(m.in) * as);
    }
    return m;
  };
  // Stream slot layout: the seven matrices of one block, back to back.
  size_t slot_off[kMatsPerBlock];
  size_t slot_bytes = 0;
  for (int m = 0; m < kMatsPerBlock; ++m) {
    MatShape s = mat_shape(Mat(m), hp);
    slot_off[m] = slot_bytes;
    slot_bytes = align_up(slot_bytes + size_t(s.out) * size_t(padded_ld(s.in, ws)) * ws);
  }
  bool any_streamed = false;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    ArenaPlan::Block b;
    b.streamed = spec.streamed(l);
    any_streamed |= b.streamed;
    for (size_t& v : b.vec) v = take(C * as);
    b.decay = take(A * 4);
    b.first = take(A * 4);
    for (int m = 0; m < kMatsPerBlock; ++m) b.m[m] = mat(mat_shape(Mat(m), hp), !b.streamed, slot_off[m]);
    p.blocks.push_back(b);
  }
  if (spec.has_head) {
    p.ln_out_w = take(C * as);
    p.ln_out_b = take(C * as);
    p.head = mat(head_shape(hp), true, 0);
  }
  p.weights_end = off;
  p.budget.weights = off;
  if (any_streamed) {
    p.slot_bytes = slot_bytes;
    p.slot[0] = take(slot_bytes);
    p.slot[1] = take(slot_bytes);
  }
  p.budget.stream = off - p.weights_end;
  const size_t scratch_begin = off;
  const size_t T = size_t(std::max(1, spec.chunk_len));
  p.x_f32 = take(T * C * 4);
  p.x = take(T * C * as);
  p.buf = take((T + 1) * C * as);
  p.xk = take(T * std::max(C, A) * as);
  p.xv = take(T * C * as);
  p.xr = take(T * C * as);
  p.kf = take(T * A * 4);
  p.vf = take(T * A * 4);
  p.r = take(T * std::max(A, C) * as);
  p.rw = take(T * A * as);
  p.kk = take(T * F * as);
  p.y = take(T * C * as);
  if (pr.quantized()) {
    p.xs_stride = align_up(std::max({C, A, F}), 64);
    p.xs = take(3 * p.xs_stride * 4);
    p.sums = take(3 * 2 * 4);
    // Largest dequantised tile any matrix of this stage needs (sequence mode).
    size_t need = 0;
    auto consider = [&](const ArenaPlan::Mat& m) {
      need = std::max(need, std::min(kTileElems, size_t(m.out) * size_t(m.ld)));
    };
    if (!p.blocks.empty())
      for (const auto& m : p.blocks[0].m) consider(m);
    if (spec.has_head) consider(p.head);
    p.tile_elems = need;
    p.tile = take(need * as);
  }
  if (spec.has_head) p.logits = take(T * V * 4);
  p.budget.scratch = off - scratch_begin;
  p.total = off;
  return p;
}

// ---------------------------------------------------------------------------
// State: one device allocation: fp32 [nb][3][A] (a, b, p) then atype [nb][2][C]
// (att_shift, ffn_shift).

class V4State final : public StageState {
 public:
  V4State(int device, int nb, int C, int A, DType at) : dev_(device), nb_(nb), C_(C), A_(A), at_(at) {
    as_ = dtype_size(at);
    f32_bytes_ = size_t(nb) * 3 * size_t(A) * 4;
    sh_bytes_ = size_t(nb) * 2 * size_t(C) * as_;
    DeviceGuard g(dev_);
    if (f32_bytes_ + sh_bytes_ > 0) check(cudaMalloc(&mem_, align_up(f32_bytes_) + sh_bytes_), "cudaMalloc(state)", dev_);
    reset();
  }
  ~V4State() override {
    if (mem_) {
      int prev = -1;
      cudaGetDevice(&prev);
      cudaSetDevice(dev_);
      cudaFree(mem_);
      if (prev >= 0) cudaSetDevice(prev);
    }
  }

  std::unique_ptr<StageState> clone() const override {
    auto s = std::make_unique<V4State>(dev_, nb_, C_, A_, at_);
    s->copy_from(*this);
    return s;
  }
  void copy_from(const StageState& other) override {
    const V4State& o = same(other);
    DeviceGuard g(dev_);
    if (!mem_) return;
    check(cudaMemcpy(mem_, o.mem_, align_up(f32_bytes_) + sh_bytes_, cudaMemcpyDeviceToDevice), "state copy", dev_);
    // Device-to-device cudaMemcpy may return early; the stage's stream does not
    // wait for the legacy stream, so finish here.
    check(cudaDeviceSynchronize(), "state copy", dev_);
  }
  void reset() override {
    if (!mem_) return;
    DeviceGuard g(dev_);
    check(cudaMemset(mem_, 0, align_up(f32_bytes_) + sh_bytes_), "cudaMemset(state)", dev_);
    for (int i = 0; i < nb_; ++i) k::fill_f32(pp(i), -1e30f, size_t(A_), nullptr);  // p starts at -1e30 (4.1)
    check_launch("fill_f32", dev_);
    check(cudaDeviceSynchronize(), "state reset", dev_);
  }
  size_t serialized_floats() const override { return size_t(nb_) * (2 * size_t(C_) + 3 * size_t(A_)); }
  void serialize(float* dst) const override {
    if (!mem_) return;
    DeviceGuard g(dev_);
    std::vector<float> f(f32_bytes_ / 4);
    std::vector<uint8_t> sh(sh_bytes_);
    check(cudaMemcpy(f.data(), mem_, f32_bytes_, cudaMemcpyDeviceToHost), "state download", dev_);
    check(cudaMemcpy(sh.data(), shifts(), sh_bytes_, cudaMemcpyDeviceToHost), "state download", dev_);
    for (int i = 0; i < nb_; ++i) {
      widen(sh.data() + size_t(i * 2 + 0) * C_ * as_, dst, C_);
      dst += C_;
      for (int j = 0; j < 3; ++j) {
        std::memcpy(dst, f.data() + size_t(i * 3 + j) * A_, size_t(A_) * 4);
        dst += A_;
      }
      widen(sh.data() + size_t(i * 2 + 1) * C_ * as_, dst, C_);
      dst += C_;
    }
  }
  void deserialize(const float* src) override {
    if (!mem_) return;
    DeviceGuard g(dev_);
    std::vector<float> f(f32_bytes_ / 4);
    std::vector<uint8_t> sh(sh_bytes_);
    for (int i = 0; i < nb_; ++i) {
      store_as(at_, src, sh.data() + size_t(i * 2 + 0) * C_ * as_, size_t(C_));
      src += C_;
      for (int j = 0; j < 3; ++j) {
        std::memcpy(f.data() + size_t(i * 3 + j) * A_, src, size_t(A_) * 4);
        src += A_;
      }
      store_as(at_, src, sh.data() + size_t(i * 2 + 1) * C_ * as_, size_t(C_));
      src += C_;
    }
    check(cudaMemcpy(mem_, f.data(), f32_bytes_, cudaMemcpyHostToDevice), "state upload", dev_);
    check(cudaMemcpy(shifts(), sh.data(), sh_bytes_, cudaMemcpyHostToDevice), "state upload", dev_);
    check(cudaDeviceSynchronize(), "state upload", dev_);  // pageable uploads may still be in flight
  }

  float* aa(int i) const { return f32() + size_t(i * 3 + 0) * A_; }
  float* bb(int i) const { return f32() + size_t(i * 3 + 1) * A_; }
  float* pp(int i) const { return f32() + size_t(i * 3 + 2) * A_; }
  void* att_shift(int i) const { return static_cast<char*>(shifts()) + size_t(i * 2 + 0) * C_ * as_; }
  void* ffn_shift(int i) const { return static_cast<char*>(shifts()) + size_t(i * 2 + 1) * C_ * as_; }
  const void* key() const { return mem_; }
  bool matches(int dev, int nb, int C, DType at) const { return dev == dev_ && nb == nb_ && C == C_ && at == at_; }

 private:
  const V4State& same(const StageState& other) const {
    const auto* o = dynamic_cast<const V4State*>(&other);
    if (!o || o->dev_ != dev_ || o->nb_ != nb_ || o->C_ != C_ || o->A_ != A_ || o->at_ != at_)
      throw Error("cuda:" + std::to_string(dev_) + ": state belongs to another stage");
    return *o;
  }
  float* f32() const { return static_cast<float*>(mem_); }
  void* shifts() const { return static_cast<char*>(mem_) + align_up(f32_bytes_); }
  void widen(const uint8_t* src, float* dst, int n) const {
    if (at_ == DType::F32) {
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    }
    const auto* h = reinterpret_cast<const uint16_t*>(src);
    for (int i = 0; i < n; ++i) dst[i] = at_ == DType::F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
  }

  int dev_, nb_, C_, A_;
  DType at_;
  size_t as_ = 2, f32_bytes_ = 0, sh_bytes_ = 0;
  void* mem_ = nullptr;
};

// ---------------------------------------------------------------------------
// Stage

struct DevMat {
  const void* w = nullptr;  // resident; streamed: resolved per call into a slot
  size_t slot_off = 0;
  const void *mx = nullptr, *rx = nullptr, *my = nullptr, *ry = nullptr;
  int in = 0, out = 0, ld = 0;
  const void* host = nullptr;  // streamed: host source (pinned copy or the prepared tensor)
};

struct DevBlock {
  const void* vec[9] = {};  // kBlockAtypeVectors order
  const float* decay = nullptr;
  const float* first = nullptr;
  DevMat m[kMatsPerBlock];
  bool streamed = false;
};

enum VecIdx { Ln1W = 0, Ln1B, Ln2W, Ln2B, AttMixK, AttMixV, AttMixR, FfnMixK, FfnMixR };

class V4Stage final : public Stage {
 public:
  V4Stage(std::string plugin, const StageSpec& spec, const ModelHParams& hp)
      : plugin_(std::move(plugin)), spec_(spec), hp_(hp), dev_(spec.device_index) {}
  ~V4Stage() override;

  void build(const WeightSource& prepared);

  std::unique_ptr<StageState> new_state() const override {
    return std::make_unique<V4State>(dev_, int(blocks_.size()), hp_.n_embd, hp_.n_att, spec_.precision.atype);
  }
  void forward(float* x, int T, StageState& state, const ForwardOptions& opts) override;
  uint64_t resident_weight_bytes() const override { return resident_bytes_; }
  uint64_t streamed_weight_bytes() const override { return streamed_per_token_; }
  uint64_t streamed_bytes_total() const override { return streamed_total_; }
  std::string describe() const override { return description_; }

 private:
  // Enqueues one call on stream_ (also used under graph capture for T = 1).
  void enqueue(int T, V4State& st, bool head, bool all_logits, float* logits_user);
  void step_block(int i, V4State& st, const DevMat* mats);
  void seq_block(int i, int T, V4State& st, const DevMat* mats);
  void head_forward(int T, bool all_logits, float* logits_user);
  // y = x W for `rows` rows (plain output: fp32 or atype), any path.
  void mm(int rows, const void* x, const DevMat& m, void* y, bool y_f32);
  void upload_block(int i, int slot);
  void ensure_graph(V4State& st, bool head);
  k::Int8Prep prep_for(const DevMat& m, int slot) const;
  k::GemvJob job(const DevMat& m, const void* x, int slot, int epi, void* y) const;
  char* at_ptr(size_t base, size_t elems) const { return static_cast<char*>(arena_) + base + elems * as_; }
  void ck(const char* what) const { check_launch(what, dev_); }

  std::string plugin_;
  StageSpec spec_;
  ModelHParams hp_;
  int dev_ = 0;
  k::AT at_ = k::AT::F16;
  size_t as_ = 2;
  bool q_ = false;
  bool round_kv_ = false;
  ArenaPlan plan_;
  std::vector<DevBlock> blocks_;
  DevMat head_;
  const void *ln_out_w_ = nullptr, *ln_out_b_ = nullptr;
  int first_streamed_ = -1, n_streamed_ = 0;

  void* arena_ = nullptr;
  void* pinned_streamed_ = nullptr;  // pinned copy of the streamed matrices (nullptr: unpinned fallback)
  float* x_host_ = nullptr;          // pinned [chunk][C]
  float* logits_host_ = nullptr;     // pinned [V]
  cudaStream_t stream_ = nullptr, copy_stream_ = nullptr;
  cudaEvent_t ev_up_[2] = {nullptr, nullptr}, ev_free_[2] = {nullptr, nullptr};
  cublasHandle_t cublas_ = nullptr;
  cudaGraphExec_t graph_[2] = {nullptr, nullptr};
  const void* graph_key_[2] = {nullptr, nullptr};
  bool use_graph_ = true;

  uint64_t resident_bytes_ = 0, streamed_per_token_ = 0, streamed_total_ = 0;
  std::string description_;
};

V4Stage::~V4Stage() {
  int prev = -1;
  cudaGetDevice(&prev);
  cudaSetDevice(dev_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  for (auto& g : graph_)
    if (g) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(cublas_);
  for (int s = 0; s < 2; ++s) {
    if (ev_up_[s]) cudaEventDestroy(ev_up_[s]);
    if (ev_free_[s]) cudaEventDestroy(ev_free_[s]);
  }
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  if (stream_) cudaStreamDestroy(stream_);
  if (arena_) cudaFree(arena_);
  if (pinned_streamed_) cudaFreeHost(pinned_streamed_);
  if (x_host_) cudaFreeHost(x_host_);
  if (logits_host_) cudaFreeHost(logits_host_);
  if (prev >= 0) cudaSetDevice(prev);
}

void V4Stage::build(const WeightSource& prepared) {
  const std::string dev_name = check_cuda_device(dev_);
  DeviceGuard guard(dev_);
  const Precision pr = spec_.precision;
  at_ = to_at(pr.atype);
  as_ = dtype_size(pr.atype);
  q_ = pr.quantized();
  // The reference's int8 matmul and its non-cuBLAS bf16 matmul return atype,
  // and k/v are cast to fp32 from that; the fp16 cuBLAS path returns fp32 (4.7).
  round_kv_ = q_ || pr.atype == DType::BF16;
  const size_t ws = q_ ? 1 : dtype_size(pr.wtype);
  const int C = hp_.n_embd, A = hp_.n_att;
  plan_ = plan_arena(spec_, hp_);

  // Validate every prepared tensor before touching the device.
  struct HostMat {
    const TensorView* w = nullptr;
    const TensorView *mx = nullptr, *rx = nullptr, *my = nullptr, *ry = nullptr;
  };
  auto host_mat = [&](const std::string& name, MatShape s) {
    HostMat h;
    if (!q_) {
      h.w = &require_prepared(prepared, name, pr.wtype, {s.out, s.in});
    } else {
      h.w = &require_prepared(prepared, name, DType::U8, {s.out, s.in});
      h.mx = &require_prepared(prepared, name + "_mx", pr.atype, {s.out});
      h.rx = &require_prepared(prepared, name + "_rx", pr.atype, {s.out});
      h.my = &require_prepared(prepared, name + "_my", pr.atype, {s.in});
      h.ry = &require_prepared(prepared, name + "_ry", pr.atype, {s.in});
    }
    return h;
  };
  const int nb = spec_.n_blocks();
  std::vector<std::array<const TensorView*, 9>> hvec(static_cast<size_t>(nb));
  std::vector<std::array<const TensorView*, 2>> hf32(static_cast<size_t>(nb));
  std::vector<std::array<HostMat, kMatsPerBlock>> hmat(static_cast<size_t>(nb));
  for (int i = 0; i < nb; ++i) {
    const int l = spec_.first_block + i;
    for (int v = 0; v < 9; ++v) hvec[i][v] = &require_prepared(prepared, block_name(l, kBlockAtypeVectors[v]), pr.atype, {C});
    for (int v = 0; v < 2; ++v) hf32[i][v] = &require_prepared(prepared, block_name(l, kBlockF32Vectors[v]), DType::F32, {A});
    for (int m = 0; m < kMatsPerBlock; ++m) hmat[i][m] = host_mat(block_name(l, mat_suffix(Mat(m))), mat_shape(Mat(m), hp_));
  }
  const TensorView *hlnw = nullptr, *hlnb = nullptr;
  HostMat hhead;
  if (spec_.has_head) {
    hlnw = &require_prepared(prepared, "ln_out.weight", pr.atype, {C});
    hlnb = &require_prepared(prepared, "ln_out.bias", pr.atype, {C});
    hhead = host_mat("head.weight", head_shape(hp_));
  }

  // Out-of-memory check before any allocation (nothing half-built).
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo", dev_);
  const DeviceBudget& bud = plan_.budget;
  if (uint64_t(plan_.total) + kReserveBytes > free_b)
    throw Error("out of device memory: stage needs " + format_bytes(plan_.total + kReserveBytes) + " on cuda:" +
                std::to_string(dev_) + " (weights " + format_bytes(bud.weights) + ", stream buffers " +
                format_bytes(bud.stream) + ", activations " + format_bytes(bud.scratch) + ", reserve " +
                format_bytes(kReserveBytes) + "), " + format_bytes(free_b) + " free");
  {
    cudaError_t e = cudaMalloc(&arena_, plan_.total);
    if (e != cudaSuccess) {
      arena_ = nullptr;
      (void)cudaGetLastError();
      throw Error("out of device memory: stage needs " + format_bytes(plan_.total) + " on cuda:" + std::to_string(dev_) +
                  ", " + format_bytes(free_b) + " free (cudaMalloc: " + cudaGetErrorString(e) + ")");
    }
  }
  check(cudaMemset(arena_, 0, plan_.weights_end), "cudaMemset(weights)", dev_);  // zero row padding

  auto dptr = [&](size_t off) { return static_cast<void*>(static_cast<char*>(arena_) + off); };
  auto upload = [&](size_t off, const TensorView* t) {
    check(cudaMemcpy(dptr(off), t->data, t->nbytes(), cudaMemcpyHostToDevice), "weight upload", dev_);
    resident_bytes_ += t->nbytes();
  };
  auto upload_mat = [&](const ArenaPlan::Mat& pm, const HostMat& h, bool codes_resident, DevMat& dm) {
    dm.in = pm.in;
    dm.out = pm.out;
    dm.ld = pm.ld;
    if (codes_resident) {
      check(cudaMemcpy2D(dptr(pm.w), size_t(pm.ld) * ws, h.w->data, size_t(pm.in) * ws, size_t(pm.in) * ws,
                         size_t(pm.out), cudaMemcpyHostToDevice),
            "weight upload", dev_);
      resident_bytes_ += h.w->nbytes();
      dm.w = dptr(pm.w);
    } else {
      dm.slot_off = pm.w;
      dm.host = h.w->data;
    }
    if (q_) {
      upload(pm.mx, h.mx);
      upload(pm.rx, h.rx);
      upload(pm.my, h.my);
      upload(pm.ry, h.ry);
      dm.mx = dptr(pm.mx);
      dm.rx = dptr(pm.rx);
      dm.my = dptr(pm.my);
      dm.ry = dptr(pm.ry);
    }
  };

  blocks_.resize(size_t(nb));
  for (int i = 0; i < nb; ++i) {
    const ArenaPlan::Block& pb = plan_.blocks[size_t(i)];
    DevBlock& b = blocks_[size_t(i)];
    b.streamed = pb.streamed;
    for (int v = 0; v < 9; ++v) {
      upload(pb.vec[v], hvec[i][v]);
      b.vec[v] = dptr(pb.vec[v]);
    }
    upload(pb.decay, hf32[i][0]);
    upload(pb.first, hf32[i][1]);
    b.decay = static_cast<const float*>(dptr(pb.decay));
    b.first = static_cast<const float*>(dptr(pb.first));
    for (int m = 0; m < kMatsPerBlock; ++m) upload_mat(pb.m[m], hmat[i][m], !pb.streamed, b.m[m]);
    if (pb.streamed) {
      if (first_streamed_ < 0) first_streamed_ = i;
      ++n_streamed_;
    }
  }
  if (spec_.has_head) {
    upload(plan_.ln_out_w, hlnw);
    upload(plan_.ln_out_b, hlnb);
    ln_out_w_ = dptr(plan_.ln_out_w);
    ln_out_b_ = dptr(plan_.ln_out_b);
    upload_mat(plan_.head, hhead, true, head_);
  }

  // Streamed matrices: a pinned host copy so the uploads are true async DMA that
  // overlaps compute. If pinning fails (low RAM), stream from the prepared
  // (pageable) tensors instead, as the reference does when pin_memory fails.
  std::string pin_note;
  if (n_streamed_ > 0) {
    const uint64_t per_block = streamed_block_bytes(hp_, pr);
    streamed_per_token_ = per_block * uint64_t(n_streamed_);
    if (cudaMallocHost(&pinned_streamed_, streamed_per_token_) == cudaSuccess) {
      char* dst = static_cast<char*>(pinned_streamed_);
      for (auto& b : blocks_) {
        if (!b.streamed) continue;
        for (auto& m : b.m) {
          const size_t bytes = size_t(m.in) * size_t(m.out) * ws;
          std::memcpy(dst, m.host, bytes);
          m.host = dst;
          dst += bytes;
        }
      }
      pin_note = "pinned host memory";
    } else {
      (void)cudaGetLastError();
      pinned_streamed_ = nullptr;
      pin_note = "pageable host memory (pinning failed: low RAM)";
    }
  }

  check(cudaMallocHost(reinterpret_cast<void**>(&x_host_), size_t(std::max(1, spec_.chunk_len)) * C * 4),
        "cudaMallocHost(x)", dev_);
  if (spec_.has_head)
    check(cudaMallocHost(reinterpret_cast<void**>(&logits_host_), size_t(hp_.n_vocab) * 4), "cudaMallocHost(logits)", dev_);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate", dev_);
  check(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "cudaStreamCreate", dev_);
  for (int s = 0; s < 2; ++s) {
    check(cudaEventCreateWithFlags(&ev_up_[s], cudaEventDisableTiming), "cudaEventCreate", dev_);
    check(cudaEventCreateWithFlags(&ev_free_[s], cudaEventDisableTiming), "cudaEventCreate", dev_);
  }
  cublas_ = make_cublas(stream_, dev_);
  check(cudaDeviceSynchronize(), "stage upload", dev_);

  const char* env = std::getenv("CORVID_CUDA_GRAPHS");
  use_graph_ = !(env && std::string(env) == "0");

  description_ = plugin_ + ": " + precision_name(pr) + " on cuda:" + std::to_string(dev_) + " (" + dev_name + "), blocks " +
                 (nb ? std::to_string(spec_.first_block) + "-" + std::to_string(spec_.end_block - 1) : std::string("none")) +
                 (spec_.has_head ? " + head" : "") + ", resident weights " + format_bytes(resident_bytes_);
  if (n_streamed_ > 0)
    description_ += ", " + std::to_string(n_streamed_) + " blocks streamed from " + pin_note + " (" +
                    format_bytes(streamed_per_token_) + " per token, double-buffered)";
  description_ += std::string(", decode: ") + (use_graph_ && n_streamed_ == 0 ? "CUDA graph" : "direct launches") +
                  ", sequence: cuBLAS" + (q_ ? " on dequantised fp tiles" : "");
}

k::Int8Prep V4Stage::prep_for(const DevMat& m, int slot) const {
  k::Int8Prep p;
  if (!q_) return p;
  p.ry = m.ry;
  p.my = m.my;
  p.xs = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.xs) + size_t(slot) * plan_.xs_stride;
  p.sums = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.sums) + slot * 2;
  return p;
}

k::GemvJob V4Stage::job(const DevMat& m, const void* x, int slot, int epi, void* y) const {
  k::GemvJob j;
  j.w = m.w;
  j.in = m.in;
  j.out = m.out;
  j.ld = m.ld;
  j.x = x;
  if (q_) {
    const k::Int8Prep p = prep_for(m, slot);
    j.xs = p.xs;
    j.sums = p.sums;
    j.rx = m.rx;
    j.mx = m.mx;
  }
  j.epi = epi;
  j.y = y;
  return j;
}

void V4Stage::mm(int rows, const void* x, const DevMat& m, void* y, bool y_f32) {
  if (rows == 1) {
    if (q_) {
      k::PrepJob pj{x, m.in, prep_for(m, 0)};
      k::int8_prep(at_, &pj, 1, stream_);
      ck("int8_prep");
    }
    const k::GemvJob j = job(m, x, 0, y_f32 ? k::EpiF32 : k::EpiAT, y);
    k::gemv(at_, q_, &j, 1, stream_);
    ck("gemv");
    return;
  }
  if (!q_) {
    gemm_rows(cublas_, at_, rows, m.in, m.out, x, m.in, m.w, m.ld, y, y_f32, m.out, dev_);
    return;
  }
  void* tile = static_cast<char*>(arena_) + plan_.tile;
  const int tile_rows = int(std::max<size_t>(1, std::min<size_t>(size_t(m.out), plan_.tile_elems / size_t(m.ld))));
  const size_t ysize = y_f32 ? 4 : as_;
  for (int c0 = 0; c0 < m.out; c0 += tile_rows) {
    const int c1 = std::min(m.out, c0 + tile_rows);
    k::dequant_rows(at_, static_cast<const uint8_t*>(m.w), m.ld, m.in, c0, c1, m.mx, m.rx, m.my, m.ry, tile, stream_);
    ck("dequant_rows");
    gemm_rows(cublas_, at_, rows, m.in, c1 - c0, x, m.in, tile, m.ld, static_cast<char*>(y) + size_t(c0) * ysize, y_f32,
              m.out, dev_);
  }
}

void V4Stage::step_block(int i, V4State& st, const DevMat* M) {
  const DevBlock& B = blocks_[size_t(i)];
  const int l = spec_.first_block + i;
  const int C = hp_.n_embd, A = hp_.n_att, F = hp_.n_ffn;
  void* x = at_ptr(plan_.x, 0);
  void *xk = at_ptr(plan_.xk, 0), *xv = at_ptr(plan_.xv, 0), *xr = at_ptr(plan_.xr, 0);
  void *r = at_ptr(plan_.r, 0), *rw = at_ptr(plan_.rw, 0), *kk = at_ptr(plan_.kk, 0);
  float* kf = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.kf);
  float* vf = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.vf);
  const bool halve = hp_.rescale_layer > 0 && (l + 1) % hp_.rescale_layer == 0;

  // --- time mix: xx = LN1(x); mixes with the previous token's xx (the state)
  const k::MixOut am[3] = {{B.vec[AttMixK], xk, prep_for(M[0], 0)},
                           {B.vec[AttMixV], xv, prep_for(M[1], 1)},
                           {B.vec[AttMixR], xr, prep_for(M[2], 2)}};
  k::ln_mix_step(at_, x, B.vec[Ln1W], B.vec[Ln1B], st.att_shift(i), C, am, 3, nullptr, stream_);
  ck("ln_mix_step");
  // k, v in fp32; r pre-sigmoid in atype
  const k::GemvJob kvr[3] = {job(M[0], xk, 0, k::EpiF32, kf), job(M[1], xv, 1, k::EpiF32, vf), job(M[2], xr, 2, k::EpiAT, r)};
  k::gemv(at_, q_, kvr, 3, stream_);
  ck("gemv(k,v,r)");
  k::wkv(at_, 1, A, B.decay, B.first, kf, vf, r, rw, st.aa(i), st.bb(i), st.pp(i), round_kv_, stream_);
  ck("wkv");
  if (q_) {
    const k::PrepJob pj{rw, A, prep_for(M[3], 0)};
    k::int8_prep(at_, &pj, 1, stream_);
    ck("int8_prep");
  }
  const k::GemvJob o = job(M[3], rw, 0, k::EpiAdd, x);  // x += (r*wkv) Wo
  k::gemv(at_, q_, &o, 1, stream_);
  ck("gemv(output)");

  // --- channel mix
  const k::MixOut fm[2] = {{B.vec[FfnMixK], xk, prep_for(M[4], 0)}, {B.vec[FfnMixR], xr, prep_for(M[6], 1)}};
  k::ln_mix_step(at_, x, B.vec[Ln2W], B.vec[Ln2B], st.ffn_shift(i), C, fm, 2, nullptr, stream_);
  ck("ln_mix_step");
  const k::GemvJob kr[2] = {job(M[4], xk, 0, k::EpiReluSq, kk), job(M[6], xr, 1, k::EpiAT, r)};
  k::gemv(at_, q_, kr, 2, stream_);
  ck("gemv(ffn k,r)");
  if (q_) {
    const k::PrepJob pj{kk, F, prep_for(M[5], 0)};
    k::int8_prep(at_, &pj, 1, stream_);
    ck("int8_prep");
  }
  k::GemvJob v = job(M[5], kk, 0, k::EpiGateAdd, x);  // x += sigmoid(r) * (relu(k)^2 Wv); x /= 2 at a boundary
  v.aux = r;
  v.halve = halve ? 1 : 0;
  k::gemv(at_, q_, &v, 1, stream_);
  ck("gemv(ffn value)");
}

void V4Stage::seq_block(int i, int T, V4State& st, const DevMat* M) {
  const DevBlock& B = blocks_[size_t(i)];
  const int l = spec_.first_block + i;
  const int C = hp_.n_embd, A = hp_.n_att, F = hp_.n_ffn;
  void* x = at_ptr(plan_.x, 0);
  void* buf = at_ptr(plan_.buf, 0);
  void* buf1 = at_ptr(plan_.buf, size_t(C));  // rows 1..T: LN outputs; row 0: previous token's
  void *xk = at_ptr(plan_.xk, 0), *xv = at_ptr(plan_.xv, 0), *xr = at_ptr(plan_.xr, 0);
  void *r = at_ptr(plan_.r, 0), *rw = at_ptr(plan_.rw, 0), *kk = at_ptr(plan_.kk, 0), *y = at_ptr(plan_.y, 0);
  float* kf = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.kf);
  float* vf = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.vf);
  const bool halve = hp_.rescale_layer > 0 && (l + 1) % hp_.rescale_layer == 0;

  // --- time mix
  check(cudaMemcpyAsync(buf, st.att_shift(i), size_t(C) * as_, cudaMemcpyDeviceToDevice, stream_), "shift copy", dev_);
  k::layer_norm_rows(at_, x, nullptr, B.vec[Ln1W], B.vec[Ln1B], buf1, T, C, stream_);
  ck("layer_norm_rows");
  const k::MixOut am[3] = {{B.vec[AttMixK], xk, {}}, {B.vec[AttMixV], xv, {}}, {B.vec[AttMixR], xr, {}}};
  k::mix_rows(at_, buf, T, C, am, 3, st.att_shift(i), stream_);
  ck("mix_rows");
  mm(T, xk, M[0], kf, true);
  mm(T, xv, M[1], vf, true);
  mm(T, xr, M[2], r, false);
  k::wkv(at_, T, A, B.decay, B.first, kf, vf, r, rw, st.aa(i), st.bb(i), st.pp(i), round_kv_, stream_);
  ck("wkv");
  mm(T, rw, M[3], y, false);

  // --- channel mix (x += y is fused into LN2)
  check(cudaMemcpyAsync(buf, st.ffn_shift(i), size_t(C) * as_, cudaMemcpyDeviceToDevice, stream_), "shift copy", dev_);
  k::layer_norm_rows(at_, x, y, B.vec[Ln2W], B.vec[Ln2B], buf1, T, C, stream_);
  ck("layer_norm_rows");
  const k::MixOut fm[2] = {{B.vec[FfnMixK], xk, {}}, {B.vec[FfnMixR], xr, {}}};
  k::mix_rows(at_, buf, T, C, fm, 2, st.ffn_shift(i), stream_);
  ck("mix_rows");
  mm(T, xk, M[4], kk, false);
  k::relu_sq(at_, kk, size_t(T) * F, stream_);
  ck("relu_sq");
  mm(T, xr, M[6], r, false);
  mm(T, kk, M[5], y, false);
  k::gate_add(at_, x, r, y, size_t(T) * C, halve, stream_);
  ck("gate_add");
}

void V4Stage::head_forward(int T, bool all_logits, float* logits_user) {
  const int C = hp_.n_embd, V = hp_.n_vocab;
  const int rows = (T > 1 && all_logits) ? T : 1;
  void* xin = at_ptr(plan_.x, size_t(T - rows) * C);
  void* xx = at_ptr(plan_.xk, 0);
  float* logits = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.logits);
  k::layer_norm_rows(at_, xin, nullptr, ln_out_w_, ln_out_b_, xx, rows, C, stream_);
  ck("layer_norm_rows(ln_out)");
  if (rows == 1) {
    if (q_) {
      const k::PrepJob pj{xx, C, prep_for(head_, 0)};
      k::int8_prep(at_, &pj, 1, stream_);
      ck("int8_prep");
    }
    const k::GemvJob j = job(head_, xx, 0, k::EpiHead, logits);
    k::gemv(at_, q_, &j, 1, stream_);
    ck("gemv(head)");
    check(cudaMemcpyAsync(logits_host_, logits, size_t(V) * 4, cudaMemcpyDeviceToHost, stream_), "logits download", dev_);
  } else {
    mm(rows, xx, head_, logits, true);
    k::round_f32(at_, logits, size_t(rows) * V, stream_);  // logits pass through atype, as x @ head in the reference
    ck("round_f32");
    check(cudaMemcpyAsync(logits_user, logits, size_t(rows) * V * 4, cudaMemcpyDeviceToHost, stream_), "logits download",
          dev_);
  }
}

void V4Stage::upload_block(int i, int slot) {
  DevBlock& b = blocks_[size_t(i)];
  const size_t ws = q_ ? 1 : dtype_size(spec_.precision.wtype);
  char* base = static_cast<char*>(arena_) + plan_.slot[slot];
  check(cudaStreamWaitEvent(copy_stream_, ev_free_[slot], 0), "cudaStreamWaitEvent", dev_);
  for (const DevMat& m : b.m) {
    check(cudaMemcpy2DAsync(base + m.slot_off, size_t(m.ld) * ws, m.host, size_t(m.in) * ws, size_t(m.in) * ws,
                            size_t(m.out), cudaMemcpyHostToDevice, copy_stream_),
          "stream upload", dev_);
    streamed_total_ += uint64_t(m.in) * uint64_t(m.out) * ws;
  }
  check(cudaEventRecord(ev_up_[slot], copy_stream_), "cudaEventRecord", dev_);
}

void V4Stage::enqueue(int T, V4State& st, bool head, bool all_logits, float* logits_user) {
  const int C = hp_.n_embd;
  float* x_f32 = reinterpret_cast<float*>(static_cast<char*>(arena_) + plan_.x_f32);
  void* x = at_ptr(plan_.x, 0);
  check(cudaMemcpyAsync(x_f32, x_host_, size_t(T) * C * 4, cudaMemcpyHostToDevice, stream_), "x upload", dev_);
  k::convert_in(at_, x_f32, x, size_t(T) * C, stream_);  // x.to(atype)
  ck("convert_in");

  if (n_streamed_ > 0) upload_block(first_streamed_, 0);  // overlaps the resident blocks
  DevMat mats[kMatsPerBlock];
  for (int i = 0; i < int(blocks_.size()); ++i) {
    const DevBlock& b = blocks_[size_t(i)];
    int slot = -1;
    for (int m = 0; m < kMatsPerBlock; ++m) mats[m] = b.m[m];
    if (b.streamed) {
      const int kidx = i - first_streamed_;
      slot = kidx % 2;
      if (kidx + 1 < n_streamed_) upload_block(i + 1, 1 - slot);  // prefetch the next block
      check(cudaStreamWaitEvent(stream_, ev_up_[slot], 0), "cudaStreamWaitEvent", dev_);
      char* base = static_cast<char*>(arena_) + plan_.slot[slot];
      for (int m = 0; m < kMatsPerBlock; ++m) mats[m].w = base + mats[m].slot_off;
    }
    if (T == 1) step_block(i, st, mats);
    else seq_block(i, T, st, mats);
    if (slot >= 0) check(cudaEventRecord(ev_free_[slot], stream_), "cudaEventRecord", dev_);
  }

  k::convert_out(at_, x, x_f32, size_t(T) * C, stream_);
  ck("convert_out");
  check(cudaMemcpyAsync(x_host_, x_f32, size_t(T) * C * 4, cudaMemcpyDeviceToHost, stream_), "x download", dev_);
  if (head) head_forward(T, all_logits, logits_user);
}

void V4Stage::ensure_graph(V4State& st, bool head) {
  const int h = head ? 1 : 0;
  if (graph_[h] && graph_key_[h] == st.key()) return;
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture", dev_);
  try {
    enqueue(1, st, head, false, nullptr);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream_, &broken);
    if (broken) cudaGraphDestroy(broken);
    (void)cudaGetLastError();
    throw;
  }
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(stream_, &g), "cudaStreamEndCapture", dev_);
  if (graph_[h]) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(graph_[h], g, &info) != cudaSuccess) {
      (void)cudaGetLastError();
      cudaGraphExecDestroy(graph_[h]);
      graph_[h] = nullptr;
    }
  }
  if (!graph_[h]) {
    cudaError_t e = cudaGraphInstantiate(&graph_[h], g, 0);
    if (e != cudaSuccess) {
      graph_[h] = nullptr;
      cudaGraphDestroy(g);
      throw_cuda(e, "cudaGraphInstantiate", dev_);
    }
  }
  cudaGraphDestroy(g);
  graph_key_[h] = st.key();
}

void V4Stage::forward(float* x, int T, StageState& state, const ForwardOptions& opts) {
  if (T <= 0) return;
  if (T > std::max(1, spec_.chunk_len))
    throw Error(plugin_ + ": forward with " + std::to_string(T) + " tokens, more than the chunk length " +
                std::to_string(spec_.chunk_len));
  auto* st = dynamic_cast<V4State*>(&state);
  if (!st || !st->matches(dev_, int(blocks_.size()), hp_.n_embd, spec_.precision.atype))
    throw Error(plugin_ + ": the state passed to forward() belongs to another stage");
  DeviceGuard guard(dev_);
  const int C = hp_.n_embd;
  const bool head = spec_.has_head && opts.logits;
  std::memcpy(x_host_, x, size_t(T) * C * 4);
  if (T == 1 && use_graph_ && n_streamed_ == 0) {
    ensure_graph(*st, head);
    check(cudaGraphLaunch(graph_[head ? 1 : 0], stream_), "cudaGraphLaunch", dev_);
  } else {
    enqueue(T, *st, head, opts.all_logits, opts.logits);
  }
  check(cudaStreamSynchronize(stream_), "forward", dev_);
  std::memcpy(x, x_host_, size_t(T) * C * 4);
  if (head && (T == 1 || !opts.all_logits)) std::memcpy(opts.logits, logits_host_, size_t(hp_.n_vocab) * 4);
}

}  // namespace

DeviceBudget device_budget(const StageSpec& spec, const ModelHParams& hp) { return plan_arena(spec, hp).budget; }

std::unique_ptr<Stage> create_v4_stage(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp,
                                       const WeightSource& prepared) {
  check_supported(plugin, spec, hp);
  auto st = std::make_unique<V4Stage>(plugin, spec, hp);
  st->build(prepared);  // on error, ~V4Stage releases whatever was created
  return st;
}

}  // namespace corvid::cuda
