// benchmark_more.py and benchmark.py's LAMBADA check (see quality.h).
#include "corvid/chat/quality.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "corvid/chat/text.h"
#include "corvid/sampling/penalty.h"
#include "corvid/sampling/sampler.h"
#include "corvid/sdk/error.h"

namespace corvid::chat {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

QuestionAnswer answer_question(ChatModel& model, const Tokenizer& tok, const PromptTemplate& tpl,
                               std::string_view question, int max_tokens, ChatOutput* out, uint64_t seed) {
  QuestionAnswer qa;
  qa.question = std::string(py_strip(question));
  auto emit = [&](std::string_view s) {
    qa.printed += s;
    if (out) out->write(s);
  };
  emit("Q: " + qa.question + "\nA:");
  const bool strict = tok.kind() == "rwkv_world";  // World decode: invalid UTF-8 -> one U+FFFD
  const size_t V = size_t(model.n_vocab());
  std::vector<float> logits(V);
  Sampler sampler(V);
  SamplerRng rng(seed);
  RepetitionPenalty occurrence(V);
  const PenaltyParams penalty{0.2, 0.2, 1.0};  // "repetition penalty", no decay
  const SamplingParams greedy{1.0f, 0.0f, 0};
  auto state = model.new_state();
  std::string pending, out_str;

  auto t0 = Clock::now();
  auto prompt = tok.encode(tpl.chat_turn(qa.question));
  qa.prompt_tokens = prompt.size();
  model.forward(prompt, *state, logits.data());  // the whole prompt in one call
  qa.prefill_seconds = since(t0);
  t0 = Clock::now();
  for (int i = 0; i < max_tokens; ++i) {
    if (i > 0) model.forward(std::span<const int32_t>(&qa.tokens.back(), 1), *state, logits.data());
    occurrence.apply(logits, penalty);
    int32_t token = sampler.sample(logits, greedy, rng);
    if (token == tok.eot_id()) break;
    qa.tokens.push_back(token);
    occurrence.record(token, 1.0, 1.0);
    pending += tok.token_bytes(token);
    // tmp = decode(out_tokens[out_last:])
    const bool valid = utf8_valid(pending);
    const bool has_dnl = pending.find("\n\n") != std::string::npos && (!strict || valid);
    if (printable_now(pending) && pending.back() != '\n') {
      emit(pending);
      out_str += pending;
      pending.clear();
    }
    if (has_dnl) {
      out_str += pending;
      break;
    }
  }
  qa.decode_seconds = since(t0);
  qa.answer = std::string(py_strip(utf8_sanitize(out_str)));
  emit("\n" + std::string(50, '=') + "\n");
  return qa;
}

std::vector<std::string> read_questions(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the question file");
  std::vector<std::string> qs;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string q(py_strip(line));
    if (q.empty()) continue;
    if (!utf8_valid(q)) throw Error(path + ":" + std::to_string(n) + ": the question is not valid UTF-8");
    qs.push_back(std::move(q));
  }
  if (qs.empty()) throw Error(path + ": no questions (expected one question per line)");
  return qs;
}

std::vector<LambadaItem> read_lambada(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the LAMBADA file");
  std::vector<LambadaItem> items;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (limit && items.size() >= limit) break;
    if (py_strip(line).empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      throw Error(path + ":" + std::to_string(n) + ": not a JSON line (expected {\"text\": \"...\"})");
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw Error(path + ":" + std::to_string(n) + ": expected an object with a string \"text\"");
    std::string text = j["text"].get<std::string>();
    size_t sp = text.rfind(' ');  // Python's rsplit(' ', 1)
    if (sp == std::string::npos) throw Error(path + ":" + std::to_string(n) + ": the text has no space before its last word");
    items.push_back({text.substr(0, sp), " " + text.substr(sp + 1)});
  }
  if (items.empty()) throw Error(path + ": no items");
  return items;
}

double LambadaResult::ppl() const { return count ? std::exp(-logprob_sum / double(count)) : 0.0; }
double LambadaResult::acc() const { return count ? double(correct) / double(count) * 100.0 : 0.0; }

LambadaResult run_lambada(ChatModel& model, const Tokenizer& tok, const std::vector<LambadaItem>& items,
                          const std::function<void(const LambadaResult&)>& progress) {
  LambadaResult r;
  const size_t V = size_t(model.n_vocab());
  const auto pad = tok.encode("\n");  // PAD_SEQ: [187] for the 20B tokenizer
  auto state = model.new_state();
  std::vector<float> rows;
  std::vector<int32_t> src, tail;
  auto t0 = Clock::now();
  for (const LambadaItem& it : items) {
    src = pad;
    auto ctx = tok.encode(it.context);
    src.insert(src.end(), ctx.begin(), ctx.end());
    const auto dst = tok.encode(it.target);
    if (dst.empty()) throw Error("LAMBADA: the target \"" + it.target + "\" encodes to no tokens");
    model.reset_state(*state);
    // The logits that predict the target: after src's last token and after each
    // target token but the last. The head runs only for those rows.
    if (src.size() > 1) model.forward(std::span<const int32_t>(src).first(src.size() - 1), *state, nullptr);
    tail.assign(1, src.back());
    tail.insert(tail.end(), dst.begin(), dst.end() - 1);
    rows.resize(tail.size() * V);
    model.forward_all(tail, *state, rows.data());
    double logp = 0;
    bool correct = true;
    for (size_t i = 0; i < dst.size(); ++i) {
      const float* row = rows.data() + i * V;
      // log softmax in double (the reference: log of an fp32 softmax).
      float mx = *std::max_element(row, row + V);
      double s = 0;
      for (size_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - double(mx));
      logp += double(row[size_t(dst[i])]) - double(mx) - std::log(s);
      if (size_t(std::max_element(row, row + V) - row) != size_t(dst[i])) correct = false;  // first maximum
    }
    r.tokens += src.size() + dst.size();
    r.logprob_sum += logp;
    r.correct += correct ? 1 : 0;
    r.item_logprob.push_back(logp);
    r.item_correct.push_back(correct ? 1 : 0);
    ++r.count;
    r.seconds = since(t0);
    if (progress) progress(r);
  }
  return r;
}

std::string py_round2(double x) {
  if (!std::isfinite(x)) return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  char buf[64];
  if (std::fabs(x) >= 1e16) {
    // repr() switches to exponent notation: the shortest %g that round-trips.
    for (int prec = 1; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*g", prec, x);
      if (std::strtod(buf, nullptr) == x) break;
    }
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.2f", x);
  std::string s = buf;
  // repr() of the rounded float: no trailing zeros, but at least one decimal.
  while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return s;
}

}  // namespace corvid::chat
