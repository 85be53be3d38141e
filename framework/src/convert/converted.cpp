// Reading and checking Corvid-converted files (see converted.h for the format).
#include "corvid/convert/converted.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "corvid/convert/xxhash64.h"
#include "corvid/model/model_info.h"
#include "corvid/sdk/error.h"

namespace corvid {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw Error(path + ": " + what); }

const std::string& meta_or_fail(const Checkpoint& ck, const std::string& key) {
  const auto& m = ck.metadata();
  auto it = m.find(key);
  if (it == m.end()) fail(ck.path(), "converted file without metadata '" + key + "' (damaged or edited after conversion?)");
  return it->second;
}

json parse_json(const Checkpoint& ck, const std::string& key) {
  const std::string& text = meta_or_fail(ck, key);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(ck.path(), "metadata '" + key + "' is not valid JSON (" + e.what() + ")");
  }
}

int get_int(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_number_integer())
    throw Error(where + ": expected an integer \"" + key + "\"");
  int64_t v = j.at(key).get<int64_t>();
  if (v < -1 || v > (int64_t(1) << 30)) throw Error(where + ": \"" + key + "\" = " + std::to_string(v) + " is out of range");
  return int(v);
}

std::string get_str(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_string()) throw Error(where + ": expected a string \"" + key + "\"");
  return j.at(key).get<std::string>();
}

std::string quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

std::string converted_stage_prefix(size_t stage_index) { return "stage" + std::to_string(stage_index) + "/"; }

bool is_converted(const Checkpoint& ck) { return ck.metadata().count(kConvertedFormatKey) != 0; }

// ---------------------------------------------------------------------------

std::string hparams_to_json(const ModelHParams& hp) {
  json j = {{"arch", arch_name(hp.arch)}, {"n_layer", hp.n_layer}, {"n_embd", hp.n_embd},   {"n_att", hp.n_att},
            {"n_ffn", hp.n_ffn},          {"n_vocab", hp.n_vocab}, {"n_head", hp.n_head},   {"head_size", hp.head_size}};
  return j.dump();
}

ModelHParams hparams_from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(where + ": not valid JSON (" + e.what() + ")");
  }
  ModelHParams hp;
  std::string arch = get_str(j, "arch", where);
  bool found = false;
  for (Arch a : {Arch::V4, Arch::V5_0, Arch::V5_1, Arch::V5_2, Arch::V6_0, Arch::V7_0})
    if (arch == arch_name(a)) { hp.arch = a; found = true; }
  if (!found) throw Error(where + ": unknown architecture \"" + arch + "\", expected v4, v5.0, v5.1, v5.2, v6.0 or v7.0");
  hp.n_layer = get_int(j, "n_layer", where);
  hp.n_embd = get_int(j, "n_embd", where);
  hp.n_att = get_int(j, "n_att", where);
  hp.n_ffn = get_int(j, "n_ffn", where);
  hp.n_vocab = get_int(j, "n_vocab", where);
  hp.n_head = get_int(j, "n_head", where);
  hp.head_size = get_int(j, "head_size", where);
  if (hp.n_layer < 1 || hp.n_embd < 1 || hp.n_att < 1 || hp.n_ffn < 1 || hp.n_vocab < 1 || hp.n_head < 0 || hp.head_size < 0)
    throw Error(where + ": implausible sizes " + text);
  return hp;
}

// ---------------------------------------------------------------------------

uint64_t tensor_index_hash(std::vector<TensorIndexEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Xxh64 h;
  auto put_u64 = [&](uint64_t v) { h.update(&v, 8); };
  for (const auto& e : entries) {
    put_u64(e.name.size());
    h.update(e.name.data(), e.name.size());
    put_u64(uint64_t(e.dtype));
    put_u64(e.shape.size());
    for (int64_t s : e.shape) put_u64(uint64_t(s));
    put_u64(e.offset);
  }
  return h.digest();
}

std::vector<TensorIndexEntry> tensor_index_of(const Checkpoint& ck) {
  std::vector<TensorIndexEntry> out;
  const char* base = nullptr;
  for (const auto& n : ck.names()) {
    const char* p = static_cast<const char*>(ck.find(n)->data);
    if (!base || p < base) base = p;
  }
  for (const auto& n : ck.names()) {
    const TensorView& t = *ck.find(n);
    TensorIndexEntry e;
    e.name = n;
    e.dtype = t.dtype;
    e.shape.assign(t.shape, t.shape + t.ndim);
    e.offset = uint64_t(static_cast<const char*>(t.data) - base);
    out.push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------

ConvertedInfo read_converted_info(const Checkpoint& ck) {
  const std::string& path = ck.path();
  ConvertedInfo info;
  info.format_version = meta_or_fail(ck, kConvertedFormatKey);
  if (info.format_version != kConvertedFormatVersion)
    fail(path, "converted with format version \"" + info.format_version + "\", this Corvid reads version \"" +
                   kConvertedFormatVersion + "\" — re-convert the original checkpoint with this corvid-convert");
  if (ck.format() != Checkpoint::Format::Safetensors) fail(path, "corvid.format metadata in a non-safetensors file");

  info.hp = hparams_from_json(meta_or_fail(ck, "corvid.hparams"), path + ": metadata 'corvid.hparams'");
  info.strategy = meta_or_fail(ck, "corvid.strategy");
  {
    const std::string& r = meta_or_fail(ck, "corvid.rescale_layer");
    size_t used = 0;
    long v = -1;
    try { v = std::stol(r, &used); } catch (...) { used = 0; }
    if (used != r.size() || v < 0 || v > 1000000) fail(path, "metadata 'corvid.rescale_layer' is \"" + r + "\", expected an integer >= 0");
    info.hp.rescale_layer = int(v);
  }
  info.plan_json = meta_or_fail(ck, "corvid.plan");
  {
    const auto& m = ck.metadata();
    if (m.count("corvid.created_by")) info.created_by = m.at("corvid.created_by");
  }

  json src = parse_json(ck, "corvid.source");
  const std::string src_where = path + ": metadata 'corvid.source'";
  info.source_name = get_str(src, "name", src_where);
  info.source_xxh64 = get_str(src, "xxh64", src_where);
  if (!src.contains("bytes") || !src.at("bytes").is_number_unsigned()) fail(path, "metadata 'corvid.source': expected an integer \"bytes\"");
  info.source_bytes = src.at("bytes").get<uint64_t>();

  json st = parse_json(ck, "corvid.stages");
  if (!st.is_array() || st.empty()) fail(path, "metadata 'corvid.stages' must be a non-empty array");
  int next_slot = 0;
  for (size_t i = 0; i < st.size(); ++i) {
    const std::string where = path + ": metadata 'corvid.stages' entry " + std::to_string(i);
    const json& j = st[i];
    ConvertedStage s;
    s.backend = get_str(j, "backend", where);
    s.layout_id = get_str(j, "layout_id", where);
    s.device = get_str(j, "device", where);
    s.device_kind = s.device.substr(0, s.device.find(':'));
    std::string dt = get_str(j, "dtype", where);
    auto p = precision_from_name(dt);
    if (!p) throw Error(where + ": dtype \"" + dt + "\", expected fp32, fp16, bf16 or one of them with i8");
    s.precision = *p;
    if (!j.contains("slots") || !j.at("slots").is_array() || j.at("slots").size() != 2 || !j.at("slots")[0].is_number_integer() ||
        !j.at("slots")[1].is_number_integer())
      throw Error(where + ": expected \"slots\": [first, last]");
    s.first_slot = j.at("slots")[0].get<int>();
    s.last_slot = j.at("slots")[1].get<int>();
    s.stream_first = get_int(j, "stream_first", where);
    if (s.first_slot != next_slot || s.last_slot < s.first_slot || s.last_slot > info.hp.n_layer)
      throw Error(where + ": slots [" + std::to_string(s.first_slot) + ", " + std::to_string(s.last_slot) +
                  "] do not continue the pipeline (expected to start at slot " + std::to_string(next_slot) + ")");
    next_slot = s.last_slot + 1;
    info.stages.push_back(std::move(s));
  }
  if (next_slot != info.hp.n_layer + 1)
    fail(path, "metadata 'corvid.stages' covers slots 0-" + std::to_string(next_slot - 1) + ", expected 0-" +
                   std::to_string(info.hp.n_layer) + " (all blocks and the head)");

  // Tensor directory: only names we wrote, and unchanged since.
  for (const auto& n : ck.names()) {
    if (n == kFoldedEmbeddingName) continue;
    bool ok = false;
    if (n.rfind("stage", 0) == 0) {
      size_t slash = n.find('/');
      if (slash != std::string::npos && slash > 5) {
        const std::string num = n.substr(5, slash - 5);
        ok = num.find_first_not_of("0123456789") == std::string::npos && num.size() < 6 &&
             size_t(std::stoul(num)) < info.stages.size() && slash + 1 < n.size();
      }
    }
    if (!ok) fail(path, "unexpected tensor '" + n + "' in a converted file, expected emb.folded or stage<N>/<name>");
  }
  const TensorView* emb = ck.find(kFoldedEmbeddingName);
  if (!emb) fail(path, "converted file without tensor 'emb.folded'");
  if (emb->dtype != DType::F32 || emb->ndim != 2 || emb->shape[0] != info.hp.n_vocab || emb->shape[1] != info.hp.n_embd || !emb->is_contiguous())
    fail(path, "tensor 'emb.folded' is " + std::string(dtype_name(emb->dtype)) + " " + shape_string(*emb) + ", expected F32 (" +
                   std::to_string(info.hp.n_vocab) + ", " + std::to_string(info.hp.n_embd) + ")");

  const std::string& idx = meta_or_fail(ck, "corvid.tensor_index");
  const std::string got = Xxh64::hex(tensor_index_hash(tensor_index_of(ck)));
  if (idx != got)
    fail(path, "the tensor directory does not match its fingerprint (corvid.tensor_index " + idx + ", computed " + got +
                   "): the header was edited or damaged after conversion — re-convert the original checkpoint");
  return info;
}

ModelHParams checkpoint_hparams(const Checkpoint& ck) {
  return is_converted(ck) ? read_converted_info(ck).hp : detect_hparams(ck);
}

// ---------------------------------------------------------------------------

void check_converted_plan(const ConvertedInfo& info, const Plan& req, const std::string& path) {
  const std::string mismatch = path + " was converted for strategy " + quote(info.strategy) + "; requested " + quote(req.strategy) +
                               " — re-convert or run with --strategy " + quote(info.strategy);
  if (req.n_layer != info.hp.n_layer) throw Error(mismatch);
  if (req.stages.size() != info.stages.size()) throw Error(mismatch);
  for (size_t i = 0; i < req.stages.size(); ++i) {
    const PlanStage& r = req.stages[i];
    const ConvertedStage& s = info.stages[i];
    if (r.first_slot != s.first_slot || r.last_slot != s.last_slot || r.device_kind != s.device_kind || r.precision != s.precision)
      throw Error(mismatch);
    if (r.backend != s.backend)
      throw Error(path + ": stage " + std::to_string(i + 1) + " (" + s.device + " " + precision_name(s.precision) +
                  ") was prepared by backend \"" + s.backend + "\", this run chose \"" + r.backend +
                  "\" — re-convert, or select backend \"" + s.backend + "\" for it");
  }
  if (req.rescale_layer != info.hp.rescale_layer)
    throw Error(path + " was converted with RESCALE_LAYER " + std::to_string(info.hp.rescale_layer) + "; this run uses " +
                std::to_string(req.rescale_layer) +
                " (from RWKV_RESCALE_LAYER, the config's rescale_layer or the fp16 rule) — re-convert, or run with the same setting");
}

void check_converted_layout(const ConvertedInfo& info, size_t i, const std::string& layout_id, const std::string& path) {
  const ConvertedStage& s = info.stages.at(i);
  if (layout_id != s.layout_id)
    throw Error(path + ": stage " + std::to_string(i + 1) + " (" + s.device + " " + precision_name(s.precision) + ") holds layout \"" +
                s.layout_id + "\", but backend \"" + s.backend + "\" now prepares \"" + layout_id +
                "\" for this run — re-convert the original checkpoint");
}

// ---------------------------------------------------------------------------

ConvertedStageWeights::ConvertedStageWeights(const Checkpoint& ck, size_t stage_index, bool prefault)
    : ck_(ck), prefix_(converted_stage_prefix(stage_index)) {
  if (!prefault) return;
  // The stage's tensors were written one after another: map their whole span.
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const auto& n : ck.names()) {
    if (n.compare(0, prefix_.size(), prefix_) != 0) continue;
    const TensorView& t = *ck.find(n);
    const uintptr_t a = reinterpret_cast<uintptr_t>(t.data);
    lo = std::min(lo, a);
    hi = std::max(hi, a + t.nbytes());
  }
  if (hi <= lo) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  lo &= ~(page - 1);
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif
  // Advisory only: failure (old kernel, EINVAL) leaves the pages to be faulted in on use.
  if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) != 0)
    ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED);
}

const TensorView* ConvertedStageWeights::find(std::string_view name) const {
  std::string full;
  full.reserve(prefix_.size() + name.size());
  full.append(prefix_).append(name);
  return ck_.find(full);
}

std::string ConvertedStageWeights::origin() const { return ck_.path() + " (" + prefix_.substr(0, prefix_.size() - 1) + ")"; }

// ---------------------------------------------------------------------------

std::vector<float> load_converted_embedding(const Checkpoint& ck, const ConvertedInfo& info) {
  const TensorView& emb = *ck.find(kFoldedEmbeddingName);  // checked by read_converted_info
  const size_t n = size_t(info.hp.n_vocab) * size_t(info.hp.n_embd);
  std::vector<float> out(n);
  // Copy in blocks and drop each block's mapped pages from our resident set
  // right after: the table then costs its bytes once, not twice.
  const long page = ::sysconf(_SC_PAGESIZE);
  const char* src = static_cast<const char*>(emb.data);
  const size_t bytes = n * sizeof(float);
  const size_t block = size_t(64) << 20;
  for (size_t off = 0; off < bytes; off += block) {
    const size_t len = std::min(block, bytes - off);
    std::memcpy(reinterpret_cast<char*>(out.data()) + off, src + off, len);
    // Only whole pages inside [src+off, src+off+len) are released.
    uintptr_t a = (reinterpret_cast<uintptr_t>(src + off) + uintptr_t(page) - 1) & ~uintptr_t(page - 1);
    uintptr_t b = reinterpret_cast<uintptr_t>(src + off + len) & ~uintptr_t(page - 1);
    if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);  // advisory: failure is harmless
  }
  return out;
}

}  // namespace corvid
