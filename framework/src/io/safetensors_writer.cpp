#include "corvid/io/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "corvid/sdk/error.h"

namespace corvid {
namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string json_string(const std::string& s, const std::string& path) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw Error(path + ": name or metadata '" + s + "' is not valid UTF-8, expected a UTF-8 string");
  }
}

// Copies a strided view into contiguous `dst`, row by row.
void copy_strided(const TensorView& v, uint8_t* dst) {
  const size_t es = dtype_size(v.dtype);
  const auto* src = static_cast<const uint8_t*>(v.data);
  if (v.numel() == 0) return;
  if (v.is_contiguous()) {
    std::memcpy(dst, src, v.nbytes());
    return;
  }
  int64_t idx[kMaxDims] = {0, 0, 0, 0};
  const int64_t n = v.numel();
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = 0;
    for (int d = 0; d < v.ndim; ++d) off += idx[d] * v.strides[d];
    std::memcpy(dst + size_t(k) * es, src + size_t(off) * es, es);
    for (int d = v.ndim - 1; d >= 0; --d) {
      if (++idx[d] < v.shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void SafetensorsWriter::Free::operator()(void* p) const { std::free(p); }

SafetensorsWriter::SafetensorsWriter(std::string path, uint64_t header_reserve)
    : path_(std::move(path)),
      out_(std::make_unique<AtomicFile>(path_)),
      data_base_(round_up(std::max<uint64_t>(header_reserve, 8 + 2), kSafetensorsAlignment)) {}

SafetensorsWriter::~SafetensorsWriter() = default;  // AtomicFile removes the temporary file unless committed

std::string SafetensorsWriter::temp_path() const { return out_ ? out_->temp_path() : std::string(); }

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  if (committed_) throw Error(path_ + ": metadata set after commit");
  metadata_[key] = value;
}

void SafetensorsWriter::flush_pending() {
  if (!pending_) return;
  const Entry& e = entries_.back();
  out_->write_at(data_base_ + e.begin, buf_.get(), size_t(e.end - e.begin));
  pending_ = false;
}

void* SafetensorsWriter::begin(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  if (committed_) throw Error(path_ + ": tensor '" + name + "' written after commit");
  if (name.empty() || name == "__metadata__" || is_safetensors_padding_name(name))
    throw Error(path_ + ": tensor name '" + name + "' is reserved, expected a non-empty name not starting with '__'");
  if (names_.count(name)) throw Error(path_ + ": tensor '" + name + "' written twice, expected unique names");
  if (shape.size() > size_t(kMaxDims))
    throw Error(path_ + ": tensor '" + name + "' has " + std::to_string(shape.size()) + " dimensions, expected at most " +
                std::to_string(kMaxDims));
  uint64_t nbytes = dtype_size(dtype);
  for (int64_t s : shape) {
    if (s < 0 || __builtin_mul_overflow(nbytes, uint64_t(s), &nbytes))
      throw Error(path_ + ": tensor '" + name + "' has an invalid shape, expected non-negative sizes");
  }
  flush_pending();

  uint64_t start = round_up(data_end_, kSafetensorsAlignment);
  if (start > data_end_) {  // fill the gap with an explicit zero U8 tensor (see header)
    uint64_t gap = start - data_end_;
    static const uint8_t zeros[kSafetensorsAlignment] = {};
    out_->write_at(data_base_ + data_end_, zeros, size_t(gap));
    entries_.push_back({kSafetensorsPaddingPrefix + std::to_string(pad_count_++), DType::U8, {int64_t(gap)}, data_end_, start});
  }
  uint64_t need = std::max<uint64_t>(round_up(nbytes, kSafetensorsAlignment), kSafetensorsAlignment);
  if (need > buf_cap_) {
    buf_.reset();
    buf_cap_ = 0;
    void* p = std::aligned_alloc(kSafetensorsAlignment, size_t(need));
    if (!p) throw Error(path_ + ": out of memory for tensor '" + name + "' (" + std::to_string(nbytes) + " bytes)");
    buf_.reset(p);
    buf_cap_ = need;
  }
  names_.insert(name);
  entries_.push_back({name, dtype, shape, start, start + nbytes});
  data_end_ = start + nbytes;
  pending_ = true;
  return buf_.get();
}

void SafetensorsWriter::add(const std::string& name, const TensorView& view) {
  std::vector<int64_t> shape(view.shape, view.shape + view.ndim);
  void* dst = begin(name, view.dtype, shape);
  copy_strided(view, static_cast<uint8_t*>(dst));
}

std::string SafetensorsWriter::header_json() const {
  // Built by appending (GCC 12 warns falsely, -Wrestrict, on long operator+ chains).
  std::string j = "{";
  bool first = true;
  if (!metadata_.empty()) {
    j += "\"__metadata__\":{";
    for (auto it = metadata_.begin(); it != metadata_.end(); ++it) {
      if (it != metadata_.begin()) j += ',';
      j += json_string(it->first, path_);
      j += ':';
      j += json_string(it->second, path_);
    }
    j += '}';
    first = false;
  }
  for (const Entry& e : entries_) {
    if (!first) j += ',';
    first = false;
    j += json_string(e.name, path_);
    j += ":{\"dtype\":\"";
    j += dtype_name(e.dtype);
    j += "\",\"shape\":[";
    for (size_t k = 0; k < e.shape.size(); ++k) {
      if (k) j += ',';
      j += std::to_string(e.shape[k]);
    }
    j += "],\"data_offsets\":[";
    j += std::to_string(e.begin);
    j += ',';
    j += std::to_string(e.end);
    j += "]}";
  }
  j += '}';
  return j;
}

void SafetensorsWriter::commit() {
  if (committed_) throw Error(path_ + ": committed twice");
  flush_pending();
  std::string json = header_json();
  uint64_t base = data_base_;
  if (8 + json.size() > base) {
    // The header outgrew its reserved space: move the data behind a bigger one.
    base = round_up(8 + json.size(), kSafetensorsAlignment);
    auto bigger = std::make_unique<AtomicFile>(path_);
    bigger->copy_from(out_->fd(), data_base_, base, data_end_);
    out_ = std::move(bigger);  // the old temporary file is removed here
  }
  json.resize(size_t(base - 8), ' ');  // JSON whitespace: the data starts at a multiple of 64
  uint8_t len[8];
  for (int k = 0; k < 8; ++k) len[k] = uint8_t(uint64_t(json.size()) >> (8 * k));
  out_->write_at(0, len, 8);
  out_->write_at(8, json.data(), json.size());
  out_->commit();
  committed_ = true;
  buf_.reset();
  buf_cap_ = 0;
}

}  // namespace corvid
