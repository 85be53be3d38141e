// corvid-convert's engine: run every stage's Backend::prepare() for a plan and
// stream the prepared tensors into a safetensors file (format: converted.h).
//
//   ConvertOptions o;
//   o.in_path = "model.pth"; o.out_path = "model-cpu-fp32i8.st"; o.strategy = "cpu fp32i8";
//   ConvertResult r = convert_checkpoint(o);
//
// Memory: the input is mapped (not read into memory); tensors are written one
// at a time as the backend produces them, so beyond the mapping the converter
// holds about one prepared tensor (the sink's buffer) plus whatever the backend
// needs for one tensor, plus the folded embedding table.
// Safety: the output is written to a temporary file in the target folder,
// fsync'ed and renamed over FILE only when complete; on any error (bad input,
// disk full, cancellation) the temporary file is removed and nothing is left.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "corvid/sdk/model.h"
#include "corvid/strategy/plan.h"

namespace corvid {

struct ConvertOptions {
  std::string in_path;
  std::string out_path;
  std::string strategy = "cpu fp32";     // DSL; ignored when `spec` is set
  const StrategySpec* spec = nullptr;    // e.g. from an XML config
  int rescale_override = -1;             // >= 0 overrides the RESCALE_LAYER rule (XML rescale_layer)
  std::vector<std::string> plugin_dirs;
  // Output progress in bytes of tensors written (the total is the backends'
  // estimates plus the embedding; `done` never exceeds it).
  std::function<void(uint64_t done, uint64_t total)> progress;
  std::function<void(const std::string&)> log;
  // Cancellation: when *stop_signal becomes non-zero (a signal handler stores
  // the signal number), conversion stops at the next tensor, the temporary file
  // is removed and Error "interrupted by SIGINT" (etc.) is thrown.
  const std::atomic<int>* stop_signal = nullptr;
  // Called with the temporary file's path right after it is created and with
  // "" once it is gone or renamed, so a signal handler can unlink it if the
  // process must exit at once (a second Ctrl-C).
  std::function<void(const std::string& temp_path)> temp_file_changed;
};

struct ConvertResult {
  Plan plan;
  ModelHParams hp;
  uint64_t n_tensors = 0;
  uint64_t tensor_bytes = 0;   // sum of tensor sizes written
  uint64_t file_bytes = 0;     // size of the output file
  std::string source_xxh64;    // XXH64 of the input file, hex
  double seconds = 0;
};

ConvertResult convert_checkpoint(const ConvertOptions& opts);

}  // namespace corvid
