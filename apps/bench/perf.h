// corvid-bench --perf: load time, prefill and decode speed, peak RSS, and the
// decode's distance from the memory roofline measured in the same run.
//
// The hook for main.cpp (which owns --model, --strategy, --threads, --plugin-dir
// and --json):
//
//     corvid_bench::PerfOptions p;
//     corvid_bench::add_perf_options(desc, p);   // --perf --prompt-tokens --decode-tokens ...
//     ... parse ...
//     if (vm.count("perf")) return corvid_bench::run_perf(p);
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace corvid_bench {

struct PerfOptions {
  // Shared with the quality runs (filled in by main.cpp).
  std::string model, strategy;
  std::vector<std::string> plugin_dirs;
  int threads = 0;  // 0 = physical cores (the engine's default)
  bool json = false;
  // Speed options (add_perf_options binds these).
  int prompt_tokens = 512;    // prefill prompt length
  int prefill_runs = 2;       // prefill repetitions (best and median reported)
  int chunk_len = 256;        // sequence-mode chunk (ChatRWKV's CHUNK_LEN)
  int warmup_tokens = 8;      // decode tokens before timing starts
  int decode_tokens = 128;    // timed decode tokens (median reported)
  int bandwidth_mib = 1024;   // buffer of the read-bandwidth probe (0 = skip the probe)
  unsigned seed = 1;          // prompt token ids
};

void add_perf_options(boost::program_options::options_description& desc, PerfOptions& o);
// Loads the model and measures; prints a report or one JSON object. Returns the
// exit code; throws corvid::Error on bad input.
int run_perf(const PerfOptions& o);

// Sustained read bandwidth in bytes/s: `threads` threads sum a `bytes` buffer
// (AVX-512/AVX2 when the CPU has them), best of `passes` plain and `passes`
// software-prefetching passes.
double measure_read_bandwidth(size_t bytes, int threads, int passes);

}  // namespace corvid_bench
