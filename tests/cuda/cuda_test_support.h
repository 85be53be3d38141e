// Test support for the CUDA plugins, usable without a GPU:
//   * RandomModel: an RWKV-4 checkpoint's raw tensors (as the framework offers
//     them to Backend::prepare, weights.h) with random values of a given shape;
//   * MemoryStore: a WeightSink/WeightSource pair holding prepared tensors;
//   * ReferenceV4: an independent CPU implementation of the RWKV-4 forward pass
//     written from rwkv-reference 4.0-4.2 in double precision, with optional
//     rounding through the activation type at the points where the reference
//     (torch) stores an atype tensor, and optional int8 weights (2.6).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "corvid/sdk/backend.h"
#include "corvid/sdk/weights.h"
#include "corvid/sdk/weights_util.h"

namespace corvid_test {

using namespace corvid;

inline ModelHParams tiny_hparams(int L, int C, int V, int R) {
  ModelHParams hp;
  hp.arch = Arch::V4;
  hp.n_layer = L;
  hp.n_embd = C;
  hp.n_att = C;
  hp.n_ffn = 4 * C;
  hp.n_vocab = V;
  hp.rescale_layer = R;
  return hp;
}

// Owns tensors by name; serves them as a WeightSource.
class TensorMap : public WeightSource {
 public:
  struct Entry {
    std::vector<uint8_t> bytes;
    TensorView view;
  };
  const TensorView* find(std::string_view name) const override {
    auto it = map_.find(std::string(name));
    return it == map_.end() ? nullptr : &it->second->view;
  }
  std::string origin() const override { return origin_; }
  void* add(const std::string& name, DType dt, const std::vector<int64_t>& shape) {
    auto e = std::make_unique<Entry>();
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    e->bytes.assign(size_t(n) * dtype_size(dt) + 64, 0);
    void* p = e->bytes.data();
    e->view.data = p;
    e->view.dtype = dt;
    e->view.ndim = int(shape.size());
    int64_t st = 1;
    for (int d = e->view.ndim - 1; d >= 0; --d) {
      e->view.shape[d] = shape[size_t(d)];
      e->view.strides[d] = st;
      st *= shape[size_t(d)];
    }
    names_.push_back(name);
    map_[name] = std::move(e);
    return p;
  }
  const std::vector<std::string>& names() const { return names_; }
  std::string origin_ = "memory";

 private:
  std::map<std::string, std::unique_ptr<Entry>> map_;
  std::vector<std::string> names_;
};

class MemoryStore : public WeightSink, public TensorMap {
 public:
  MemoryStore() { origin_ = "prepared"; }
  void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) override {
    if (find(name)) throw Error("duplicate prepared tensor " + std::string(name));
    return add(std::string(name), dtype, shape);
  }
};

// Raw checkpoint tensors (fp32 values; `raw_dtype` BF16 stores them rounded to bf16,
// like released checkpoints). Names as the framework offers them.
class RandomModel : public TensorMap {
 public:
  RandomModel(const ModelHParams& hp, uint32_t seed, DType raw_dtype = DType::F32) : hp_(hp) {
    origin_ = "random-model";
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.f, 1.f);
    const int64_t C = hp.n_embd, A = hp.n_att, F = hp.n_ffn, V = hp.n_vocab;
    auto put = [&](const std::string& name, std::vector<int64_t> shape, auto gen, DType dt) {
      int64_t n = 1;
      for (int64_t s : shape) n *= s;
      void* p = add(name, dt, shape);
      for (int64_t i = 0; i < n; ++i) {
        float v = gen();
        if (dt == DType::BF16) static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
        else static_cast<float*>(p)[i] = v;
      }
    };
    auto mat = [&](const std::string& name, int64_t out, int64_t in) {
      const float s = 1.f / std::sqrt(float(in));
      put(name, {out, in}, [&] { return nd(rng) * s; }, raw_dtype);
    };
    for (int l = 0; l < hp.n_layer; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      put(b + "ln1.weight", {C}, [&] { return 1.f + 0.2f * nd(rng); }, raw_dtype);
      put(b + "ln1.bias", {C}, [&] { return 0.2f * nd(rng); }, raw_dtype);
      put(b + "ln2.weight", {C}, [&] { return 1.f + 0.2f * nd(rng); }, raw_dtype);
      put(b + "ln2.bias", {C}, [&] { return 0.2f * nd(rng); }, raw_dtype);
      for (const char* m : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
        put(b + m, {C}, [&] { return ud(rng); }, raw_dtype);
      // The framework offers time_decay as w = -exp(d) and time_first as u, fp32 (weights.h).
      put(b + "att.time_decay", {A}, [&] { return -std::exp(-3.f + 4.f * ud(rng)); }, DType::F32);
      put(b + "att.time_first", {A}, [&] { return -1.f + 2.f * ud(rng); }, DType::F32);
      mat(b + "att.key.weight", A, C);
      mat(b + "att.value.weight", A, C);
      mat(b + "att.receptance.weight", A, C);
      mat(b + "att.output.weight", C, A);
      mat(b + "ffn.key.weight", F, C);
      mat(b + "ffn.value.weight", C, F);
      mat(b + "ffn.receptance.weight", C, C);
    }
    put("ln_out.weight", {C}, [&] { return 1.f + 0.2f * nd(rng); }, raw_dtype);
    put("ln_out.bias", {C}, [&] { return 0.2f * nd(rng); }, raw_dtype);
    mat("head.weight", V, C);
  }
  const ModelHParams& hp() const { return hp_; }

  // fp32 copy of any raw tensor
  std::vector<float> f32(const std::string& name) const {
    const TensorView& t = require(name);
    std::vector<float> v(size_t(t.numel()));
    wutil::to_f32(t, v.data());
    return v;
  }

 private:
  ModelHParams hp_;
};

// Random hidden-state rows (what the framework hands a stage: folded embedding rows).
inline std::vector<float> random_rows(int T, int C, uint32_t seed, DType round_to = DType::F32) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(T) * C);
  for (float& v : x) v = wutil::round_to(round_to, nd(rng));
  return x;
}

// ---------------------------------------------------------------------------
// Independent CPU reference (rwkv-reference 4.0-4.2).

class ReferenceV4 {
 public:
  // precision: atype rounding points (F32 = none) and int8 weights when quantized.
  ReferenceV4(const RandomModel& m, Precision p) : hp_(m.hp()), p_(p) {
    const int L = hp_.n_layer;
    blocks_.resize(size_t(L));
    for (int l = 0; l < L; ++l) {
      auto& b = blocks_[size_t(l)];
      const std::string n = "blocks." + std::to_string(l) + ".";
      auto vec = [&](const char* s) { return round_vec(m.f32(n + s)); };
      b.ln1w = vec("ln1.weight"); b.ln1b = vec("ln1.bias");
      b.ln2w = vec("ln2.weight"); b.ln2b = vec("ln2.bias");
      b.amk = vec("att.time_mix_k"); b.amv = vec("att.time_mix_v"); b.amr = vec("att.time_mix_r");
      b.fmk = vec("ffn.time_mix_k"); b.fmr = vec("ffn.time_mix_r");
      b.w = m.f32(n + "att.time_decay");
      b.u = m.f32(n + "att.time_first");
      b.Wk = matrix(m, n + "att.key.weight"); b.Wv = matrix(m, n + "att.value.weight");
      b.Wr = matrix(m, n + "att.receptance.weight"); b.Wo = matrix(m, n + "att.output.weight");
      b.Fk = matrix(m, n + "ffn.key.weight"); b.Fv = matrix(m, n + "ffn.value.weight");
      b.Fr = matrix(m, n + "ffn.receptance.weight");
    }
    lnw_ = round_vec(m.f32("ln_out.weight"));
    lnb_ = round_vec(m.f32("ln_out.bias"));
    head_ = matrix(m, "head.weight");
  }

  struct State {
    std::vector<std::vector<double>> att_shift, a, b, p, ffn_shift;
  };
  State new_state() const {
    State s;
    const size_t L = size_t(hp_.n_layer), C = size_t(hp_.n_embd), A = size_t(hp_.n_att);
    s.att_shift.assign(L, std::vector<double>(C, 0.0));
    s.ffn_shift.assign(L, std::vector<double>(C, 0.0));
    s.a.assign(L, std::vector<double>(A, 0.0));
    s.b.assign(L, std::vector<double>(A, 0.0));
    s.p.assign(L, std::vector<double>(A, -1e30));
    return s;
  }

  // One token through blocks [first, end) (and the head when logits != nullptr).
  // x: [C] in/out (the stage's output, as host fp32).
  void step(std::vector<double>& x, State& s, int first, int end, std::vector<double>* logits) const {
    const int C = hp_.n_embd, R = hp_.rescale_layer;
    for (double& v : x) v = rd(v);  // x.to(atype) on entering the stage
    for (int l = first; l < end; ++l) {
      const Block& B = blocks_[size_t(l)];
      // time mix
      std::vector<double> xx = layer_norm(x, B.ln1w, B.ln1b);
      std::vector<double> kx = mix(xx, s.att_shift[size_t(l)], B.amk), vx = mix(xx, s.att_shift[size_t(l)], B.amv),
                          rx = mix(xx, s.att_shift[size_t(l)], B.amr);
      s.att_shift[size_t(l)] = xx;
      std::vector<double> k = matvec(kx, B.Wk), v = matvec(vx, B.Wv), r = matvec(rx, B.Wr);
      const bool round_kv = p_.quantized() || p_.atype == DType::BF16;
      std::vector<double> rw(k.size());
      for (size_t c = 0; c < k.size(); ++c) {
        const double kk = round_kv ? rd(k[c]) : double(float(k[c]));
        const double vv = round_kv ? rd(v[c]) : double(float(v[c]));
        double& a = s.a[size_t(l)][c];
        double& b = s.b[size_t(l)][c];
        double& p = s.p[size_t(l)][c];
        const double uk = B.u[c] + kk;
        double q = std::max(p, uk);
        double e1 = std::exp(p - q), e2 = std::exp(uk - q);
        const double wkv = rd((e1 * a + e2 * vv) / (e1 * b + e2));
        const double pw = p + B.w[c];
        q = std::max(pw, kk);
        e1 = std::exp(pw - q);
        e2 = std::exp(kk - q);
        a = e1 * a + e2 * vv;
        b = e1 * b + e2;
        p = q;
        const double rr = rd(sigmoid(rd(r[c])));
        rw[c] = rd(rr * wkv);
      }
      std::vector<double> o = matvec(rw, B.Wo);
      for (int c = 0; c < C; ++c) x[size_t(c)] = rd(x[size_t(c)] + rd(o[size_t(c)]));
      // channel mix
      xx = layer_norm(x, B.ln2w, B.ln2b);
      kx = mix(xx, s.ffn_shift[size_t(l)], B.fmk);
      rx = mix(xx, s.ffn_shift[size_t(l)], B.fmr);
      s.ffn_shift[size_t(l)] = xx;
      std::vector<double> kk = matvec(kx, B.Fk), rr = matvec(rx, B.Fr);
      for (double& z : kk) {
        const double t = std::max(rd(z), 0.0);
        z = rd(t * t);
      }
      std::vector<double> vv = matvec(kk, B.Fv);
      for (int c = 0; c < C; ++c) {
        const double g = rd(sigmoid(rd(rr[size_t(c)])));
        x[size_t(c)] = rd(x[size_t(c)] + rd(g * rd(vv[size_t(c)])));
      }
      if (R > 0 && (l + 1) % R == 0)
        for (double& z : x) z = rd(z / 2);
    }
    if (logits) {
      std::vector<double> xx = layer_norm(x, lnw_, lnb_);
      *logits = matvec(xx, head_);
      for (double& z : *logits) z = rd(z);
    }
  }

  // Canonical serialized form (backend.h) of blocks [first, end).
  std::vector<float> serialize(const State& s, int first, int end) const {
    std::vector<float> out;
    for (int l = first; l < end; ++l) {
      for (double v : s.att_shift[size_t(l)]) out.push_back(float(v));
      for (double v : s.a[size_t(l)]) out.push_back(float(v));
      for (double v : s.b[size_t(l)]) out.push_back(float(v));
      for (double v : s.p[size_t(l)]) out.push_back(float(v));
      for (double v : s.ffn_shift[size_t(l)]) out.push_back(float(v));
    }
    return out;
  }

 private:
  struct Mat {
    int in = 0, out = 0;
    std::vector<double> w;  // (in, out) row-major, as the reference multiplies x W
  };
  struct Block {
    std::vector<double> ln1w, ln1b, ln2w, ln2b, amk, amv, amr, fmk, fmr;
    std::vector<float> w, u;
    Mat Wk, Wv, Wr, Wo, Fk, Fv, Fr;
  };

  double rd(double v) const { return double(wutil::round_to(p_.atype, float(v))); }
  static double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  std::vector<double> round_vec(const std::vector<float>& v) const {
    std::vector<double> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = rd(v[i]);
    return r;
  }
  // The weights as the reference holds them: rescaled (2.2), then cast to the
  // weight type or quantised and dequantised with atype side tensors (2.6).
  Mat matrix(const RandomModel& m, const std::string& name) const {
    const TensorView& t = m.require(name);
    Mat M;
    M.out = int(t.shape[0]);
    M.in = int(t.shape[1]);
    std::vector<float> w = wutil::matrix_in_out_f32(t, hp_, name);  // (in, out), rescaled
    M.w.resize(w.size());
    if (!p_.quantized()) {
      for (size_t i = 0; i < w.size(); ++i) M.w[i] = double(wutil::round_to(p_.wtype, w[i]));
      return M;
    }
    const int64_t n = M.in, mm = M.out;
    std::vector<uint8_t> q(w.size());
    std::vector<float> mx(static_cast<size_t>(mm)), rx(static_cast<size_t>(mm)), my(static_cast<size_t>(n)), ry(static_cast<size_t>(n));
    wutil::quantize_u8(w.data(), n, mm, q.data(), mx.data(), rx.data(), my.data(), ry.data());
    for (auto* v : {&mx, &rx, &my, &ry})
      for (float& z : *v) z = wutil::round_to(p_.atype, z);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < mm; ++c)
        M.w[size_t(r * mm + c)] = (double(q[size_t(r * mm + c)]) + 0.5) * ry[size_t(r)] * rx[size_t(c)] + my[size_t(r)] +
                                  mx[size_t(c)];
    return M;
  }
  std::vector<double> matvec(const std::vector<double>& x, const Mat& M) const {
    std::vector<double> y(size_t(M.out), 0.0);
    for (int r = 0; r < M.in; ++r) {
      const double xr = x[size_t(r)];
      const double* row = M.w.data() + size_t(r) * M.out;
      for (int c = 0; c < M.out; ++c) y[size_t(c)] += xr * row[c];
    }
    return y;
  }
  std::vector<double> layer_norm(const std::vector<double>& x, const std::vector<double>& w,
                                 const std::vector<double>& b) const {
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= double(x.size());
    for (double v : x) var += (v - mean) * (v - mean);
    var /= double(x.size());
    const double rstd = 1.0 / std::sqrt(var + 1e-5);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = rd((x[i] - mean) * rstd * w[i] + b[i]);
    return y;
  }
  std::vector<double> mix(const std::vector<double>& xx, const std::vector<double>& prev,
                          const std::vector<double>& mu) const {
    std::vector<double> y(xx.size());
    for (size_t i = 0; i < xx.size(); ++i) y[i] = rd(rd(xx[i] * mu[i]) + rd(prev[i] * rd(1.0 - mu[i])));
    return y;
  }

  ModelHParams hp_;
  Precision p_;
  std::vector<Block> blocks_;
  std::vector<double> lnw_, lnb_;
  Mat head_;
};

}  // namespace corvid_test
