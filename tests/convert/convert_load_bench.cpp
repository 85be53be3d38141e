// Measures loading one checkpoint through Engine::load, for docs/convert.md:
//   convert_load_bench MODEL [STRATEGY] [--plugin-dir D]
// prints load wall time, peak RSS (VmHWM) at the end of the load, RSS after
// one decoded token (every weight page touched), and the weight bytes the
// stages hold. Run each measurement in a fresh process; run once before to
// warm the page cache. Not a test: numbers, no assertions.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "corvid/runtime/engine.h"
#include "corvid/strategy/plan.h"

namespace {
uint64_t status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::string(key).size()));
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: convert_load_bench MODEL [STRATEGY] [--plugin-dir D]\n";
    return 1;
  }
  corvid::EngineOptions o = corvid::engine_default_options();
  o.model_path = argv[1];
  o.plugin_dirs = {CORVID_PLUGIN_DIR};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--plugin-dir" && i + 1 < argc) o.plugin_dirs.push_back(argv[++i]);
    else o.strategy = a;
  }
  try {
    const auto t0 = std::chrono::steady_clock::now();
    auto eng = corvid::Engine::load(o);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const uint64_t hwm_load = status_kib("VmHWM:"), rss_load = status_kib("VmRSS:");
    corvid::State st = eng->new_state();
    std::vector<float> logits(size_t(eng->hparams().n_vocab));
    int32_t tok = 0;
    const auto t1 = std::chrono::steady_clock::now();
    eng->forward(std::span<const int32_t>(&tok, 1), st, logits.data());
    const double tok_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    // Steady-state decode: the next few tokens, for comparing in-place mapped
    // weights with the in-memory prepared ones.
    const int more = 4;
    const auto t2 = std::chrono::steady_clock::now();
    for (int i = 0; i < more; ++i) eng->forward(std::span<const int32_t>(&tok, 1), st, logits.data());
    const double next_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count() / more;
    std::printf("next_token_seconds %.3f\n", next_s);
    const uint64_t weights = eng->weight_bytes_per_token();
    const uint64_t emb = uint64_t(eng->hparams().n_vocab) * uint64_t(eng->hparams().n_embd) * 4;
    std::printf("model %s\nstrategy \"%s\"\nload_seconds %.3f\nfirst_token_seconds %.3f\n", o.model_path.c_str(),
                eng->plan().strategy.c_str(), load_s, tok_s);
    std::printf("peak_rss_after_load %s\nrss_after_load %s\nrss_after_first_token %s\npeak_rss_after_first_token %s\n",
                corvid::format_bytes(hwm_load * 1024).c_str(), corvid::format_bytes(rss_load * 1024).c_str(),
                corvid::format_bytes(status_kib("VmRSS:") * 1024).c_str(), corvid::format_bytes(status_kib("VmHWM:") * 1024).c_str());
    std::printf("stage_weight_bytes %s\nembedding_bytes %s\nweights_total %s (%llu)\npeak_over_weights %.3f\n",
                corvid::format_bytes(weights).c_str(), corvid::format_bytes(emb).c_str(), corvid::format_bytes(weights + emb).c_str(),
                static_cast<unsigned long long>(weights + emb), double(status_kib("VmHWM:") * 1024) / double(weights + emb));
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "convert_load_bench: " << e.what() << "\n";
    return 1;
  }
}
