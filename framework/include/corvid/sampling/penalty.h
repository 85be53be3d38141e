// Repetition penalties with decay (rwkv-reference §6.2-6.3) and fixed logit edits.
//
// The occurrence map holds, per id seen so far, a decaying count occ[id].
// Before each draw, for every id in the map (even when occ[id] has decayed to
// almost 0): logit[id] -= presence + occ[id] * frequency. After each draw, every
// count is multiplied by `decay`, then the new id's weight is added.
//
// The weight of a new id is 1 in chat.py (every token counts) and, in the
// reference's PIPELINE.generate, 0 for tokens whose decoded text is a substring
// of " \t0123456789" (one space, tab or digit, runs of digits, the empty string).
//
// Counts are kept in double (they are Python floats in the reference); the
// penalty is rounded to fp32 and subtracted in fp32, as a float32 tensor does.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace corvid {

// Doubles, as the reference's Python floats are.
struct PenaltyParams {
  double presence = 0.0;
  double frequency = 0.0;
  double decay = 1.0;
};

// How much a new token adds to its count.
enum class PenaltyWeighting {
  EveryToken,        // chat.py and benchmark_more.py: always 1
  SkipSpaceDigits,   // PIPELINE.generate: 0 for " ", "\t", digits (substrings of " \t0123456789")
};

class RepetitionPenalty {
 public:
  explicit RepetitionPenalty(size_t n_vocab);

  void reset();                      // a fresh, empty map
  bool empty() const { return keys_.empty(); }
  // logit[id] -= float(presence + occ[id] * frequency) for every id in the map.
  void apply(std::span<float> logits, const PenaltyParams& p) const;
  // Decay every count, then add `weight` to `id` (the id joins the map even with weight 0).
  void record(int32_t id, double weight, double decay);

  // The weight PIPELINE.generate gives a token with this decoded text.
  static double generate_weight(std::string_view token_text);

  // Ids in the order they joined the map, and their counts.
  const std::vector<int32_t>& ids() const { return keys_; }
  double count(int32_t id) const { return occ_[size_t(id)]; }
  // For session files: (id, count) in insertion order; restore() replaces the map.
  std::vector<std::pair<int32_t, double>> entries() const;
  void restore(std::span<const std::pair<int32_t, double>> entries);

 private:
  std::vector<double> occ_;
  std::vector<uint8_t> present_;
  std::vector<int32_t> keys_;
};

// Fixed edits applied before penalties: banned ids get -inf, biased ids get +bias.
struct LogitEdits {
  std::vector<int32_t> banned;
  std::vector<std::pair<int32_t, float>> bias;

  bool empty() const { return banned.empty() && bias.empty(); }
  void apply(std::span<float> logits) const;
  // Throws corvid::Error naming the id when one is outside [0, n_vocab).
  void validate(size_t n_vocab) const;
};

}  // namespace corvid
