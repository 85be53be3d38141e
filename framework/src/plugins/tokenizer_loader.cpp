#include "corvid/plugins/tokenizer_loader.h"

#include <fstream>

#include "corvid/sdk/error.h"

namespace corvid {

std::string detect_tokenizer_kind(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open tokenizer file");
  std::string head(4096, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(f.gcount()));
  if (head.empty()) throw Error(path + ": empty tokenizer file");

  size_t i = 0;
  if (head.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // a UTF-8 BOM before JSON
  while (i < head.size() && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) ++i;
  if (i < head.size() && head[i] == '{') return "hf_bpe";

  // World: the first line is "<digits> <optional b/u prefix><quote>...".
  size_t d = 0;
  while (d < head.size() && head[d] >= '0' && head[d] <= '9') ++d;
  if (d > 0 && d + 2 < head.size() && head[d] == ' ') {
    size_t q = d + 1;
    if (head[q] == 'b' || head[q] == 'B' || head[q] == 'u' || head[q] == 'U') ++q;
    if (q < head.size() && (head[q] == '\'' || head[q] == '"')) return "rwkv_world";
  }
  throw Error(path + ":1: not a known tokenizer file (expected a Hugging Face tokenizer.json object, or "
                     "RWKV World vocabulary lines \"<id> <python literal> <byte length>\")");
}

std::shared_ptr<Tokenizer> load_tokenizer(const PluginRegistry& registry, const std::string& path,
                                          const std::string& kind) {
  std::string k = kind.empty() ? detect_tokenizer_kind(path) : kind;
  try {
    return registry.create_tokenizer(k, path);
  } catch (const std::exception& e) {
    // The exception object was made by the plugin's code. Copy the message into
    // an Error owned by libcorvid, so callers can print it even after unwinding
    // released the last reference to the plugin library.
    throw Error(e.what());
  }
}

}  // namespace corvid
