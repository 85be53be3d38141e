// corvid-make-demo OUT_DIR: writes the demo model that corvid-chat runs when no
// --model is given.
//
//   demo_vocab.txt     a vocabulary in the RWKV World file format
//                      (`<id> <python literal> <byte length>` per line): ids 1-256
//                      are the bytes 0x00-0xFF, then a few hundred English pieces
//                      chosen for this demo. Id 0 is end-of-text.
//   demo.safetensors   an RWKV-4 checkpoint, 4 layers x 128, fp32, with the
//                      tensor names and raw shapes of a real one (rwkv-reference
//                      §1.2) and UNTRAINED weights: the replies are noise.
//
// Deterministic: std::mt19937_64 (specified exactly by the standard) with a fixed
// seed; each value is built from 24 random bits with exact float arithmetic, so
// the files are byte-identical on every platform.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr int kLayers = 4;
constexpr int kEmbd = 128;
constexpr int kFfn = 4 * kEmbd;
constexpr uint64_t kSeed = 0x436f727669644465ull;  // "CorvidDe"

// The pieces after the 256 byte tokens. Leading spaces matter: " the" is how
// a word appears after a space, which the greedy longest match prefers.
const char* const kPieces[] = {
    "\n\n", "  ", "    ", ". ", ", ", "? ", "! ", ": ", "; ", "...", "'s", "n't", "'m", "'re", "'ll", "'ve", "'d",
    " the", " a", " an", " and", " or", " but", " to", " of", " in", " on", " at", " by", " for", " with", " from",
    " as", " is", " are", " was", " were", " be", " been", " am", " do", " does", " did", " have", " has", " had",
    " I", " you", " he", " she", " it", " we", " they", " me", " him", " her", " us", " them", " my", " your",
    " his", " its", " our", " their", " this", " that", " these", " those", " there", " here", " what", " which",
    " who", " when", " where", " why", " how", " not", " no", " yes", " so", " if", " then", " than", " very",
    " can", " could", " will", " would", " should", " may", " might", " must", " just", " also", " only", " all",
    " some", " any", " many", " much", " more", " most", " one", " two", " three", " first", " new", " old",
    " good", " great", " little", " long", " big", " small", " same", " other", " own", " right", " well",
    " like", " know", " think", " make", " go", " see", " get", " say", " said", " come", " take", " give",
    " tell", " ask", " use", " find", " want", " look", " work", " call", " try", " need", " feel", " help",
    " time", " day", " year", " way", " thing", " people", " man", " woman", " friend", " world", " life",
    " hand", " part", " place", " home", " water", " tea", " book", " story", " idea", " question", " answer",
    " about", " after", " before", " again", " always", " never", " often", " now", " today", " still",
    " something", " nothing", " everything", " because", " while", " through", " into", " over", " under",
    " out", " up", " down", " off", " back", " around", " together", " really", " maybe", " sure", " happy",
    " nice", " kind", " sorry", " thanks", " please", " hello", " hi", " love", " favourite", " morning",
    " evening", " night", " weather", " music", " food", " coffee", " bread", " garden", " city", " walk",
    " read", " write", " talk", " learn", " play", " live", " wonderful", " interesting", " important",
    "The", "I", "It", "You", "We", "He", "She", "They", "This", "That", "What", "How", "Why", "Yes", "No",
    "Well", "Sure", "Hello", "Hi", "Thanks", "Of", "In", "And", "But", "So", "If", "When", "There",
    " Bob", " Alice", "Bob", "Alice", " User", "User", " Assistant", "Assistant", " Q", " A", "Q", "A",
    "ing", "ed", "er", "ly", "es", "s", "tion", "ment", "ness", "ful", "able", "est", "al", "ous", "ive",
    " re", " un", " dis", " con", " pro", " com", " ex", " in", " im", " pre",
    " 1", " 2", " 3", " 10", " 100", "00", "0", " #", " Instruction", " Response", "Below", " instruction",
    " task", " request", " response", " appropriately", " completes", " describes", " Write",
};

// A float in [-scale, scale) from 24 random bits (exact arithmetic).
struct Gen {
  std::mt19937_64 eng{kSeed};
  float uniform01() { return float(eng() >> 40) * 0x1.0p-24f; }
  float sym(float scale) { return (2.0f * uniform01() - 1.0f) * scale; }
};

std::string py_literal(const std::string& bytes, bool* is_bytes) {
  // A str literal when the bytes are printable ASCII or valid multi-byte text;
  // a b'...' literal for lone bytes >= 0x80 (not valid UTF-8 on their own).
  bool ascii_or_utf8 = !(bytes.size() == 1 && static_cast<unsigned char>(bytes[0]) >= 0x80);
  *is_bytes = !ascii_or_utf8;
  std::string out = ascii_or_utf8 ? "'" : "b'";
  for (unsigned char c : bytes) {
    char buf[8];
    if (c == '\\') out += "\\\\";
    else if (c == '\'') out += "\\'";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !ascii_or_utf8)) {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  out += "'";
  return out;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: corvid-make-demo OUT_DIR\n");
    return 1;
  }
  const std::filesystem::path dir = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "%s: cannot create the folder (%s)\n", dir.c_str(), ec.message().c_str());
    return 1;
  }

  // ---- vocabulary
  std::string vocab;
  int next_id = 1;
  for (int b = 0; b < 256; ++b) {
    bool is_bytes;
    std::string lit = py_literal(std::string(1, char(b)), &is_bytes);
    vocab += std::to_string(next_id++) + " " + lit + " 1\n";
  }
  std::set<std::string> seen;
  for (const char* p : kPieces) {
    std::string s = p;
    if (s.size() < 2 || !seen.insert(s).second) continue;  // single bytes are ids 1-256; no duplicates
    bool is_bytes;
    vocab += std::to_string(next_id++) + " " + py_literal(s, &is_bytes) + " " + std::to_string(s.size()) + "\n";
  }
  const int n_vocab = next_id;  // ids 0 .. next_id-1 (0 = end of text)

  // ---- weights (raw checkpoint layout: Linear weights are (out, in))
  Gen g;
  std::vector<Tensor> ts;
  auto add = [&](std::string name, std::vector<int64_t> shape, auto fill) {
    Tensor t{std::move(name), std::move(shape), {}};
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    t.data.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) t.data[size_t(i)] = fill(i);
    ts.push_back(std::move(t));
  };
  const float w_in = 1.0f / std::sqrt(float(kEmbd));
  auto ones = [](int64_t) { return 1.0f; };
  auto zeros = [](int64_t) { return 0.0f; };
  auto mix = [&](int64_t) { return 0.25f + 0.5f * g.uniform01(); };
  add("emb.weight", {n_vocab, kEmbd}, [&](int64_t) { return g.sym(0.5f); });
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    if (l == 0) {
      add(p + "ln0.weight", {kEmbd}, ones);
      add(p + "ln0.bias", {kEmbd}, zeros);
    }
    add(p + "ln1.weight", {kEmbd}, ones);
    add(p + "ln1.bias", {kEmbd}, zeros);
    add(p + "ln2.weight", {kEmbd}, ones);
    add(p + "ln2.bias", {kEmbd}, zeros);
    // Decays spread from fast to slow across channels, as trained models have.
    add(p + "att.time_decay", {kEmbd}, [&](int64_t i) { return -5.0f + 7.0f * float(i) / float(kEmbd - 1); });
    add(p + "att.time_first", {kEmbd}, [&](int64_t) { return -1.0f + g.sym(0.5f); });
    add(p + "att.time_mix_k", {1, 1, kEmbd}, mix);
    add(p + "att.time_mix_v", {1, 1, kEmbd}, mix);
    add(p + "att.time_mix_r", {1, 1, kEmbd}, mix);
    add(p + "att.key.weight", {kEmbd, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "att.value.weight", {kEmbd, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "att.receptance.weight", {kEmbd, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "att.output.weight", {kEmbd, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "ffn.time_mix_k", {1, 1, kEmbd}, mix);
    add(p + "ffn.time_mix_r", {1, 1, kEmbd}, mix);
    add(p + "ffn.key.weight", {kFfn, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "ffn.receptance.weight", {kEmbd, kEmbd}, [&](int64_t) { return g.sym(w_in); });
    add(p + "ffn.value.weight", {kEmbd, kFfn}, [&](int64_t) { return g.sym(0.5f / std::sqrt(float(kFfn))); });
  }
  add("ln_out.weight", {kEmbd}, ones);
  add("ln_out.bias", {kEmbd}, zeros);
  add("head.weight", {n_vocab, kEmbd}, [&](int64_t) { return g.sym(2.0f * w_in); });
  // Shape the noise so the demo prints word salad rather than stalling: rows of
  // lone bytes >= 0x80 (never valid UTF-8 on their own) and control bytes are
  // zeroed, other single bytes damped, "\n" boosted so replies end, and
  // end-of-text (id 0) zeroed. Scaling by powers of two keeps this exact.
  {
    Tensor& head = ts.back();
    for (int id = 0; id <= 256; ++id) {
      const int byte = id - 1;
      float scale = id == 0 ? 0.0f
                    : byte == '\n' ? 4.0f
                    : (byte < 0x20 || byte >= 0x7F) ? 0.0f
                                                    : 0.5f;
      for (int c = 0; c < kEmbd; ++c) head.data[size_t(id) * kEmbd + size_t(c)] *= scale;
    }
  }

  // ---- safetensors: u64 header length, JSON header (offsets in file order), data
  std::string header = "{\"__metadata__\":{\"corvid.demo\":\"untrained RWKV-4 demo model; replies are noise\"}";
  uint64_t off = 0;
  for (const Tensor& t : ts) {
    uint64_t bytes = t.data.size() * 4;
    header += ",\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + bytes) + "]}";
    off += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';

  auto write_file = [&](const std::filesystem::path& path, auto body) {
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return false;
      body(out);
      out.close();
      if (!out) return false;
    }
    std::filesystem::rename(tmp, path, ec);
    return !ec;
  };
  bool ok = write_file(dir / "demo_vocab.txt", [&](std::ofstream& o) { o << vocab; }) &&
            write_file(dir / "demo.safetensors", [&](std::ofstream& o) {
              uint64_t n = header.size();
              unsigned char le[8];
              for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(n >> (8 * i));
              o.write(reinterpret_cast<const char*>(le), 8);
              o << header;
              for (const Tensor& t : ts)
                for (float v : t.data) {
                  uint32_t u;
                  std::memcpy(&u, &v, 4);
                  unsigned char b[4] = {static_cast<unsigned char>(u), static_cast<unsigned char>(u >> 8),
                                        static_cast<unsigned char>(u >> 16), static_cast<unsigned char>(u >> 24)};
                  o.write(reinterpret_cast<const char*>(b), 4);
                }
            });
  if (!ok) {
    std::fprintf(stderr, "%s: cannot write the demo files\n", dir.c_str());
    return 1;
  }
  std::printf("demo model: %d layers x %d, vocabulary %d, in %s\n", kLayers, kEmbd, n_vocab, dir.c_str());
  return 0;
}
