// safetensors: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the data; offsets are relative to byte 8 + N. Tensors are used in place.
// nlohmann::ordered_json keeps the header's order for names().
#include <nlohmann/json.hpp>

#include <algorithm>

#include "corvid/io/safetensors_writer.h"
#include "corvid/sdk/error.h"
#include "mapped_checkpoint.h"

namespace corvid {
namespace {

// Same bound as the reference implementation (huggingface/safetensors).
constexpr uint64_t kMaxHeader = 100'000'000;

std::string printable(const std::string& s, size_t limit = 200) {
  std::string out;
  for (char c : s) {
    if (out.size() >= limit) { out += "..."; break; }
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return out;
}

}  // namespace

void load_safetensors(MappedCheckpoint& ck) {
  const uint8_t* d = ck.file().data();
  const uint64_t fsize = ck.file_size();
  if (fsize < 8)
    ck.fail("file of " + std::to_string(fsize) + " bytes is too short for a safetensors header at byte 0, expected at least 8");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | d[k];
  if (n < 2 || n > fsize - 8 || n > kMaxHeader)
    ck.fail("safetensors header length " + std::to_string(n) + " at byte 0 is out of range, expected 2 to " +
            std::to_string(std::min(fsize - 8, kMaxHeader)) + " (the file has " + std::to_string(fsize) + " bytes)");
  const char* hb = reinterpret_cast<const char*>(d + 8);

  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(hb, hb + n);
  } catch (const nlohmann::json::parse_error& e) {
    std::string msg = e.what();
    size_t p = msg.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] " tag
    if (p != std::string::npos) msg = msg.substr(p + 2);
    ck.fail("invalid JSON in the safetensors header at byte " + std::to_string(8 + (e.byte ? e.byte - 1 : 0)) + " (" +
            printable(msg) + "), expected a JSON object");
  }
  if (!header.is_object()) ck.fail("safetensors header at byte 8 is a JSON " + std::string(header.type_name()) + ", expected an object");

  const uint64_t data_start = 8 + n;
  const uint64_t data_size = fsize - data_start;
  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    const std::string where = "safetensors header entry '" + printable(name) + "'";
    if (name == "__metadata__") {
      if (!v.is_object()) ck.fail(where + " is a JSON " + std::string(v.type_name()) + ", expected an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m->is_string())
          ck.fail(where + ": value of '" + printable(m.key()) + "' is a JSON " + std::string(m->type_name()) + ", expected a string");
        ck.add_metadata(m.key(), m->get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) ck.fail(where + " is a JSON " + std::string(v.type_name()) + ", expected {dtype, shape, data_offsets}");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto of = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || of == v.end())
      ck.fail(where + " lacks dtype, shape or data_offsets, expected all three");
    if (!dt->is_string()) ck.fail(where + ": dtype is a JSON " + std::string(dt->type_name()) + ", expected a string");
    auto dtype = dtype_from_name(dt->get<std::string>());
    if (!dtype)
      ck.fail(where + ": dtype '" + printable(dt->get<std::string>()) + "' is not supported, expected one of F32, F16, BF16, "
              "U8, I8, I32, I64");
    if (!sh->is_array() || sh->size() > size_t(kMaxDims))
      ck.fail(where + ": shape is not an array of at most " + std::to_string(kMaxDims) + " sizes");
    TensorView t;
    t.dtype = *dtype;
    t.ndim = int(sh->size());
    uint64_t numel = 1;
    bool ok = true;
    for (int k = 0; k < t.ndim; ++k) {
      const auto& s = (*sh)[size_t(k)];
      if (!s.is_number_unsigned()) ck.fail(where + ": shape entry " + std::to_string(k) + " is " + s.dump() + ", expected a non-negative integer");
      uint64_t sz = s.get<uint64_t>();
      ok = ok && sz <= uint64_t(INT64_MAX) && mul_ok(numel, sz, numel);
      t.shape[k] = int64_t(sz);
    }
    uint64_t nbytes = 0;
    ok = ok && mul_ok(numel, dtype_size(t.dtype), nbytes);
    if (!ok) ck.fail(where + ": shape " + sh->dump() + " overflows 64-bit sizes, expected a plausible shape");
    int64_t st = 1;
    for (int k = t.ndim - 1; k >= 0; --k) { t.strides[k] = st; st *= t.shape[k]; }
    if (!of->is_array() || of->size() != 2 || !(*of)[0].is_number_unsigned() || !(*of)[1].is_number_unsigned())
      ck.fail(where + ": data_offsets is " + printable(of->dump()) + ", expected [begin, end]");
    uint64_t b = (*of)[0].get<uint64_t>(), e = (*of)[1].get<uint64_t>();
    if (b > e || e > data_size)
      ck.fail(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are out of range, expected " +
              "begin <= end <= " + std::to_string(data_size) + " (the data after the header)");
    if (e - b != nbytes)
      ck.fail(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] span " + std::to_string(e - b) +
              " bytes, expected " + std::to_string(nbytes) + " for " + dt->get<std::string>() + " " + sh->dump());
    if (e > b) spans.push_back({b, e, name});
    if (is_safetensors_padding_name(name) && t.dtype == DType::U8 && t.ndim == 1) continue;  // alignment filler
    t.data = d + data_start + b;
    ck.add_tensor(name, t);
  }

  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t k = 1; k < spans.size(); ++k)
    if (spans[k].begin < spans[k - 1].end)
      ck.fail("tensors '" + printable(spans[k - 1].name) + "' and '" + printable(spans[k].name) + "' overlap at data byte " +
              std::to_string(spans[k].begin) + ", expected disjoint data_offsets");
}

}  // namespace corvid
