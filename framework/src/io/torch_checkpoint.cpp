// torch.save zip archives: <archive>/data.pkl (the pickle) plus one
// <archive>/data/<key> entry per storage, stored uncompressed at 64-byte
// aligned offsets, which is what lets tensors be used in place.
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "corvid/io/torch_pickle.h"
#include "corvid/io/zip_archive.h"
#include "corvid/sdk/error.h"
#include "mapped_checkpoint.h"

namespace corvid {
namespace {

std::string entry_text(const ZipBytes& b, size_t limit = 32) {
  std::string s;
  for (uint64_t i = 0; i < b.size && i < limit; ++i) {
    char c = char(b.data[i]);
    s += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return s;
}

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c != 0x7f) ? c : '?';
  return out;
}

}  // namespace

void load_torch_zip(MappedCheckpoint& ck) {
  ZipArchive zip(ck.file());

  // The archive's top folder is whatever name torch.save chose (the file stem);
  // data.pkl sits directly inside it.
  const ZipEntry* pkl = nullptr;
  std::string prefix;
  for (const ZipEntry& e : zip.entries()) {
    size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    if (pkl) ck.fail("two data.pkl entries ('" + pkl->name + "' and '" + e.name + "'), expected one torch.save archive");
    pkl = &e;
    prefix = e.name.substr(0, slash + 1);
  }
  if (!pkl) {
    for (const ZipEntry& e : zip.entries())
      if (e.name.size() >= 13 && e.name.compare(e.name.size() - 13, 13, "constants.pkl") == 0)
        ck.fail("is a TorchScript archive (entry '" + e.name + "'), expected a torch.save state dict");
    ck.fail("zip archive has no '<name>/data.pkl' entry, expected a torch.save archive");
  }
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {  // written by torch >= 2.1
    ZipBytes b = zip.read(*bo);
    if (!(b.size == 6 && std::memcmp(b.data, "little", 6) == 0))
      ck.fail("entry '" + bo->name + "' says byte order '" + entry_text(b) + "', expected 'little'");
  }

  ZipBytes pickle = zip.read(*pkl);
  TorchStateDict sd = parse_torch_pickle(pickle.data, size_t(pickle.size), ck.path() + ": " + pkl->name);

  struct Storage {
    ZipBytes bytes;  // inflated once if deflated
    std::string where;  // "'archive/data/0' (N bytes at byte M)"
  };
  std::unordered_map<std::string, Storage> storages;  // by key
  for (auto& [name, t] : sd.tensors) {
    const std::string tname = "tensor '" + printable(name) + "'";
    if (!t.dtype_supported)
      ck.fail(tname + " has storage type torch." + t.storage_type + " (unsupported dtype), expected Float, Half, BFloat16, "
              "Byte, Char, Int or Long storage");
    const uint64_t esize = dtype_size(t.dtype);
    const std::string ename = prefix + "data/" + t.storage_key;

    auto it = storages.find(t.storage_key);
    if (it == storages.end()) {
      const ZipEntry* e = zip.find(ename);
      if (!e) ck.fail(tname + ": storage entry '" + ename + "' is missing from the archive, expected it next to data.pkl");
      ZipBytes b = zip.read(*e);
      uint64_t declared;
      bool ok = mul_ok(uint64_t(t.storage_numel), esize, declared);
      if (!ok || declared > b.size)
        ck.fail(tname + ": storage '" + ename + "' at byte " + std::to_string(e->data_offset) + " holds " +
                std::to_string(b.size) + " bytes, expected " + (ok ? std::to_string(declared) : std::string("more")) +
                " (" + std::to_string(t.storage_numel) + " elements of " + std::to_string(esize) +
                " bytes, as its pickle declares)");
      if (b.copied) ck.keep_alive(b.owner);
      it = storages.emplace(t.storage_key, Storage{b, "'" + ename + "' (" + std::to_string(b.size) + " bytes at byte " +
                                                          std::to_string(e->data_offset) + ")"}).first;
    }
    const ZipBytes& s = it->second.bytes;

    // Elements the view touches: offset + sum((size_i - 1) * stride_i) + 1, all
    // overflow-checked, so a hostile shape can neither read out of range nor
    // make a later consumer allocate numel x dtype for an absurd shape.
    uint64_t numel = 1, last = uint64_t(t.offset);
    bool ok = true, empty = false;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      uint64_t sz = uint64_t(t.shape[d]);
      if (sz == 0) empty = true;
      ok = ok && mul_ok(numel, sz, numel);
      uint64_t span;
      if (sz > 0) ok = ok && mul_ok(sz - 1, uint64_t(t.stride[d]), span) && add_ok(last, span, last);
    }
    uint64_t need_bytes = 0, logical_bytes = 0;
    if (ok && !empty) ok = add_ok(last, 1, last) && mul_ok(last, esize, need_bytes);
    if (ok) ok = mul_ok(numel, esize, logical_bytes);
    const std::string layout = "shape " + dims_string(t.shape) + ", stride " + dims_string(t.stride) + ", offset " +
                               std::to_string(t.offset);
    if (!ok) ck.fail(tname + " (" + layout + ") overflows 64-bit sizes, expected a plausible shape");
    if (need_bytes > s.size)
      ck.fail(tname + " (" + layout + ") needs " + std::to_string(need_bytes) + " bytes of storage " + it->second.where +
              ", expected at most the " + std::to_string(s.size) + " it holds");
    // Storages are never larger than the data we hold; a (stride-0 expanded)
    // view whose logical size exceeds both is refused, not expanded.
    uint64_t limit = std::max<uint64_t>(ck.file_size(), s.size);
    if (logical_bytes > limit)
      ck.fail(tname + " (" + layout + ") has a logical size of " + std::to_string(logical_bytes) +
              " bytes, expected at most " + std::to_string(limit) + " (the file size)");

    TensorView v;
    v.data = s.data + (empty ? 0 : uint64_t(t.offset) * esize);
    v.dtype = t.dtype;
    v.ndim = int(t.shape.size());
    for (int d = 0; d < v.ndim; ++d) {
      v.shape[d] = t.shape[size_t(d)];
      v.strides[d] = t.stride[size_t(d)];
    }
    ck.add_tensor(name, v);
  }
  for (auto& [k, v] : sd.metadata) ck.add_metadata(k, v);
}

}  // namespace corvid
