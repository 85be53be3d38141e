// corvid-bench's quality runs: --questions [FILE] (ChatRWKV's benchmark_more.py)
// and --lambada FILE [--limit N] (v2/benchmark.py's LAMBADA perplexity and
// accuracy), with --json for one machine-readable object.
//
// The hook for apps/bench/main.cpp (which owns the shared options --model,
// --strategy, --config, --tokenizer, --threads, --plugin-dir and --json):
//
//     corvid_bench::QualityOptions q;
//     corvid_bench::add_quality_options(desc, q);      // --questions --lambada --limit --template --max-tokens
//     ... parse ...
//     if (corvid_bench::quality_requested(vm)) {
//       q.model = model; q.strategy = strategy; ...  // the shared options
//       return corvid_bench::run_quality(q);
//     }
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace corvid_bench {

struct QualityOptions {
  // Shared with the speed benchmarks (filled in by main.cpp).
  std::string model, strategy, config, tokenizer, tokenizer_kind;
  std::vector<std::string> plugin_dirs;
  int threads = 0;
  bool json = false;
  // Quality options (add_quality_options binds these).
  bool questions = false;
  std::string questions_file;  // "" = Corvid's configs/questions.txt
  std::string lambada_file;
  size_t limit = 0;            // LAMBADA items, 0 = all
  std::string template_name = "raven-chat";
  int max_tokens = 200;
  uint64_t seed = 0;
};

void add_quality_options(boost::program_options::options_description& desc, QualityOptions& o);
// Whether --questions or --lambada was given (call after notify()).
bool quality_requested(const boost::program_options::variables_map& vm);
// Fills the quality fields that need the variables map (--questions without a
// value), loads the model and runs. Returns the exit code; throws
// corvid::Error on bad input.
int run_quality(QualityOptions o, const boost::program_options::variables_map& vm);

}  // namespace corvid_bench
