// corvid-bench --questions / --lambada (see quality.h). The procedures are in
// libcorvid (corvid/chat/quality.h); this file loads the model and prints.
#include "quality.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "corvid/chat/locate.h"
#include "corvid/chat/model.h"
#include "corvid/chat/quality.h"
#include "corvid/plugins/tokenizer_loader.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"

namespace po = boost::program_options;
using namespace corvid;

namespace corvid_bench {

namespace {

struct Streamed final : chat::ChatOutput {
  void write(std::string_view s) override {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  }
};

double rate(double n, double s) { return s > 0 ? n / s : 0.0; }

}  // namespace

void add_quality_options(po::options_description& desc, QualityOptions& o) {
  // clang-format off
  desc.add_options()
    ("questions", po::value(&o.questions_file)->implicit_value(""),
     "answer questions as ChatRWKV's benchmark_more.py does (FILE: one per line; default: Corvid's configs/questions.txt)")
    ("lambada", po::value(&o.lambada_file), "LAMBADA perplexity and accuracy as v2/benchmark.py computes them (a .jsonl file)")
    ("limit", po::value(&o.limit), "with --lambada: only the first N items")
    ("template", po::value(&o.template_name), "with --questions: the chat format (default raven-chat: \"Bob: q\\n\\nAlice:\")")
    ("max-tokens", po::value(&o.max_tokens), "with --questions: tokens per answer (default 200)");
  // clang-format on
}

bool quality_requested(const po::variables_map& vm) { return vm.count("questions") || vm.count("lambada"); }

int run_quality(QualityOptions o, const po::variables_map& vm) {
  o.questions = vm.count("questions") > 0;
  if (o.max_tokens < 1) throw Error("--max-tokens must be at least 1");
  if (vm.count("limit") && !vm.count("lambada")) throw Error("--limit goes with --lambada FILE");

  // Inputs first, so a bad file is reported before minutes of loading.
  std::vector<std::string> questions;
  std::string qfile = o.questions_file.empty() ? chat::shared_data_path("configs/questions.txt") : o.questions_file;
  if (o.questions) questions = chat::read_questions(qfile);
  std::vector<chat::LambadaItem> items;
  if (!o.lambada_file.empty()) items = chat::read_lambada(o.lambada_file, o.limit);

  RunConfig cfg;
  const StrategySpec* spec = nullptr;
  StrategySpec parsed;
  int rescale_override = -1;
  if (!o.config.empty()) {
    cfg = load_run_config(o.config);
    if (o.model.empty()) o.model = cfg.model;
    if (o.tokenizer.empty()) {
      o.tokenizer = cfg.tokenizer_path;
      if (o.tokenizer_kind.empty()) o.tokenizer_kind = cfg.tokenizer_kind;
    }
    for (const auto& d : cfg.plugin_dirs) o.plugin_dirs.push_back(d);
    if (!o.threads) o.threads = cfg.threads;
    rescale_override = cfg.rescale_layer;
    if (o.strategy.empty() && cfg.strategy) spec = &*cfg.strategy;
  }
  if (!spec) {
    parsed = parse_strategy(o.strategy.empty() ? "cpu fp32" : o.strategy);
    spec = &parsed;
    if (!o.strategy.empty()) rescale_override = -1;
  }
  if (o.model.empty()) throw Error("no model: give --model FILE (or a --config with <model path=...>)");
  EngineOptions eo = engine_default_options();
  eo.model_path = o.model;
  eo.spec = spec;
  eo.rescale_override = rescale_override;
  eo.threads = o.threads;
  if (cfg.chunk_len > 0) eo.chunk_len = cfg.chunk_len;
  eo.plugin_dirs = o.plugin_dirs;
  auto engine = Engine::load(eo);
  if (o.tokenizer.empty()) o.tokenizer = chat::tokenizer_beside(o.model, engine->hparams().n_vocab);
  auto tok = load_tokenizer(engine->registry(), o.tokenizer, o.tokenizer_kind);
  auto model = chat::make_engine_chat_model(*engine);

  nlohmann::json j;
  j["model"] = o.model;
  j["strategy"] = spec->normalized;
  j["tokenizer"] = o.tokenizer;
  if (!o.json) std::cout << o.model << "\n" << std::flush;  // benchmark_more prints the model path once

  if (o.questions) {
    auto tpl = engine->registry().create_prompt_template(o.template_name, {});
    Streamed out;
    nlohmann::json qs = nlohmann::json::array();
    size_t total_tokens = 0;
    double total_decode = 0;
    for (const std::string& q : questions) {
      chat::QuestionAnswer a = chat::answer_question(*model, *tok, *tpl, q, o.max_tokens, o.json ? nullptr : &out, o.seed);
      total_tokens += a.tokens.size();
      total_decode += a.decode_seconds;
      if (o.json) {
        qs.push_back({{"question", a.question},
                      {"answer", a.answer},
                      {"tokens", a.tokens.size()},
                      {"token_ids", a.tokens},
                      {"prompt_tokens", a.prompt_tokens},
                      {"prefill_seconds", a.prefill_seconds},
                      {"decode_seconds", a.decode_seconds},
                      {"tokens_per_second", rate(double(a.tokens.size()), a.decode_seconds)}});
      } else {
        std::printf("(%zu tokens in %.3f s, %.1f tokens/s; prompt %zu tokens in %.3f s)\n", a.tokens.size(),
                    a.decode_seconds, rate(double(a.tokens.size()), a.decode_seconds), a.prompt_tokens,
                    a.prefill_seconds);
        std::fflush(stdout);
      }
    }
    if (o.json) {
      j["questions_file"] = qfile;
      j["questions"] = qs;
      j["questions_tokens_per_second"] = rate(double(total_tokens), total_decode);
    } else {
      std::printf("%zu questions, %zu tokens, %.1f tokens/s overall\n", questions.size(), total_tokens,
                  rate(double(total_tokens), total_decode));
    }
  }

  if (!items.empty()) {
    if (!o.json) std::cout << "Check LAMBADA...\n" << std::flush;
    const size_t n = items.size();
    auto progress = [&](const chat::LambadaResult& r) {
      if (o.json || (r.count % 100 != 0 && r.count != n)) return;
      std::cout << r.count << " ppl " << chat::py_round2(r.ppl()) << " acc " << chat::py_round2(r.acc()) << "\n" << std::flush;
    };
    chat::LambadaResult r = chat::run_lambada(*model, *tok, items, progress);
    if (o.json) {
      j["lambada"] = {{"file", o.lambada_file},     {"count", r.count},     {"ppl", r.ppl()},
                      {"acc", r.acc()},             {"correct", r.correct}, {"logprob_sum", r.logprob_sum},
                      {"tokens", r.tokens},         {"seconds", r.seconds},
                      {"tokens_per_second", rate(double(r.tokens), r.seconds)}};
    } else {
      std::printf("LAMBADA: %zu items, %zu tokens in %.2f s (%.1f tokens/s)\n", r.count, r.tokens, r.seconds,
                  rate(double(r.tokens), r.seconds));
    }
  }
  if (o.json) std::cout << j.dump(1) << "\n";
  std::fflush(nullptr);
  return 0;
}

}  // namespace corvid_bench
