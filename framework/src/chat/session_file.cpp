// Chat session files (+save / +load).
//
// Layout (little-endian, as every platform Corvid builds for):
//   "CORVID-CHAT-SESSION\n"          20-byte magic
//   u32 version (1)
//   u64 payload size, u64 FNV-1a-64 checksum of the payload
//   payload:
//     str model description, u64 model fingerprint, u64 state floats,
//     u32 layers + u8 state dtype per layer,
//     str template name, user, bot, interface, init prompt,
//     str sampler RNG state, f32 temperature, f32 top_p, i32 top_k,
//     u8 has_logits, f32[V] logits, u64 n + i32[n] tokens, f32[state] state   (the current state)
//     u32 snapshot count, then per snapshot: u8 id, the same three fields
// (str = u64 length + bytes). The file is written to FILE.tmp and renamed, so a
// failed save never leaves a partial file behind.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "corvid/chat/session.h"
#include "corvid/sdk/error.h"

namespace corvid::chat {

namespace {

constexpr char kMagic[] = "CORVID-CHAT-SESSION\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

struct Writer {
  std::string buf;
  template <typename T>
  void pod(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { pod<uint64_t>(s.size()); buf += s; }
  template <typename T>
  void array(const std::vector<T>& v) { buf.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)); }
};

struct Reader {
  const std::string& buf;
  const std::string& path;
  size_t pos = 0;
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path + ": " + what + " at byte " + std::to_string(pos) + " of the payload");
  }
  template <typename T>
  T pod() {
    if (buf.size() - pos < sizeof(T)) fail("truncated data");
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string str() {
    uint64_t n = pod<uint64_t>();
    if (buf.size() - pos < n) fail("truncated string");
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
  template <typename T>
  std::vector<T> array(uint64_t n) {
    if (n > (buf.size() - pos) / sizeof(T)) fail("truncated array");
    std::vector<T> v(n);
    std::memcpy(v.data(), buf.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
    return v;
  }
};

const char* dtype_word(DType d) {
  return d == DType::F32 ? "fp32" : d == DType::F16 ? "fp16" : d == DType::BF16 ? "bf16" : "other";
}

// Whether a state held in `saved` loads into a layer holding `now` without loss.
bool lossless(DType saved, DType now) { return saved == now || now == DType::F32; }

}  // namespace

void ChatSession::save(const std::string& path) const {
  const ModelIdentity id = model_.identity();
  Writer w;
  w.str(id.description);
  w.pod<uint64_t>(id.fingerprint);
  w.pod<uint64_t>(id.state_floats);
  w.pod<uint32_t>(uint32_t(id.state_dtypes.size()));
  for (DType d : id.state_dtypes) w.pod<uint8_t>(uint8_t(d));
  w.str(tpl_->name());
  w.str(tpl_->user_name());
  w.str(tpl_->bot_name());
  w.str(tpl_->interface_str());
  w.str(tpl_->init_prompt());
  w.str(rng_.save());
  w.pod<float>(settings_.sampling.temperature);
  w.pod<float>(settings_.sampling.top_p);
  w.pod<int32_t>(settings_.sampling.top_k);
  auto put_state = [&](bool has_logits, const std::vector<float>& logits, const std::vector<int32_t>& toks,
                       const ChatModel::StateBox& st) {
    w.pod<uint8_t>(has_logits ? 1 : 0);
    w.array(logits);
    w.pod<uint64_t>(toks.size());
    w.array(toks);
    w.array(model_.serialize_state(st));
  };
  put_state(has_logits_, logits_, tokens_, *state_);
  uint32_t n = 0;
  for (const Snapshot& s : snaps_) n += s.valid ? 1 : 0;
  w.pod<uint32_t>(n);
  for (int i = 0; i < kSnapCount; ++i) {
    const Snapshot& s = snaps_[size_t(i)];
    if (!s.valid) continue;
    w.pod<uint8_t>(uint8_t(i));
    put_state(s.has_logits, s.logits, s.tokens, *s.state);
  }

  std::string file(kMagic, kMagicLen);
  auto put = [&](auto v) { file.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(kVersion);
  put(uint64_t(w.buf.size()));
  put(fnv1a(w.buf));
  file += w.buf;

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot write the session file");
    out.write(file.data(), std::streamsize(file.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(path + ": writing the session file failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot write the session file (" + ec.message() + ")");
  }
}

void ChatSession::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the session file");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  const size_t head = kMagicLen + 4 + 8 + 8;
  if (file.size() < kMagicLen || file.compare(0, kMagicLen, kMagic) != 0)
    throw Error(path + ": not a Corvid chat session file (no CORVID-CHAT-SESSION header)");
  if (file.size() < head) throw Error(path + ": truncated session file header");
  uint32_t version;
  uint64_t size, sum;
  std::memcpy(&version, file.data() + kMagicLen, 4);
  std::memcpy(&size, file.data() + kMagicLen + 4, 8);
  std::memcpy(&sum, file.data() + kMagicLen + 12, 8);
  if (version != kVersion)
    throw Error(path + ": session file version " + std::to_string(version) + ", this build reads version " + std::to_string(kVersion));
  if (file.size() - head != size)
    throw Error(path + ": session file is " + std::to_string(file.size()) + " bytes, its header promises " + std::to_string(head + size));
  const std::string payload = file.substr(head);
  if (fnv1a(payload) != sum) throw Error(path + ": session file is corrupt (checksum mismatch)");

  Reader r{payload, path};
  const ModelIdentity id = model_.identity();
  std::string desc = r.str();
  uint64_t fp = r.pod<uint64_t>();
  uint64_t state_floats = r.pod<uint64_t>();
  if (fp != id.fingerprint || state_floats != id.state_floats)
    throw Error(path + ": saved with another model (" + desc + "); this chat runs " + id.description);
  uint32_t layers = r.pod<uint32_t>();
  if (layers != id.state_dtypes.size()) throw Error(path + ": saved with another model (" + desc + ")");
  for (uint32_t l = 0; l < layers; ++l) {
    DType saved = DType(r.pod<uint8_t>());
    if (!lossless(saved, id.state_dtypes[l]))
      throw Error(path + ": layer " + std::to_string(l) + " state was saved in " + dtype_word(saved) +
                  " but this strategy keeps it in " + dtype_word(id.state_dtypes[l]) +
                  "; loading would change it, use a strategy with " + dtype_word(saved) + " or fp32 there");
  }
  std::string tname = r.str(), user = r.str(), bot = r.str(), iface = r.str(), init = r.str();
  if (user != tpl_->user_name() || bot != tpl_->bot_name() || iface != tpl_->interface_str())
    throw Error(path + ": saved with the names " + user + "/" + bot + " ('" + iface + "'), this chat uses " +
                tpl_->user_name() + "/" + tpl_->bot_name() + " ('" + tpl_->interface_str() +
                "'); start corvid-chat with the same --template/--prompt-file");
  std::string rng_state = r.str();
  SamplingParams saved_sampling;
  saved_sampling.temperature = r.pod<float>();
  saved_sampling.top_p = r.pod<float>();
  saved_sampling.top_k = r.pod<int32_t>();
  (void)saved_sampling;  // the sampling settings of this run stay in force (they are command-line choices)

  const size_t V = size_t(model_.n_vocab());
  struct Loaded {
    bool has_logits;
    std::vector<float> logits;
    std::vector<int32_t> tokens;
    std::vector<float> state;
  };
  auto get_state = [&]() {
    Loaded l;
    l.has_logits = r.pod<uint8_t>() != 0;
    l.logits = r.array<float>(V);
    l.tokens = r.array<int32_t>(r.pod<uint64_t>());
    for (int32_t t : l.tokens)
      if (t < 0 || size_t(t) >= V) r.fail("token id " + std::to_string(t) + " outside the vocabulary");
    l.state = r.array<float>(state_floats);
    return l;
  };
  Loaded cur = get_state();
  uint32_t n = r.pod<uint32_t>();
  if (n > uint32_t(kSnapCount)) r.fail("too many snapshots");
  std::vector<std::pair<int, Loaded>> snaps;
  for (uint32_t i = 0; i < n; ++i) {
    int which = r.pod<uint8_t>();
    if (which >= kSnapCount) r.fail("unknown snapshot id " + std::to_string(which));
    snaps.emplace_back(which, get_state());
  }
  if (r.pos != payload.size()) r.fail("unexpected trailing data");

  // Everything checked: replace the session (nothing changes on any error above).
  SamplerRng rng_check;
  rng_check.restore(rng_state);
  auto apply = [&](const Loaded& l, bool& has_logits, std::vector<float>& logits, std::vector<int32_t>& toks,
                   ChatModel::StateBox& st) {
    model_.deserialize_state(l.state, st);
    has_logits = l.has_logits;
    logits = l.logits;
    toks = l.tokens;
  };
  for (Snapshot& s : snaps_) s.valid = false;
  for (auto& [which, l] : snaps) {
    Snapshot& s = snaps_[size_t(which)];
    if (!s.state) s.state = model_.new_state();
    apply(l, s.has_logits, s.logits, s.tokens, *s.state);
    s.valid = true;
  }
  apply(cur, has_logits_, logits_, tokens_, *state_);
  rng_ = rng_check;
  (void)tname;
  (void)init;
}

}  // namespace corvid::chat
