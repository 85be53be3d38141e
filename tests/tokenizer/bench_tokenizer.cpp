// Encode throughput of both tokenizers, single thread (Google Benchmark).
//
//   build/bench/bench_tokenizer                      (taskset -c 0 for a pinned core)
//
// Texts (built at start-up from ../shared, see docs/tokenizers.md):
//   EN-1MB:    the "text" fields of chatrwkv/lambada_test.jsonl in file order joined
//              with "\n\n", first 3038 items = 1,000,022 bytes (the README's anchor text);
//   MIXED-1MB: round robin of LAMBADA items 3038.. (English), the texts of
//              tests/tokenizer/data/corpus.jsonl (code, CJK, emoji, numbers, ...) and,
//              every 8th round, a ChatRWKV prompt file (Python with Chinese/Japanese
//              chat text), until >= 1,000,000 bytes.
// The 20B tokenizer caches BPE results per piece (as HF does): "Cold" clears the
// cache before every encode, "Warm" keeps it (the HF anchor's best warm repeat).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer_hf_bpe/hf_bpe_tokenizer.h"
#include "tokenizer_rwkv_world/world_tokenizer.h"

namespace {

const std::string kShared = CORVID_SHARED_DIR;

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lambada_texts() {
  std::vector<std::string> out;
  std::ifstream f(kShared + "/chatrwkv/lambada_test.jsonl");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
  return out;
}

const std::string& en_1mb() {
  static const std::string text = [] {
    auto items = lambada_texts();
    std::string s;
    for (size_t i = 0; i < 3038 && i < items.size(); ++i) s += (i ? "\n\n" : "") + items[i];
    return s;
  }();
  return text;
}

std::string corpus_path() {
  // The benchmark runs from the build tree; the corpus is in the source tree.
  for (const char* p : {CORVID_SOURCE_DIR "/tests/tokenizer/data/corpus.jsonl"})
    if (std::filesystem::exists(p)) return p;
  return {};
}

const std::string& mixed_1mb() {
  static const std::string text = [] {
    auto en = lambada_texts();
    std::vector<std::string> corpus, prompts;
    std::ifstream f(corpus_path());
    std::string line;
    while (std::getline(f, line))
      if (!line.empty()) corpus.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
    for (auto* name : {"Chinese-1", "Chinese-2", "Japanese-1", "Japanese-2", "English-2"})
      prompts.push_back(read_file(kShared + "/chatrwkv/prompts/" + name + ".py"));
    std::string s;
    if (en.size() <= 3038 || corpus.empty()) return s;
    for (size_t r = 0; s.size() < 1000000; ++r) {
      s += en[3038 + r % (en.size() - 3038)] + "\n\n";
      s += corpus[r % corpus.size()] + "\n";
      if (r % 8 == 0) s += prompts[(r / 8) % prompts.size()];
    }
    return s;
  }();
  return text;
}

std::unique_ptr<corvid::hf_bpe::HfBpeTokenizer>& neox() {
  static std::unique_ptr<corvid::hf_bpe::HfBpeTokenizer> t;
  if (!t && std::filesystem::exists(kShared + "/tokenizers/20B_tokenizer.json"))
    t.reset(corvid::hf_bpe::HfBpeTokenizer::from_file(kShared + "/tokenizers/20B_tokenizer.json"));
  return t;
}

std::unique_ptr<corvid::world::WorldTokenizer>& world() {
  static std::unique_ptr<corvid::world::WorldTokenizer> t;
  if (!t && std::filesystem::exists(kShared + "/tokenizers/rwkv_vocab_v20230424.txt"))
    t.reset(corvid::world::WorldTokenizer::from_file(kShared + "/tokenizers/rwkv_vocab_v20230424.txt"));
  return t;
}

void run(benchmark::State& state, const corvid::Tokenizer* tok, const std::string& text, bool cold) {
  if (!tok || text.empty()) {
    state.SkipWithError("tokenizer file or text data not found under ../shared");
    return;
  }
  size_t n_tokens = 0;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      static_cast<const corvid::hf_bpe::HfBpeTokenizer*>(tok)->clear_cache();
      state.ResumeTiming();
    }
    auto ids = tok->encode(text);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6 * state.iterations(),
                                              benchmark::Counter::kIsRate);
  state.counters["bytes"] = static_cast<double>(text.size());
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

void BM_Neox20B_EN1MB_Cold(benchmark::State& s) { run(s, neox().get(), en_1mb(), true); }
void BM_Neox20B_EN1MB_Warm(benchmark::State& s) { run(s, neox().get(), en_1mb(), false); }
void BM_World_EN1MB(benchmark::State& s) { run(s, world().get(), en_1mb(), false); }
void BM_Neox20B_Mixed1MB_Cold(benchmark::State& s) { run(s, neox().get(), mixed_1mb(), true); }
void BM_Neox20B_Mixed1MB_Warm(benchmark::State& s) { run(s, neox().get(), mixed_1mb(), false); }
void BM_World_Mixed1MB(benchmark::State& s) { run(s, world().get(), mixed_1mb(), false); }

}  // namespace

BENCHMARK(BM_Neox20B_EN1MB_Cold)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Neox20B_EN1MB_Warm)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_World_EN1MB)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Neox20B_Mixed1MB_Cold)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Neox20B_Mixed1MB_Warm)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_World_Mixed1MB)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_MAIN();
