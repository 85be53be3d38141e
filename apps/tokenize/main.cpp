// corvid-tokenize: text <-> token ids with a tokenizer file.
//
//   corvid-tokenize --tokenizer 20B_tokenizer.json < text.txt        ids, space separated
//   corvid-tokenize --tokenizer rwkv_vocab_v20230424.txt --count < t  number of tokens
//   echo "187 510" | corvid-tokenize --tokenizer F --decode           the text (raw bytes)
//   corvid-tokenize --tokenizer F --jsonl < in.jsonl                  {"text":..,"ids":[..]} per line
//
// stdin is taken byte for byte (a trailing newline is part of the text).
#include <boost/program_options.hpp>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "corvid/plugins/registry.h"
#include "corvid/plugins/tokenizer_loader.h"
#include "corvid/sdk/error.h"

namespace po = boost::program_options;
using namespace corvid;

namespace {

std::string read_all(std::istream& in) {
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::cout << line;
}

// Ids separated by spaces, commas or newlines; names the offending word.
std::vector<int32_t> parse_ids(const std::string& text, size_t vocab_size) {
  std::vector<int32_t> ids;
  size_t i = 0, line = 1;
  while (i < text.size()) {
    char c = text[i];
    if (c == '\n') { ++line; ++i; continue; }
    if (c == ' ' || c == '\t' || c == '\r' || c == ',') { ++i; continue; }
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t' && text[j] != '\r' && text[j] != '\n' && text[j] != ',') ++j;
    std::string word = text.substr(i, j - i);
    bool digits = !word.empty() && word.size() <= 10 && word.find_first_not_of("0123456789") == std::string::npos;
    long long v = digits ? std::stoll(word) : -1;
    if (!digits || v >= static_cast<long long>(vocab_size))
      throw Error("stdin:" + std::to_string(line) + ": expected a token id (0.." + std::to_string(vocab_size - 1) +
                  "), got '" + word + "'");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("corvid-tokenize options");
  std::string path, kind;
  std::vector<std::string> plugin_dirs;
  // Declared outside the try block: an exception thrown inside a plugin must be
  // printed while the plugin library (which holds its code) is still loaded.
  std::unique_ptr<PluginRegistry> registry;
  std::shared_ptr<Tokenizer> tok;
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("tokenizer", po::value(&path), "tokenizer file: 20B_tokenizer.json (hf_bpe) or rwkv_vocab_v20230424.txt (rwkv_world)")
    ("kind", po::value(&kind), "hf_bpe or rwkv_world (default: detected from the file)")
    ("decode", "read token ids from stdin and write the text they stand for")
    ("jsonl", "read lines {\"text\": ...} and write {\"text\": ..., \"ids\": [...]}")
    ("count", "print only the number of tokens")
    ("plugin-dir", po::value(&plugin_dirs)->composing(), "extra plugin directory (repeatable)");
  // clang-format on
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << "Usage: corvid-tokenize --tokenizer FILE [--kind K] [--decode | --jsonl] [--count] < input\n\n"
                << desc << "\n";
      return 0;
    }
    if (path.empty()) throw Error("--tokenizer FILE is required");
    if (vm.count("decode") && vm.count("jsonl")) throw Error("--decode and --jsonl cannot be combined");
    if (vm.count("decode") && vm.count("count")) throw Error("--decode and --count cannot be combined");
    if (!kind.empty() && kind != "hf_bpe" && kind != "rwkv_world")
      throw Error("--kind must be hf_bpe or rwkv_world, got '" + kind + "'");

    registry = std::make_unique<PluginRegistry>(plugin_dirs);
    tok = load_tokenizer(*registry, path, kind);
    std::ios::sync_with_stdio(false);

    if (vm.count("decode")) {
      std::string out = tok->decode(parse_ids(read_all(std::cin), tok->vocab_size()));
      std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
      std::cout.flush();
      return 0;
    }
    if (vm.count("jsonl")) {
      // Parse everything first so that a bad line leaves no partial output.
      std::string line, out;
      size_t line_no = 0, total = 0;
      while (std::getline(std::cin, line)) {
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::parse_error& e) {
          throw Error("stdin:" + std::to_string(line_no) + ": invalid JSON (byte " + std::to_string(e.byte) + ")");
        }
        if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
          throw Error("stdin:" + std::to_string(line_no) + ": expected an object with a string \"text\"");
        std::vector<int32_t> ids;
        try {
          ids = tok->encode(j["text"].get<std::string>());
        } catch (const std::exception& e) {
          throw Error("stdin:" + std::to_string(line_no) + ": " + e.what());
        }
        total += ids.size();
        if (vm.count("count")) continue;
        nlohmann::json o;
        o["text"] = j["text"];
        o["ids"] = ids;
        out += o.dump(-1, ' ', false) + "\n";
      }
      if (vm.count("count")) out = std::to_string(total) + "\n";
      std::cout << out;
      return 0;
    }
    auto ids = tok->encode(read_all(std::cin));
    if (vm.count("count")) std::cout << ids.size() << "\n";
    else print_ids(ids);
    return 0;
  } catch (const po::error& e) {
    std::cerr << "corvid-tokenize: " << e.what() << " (see --help)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "corvid-tokenize: " << e.what() << "\n";
    return 1;
  }
}
