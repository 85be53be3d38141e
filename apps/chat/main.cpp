// corvid-chat: chat with an RWKV model in the terminal, as ChatRWKV's v2/chat.py
// does (rwkv-reference §7): the init prompt is fed once, each message is sent
// as "Bob: <msg>\n\nAlice:", the reply streams until a blank line. Commands:
// + +reset +gen +i +qq +qa +++ ++ +prompt +save +load +stats +help (see +help).
//
//   corvid-chat                                  # the built-in demo model (noise!)
//   corvid-chat --model RWKV-4-Raven-3B.pth --strategy "cpu fp32i8"
//   corvid-chat --config configs/chat.xml
//   echo "Hello" | corvid-chat --model M.pth     # scripted: one message per line
//
// The chat logic lives in libcorvid (corvid/chat/session.h); this file parses
// the command line, loads the model, and moves lines between the terminal and
// the session.
#include <boost/program_options.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "corvid/chat/locate.h"
#include "corvid/chat/model.h"
#include "corvid/chat/session.h"
#include "corvid/chat/template_setup.h"
#include "corvid/plugins/registry.h"
#include "corvid/plugins/tokenizer_loader.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/error.h"
#include "corvid/runtime/plan_preview.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"
#include "corvid/util/version.h"
#include "terminal.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace corvid;

namespace {

const char* kGetARealModel =
    "To chat for real, download an RWKV-4 Raven model (e.g. RWKV-4-Raven-3B or -7B, a .pth file) from\n"
    "https://huggingface.co/BlinkDL/rwkv-4-raven and the tokenizer 20B_tokenizer.json from the ChatRWKV\n"
    "repository (https://github.com/BlinkDL/ChatRWKV), put them in one folder and run\n"
    "    corvid-chat --model /path/to/RWKV-4-Raven-3B-....pth --strategy \"cpu fp32i8\"\n";

class StdoutOutput final : public chat::ChatOutput {
 public:
  void write(std::string_view s) override {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    last_ = s.back();
  }
  // A reply cut at its token limit does not end with a newline: start the
  // prompt on a fresh line anyway.
  void end_line() {
    if (last_ != '\n') write("\n");
  }
  void prefill_progress(size_t done, size_t total) override {
    if (!isatty(2)) return;
    std::fprintf(stderr, "\rRun prompt... %zu/%zu tokens", done, total);
    if (done == total) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  char last_ = '\n';
};

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("corvid-chat options");
  std::string model, strategy, config, tokenizer_path, tokenizer_kind, template_name, prompt_file;
  std::vector<std::string> plugin_dirs, template_opts, bans, biases;
  float temp = 1.2f, top_p = 0.5f;
  int top_k = 0, threads = 0;
  double presence = 0.4, frequency = 0.4, decay = 0.996;
  uint64_t seed = 0;
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("version", "print the version")
    ("model,m", po::value(&model), "checkpoint (.pth or .safetensors); without it, the built-in demo model")
    ("print-plan", "print the resolved plan (what runs where, weight bytes per device) and exit")
    ("json", "with --print-plan: one JSON object")
    ("strategy,s", po::value(&strategy), "strategy, e.g. \"cpu fp32\", \"cuda fp16\", \"cuda fp16i8 *20 -> cpu fp32\" (default cpu fp32)")
    ("config,c", po::value(&config), "XML config with model, pipeline, tokenizer, template and sampling")
    ("tokenizer", po::value(&tokenizer_path), "tokenizer file (default: 20B_tokenizer.json or rwkv_vocab_v20230424.txt beside the model)")
    ("tokenizer-kind", po::value(&tokenizer_kind), "hf_bpe or rwkv_world (default: detect)")
    ("template", po::value(&template_name), "prompt template: raven-chat (default), world-chat, qa, instruct")
    ("template-option", po::value(&template_opts)->composing(), "KEY=VALUE for the template (user, bot, interface, ...)")
    ("prompt-file", po::value(&prompt_file), "init prompt in ChatRWKV's prompt-file format (user/bot/interface/init_prompt)")
    ("temp", po::value(&temp), "temperature (default 1.2; 0 = greedy; clamped to [0.2, 5] like chat.py)")
    ("top-p", po::value(&top_p), "top-p (default 0.5; 0 = greedy; >= 1 = off)")
    ("top-k", po::value(&top_k), "top-k (default 0 = off)")
    ("presence", po::value(&presence), "presence penalty (default 0.4)")
    ("frequency", po::value(&frequency), "frequency penalty (default 0.4)")
    ("penalty-decay", po::value(&decay), "decay of the penalty counts per token (default 0.996)")
    ("ban-token", po::value(&bans)->composing(), "token id never to sample (repeatable)")
    ("logit-bias", po::value(&biases)->composing(), "ID=VALUE added to a token's logit (repeatable)")
    ("seed", po::value(&seed), "random seed (default: a random one)")
    ("threads,t", po::value(&threads), "CPU threads (default: physical cores)")
    ("plugin-dir", po::value(&plugin_dirs)->composing(), "extra plugin directory (repeatable)")
    ("verbose,v", "print the load log");
  // clang-format on
  StdoutOutput out;
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << "Usage: corvid-chat [--model FILE [--strategy STR]] [--config FILE.xml] [options]\n\n"
                << "Chat with an RWKV model. Without --model, a tiny untrained demo model runs (its replies are noise).\n"
                << "Type +help in the chat for the commands.\n\n"
                << desc << "\n";
      return 0;
    }
    if (vm.count("version")) {
      std::cout << "corvid-chat " << version_string() << "\n";
      return 0;
    }

    // ---- configuration: XML config, then the command line on top
    RunConfig cfg;
    const StrategySpec* spec = nullptr;
    StrategySpec parsed;
    int rescale_override = -1;
    TemplateOptions topts;
    if (!config.empty()) {
      cfg = load_run_config(config);
      if (model.empty()) model = cfg.model;
      if (tokenizer_path.empty()) {
        tokenizer_path = cfg.tokenizer_path;
        if (tokenizer_kind.empty()) tokenizer_kind = cfg.tokenizer_kind;
      }
      if (template_name.empty()) template_name = cfg.template_name;
      topts.insert(cfg.template_options.begin(), cfg.template_options.end());
      for (const auto& d : cfg.plugin_dirs) plugin_dirs.push_back(d);
      if (!threads) threads = cfg.threads;
      rescale_override = cfg.rescale_layer;
      if (strategy.empty() && cfg.strategy) spec = &*cfg.strategy;
      const SamplingDefaults& sd = cfg.sampling;
      if (!vm.count("temp") && sd.temperature) temp = *sd.temperature;
      if (!vm.count("top-p") && sd.top_p) top_p = *sd.top_p;
      if (!vm.count("top-k") && sd.top_k) top_k = *sd.top_k;
      if (!vm.count("presence") && sd.presence) presence = *sd.presence;
      if (!vm.count("frequency") && sd.frequency) frequency = *sd.frequency;
      if (!vm.count("penalty-decay") && sd.penalty_decay) decay = *sd.penalty_decay;
      if (!vm.count("seed") && sd.seed) seed = *sd.seed;
    }
    if (!spec && !strategy.empty()) {  // none: the model file's own (converted) or cpu fp32
      parsed = parse_strategy(strategy);
      spec = &parsed;
      rescale_override = -1;
    }
    for (const std::string& kv : template_opts) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw Error("--template-option '" + kv + "': expected KEY=VALUE");
      topts[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    if (!prompt_file.empty()) topts["prompt_file"] = prompt_file;
    // No template given: chosen after loading — raven-chat for RWKV-4, world-chat for
    // RWKV-5 and later (all of them are World models, trained on User:/Assistant:).
    const bool template_defaulted = template_name.empty();

    chat::ChatSettings settings;
    settings.sampling = SamplingParams{temp, top_p, top_k};
    if (temp == 0.0f) settings.sampling = SamplingParams{1.0f, 0.0f, top_k};  // greedy
    if (temp < 0 || !(top_p >= 0) || top_k < 0) throw Error("--temp, --top-p and --top-k must not be negative");
    if (!(decay > 0 && decay <= 1)) throw Error("--penalty-decay must be in (0, 1]");
    settings.penalty = PenaltyParams{presence, frequency, decay};
    for (const std::string& b : bans) {
      try { settings.edits.banned.push_back(int32_t(std::stol(b))); }
      catch (...) { throw Error("--ban-token '" + b + "': expected a token id"); }
    }
    for (const std::string& kv : biases) {
      size_t eq = kv.find('=');
      try {
        if (eq == std::string::npos) throw 0;
        settings.edits.bias.emplace_back(int32_t(std::stol(kv.substr(0, eq))), std::stof(kv.substr(eq + 1)));
      } catch (...) {
        throw Error("--logit-bias '" + kv + "': expected ID=VALUE");
      }
    }
    settings.seed = vm.count("seed") || (cfg.sampling.seed && !config.empty()) ? seed : std::random_device{}();

    // ---- the model (the demo one when none is given)
    bool demo = false;
    if (model.empty()) {
      demo = true;
      model = chat::shared_data_path("demo/demo.safetensors");
      if (tokenizer_path.empty()) tokenizer_path = chat::shared_data_path("demo/demo_vocab.txt");
      if (!fs::exists(model))
        throw Error(model + ": the demo model is missing (it is made when Corvid is built); give --model FILE");
    }
    if (vm.count("print-plan")) {
      PluginRegistry reg(plugin_dirs);
      Plan plan = preview_plan(model, spec, rescale_override, reg);
      std::cout << (vm.count("json") ? plan_to_json(plan) + "\n" : plan_to_text(plan));
      return 0;
    }
    std::cout << "Corvid chat " << version_string() << " - RWKV language models in C++ (ChatRWKV-compatible)\n";
    if (demo) {
      std::cout << "\n*** No --model given: running the built-in DEMO model. It is tiny and UNTRAINED, ***\n"
                << "*** so every reply is random noise. It only shows how corvid-chat works.        ***\n\n"
                << kGetARealModel << "\n";
    }
    std::cout << "Model " << model << " - strategy " << (spec ? spec->normalized : std::string("(default)")) << " - prompt "
              << (prompt_file.empty() ? (topts.count("prompt_file")  ? topts["prompt_file"]
                                         : template_defaulted ? std::string("built-in")
                                                              : "built-in (" + template_name + ")")
                                      : prompt_file)
              << "\nLoading model...\n"
              << std::flush;

    EngineOptions eo = engine_default_options();
    eo.model_path = model;
    eo.spec = spec;
    eo.rescale_override = rescale_override;
    eo.threads = threads;
    if (cfg.chunk_len > 0) eo.chunk_len = cfg.chunk_len;
    eo.plugin_dirs = plugin_dirs;
    if (vm.count("verbose")) eo.log = [](const std::string& s) { std::cerr << s << "\n"; };
    auto engine = Engine::load(eo);
    if (!config.empty()) validate_config_plugins(cfg, engine->registry());
    if (tokenizer_path.empty()) tokenizer_path = chat::tokenizer_beside(model, engine->hparams().n_vocab);
    if (template_defaulted) {
      const Arch arch = engine->hparams().arch;
      template_name = arch >= Arch::V5_0 ? "world-chat" : "raven-chat";
      if (arch >= Arch::V5_0)
        std::cout << "Prompt template world-chat (RWKV " << arch_name(arch) << " is a World model; --template to change)\n";
    }
    auto tok = load_tokenizer(engine->registry(), tokenizer_path, tokenizer_kind);
    std::vector<std::string> notes;
    auto tpl = chat::make_prompt_template(engine->registry(), template_name, topts, &notes);
    for (const std::string& n : notes) std::cout << n << "\n";
    auto cmodel = chat::make_engine_chat_model(*engine);
    const PluginRegistry& reg = engine->registry();
    const std::string tname = template_name;
    chat::PromptLoader loader = [&reg, tname](const std::string& path) {
      return chat::make_prompt_template(reg, tname, TemplateOptions{{"prompt_file", path}});
    };
    chat::ChatSession session(*cmodel, *tok, tpl, settings, out, loader);
    corvid_chat::Terminal term(&session.interrupt_flag());

    if (vm.count("verbose")) std::cerr << plan_to_text(engine->plan());
    std::cout << "Loaded in " << engine->load_seconds() << " s: " << cmodel->identity().description
              << ", tokenizer " << tokenizer_path << " (" << tok->kind() << ")\n\nRun prompt...\n" << std::flush;
    if (!session.start()) {
      std::cout << "\nInterrupted.\n";
      return 0;
    }
    std::cout << session.help_text() << "\n"
              << model << " - " << engine->plan().strategy << "\n"
              << session.init_display() << std::flush;
    if (demo) std::cout << "\n(demo model: replies are noise; run corvid-chat --help for how to use a real model)\n";

    while (true) {
      const std::string prompt = session.prompt_template().user_name() + session.prompt_template().interface_str() + " ";
      out.end_line();
      auto line = term.read_line(prompt);
      if (!line) break;
      term.turn_started();
      session.handle(*line);
      term.turn_finished();
      if (term.quit_requested()) break;
    }
    std::cout << "\nBye.\n";
    return 0;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "corvid-chat: %s\n", e.what());
    return 1;
  }
}
