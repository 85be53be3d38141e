// The quality benchmarks of ChatRWKV v2, as library procedures (corvid-bench
// --questions / --lambada print them; tests compare them with the Python
// reference):
//
//   answer_question  benchmark_more.py (rwkv-reference §8): a fresh state, the
//                    question in the chat format ("Bob: <q>\n\nAlice:"), greedy
//                    decoding (T 1, top_p 0) with the penalty 0.2 + 0.2 * count
//                    (no decay), at most 200 tokens, stop at token 0 or once the
//                    pending text holds "\n\n". Pending text is printed only when
//                    it is valid UTF-8 and does not end with "\n".
//   run_lambada      v2/benchmark.py's LAMBADA check: context = text up to the
//                    last space, padded in front with the "\n" token; target =
//                    " " + last word; log-probability of the target tokens and
//                    whether each is the argmax. ppl = exp(-sum logprob / items),
//                    acc = correct items / items * 100.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "corvid/chat/model.h"
#include "corvid/chat/session.h"
#include "corvid/sdk/prompt_template.h"
#include "corvid/sdk/tokenizer.h"

namespace corvid::chat {

struct QuestionAnswer {
  std::string question;
  std::vector<int32_t> tokens;  // the generated ids (the stopping token 0 excluded)
  std::string printed;          // "Q: ...\nA:" + the printed answer + "\n" + 50 '='
  std::string answer;           // the answer text, stripped (benchmark_more's out_str)
  size_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Streams the block to `out` (when given) as it is generated. `seed` only
// matters for exact ties of the greedy choice (the reference draws among them).
QuestionAnswer answer_question(ChatModel& model, const Tokenizer& tok, const PromptTemplate& tpl,
                               std::string_view question, int max_tokens = 200, ChatOutput* out = nullptr,
                               uint64_t seed = 0);

// Questions from a file: one per line, surrounding whitespace stripped, blank
// lines skipped. Throws corvid::Error naming the file.
std::vector<std::string> read_questions(const std::string& path);

struct LambadaItem {
  std::string context, target;  // target starts with the space
};
// Reads a LAMBADA .jsonl ({"text": ...} per line); limit 0 = all. Errors name
// the file and line.
std::vector<LambadaItem> read_lambada(const std::string& path, size_t limit = 0);

struct LambadaResult {
  size_t count = 0, correct = 0, tokens = 0;
  double logprob_sum = 0;
  double seconds = 0;
  std::vector<double> item_logprob;
  std::vector<uint8_t> item_correct;
  double ppl() const;
  double acc() const;
};

// `progress` is called after every item with the running result.
LambadaResult run_lambada(ChatModel& model, const Tokenizer& tok, const std::vector<LambadaItem>& items,
                          const std::function<void(const LambadaResult&)>& progress = nullptr);

// Python's round(x, 2) printed with repr(): "15.55", "3.1", "100.0".
std::string py_round2(double x);

}  // namespace corvid::chat
