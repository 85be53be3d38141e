// Sampling in the reference's order: softmax -> top-p (ties kept) -> top-k ->
// temperature as a power -> draw. See sampler.h for the decisions on quirks.
#include "corvid/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "corvid/sdk/error.h"

namespace corvid {

std::string SamplerRng::save() const {
  std::ostringstream os;
  os << eng_;
  return os.str();
}

void SamplerRng::restore(const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 e;
  is >> e;
  if (is.fail()) throw Error("sampler state: not a saved std::mt19937_64 state");
  eng_ = e;
}

Sampler::Sampler(size_t n_vocab) : probs_(n_vocab), heap_(n_vocab) {
  if (n_vocab == 0) throw Error("sampler: the vocabulary is empty");
  kept_.reserve(n_vocab);
  weights_.reserve(n_vocab);
}

int32_t Sampler::argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[size_t(best)]) best = int32_t(i);
  return best;
}

double Sampler::select(std::span<const float> logits, const SamplingParams& params) {
  const size_t V = probs_.size();
  if (logits.size() != V)
    throw Error("sampler: got " + std::to_string(logits.size()) + " logits, expected " + std::to_string(V));
  float temperature = params.temperature;
  float top_p = params.top_p;
  if (temperature == 0.0f) {  // greedy, as the reference spells it
    temperature = 1.0f;
    top_p = 0.0f;
  }

  // 1. softmax in fp32 (max subtracted; the sum accumulates in double).
  float mx = -INFINITY;
  for (float v : logits)
    if (v > mx) mx = v;
  if (!std::isfinite(mx)) throw Error("sampler: no token has a finite logit (all banned?)");
  double sum = 0;
  for (size_t i = 0; i < V; ++i) {
    float e = std::isnan(logits[i]) ? 0.0f : std::exp(logits[i] - mx);
    probs_[i] = e;
    sum += e;
  }
  for (float& p : probs_) p = float(double(p) / sum);

  const bool use_p = top_p < 1.0f;
  const bool use_k = params.top_k > 0 && size_t(params.top_k) < V;
  kept_.clear();
  if (!use_p && !use_k) {
    kept_.resize(V);
    std::iota(kept_.begin(), kept_.end(), 0);
  } else {
    // Sort order: probability descending, lower id first among equals.
    auto less = [this](int32_t a, int32_t b) {
      return probs_[size_t(a)] < probs_[size_t(b)] || (probs_[size_t(a)] == probs_[size_t(b)] && a > b);
    };
    std::iota(heap_.begin(), heap_.end(), 0);
    std::make_heap(heap_.begin(), heap_.end(), less);
    size_t end = V;  // heap_[end..V) holds the popped ids, largest at V-1
    auto pop = [&]() {
      std::pop_heap(heap_.begin(), heap_.begin() + std::ptrdiff_t(end), less);
      return heap_[--end];
    };
    if (use_p) {
      // 2. top-p: the first sorted index where the fp32 cumsum reaches top_p.
      float cum = 0.0f, cutoff = 0.0f;
      bool found = false;
      while (end > 0) {
        int32_t id = pop();
        cum += probs_[size_t(id)];
        if (cum >= top_p) {
          cutoff = probs_[size_t(id)];
          found = true;
          break;
        }
      }
      if (!found) cutoff = probs_[size_t(heap_[V - 1])];  // index 0: the maximum
      // Ties at the cutoff survive: take the rest of them from the heap.
      while (end > 0 && probs_[size_t(heap_[0])] >= cutoff) pop();
      for (size_t j = V; j-- > end;) {
        int32_t id = heap_[j];
        if (probs_[size_t(id)] >= cutoff) kept_.push_back(id);
      }
      // 3. top-k by sort order among the survivors.
      if (use_k && kept_.size() > size_t(params.top_k)) kept_.resize(size_t(params.top_k));
    } else {
      for (int k = 0; k < params.top_k; ++k) kept_.push_back(pop());
    }
    std::sort(kept_.begin(), kept_.end());
  }

  // 4. temperature as a power on the survivors.
  weights_.resize(kept_.size());
  double total = 0;
  const float inv_t = 1.0f / temperature;
  for (size_t j = 0; j < kept_.size(); ++j) {
    float p = probs_[size_t(kept_[j])];
    float w = temperature == 1.0f ? p : std::pow(p, inv_t);
    weights_[j] = w;
    total += w;
  }
  return total;
}

int32_t Sampler::sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double u) {
  double total = select(logits, params);
  if (!(total > 0)) {  // every survivor underflowed to 0 after the power: take the most likely
    int32_t best = kept_[0];
    for (int32_t id : kept_)
      if (probs_[size_t(id)] > probs_[size_t(best)]) best = id;
    return best;
  }
  // 5. the first id (ascending) whose cumulative weight exceeds u * total.
  const double target = u * total;
  double cum = 0;
  int32_t last_nonzero = kept_[0];
  for (size_t j = 0; j < kept_.size(); ++j) {
    if (weights_[j] <= 0) continue;
    cum += weights_[j];
    last_nonzero = kept_[j];
    if (cum > target) return kept_[j];
  }
  return last_nonzero;  // u * total rounded past the final sum
}

int32_t Sampler::sample(std::span<const float> logits, const SamplingParams& params, SamplerRng& rng) {
  // One uniform per draw, always, so the sequence of draws does not depend on
  // how many candidates survived.
  return sample_with_uniform(logits, params, rng.uniform());
}

void Sampler::distribution(std::span<const float> logits, const SamplingParams& params, std::vector<double>& out) {
  double total = select(logits, params);
  out.assign(probs_.size(), 0.0);
  for (size_t j = 0; j < kept_.size(); ++j) out[size_t(kept_[j])] = total > 0 ? weights_[j] / total : 0.0;
}

}  // namespace corvid
