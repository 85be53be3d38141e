#include "hf_bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "corvid/sdk/error.h"
#include "json_locate.h"
#include "nfc_compat_table.h"

namespace corvid::hf_bpe {

using nlohmann::json;

// ---------------------------------------------------------------------------
// Unicode helpers
// ---------------------------------------------------------------------------
namespace {

// The GPT-2 split pattern of HF's ByteLevel pre-tokenizer:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The official library runs it with Oniguruma, whose Unicode `\s` is
// U+0009..U+000D, U+0085 and the Z categories (Zs, Zl, Zp), i.e. exactly the
// White_Space property. PCRE2's `\s` (even with PCRE2_UCP) leaves out U+0085,
// so the class is spelled out here. U+180E, U+200B and U+FEFF are format
// characters (Cf), not White_Space, in both.
#define CORVID_WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kByteLevelPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" CORVID_WS "\\p{L}\\p{N}]+|[" CORVID_WS "]+(?![^" CORVID_WS
    "])|[" CORVID_WS "]+";

// The same White_Space set, for lstrip/rstrip of added tokens (HF uses the
// Rust regex `\s`, which is White_Space too).
bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Decodes the code point starting at s[i] (valid UTF-8 assumed); sets len.
uint32_t decode_at(std::string_view s, size_t i, size_t& len) {
  unsigned char c = s[i];
  if (c < 0x80) { len = 1; return c; }
  if (c < 0xE0) { len = 2; return ((c & 0x1F) << 6) | (s[i + 1] & 0x3F); }
  if (c < 0xF0) { len = 3; return ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F); }
  len = 4;
  return ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

// Offset of the first invalid UTF-8 byte, or npos (strict: no overlongs,
// surrogates or code points above U+10FFFF, like Rust's str).
size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return i;
    if (i + len > n) return i;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

// NFC through utf8proc. Text whose code points are all below U+0300 is already
// NFC (no combining marks, no composition exclusions there): lead bytes of
// U+0300 and above are >= 0xCC, continuation bytes are < 0xC0.
bool may_change_under_nfc(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0xCC) return true;
  return false;
}

std::string nfc(std::string_view s) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("hf_bpe: NFC normalization failed: ") + utf8proc_errmsg(n));
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

bool unknown_to_hf_nfc(uint32_t cp) {
  if (cp < kNfcUnknownToHf[0].first) return false;
  auto it = std::upper_bound(std::begin(kNfcUnknownToHf), std::end(kNfcUnknownToHf), cp,
                             [](uint32_t v, const CodePointRange& r) { return v < r.first; });
  return it != std::begin(kNfcUnknownToHf) && cp <= std::prev(it)->last;
}

// NFC as the official library computes it (Unicode 9.0 data): characters it
// does not know act as inert starters, so the text between them is normalized
// on its own and they are kept as they are (see nfc_compat_table.h).
std::string hf_nfc(std::string_view s) {
  std::string out;
  size_t seg = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    uint32_t cp = decode_at(s, i, len);
    if (cp >= 0x7FD && unknown_to_hf_nfc(cp)) {
      if (i > seg) out += nfc(s.substr(seg, i - seg));
      out.append(s.substr(i, len));
      seg = i + len;
    }
    i += len;
  }
  if (seg == 0) return nfc(s);
  if (seg < s.size()) out += nfc(s.substr(seg));
  return out;
}

// GPT-2's reversible byte <-> printable character map: the printable bytes
// '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves, the other
// 68 bytes get U+0100, U+0101, ... in byte order.
struct ByteLevelMap {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 512> cp_to_byte{};  // -1 where the code point is no byte
  ByteLevelMap() {
    cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap m;
  return m;
}

// The bytes a byte-level token string stands for; false when it has a
// character outside the 256-character alphabet (such a token can never come
// out of BPE; the HF decoder then uses its UTF-8 bytes as they are).
bool byte_level_to_bytes(std::string_view token, std::string& out) {
  const auto& m = byte_level_map();
  out.clear();
  for (size_t i = 0; i < token.size();) {
    size_t len;
    uint32_t cp = decode_at(token, i, len);
    if (cp >= m.cp_to_byte.size() || m.cp_to_byte[cp] < 0) return false;
    out += static_cast<char>(m.cp_to_byte[cp]);
    i += len;
  }
  return true;
}

std::string decoder_bytes(std::string_view token) {
  std::string b;
  if (byte_level_to_bytes(token, b)) return b;
  return std::string(token);
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
constexpr uint64_t kEmptyKey = ~0ULL;

}  // namespace

// ---------------------------------------------------------------------------
// LiteralMatcher
// ---------------------------------------------------------------------------
void LiteralMatcher::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t n = 0;
  for (unsigned char c : pattern) {
    int32_t next = -1;
    for (auto& [k, v] : nodes_[n].kids)
      if (k == c) { next = v; break; }
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_[n].kids.emplace_back(c, next);
      nodes_.emplace_back();
    }
    n = next;
  }
  nodes_[n].value = value;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

int32_t LiteralMatcher::longest_at(std::string_view s, size_t pos, size_t& end) const {
  int32_t n = 0, best = -1;
  for (size_t i = pos; i < s.size(); ++i) {
    int32_t next = -1;
    for (auto& [k, v] : nodes_[n].kids)
      if (k == static_cast<unsigned char>(s[i])) { next = v; break; }
    if (next < 0) break;
    n = next;
    if (nodes_[n].value >= 0) { best = nodes_[n].value; end = i + 1; }
  }
  return best;
}

size_t LiteralMatcher::next_candidate(std::string_view s, size_t pos) const {
  while (pos < s.size() && !first_byte_[static_cast<unsigned char>(s[pos])]) ++pos;
  return pos;
}

// ---------------------------------------------------------------------------
// Regex and scratch space
// ---------------------------------------------------------------------------
struct HfBpeTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() { if (code) pcre2_code_free(code); }
};

struct HfBpeTokenizer::Scratch {
  pcre2_match_data* md = nullptr;
  std::vector<std::pair<std::pair<size_t, size_t>, int32_t>> raw_splits, norm_splits;
  struct Symbol { int32_t id, prev, next, len; };
  struct Merge { uint32_t rank; int32_t pos; int32_t new_id; };
  std::vector<Symbol> symbols;
  std::vector<Merge> heap;
  std::vector<int32_t> word;
  ~Scratch() { if (md) pcre2_match_data_free(md); }
};

HfBpeTokenizer::HfBpeTokenizer() : regex_(std::make_unique<Regex>()) { byte_id_.fill(-1); }
HfBpeTokenizer::~HfBpeTokenizer() = default;

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------
HfBpeTokenizer* HfBpeTokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open tokenizer.json");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": read error");
  return from_json_text(ss.str(), path);
}

namespace {

class Loader {
 public:
  Loader(const std::string& text, const std::string& name) : text_(text), name_(name) {}

  [[noreturn]] void fail(const std::vector<JsonStep>& path, const std::string& what) const {
    size_t line = json_line_of(text_, path);
    throw Error(name_ + (line ? ":" + std::to_string(line) : std::string()) + ": " + what);
  }

  static std::string show(const json& v) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    return s.size() > 80 ? s.substr(0, 77) + "..." : s;
  }

  // `obj[key]` must be absent, null, or equal one of `allowed` (given as JSON).
  void expect_value(const json& obj, const std::vector<JsonStep>& path, const std::string& key,
                    std::initializer_list<json> allowed, const std::string& why) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return;
    for (const auto& a : allowed)
      if (*it == a) return;
    auto p = path;
    p.emplace_back(key);
    fail(p, "\"" + key + "\": " + show(*it) + " is not supported (" + why + ")");
  }

  bool get_bool(const json& obj, const std::vector<JsonStep>& path, const std::string& key, bool dflt) const {
    auto it = obj.find(key);
    if (it == obj.end()) return dflt;
    if (!it->is_boolean()) {
      auto p = path;
      p.emplace_back(key);
      fail(p, "\"" + key + "\" must be true or false, got " + show(*it));
    }
    return it->get<bool>();
  }

  const std::string& text_;
  const std::string& name_;
};

}  // namespace

HfBpeTokenizer* HfBpeTokenizer::from_json_text(const std::string& text, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    auto [line, col] = line_col_of_offset(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string msg = e.what();
    size_t k = msg.find("column");
    k = k == std::string::npos ? std::string::npos : msg.find(": ", k);
    if (k != std::string::npos) msg = msg.substr(k + 2);
    throw Error(name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON: " + msg);
  }
  Loader L(text, name);
  std::unique_ptr<HfBpeTokenizer> tok(new HfBpeTokenizer());
  if (!j.is_object()) L.fail({}, "expected a JSON object (a Hugging Face tokenizer.json)");

  if (auto it = j.find("version"); it != j.end() && *it != "1.0")
    L.fail({"version"}, "tokenizer.json version " + Loader::show(*it) + " is not supported (expected \"1.0\")");
  L.expect_value(j, {}, "truncation", {}, "truncation changes the ids; it must be null");
  L.expect_value(j, {}, "padding", {}, "padding changes the ids; it must be null");

  // normalizer: none or NFC.
  if (auto it = j.find("normalizer"); it != j.end() && !it->is_null()) {
    if (!it->is_object() || it->value("type", "") != "NFC")
      L.fail({"normalizer"}, "normalizer " + Loader::show(*it) + " is not supported (only NFC or null)");
    tok->nfc_ = true;
  }

  // pre_tokenizer: ByteLevel with the GPT-2 regex and no prefix space.
  {
    auto it = j.find("pre_tokenizer");
    if (it == j.end() || !it->is_object() || it->value("type", "") != "ByteLevel")
      L.fail({"pre_tokenizer"}, "pre_tokenizer " + (it == j.end() ? std::string("(missing)") : Loader::show(*it)) +
                                    " is not supported (only ByteLevel)");
    if (L.get_bool(*it, {"pre_tokenizer"}, "add_prefix_space", false))
      L.fail({"pre_tokenizer", "add_prefix_space"}, "ByteLevel add_prefix_space=true is not supported");
    if (!L.get_bool(*it, {"pre_tokenizer"}, "use_regex", true))
      L.fail({"pre_tokenizer", "use_regex"}, "ByteLevel use_regex=false is not supported");
  }
  // post_processor: none or ByteLevel (which changes offsets only, never ids).
  if (auto it = j.find("post_processor"); it != j.end() && !it->is_null()) {
    if (!it->is_object() || it->value("type", "") != "ByteLevel")
      L.fail({"post_processor"},
             "post_processor " + Loader::show(*it) + " is not supported (only ByteLevel or null)");
  }
  // decoder: ByteLevel.
  {
    auto it = j.find("decoder");
    if (it == j.end() || !it->is_object() || it->value("type", "") != "ByteLevel")
      L.fail({"decoder"}, "decoder " + (it == j.end() ? std::string("(missing)") : Loader::show(*it)) +
                              " is not supported (only ByteLevel)");
  }

  // model: BPE without dropout, unk token, prefixes/suffixes or byte fallback.
  auto mit = j.find("model");
  if (mit == j.end() || !mit->is_object()) L.fail({"model"}, "missing \"model\" object");
  const json& model = *mit;
  if (model.value("type", "") != "BPE")
    L.fail({"model", "type"}, "model type " + Loader::show(model.value("type", json("(missing)"))) +
                                  " is not supported (only BPE)");
  L.expect_value(model, {"model"}, "dropout", {}, "BPE dropout makes encoding random");
  L.expect_value(model, {"model"}, "unk_token", {}, "byte-level BPE needs no unknown token");
  L.expect_value(model, {"model"}, "continuing_subword_prefix", {json("")}, "not used by byte-level BPE");
  L.expect_value(model, {"model"}, "end_of_word_suffix", {json("")}, "not used by byte-level BPE");
  L.expect_value(model, {"model"}, "byte_fallback", {json(false)}, "not used by byte-level BPE");
  tok->ignore_merges_ = L.get_bool(model, {"model"}, "ignore_merges", false);

  // vocab: token string -> id.
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) L.fail({"model", "vocab"}, "missing \"vocab\" object in model");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(vit->size() * 2);
  std::unordered_map<int32_t, std::string> id_owner;
  int64_t max_id = -1;
  for (auto& [key, val] : vit->items()) {
    if (!val.is_number_unsigned() || val.get<uint64_t>() > 0x7FFFFFFF)
      L.fail({"model", "vocab", key}, "vocab entry \"" + key + "\" needs a non-negative integer id, got " + Loader::show(val));
    int32_t id = static_cast<int32_t>(val.get<uint64_t>());
    auto [it, inserted] = id_owner.emplace(id, key);
    if (!inserted) {
      // Report at whichever of the two entries comes later in the file.
      size_t l1 = json_line_of(text, {"model", "vocab", it->second}), l2 = json_line_of(text, {"model", "vocab", key});
      const std::string& first = l1 <= l2 ? it->second : key;
      const std::string& second = l1 <= l2 ? key : it->second;
      L.fail({"model", "vocab", second}, "duplicate id " + std::to_string(id) + " in vocab: \"" + second +
                                             "\" and \"" + first + "\" (line " + std::to_string(std::min(l1, l2)) + ")");
    }
    vocab.emplace(key, id);
    max_id = std::max<int64_t>(max_id, id);
  }

  // Byte-level alphabet: the one-byte tokens start every BPE word.
  const auto& blm = byte_level_map();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    uint32_t cp = blm.byte_to_cp[b];
    if (cp < 0x80) ch += char(cp);
    else { ch += char(0xC0 | cp >> 6); ch += char(0x80 | (cp & 0x3F)); }
    auto it = vocab.find(ch);
    tok->byte_id_[b] = it == vocab.end() ? -1 : it->second;  // HF drops such bytes
  }
  if (tok->ignore_merges_) {
    std::string b;
    for (auto& [k, id] : vocab)
      if (byte_level_to_bytes(k, b)) tok->bytes_to_id_.emplace(b, id);
  }

  // merges: "a b" strings or ["a", "b"] pairs; rank = position.
  auto mgit = model.find("merges");
  if (mgit == model.end() || !mgit->is_array()) L.fail({"model", "merges"}, "missing \"merges\" array in model");
  const json& merges = *mgit;
  size_t cap = 16;
  while (cap < merges.size() * 2 + 16) cap <<= 1;
  tok->merge_keys_.assign(cap, kEmptyKey);
  tok->merge_vals_.assign(cap, 0);
  tok->merge_mask_ = cap - 1;
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        L.fail({"model", "merges", r}, "merge " + Loader::show(m) + " must be two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      L.fail({"model", "merges", r}, "merge " + Loader::show(m) + " must be \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), inew = vocab.find(a + b);
    if (ia == vocab.end()) L.fail({"model", "merges", r}, "merge " + Loader::show(m) + ": token \"" + a + "\" is not in the vocab");
    if (ib == vocab.end()) L.fail({"model", "merges", r}, "merge " + Loader::show(m) + ": token \"" + b + "\" is not in the vocab");
    if (inew == vocab.end())
      L.fail({"model", "merges", r}, "merge " + Loader::show(m) + ": merged token \"" + a + b + "\" is not in the vocab");
    // A repeated pair keeps its last rank, as HF's HashMap insert does.
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) | static_cast<uint32_t>(ib->second);
    uint64_t val = (static_cast<uint64_t>(r) << 32) | static_cast<uint32_t>(inew->second);
    for (uint64_t h = mix64(key) & tok->merge_mask_;; h = (h + 1) & tok->merge_mask_) {
      if (tok->merge_keys_[h] == kEmptyKey || tok->merge_keys_[h] == key) {
        tok->merge_keys_[h] = key;
        tok->merge_vals_[h] = val;
        break;
      }
    }
  }

  // added_tokens: ids are re-derived the way HF does when it loads the file
  // (in file order: the vocab id if the content is in the vocab, else the next
  // free id) and must agree with the ids written in the file.
  std::unordered_map<std::string, int32_t> added_ids;
  int64_t max_added = -1;
  if (auto ait = j.find("added_tokens"); ait != j.end() && !ait->is_null()) {
    if (!ait->is_array()) L.fail({"added_tokens"}, "\"added_tokens\" must be an array");
    for (size_t i = 0; i < ait->size(); ++i) {
      const json& t = (*ait)[i];
      std::vector<JsonStep> p{"added_tokens", i};
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id") ||
          !t["id"].is_number_unsigned())
        L.fail(p, "added token needs \"id\" (non-negative integer) and \"content\" (string)");
      AddedTokenInfo info;
      info.content = t["content"].get<std::string>();
      info.special = L.get_bool(t, p, "special", false);
      info.single_word = L.get_bool(t, p, "single_word", false);
      info.lstrip = L.get_bool(t, p, "lstrip", false);
      info.rstrip = L.get_bool(t, p, "rstrip", false);
      info.normalized = L.get_bool(t, p, "normalized", !info.special);
      if (info.single_word)
        L.fail(p, "added token " + Loader::show(t["content"]) + ": single_word=true is not supported");
      if (info.content.empty()) continue;  // HF ignores empty added tokens
      uint64_t file_id = t["id"].get<uint64_t>();
      if (auto d = added_ids.find(info.content); d != added_ids.end()) {
        const auto& prev = tok->added_[static_cast<size_t>(d->second)];
        if (prev.special == info.special && prev.lstrip == info.lstrip && prev.rstrip == info.rstrip &&
            prev.normalized == info.normalized && static_cast<uint64_t>(prev.id) == file_id)
          continue;  // an exact repeat is ignored by HF too
        L.fail(p, "added token " + Loader::show(t["content"]) + " appears twice with different settings");
      }
      int64_t id;
      if (auto v = vocab.find(info.content); v != vocab.end()) {
        id = v->second;
      } else {
        int64_t vs = static_cast<int64_t>(vocab.size());
        id = max_added < 0 ? vs : (max_added >= vs || vs == 0 ? max_added + 1 : vs);
      }
      if (static_cast<uint64_t>(id) != file_id)
        L.fail(p, "added token " + Loader::show(t["content"]) + " has id " + std::to_string(file_id) +
                      " but Hugging Face tokenizers would give it id " + std::to_string(id) +
                      " (vocab size and file order decide it)");
      info.id = static_cast<int32_t>(id);
      max_added = std::max(max_added, id);
      max_id = std::max(max_id, id);
      added_ids.emplace(info.content, static_cast<int32_t>(tok->added_.size()));
      tok->added_.push_back(info);
    }
  }
  for (size_t i = 0; i < tok->added_.size(); ++i) {
    const auto& a = tok->added_[i];
    if (a.normalized) tok->normalized_matcher_.add(tok->nfc_ ? hf_nfc(a.content) : a.content, static_cast<int32_t>(i));
    else tok->raw_matcher_.add(a.content, static_cast<int32_t>(i));
  }

  // id -> bytes for decoding; special tokens decode to nothing.
  tok->id_bytes_.assign(static_cast<size_t>(max_id + 1), std::string());
  tok->id_special_.assign(static_cast<size_t>(max_id + 1), false);
  for (auto& [k, id] : vocab) tok->id_bytes_[id] = decoder_bytes(k);
  for (const auto& a : tok->added_) {
    tok->id_bytes_[a.id] = a.special ? std::string() : decoder_bytes(a.content);
    tok->id_special_[a.id] = a.special;
  }
  tok->eot_id_ = 0;
  if (auto e = added_ids.find("<|endoftext|>"); e != added_ids.end()) tok->eot_id_ = tok->added_[e->second].id;
  else if (auto v = vocab.find("<|endoftext|>"); v != vocab.end()) tok->eot_id_ = v->second;

  // The pre-tokenizer regex.
  int err = 0;
  PCRE2_SIZE erroff = 0;
  tok->regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kByteLevelPattern), PCRE2_ZERO_TERMINATED,
                                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &erroff, nullptr);
  if (!tok->regex_->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw Error(std::string("hf_bpe: cannot compile the ByteLevel regex: ") + reinterpret_cast<char*>(buf));
  }
  tok->regex_->jit = pcre2_jit_compile(tok->regex_->code, PCRE2_JIT_COMPLETE) == 0;
  return tok.release();
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------
const uint64_t* HfBpeTokenizer::find_merge(int32_t a, int32_t b) const {
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  for (uint64_t h = mix64(key) & merge_mask_;; h = (h + 1) & merge_mask_) {
    uint64_t k = merge_keys_[h];
    if (k == key) return &merge_vals_[h];
    if (k == kEmptyKey) return nullptr;
  }
}

// HF AddedVocabulary::find_matches: leftmost-longest matches, each widened by
// lstrip/rstrip over White_Space, with the text between them as plain pieces.
// A piece is ((begin, end), added-token index or -1).
void HfBpeTokenizer::split_added(std::string_view text, const LiteralMatcher& m,
                                 std::vector<std::pair<std::pair<size_t, size_t>, int32_t>>& out) const {
  out.clear();
  size_t start_offset = 0;
  if (!m.empty()) {
    size_t pos = m.next_candidate(text, 0);
    while (pos < text.size()) {
      size_t end = 0;
      int32_t which = m.longest_at(text, pos, end);
      if (which < 0) {
        pos = m.next_candidate(text, pos + 1);
        continue;
      }
      const AddedTokenInfo& a = added_[which];
      size_t start = pos, stop = end;
      if (a.lstrip) {
        size_t s = start;
        while (s > 0) {  // step back over whole White_Space characters
          size_t b = s - 1;
          while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
          size_t len;
          if (!is_white_space(decode_at(text, b, len))) break;
          s = b;
        }
        start = std::max(s, start_offset);
      }
      if (a.rstrip) {
        size_t len;
        while (stop < text.size() && is_white_space(decode_at(text, stop, len))) stop += len;
      }
      if (start_offset < start) out.push_back({{start_offset, start}, -1});
      out.push_back({{start, stop}, which});
      start_offset = stop;
      pos = m.next_candidate(text, end);  // matching resumes after the match itself
    }
  }
  if (start_offset != text.size()) out.push_back({{start_offset, text.size()}, -1});
}

std::vector<int32_t> HfBpeTokenizer::encode(std::string_view text) const {
  if (size_t bad = first_invalid_utf8(text); bad != std::string_view::npos)
    throw Error("hf_bpe: input is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> out;
  out.reserve(text.size() / 4 + 4);
  Scratch sc;
  sc.md = pcre2_match_data_create_from_pattern(regex_->code, nullptr);
  if (!sc.md) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(cache_mutex_);
  split_added(text, raw_matcher_, sc.raw_splits);
  for (const auto& [range, which] : sc.raw_splits) {
    if (which >= 0) {
      out.push_back(added_[which].id);
      continue;
    }
    std::string_view piece = text.substr(range.first, range.second - range.first);
    if (nfc_ && may_change_under_nfc(piece)) {
      std::string normalized = hf_nfc(piece);
      encode_normalized_piece(normalized, out, sc);
    } else {
      encode_normalized_piece(piece, out, sc);
    }
  }
  return out;
}

void HfBpeTokenizer::encode_normalized_piece(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const {
  split_added(piece, normalized_matcher_, sc.norm_splits);
  for (const auto& [range, which] : sc.norm_splits) {
    if (which >= 0) out.push_back(added_[which].id);
    else pre_tokenize_and_bpe(piece.substr(range.first, range.second - range.first), out, sc);
  }
}

void HfBpeTokenizer::pre_tokenize_and_bpe(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  const size_t n = piece.size();
  size_t off = 0;
  while (off < n) {
    int rc = regex_->jit ? pcre2_jit_match(regex_->code, subject, n, off, 0, sc.md, nullptr)
                         : pcre2_match(regex_->code, subject, n, off, PCRE2_NO_UTF_CHECK, sc.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      bpe_piece(piece.substr(off), out, sc);  // text the pattern does not cover stays one piece
      return;
    }
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof buf);
      throw Error(std::string("hf_bpe: regex match failed: ") + reinterpret_cast<char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.md);
    if (ov[0] > off) bpe_piece(piece.substr(off, ov[0] - off), out, sc);
    bpe_piece(piece.substr(ov[0], ov[1] - ov[0]), out, sc);
    off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;  // the pattern never matches empty; guard anyway
  }
}

void HfBpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const {
  if (piece.empty()) return;
  if (auto it = cache_.find(piece); it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  sc.word.clear();
  bpe_uncached(piece, sc.word, sc);
  out.insert(out.end(), sc.word.begin(), sc.word.end());
  // Bounded like HF's cache: once full, new pieces are computed every time.
  constexpr size_t kMaxCacheEntries = 1 << 17, kMaxCachedPieceBytes = 256;
  if (cache_.size() < kMaxCacheEntries && piece.size() <= kMaxCachedPieceBytes)
    cache_.emplace(std::string(piece), sc.word);
}

// HF BPE Word::merge_all: a min-heap of candidate merges ordered by (rank,
// position); a popped candidate is applied only if the pair is still there
// and still merges into the same token; each merge offers the new pairs with
// its neighbours.
void HfBpeTokenizer::bpe_uncached(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const {
  if (ignore_merges_) {
    if (auto it = bytes_to_id_.find(std::string(piece)); it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  auto& sym = sc.symbols;
  sym.clear();
  for (unsigned char c : piece) {
    int32_t id = byte_id_[c];
    if (id < 0) continue;  // no token for this byte and no unk token: HF drops it
    int32_t i = static_cast<int32_t>(sym.size());
    sym.push_back({id, i - 1, i + 1, 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  using Merge = Scratch::Merge;
  auto later = [](const Merge& x, const Merge& y) {  // heap top = smallest (rank, pos)
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  auto& heap = sc.heap;
  heap.clear();
  for (size_t i = 0; i + 1 < sym.size(); ++i)
    if (const uint64_t* m = find_merge(sym[i].id, sym[i + 1].id))
      heap.push_back({static_cast<uint32_t>(*m >> 32), static_cast<int32_t>(i), static_cast<int32_t>(*m & 0xFFFFFFFF)});
  std::make_heap(heap.begin(), heap.end(), later);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Merge top = heap.back();
    heap.pop_back();
    auto& cur = sym[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    int32_t next_pos = cur.next;
    const auto right = sym[next_pos];
    const uint64_t* m = find_merge(cur.id, right.id);
    if (!m || static_cast<int32_t>(*m & 0xFFFFFFFF) != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    sym[next_pos].len = 0;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const uint64_t* pm = find_merge(sym[cur.prev].id, cur.id)) {
        heap.push_back({static_cast<uint32_t>(*pm >> 32), cur.prev, static_cast<int32_t>(*pm & 0xFFFFFFFF)});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
    if (cur.next >= 0) {
      if (const uint64_t* nm = find_merge(cur.id, sym[cur.next].id)) {
        heap.push_back({static_cast<uint32_t>(*nm >> 32), top.pos, static_cast<int32_t>(*nm & 0xFFFFFFFF)});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
  for (const auto& s : sym)
    if (s.len != 0) out.push_back(s.id);
}

void HfBpeTokenizer::clear_cache() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_.clear();
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------
std::string HfBpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_bytes_.size()) return {};
  return id_bytes_[id];
}

std::string HfBpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids)
    if (id >= 0 && static_cast<size_t>(id) < id_bytes_.size()) out += id_bytes_[id];
  return out;
}

std::vector<AddedToken> HfBpeTokenizer::added_tokens() const {
  std::vector<AddedToken> r;
  for (const auto& a : added_) r.push_back({a.id, a.content, a.special});
  return r;
}

}  // namespace corvid::hf_bpe
