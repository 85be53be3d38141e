// Token sampling as the reference does it (rwkv-reference §6.1):
//
//   p      = softmax(logits)                      (fp32)
//   top-p  : sort p descending, cumsum (fp32, in order); cutoff = the sorted p at
//            the FIRST index whose cumsum >= top_p; zero every p < cutoff, so
//            ties at the cutoff survive (top_p = 0 keeps the maximum and its ties)
//   top-k  : if 0 < top_k < |p|, keep only the first top_k in sort order
//   temp   : p <- p^(1/T) on the survivors (T = 0 means greedy: T = 1, top_p = 0)
//   draw   : renormalise and draw with one uniform u in [0,1): the first id, in
//            ascending id order, whose cumulative weight exceeds u·total
//            (numpy's random.choice, so a given u picks the same id)
//
// Decisions on the reference's quirks (documented in docs/chat.md):
//   * top_p >= 1 means "no nucleus truncation". In the reference a float32 cumsum
//     that ends at 0.99999... never reaches 1.0 and the fallback to index 0 turns
//     top_p = 1 into greedy decoding, which nobody asking for top_p = 1 wants.
//   * Ties in sort order (which ids survive top_k among equal probabilities) are
//     broken by the lower id first; numpy's argsort leaves this unspecified.
//
// No allocation per token: the buffers are sized once for the vocabulary.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace corvid {

// The random source of the sampler: std::mt19937_64 (fully specified by the C++
// standard, so a seed gives the same sequence on every platform), uniform
// doubles built from its top 53 bits.
class SamplerRng {
 public:
  explicit SamplerRng(uint64_t seed = 0) : eng_(seed) {}
  void seed(uint64_t s) { eng_.seed(s); }
  double uniform() { return double(eng_() >> 11) * 0x1.0p-53; }  // [0, 1)
  // The engine's full state as text (std::mt19937_64's stream form), for session files.
  std::string save() const;
  // Throws corvid::Error when `text` is not a saved state.
  void restore(const std::string& text);

 private:
  std::mt19937_64 eng_;
};

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 0.85f;       // >= 1 = off
  int top_k = 0;             // <= 0 = off
};

class Sampler {
 public:
  explicit Sampler(size_t n_vocab);

  size_t n_vocab() const { return probs_.size(); }

  // Draws one id from `logits` (n_vocab values; -inf allowed for banned ids).
  // Throws corvid::Error when no id has a finite logit.
  int32_t sample(std::span<const float> logits, const SamplingParams& params, SamplerRng& rng);
  // The same with the uniform draw given (tests compare against numpy with it).
  int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double u);

  // The distribution the draw uses (normalised survivor weights, 0 elsewhere).
  void distribution(std::span<const float> logits, const SamplingParams& params, std::vector<double>& out);

  // The first id with the largest logit.
  static int32_t argmax(std::span<const float> logits);

 private:
  // Fills kept_ (ascending ids) and weights_ (p^(1/T), same order); returns their sum.
  double select(std::span<const float> logits, const SamplingParams& params);

  std::vector<float> probs_;
  std::vector<int32_t> heap_;   // ids ordered as a max-heap by probability
  std::vector<int32_t> kept_;   // survivors
  std::vector<double> weights_;
};

}  // namespace corvid
