// Shared helpers for the tokenizer tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "corvid/plugins/registry.h"
#include "corvid/plugins/tokenizer_loader.h"

namespace tok_test {

inline std::string shared_tokenizers_dir() { return std::string(CORVID_SHARED_DIR) + "/tokenizers"; }
inline std::string neox_path() { return shared_tokenizers_dir() + "/20B_tokenizer.json"; }
inline std::string world_path() { return shared_tokenizers_dir() + "/rwkv_vocab_v20230424.txt"; }
inline std::string data_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/tokenizer/data"; }

inline bool exists(const std::string& p) { return std::filesystem::exists(p); }

inline std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The real plugins from the build tree.
inline const corvid::PluginRegistry& registry() {
  static corvid::PluginRegistry reg({CORVID_PLUGIN_DIR});
  return reg;
}

// Strict UTF-8 check written independently of the tokenizer code.
inline bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || (n == 2 && c < 0xC2) || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

// A temporary file removed at scope exit.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& contents, const std::string& suffix = ".txt") {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() /
            ("corvid_tok_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + suffix))
               .string();
    std::ofstream(path, std::ios::binary) << contents;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

}  // namespace tok_test
