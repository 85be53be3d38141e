// Repetition penalties with decay and fixed logit edits (rwkv-reference §6.2-6.3).
#include "corvid/sampling/penalty.h"

#include <cmath>
#include <string>

#include "corvid/sdk/error.h"

namespace corvid {

RepetitionPenalty::RepetitionPenalty(size_t n_vocab) : occ_(n_vocab, 0.0), present_(n_vocab, 0) {
  keys_.reserve(n_vocab);  // every id at most once: no allocation while generating
}

void RepetitionPenalty::reset() {
  for (int32_t id : keys_) {
    occ_[size_t(id)] = 0.0;
    present_[size_t(id)] = 0;
  }
  keys_.clear();
}

void RepetitionPenalty::apply(std::span<float> logits, const PenaltyParams& p) const {
  for (int32_t id : keys_) {
    // Python computes presence + occ * frequency in double; the tensor
    // subtraction rounds that scalar to fp32 and subtracts in fp32.
    double pen = p.presence + occ_[size_t(id)] * p.frequency;
    logits[size_t(id)] -= float(pen);
  }
}

void RepetitionPenalty::record(int32_t id, double weight, double decay) {
  if (id < 0 || size_t(id) >= occ_.size())
    throw Error("repetition penalty: token id " + std::to_string(id) + " outside the vocabulary");
  if (decay != 1.0)
    for (int32_t k : keys_) occ_[size_t(k)] *= decay;
  if (!present_[size_t(id)]) {
    present_[size_t(id)] = 1;
    keys_.push_back(id);
    occ_[size_t(id)] = weight;
  } else {
    occ_[size_t(id)] += weight;
  }
}

double RepetitionPenalty::generate_weight(std::string_view text) {
  static constexpr std::string_view kLight = " \t0123456789";
  return kLight.find(text) != std::string_view::npos ? 0.0 : 1.0;
}

std::vector<std::pair<int32_t, double>> RepetitionPenalty::entries() const {
  std::vector<std::pair<int32_t, double>> out;
  out.reserve(keys_.size());
  for (int32_t id : keys_) out.emplace_back(id, occ_[size_t(id)]);
  return out;
}

void RepetitionPenalty::restore(std::span<const std::pair<int32_t, double>> entries) {
  reset();
  for (const auto& [id, count] : entries) {
    if (id < 0 || size_t(id) >= occ_.size() || present_[size_t(id)])
      throw Error("repetition penalty: bad or repeated token id " + std::to_string(id));
    present_[size_t(id)] = 1;
    keys_.push_back(id);
    occ_[size_t(id)] = count;
  }
}

void LogitEdits::apply(std::span<float> logits) const {
  for (int32_t id : banned) logits[size_t(id)] = -INFINITY;
  for (const auto& [id, b] : bias) logits[size_t(id)] += b;
}

void LogitEdits::validate(size_t n_vocab) const {
  for (int32_t id : banned)
    if (id < 0 || size_t(id) >= n_vocab)
      throw Error("banned token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
  for (const auto& [id, b] : bias)
    if (id < 0 || size_t(id) >= n_vocab)
      throw Error("logit bias token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
}

}  // namespace corvid
