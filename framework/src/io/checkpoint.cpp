// Checkpoint::open: format detection from the content, then the format's loader.
#include "corvid/io/checkpoint.h"

#include <cstring>

#include "corvid/sdk/error.h"
#include "mapped_checkpoint.h"

namespace corvid {
namespace {

// What torch.save(..., _use_new_zipfile_serialization=False) writes first: a
// protocol-2 pickle of the magic number 0x1950a86a20f9469cfc6c (LONG1, 10 bytes).
constexpr uint8_t kLegacyTorchMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                         0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool ends_with(const std::string& s, const char* tail) {
  size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

}  // namespace

[[noreturn]] void MappedCheckpoint::fail(const std::string& what) const { throw Error(path() + ": " + what); }

void MappedCheckpoint::add_tensor(const std::string& name, const TensorView& v) {
  if (!views_.emplace(name, v).second) fail("tensor '" + name + "' appears twice, expected unique names");
  names_.push_back(name);
}

void MappedCheckpoint::add_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

std::string dims_string(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

const char* format_name(Checkpoint::Format f) {
  switch (f) {
    case Checkpoint::Format::TorchZip: return "torch zip (.pth)";
    case Checkpoint::Format::Safetensors: return "safetensors";
  }
  return "?";
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  MappedFile file(path);
  const uint8_t* d = file.data();
  const uint64_t n = file.size();
  const char* expected = "expected a torch.save zip archive (PK\\3\\4) or a safetensors file";
  if (n == 0) throw Error(path + ": empty file at byte 0, " + expected);

  if (n >= 4 && std::memcmp(d, "PK\x03\x04", 4) == 0) {
    auto ck = std::make_unique<MappedCheckpoint>(Format::TorchZip, std::move(file));
    load_torch_zip(*ck);
    return ck;
  }
  if (n >= sizeof kLegacyTorchMagic && std::memcmp(d, kLegacyTorchMagic, sizeof kLegacyTorchMagic) == 0)
    throw Error(path + ": is a legacy (pre-1.6) torch file (pickle magic at byte 0), expected a zip archive; re-save it "
                       "with a current torch (torch.save(torch.load(f), f))");
  if (d[0] == 0x80 && n >= 2 && d[1] >= 2 && d[1] <= 5 && !ends_with(path, ".safetensors"))
    throw Error(path + ": is a bare pickle (opcode PROTO at byte 0), " + std::string(expected) +
                "; save it with torch.save instead");
  // safetensors: 8-byte little-endian header length, then a JSON object.
  if ((n > 8 && d[8] == '{') || ends_with(path, ".safetensors")) {
    auto ck = std::make_unique<MappedCheckpoint>(Format::Safetensors, std::move(file));
    load_safetensors(*ck);
    return ck;
  }
  if (n >= 4 && std::memcmp(d, "PK", 2) == 0)  // an empty zip (PK\5\6) or a zip starting elsewhere
    throw Error(path + ": zip archive without a local file header at byte 0, " + std::string(expected));
  throw Error(path + ": unrecognised content at byte 0, " + std::string(expected));
}

}  // namespace corvid
