// corvid-run: run an RWKV checkpoint on a strategy; print the plan, dump
// logits, greedy-generate. The scriptable counterpart of corvid-chat.
//
//   corvid-run --model M.pth --strategy "cpu fp32" --tokens 187,510,1563 -n 8
//   corvid-run --model M.pth --prompt "Hello" --tokenizer 20B_tokenizer.json -n 20
//   corvid-run --model M.pth --tokens 1,2,3 --dump-logits out.npy --prefill chunk:2
//   corvid-run --n-layer 24 --strategy "cuda fp16i8 *10 -> cpu fp32" --print-plan --json
#include <boost/program_options.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "corvid/convert/converted.h"
#include "corvid/convert/inspect.h"
#include "corvid/io/checkpoint.h"
#include "corvid/io/npy.h"
#include "corvid/model/model_info.h"
#include "corvid/plugins/registry.h"
#include "corvid/plugins/tokenizer_loader.h"
#include "corvid/runtime/engine.h"
#include "corvid/runtime/plan_preview.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"
#include "corvid/util/version.h"

namespace po = boost::program_options;
using namespace corvid;

namespace {

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    item = a == std::string::npos ? "" : item.substr(a, b - a + 1);
    if (item.empty()) throw Error("--tokens: empty item at character " + std::to_string(pos + 1) + ", expected a token id");
    size_t used = 0;
    long long v = 0;
    try { v = std::stoll(item, &used); } catch (...) { used = 0; }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      throw Error("--tokens: '" + item + "' at character " + std::to_string(pos + 1) + " is not a token id");
    out.push_back(int32_t(v));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int argmax(const float* v, int n) { return int(std::max_element(v, v + n) - v); }

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("corvid-run options");
  std::string model, strategy, config, tokens_s, prompt, tokenizer_path, tokenizer_kind, dump, prefill = "chunk:256";
  std::vector<std::string> plugin_dirs;
  int n_gen = 0, threads = 0, n_layer = 0, n_embd = 0, n_vocab = 0;
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("version", "print the version")
    ("model,m", po::value(&model), "checkpoint: .pth (torch.save) or .safetensors")
    ("strategy,s", po::value(&strategy), "strategy DSL, e.g. \"cpu fp32\", \"cpu fp32i8 *6 -> cpu fp32\" (default: cpu fp32)")
    ("config,c", po::value(&config), "XML pipeline config (--strategy overrides its <pipeline>)")
    ("tokens", po::value(&tokens_s), "input token ids, comma-separated")
    ("prompt,p", po::value(&prompt), "input text (needs --tokenizer)")
    ("tokenizer", po::value(&tokenizer_path), "tokenizer file (20B_tokenizer.json or rwkv_vocab_v20230424.txt)")
    ("tokenizer-kind", po::value(&tokenizer_kind), "hf_bpe or rwkv_world (default: detect from the file)")
    (",n", po::value(&n_gen), "greedy tokens to generate after the input")
    ("dump-logits", po::value(&dump), "write logits after every input token to FILE.npy (float32 [T, V])")
    ("prefill", po::value(&prefill), "how to feed the input: step | chunk:N (default chunk:256)")
    ("threads,t", po::value(&threads), "CPU threads (default: physical cores)")
    ("plugin-dir", po::value(&plugin_dirs)->composing(), "extra plugin directory (repeatable)")
    ("list-plugins", "list plugins found on the search path")
    ("inspect", po::value<std::string>(), "describe a checkpoint (format, architecture, sizes, dtypes, stored plan) and exit")
    ("print-plan", "print the resolved plan and exit (no weights are loaded)")
    ("json", "with --print-plan: print one JSON object")
    ("n-layer", po::value(&n_layer), "with --print-plan and no --model: the layer count")
    ("n-embd", po::value(&n_embd), "with --print-plan and no --model: n_embd, for weight sizes")
    ("vocab", po::value(&n_vocab), "with --print-plan and no --model: vocabulary size, for the head size")
    ("verbose,v", "print the load log");
  // clang-format on
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << "Usage: corvid-run --model FILE [--strategy STR | --config FILE] (--tokens IDS | --prompt TEXT --tokenizer FILE) [-n N]\n\n"
                << desc << "\n";
      return 0;
    }
    if (vm.count("version")) { std::cout << "corvid-run " << version_string() << "\n"; return 0; }

    RunConfig cfg;
    const StrategySpec* spec = nullptr;
    StrategySpec parsed;
    int rescale_override = -1;
    if (!config.empty()) {
      cfg = load_run_config(config);
      if (model.empty()) model = cfg.model;
      if (tokenizer_path.empty()) { tokenizer_path = cfg.tokenizer_path; if (tokenizer_kind.empty()) tokenizer_kind = cfg.tokenizer_kind; }
      for (const auto& d : cfg.plugin_dirs) plugin_dirs.push_back(d);
      if (!threads) threads = cfg.threads;
      rescale_override = cfg.rescale_layer;
      if (strategy.empty() && cfg.strategy) spec = &*cfg.strategy;
    }
    if (!spec && !strategy.empty()) {
      parsed = parse_strategy(strategy);
      spec = &parsed;
      rescale_override = -1;  // the DSL's own rule applies
    }

    if (vm.count("inspect")) {
      std::cout << inspect_checkpoint(vm["inspect"].as<std::string>());
      return 0;
    }

    if (vm.count("list-plugins")) {
      PluginRegistry reg(plugin_dirs);
      std::cout << reg.describe();
      return 0;
    }

    if (vm.count("print-plan")) {
      PluginRegistry reg(plugin_dirs);
      Plan plan;
      if (!model.empty()) {
        if (!config.empty()) validate_config_against_model(cfg, checkpoint_hparams(*Checkpoint::open(model)).n_layer);
        plan = preview_plan(model, spec, rescale_override, reg);
      } else if (n_layer > 0) {
        ModelHParams hp;
        hp.n_layer = n_layer;
        hp.n_embd = hp.n_att = n_embd;
        hp.n_ffn = 4 * n_embd;
        hp.n_vocab = n_vocab;
        if (!spec) {
          parsed = parse_strategy("cpu fp32");
          spec = &parsed;
        }
        plan = assign_slots(*spec, hp.n_layer, rescale_override);
        hp.rescale_layer = plan.rescale_layer;
        resolve_backends(plan, *spec, reg, hp);
      } else {
        throw Error("--print-plan needs --model FILE or --n-layer N");
      }
      std::cout << (vm.count("json") ? plan_to_json(plan) + "\n" : plan_to_text(plan));
      return 0;
    }

    if (model.empty()) throw Error("no model: give --model FILE (or a --config with <model path=...>)");
    if (vm.count("prompt") && vm.count("tokens")) throw Error("give either --tokens or --prompt, not both");

    int chunk = 256;
    bool stepwise = false;
    if (prefill == "step") stepwise = true;
    else if (prefill.rfind("chunk:", 0) == 0) {
      try { chunk = std::stoi(prefill.substr(6)); } catch (...) { chunk = 0; }
      if (chunk < 1) throw Error("--prefill: '" + prefill + "', expected step or chunk:N with N >= 1");
    } else throw Error("--prefill: '" + prefill + "', expected step or chunk:N");

    EngineOptions eo = engine_default_options();
    eo.model_path = model;
    eo.spec = spec;
    eo.rescale_override = rescale_override;
    eo.threads = threads;
    eo.chunk_len = chunk;
    eo.plugin_dirs = plugin_dirs;
    if (vm.count("verbose")) eo.log = [](const std::string& s) { std::cerr << s << "\n"; };
    if (!config.empty()) {
      // Explicit ranges past the model's layer count are reported with file:line.
      auto ck = Checkpoint::open(model);
      validate_config_against_model(cfg, checkpoint_hparams(*ck).n_layer);
    }
    auto eng = Engine::load(eo);
    const int V = eng->hparams().n_vocab;
    if (!config.empty()) validate_config_plugins(cfg, eng->registry());

    std::shared_ptr<Tokenizer> tok;
    if (!tokenizer_path.empty()) tok = load_tokenizer(eng->registry(), tokenizer_path, tokenizer_kind);

    std::vector<int32_t> input;
    if (vm.count("prompt")) {
      if (!tok) throw Error("--prompt needs --tokenizer FILE");
      input = tok->encode(prompt);
    } else if (vm.count("tokens")) {
      input = parse_tokens(tokens_s);
    }
    if (input.empty()) throw Error("no input: give --tokens IDS or --prompt TEXT");

    State st = eng->new_state();
    std::vector<float> logits(static_cast<size_t>(V));
    if (!dump.empty()) {
      std::vector<float> all(input.size() * size_t(V));
      if (stepwise) eng->forward_stepwise(input, st, all.data());
      else eng->forward_all(input, st, all.data());
      write_npy_f32(dump, all.data(), {int64_t(input.size()), int64_t(V)});
      std::copy(all.end() - V, all.end(), logits.begin());
    } else if (stepwise) {
      for (size_t i = 0; i < input.size(); ++i)
        eng->forward(std::span<const int32_t>(&input[i], 1), st, i + 1 == input.size() ? logits.data() : nullptr);
    } else {
      eng->forward(input, st, logits.data());
    }

    if (n_gen > 0) {
      std::unique_ptr<StreamingDecoder> dec;
      if (tok) dec = std::make_unique<StreamingDecoder>(*tok);
      for (int i = 0; i < n_gen; ++i) {
        int32_t next = argmax(logits.data(), V);
        if (dec) {
          std::cout << dec->push(next) << std::flush;
        } else {
          std::cout << (i ? " " : "") << next << std::flush;
        }
        eng->forward(std::span<const int32_t>(&next, 1), st, logits.data());
      }
      if (dec) std::cout << dec->flush();
      std::cout << "\n";
    } else if (dump.empty()) {
      // Nothing else asked: show the top next token.
      std::cout << "next token: " << argmax(logits.data(), V) << "\n";
    }
    return 0;
  } catch (const po::error& e) {
    std::cerr << "corvid-run: " << e.what() << " (see --help)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "corvid-run: " << e.what() << "\n";
    return 1;
  }
}
