// corvid-bench: one executable, one mode per run.
//
//   corvid-bench --perf --model M --strategy S [--threads N] [--json]     speed (perf.h)
//   corvid-bench --questions [FILE] --model M ...                         quality (quality.h)
//   corvid-bench --lambada FILE --model M ...                             quality (quality.h)
//
// main.cpp owns the options every mode shares; each mode adds its own options
// through its add_*_options() and runs through its run_*() hook.
#include <iostream>

#include <boost/program_options.hpp>

#include "corvid/runtime/plan_preview.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "perf.h"
#include "quality.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string model, strategy, config, tokenizer, tokenizer_kind;
  std::vector<std::string> plugin_dirs;
  int threads = 0;
  corvid_bench::PerfOptions perf;
  corvid_bench::QualityOptions quality;

  po::options_description desc("corvid-bench options");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("model,m", po::value(&model), "checkpoint (.pth, .safetensors, or a corvid-convert file)")
    ("strategy,s", po::value(&strategy), "strategy DSL, e.g. \"cpu fp32\", \"cpu fp32i8\", \"cpu bf16\" (default: cpu fp32)")
    ("config,c", po::value(&config), "XML pipeline config (quality modes)")
    ("tokenizer", po::value(&tokenizer), "tokenizer file (quality modes; default: beside the model)")
    ("tokenizer-kind", po::value(&tokenizer_kind), "hf_bpe or rwkv_world (default: detect from the file)")
    ("threads,t", po::value(&threads), "CPU threads (default: physical cores)")
    ("plugin-dir", po::value(&plugin_dirs)->composing(), "extra plugin directory (repeatable)")
    ("print-plan", "print the resolved plan (what runs where, weight bytes per device) and exit")
    ("json", "print one JSON object instead of the text report");
  // clang-format on
  corvid_bench::add_perf_options(desc, perf);
  corvid_bench::add_quality_options(desc, quality);

  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help") || argc == 1) {
      std::cout << "Usage: corvid-bench --perf --model FILE [--strategy STR] [--threads N] [--json]\n"
                   "       corvid-bench (--questions [FILE] | --lambada FILE) --model FILE [--strategy STR] [--json]\n\n"
                << desc << "\n";
      return 0;
    }
    if (threads < 0) throw corvid::Error("--threads must be >= 0 (0 = physical cores)");
    if (vm.count("print-plan")) {
      if (model.empty()) throw corvid::Error("--print-plan needs --model FILE");
      corvid::StrategySpec parsed;
      const corvid::StrategySpec* spec = nullptr;
      int rescale_override = -1;
      if (!config.empty()) {
        corvid::RunConfig cfg = corvid::load_run_config(config);
        if (cfg.strategy && strategy.empty()) { parsed = *cfg.strategy; spec = &parsed; rescale_override = cfg.rescale_layer; }
      }
      if (!strategy.empty()) { parsed = corvid::parse_strategy(strategy); spec = &parsed; }
      corvid::PluginRegistry reg(plugin_dirs);
      corvid::Plan plan = corvid::preview_plan(model, spec, rescale_override, reg);
      std::cout << (vm.count("json") ? corvid::plan_to_json(plan) + "\n" : corvid::plan_to_text(plan));
      return 0;
    }
    const bool want_perf = vm.count("perf") > 0, want_quality = corvid_bench::quality_requested(vm);
    if (want_perf && want_quality) throw corvid::Error("--perf and --questions/--lambada are separate runs: give one");
    if (want_perf) {
      perf.model = model;
      perf.strategy = strategy;
      perf.plugin_dirs = plugin_dirs;
      perf.threads = threads;
      perf.json = vm.count("json") > 0;
      return corvid_bench::run_perf(perf);
    }
    if (want_quality) {
      quality.model = model;
      quality.strategy = strategy;
      quality.config = config;
      quality.tokenizer = tokenizer;
      quality.tokenizer_kind = tokenizer_kind;
      quality.plugin_dirs = plugin_dirs;
      quality.threads = threads;
      quality.json = vm.count("json") > 0;
      return corvid_bench::run_quality(quality, vm);
    }
    throw corvid::Error("nothing to do: give --perf, --questions or --lambada (see --help)");
  } catch (const po::error& e) {
    std::cerr << "corvid-bench: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "corvid-bench: " << e.what() << "\n";
    return 1;
  }
}
