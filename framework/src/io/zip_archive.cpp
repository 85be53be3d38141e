// Zip directory parsing (see zip_archive.h for why this is not libzip).
// Format: PKWARE APPNOTE 6.3, sections 4.3.7 (local header), 4.3.12 (central
// directory), 4.3.14-16 (zip64 end records), 4.5.3 (zip64 extra field).
#include "corvid/io/zip_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "corvid/sdk/error.h"

namespace corvid {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;    // PK\3\4
constexpr uint32_t kCentralSig = 0x02014b50;  // PK\1\2
constexpr uint32_t kEndSig = 0x06054b50;      // PK\5\6
constexpr uint32_t kEnd64Sig = 0x06064b50;    // PK\6\6
constexpr uint32_t kLocator64Sig = 0x07064b50;  // PK\6\7
constexpr uint64_t kEndSize = 22, kLocator64Size = 20, kEnd64Size = 56;
constexpr uint64_t kCentralSize = 46, kLocalSize = 30;
// Deflate cannot expand better than about 1032:1; a header claiming more is lying
// and must not make us allocate its claimed size.
constexpr uint64_t kMaxDeflateRatio = 1032;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

// Names from the file shown in one-line errors: control bytes become '?'.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c != 0x7f) ? c : '?';
  return out;
}

}  // namespace

void ZipArchive::fail(const std::string& what) const { throw Error(file_.path() + ": " + what); }

ZipArchive::ZipArchive(const MappedFile& file) : file_(file) {
  const uint8_t* base = file.data();
  const uint64_t fsize = file.size();
  if (fsize < kEndSize)
    fail("file of " + std::to_string(fsize) + " bytes is too short for a zip archive at byte 0, expected at least 22");

  // 1. End of central directory: the last PK\5\6 whose comment length reaches
  //    exactly to the end of the file (a comment may itself contain "PK\5\6").
  uint64_t lowest = fsize > kEndSize + 0xffff ? fsize - kEndSize - 0xffff : 0;
  uint64_t eocd = UINT64_MAX, loose = UINT64_MAX;
  for (uint64_t pos = fsize - kEndSize + 1; pos-- > lowest;) {
    if (rd32(base + pos) != kEndSig) continue;
    if (loose == UINT64_MAX) loose = pos;
    if (pos + kEndSize + rd16(base + pos + 20) == fsize) { eocd = pos; break; }
  }
  if (eocd == UINT64_MAX) eocd = loose;  // trailing junk after the comment: tolerate
  if (eocd == UINT64_MAX)
    fail("no end-of-central-directory record in the last " + std::to_string(fsize - lowest) +
         " bytes, expected a complete zip archive (file truncated?)");

  const uint8_t* e = base + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint64_t count = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);

  // 2. Zip64: a locator just before the end record points at the zip64 end record.
  if (eocd >= kLocator64Size && rd32(base + eocd - kLocator64Size) == kLocator64Sig) {
    const uint8_t* loc = base + eocd - kLocator64Size;
    uint64_t off64 = rd64(loc + 8);
    if (!file.contains(off64, kEnd64Size) || off64 > eocd - kLocator64Size)
      fail("zip64 end record offset " + std::to_string(off64) + " at byte " + std::to_string(eocd - kLocator64Size + 8) +
           " is out of range, expected below " + std::to_string(eocd - kLocator64Size));
    const uint8_t* z = base + off64;
    if (rd32(z) != kEnd64Sig)
      fail("zip64 end record at byte " + std::to_string(off64) + " has signature " + hex32(rd32(z)) + ", expected " +
           hex32(kEnd64Sig));
    disk = rd32(z + 16);
    cd_disk = rd32(z + 20);
    count = rd64(z + 32);
    cd_size = rd64(z + 40);
    cd_offset = rd64(z + 48);
  } else if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    fail("zip64 sizes in the end record at byte " + std::to_string(eocd) + " but no zip64 locator, expected one at byte " +
         std::to_string(eocd >= kLocator64Size ? eocd - kLocator64Size : 0));
  }
  if (disk != 0 || cd_disk != 0)
    fail("multi-disk zip archive (end record at byte " + std::to_string(eocd) + "), expected a single file");
  if (!file.contains(cd_offset, cd_size) || cd_offset + cd_size > eocd)
    fail("central directory (" + std::to_string(cd_size) + " bytes at byte " + std::to_string(cd_offset) +
         ") lies outside the archive, expected it to end by byte " + std::to_string(eocd));
  if (count > cd_size / kCentralSize)
    fail("end record at byte " + std::to_string(eocd) + " claims " + std::to_string(count) + " entries, expected at most " +
         std::to_string(cd_size / kCentralSize) + " in a " + std::to_string(cd_size) + "-byte central directory");

  // 3. Central directory entries, each checked against its local header.
  entries_.reserve(size_t(count));
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string where = "central directory entry " + std::to_string(i) + " at byte " + std::to_string(pos);
    if (pos + kCentralSize > cd_end) fail(where + " runs past the central directory, expected " + std::to_string(count) + " entries");
    const uint8_t* c = base + pos;
    if (rd32(c) != kCentralSig) fail(where + " has signature " + hex32(rd32(c)) + ", expected " + hex32(kCentralSig));
    ZipEntry z;
    z.flags = rd16(c + 8);
    z.method = rd16(c + 10);
    z.crc32 = rd32(c + 16);
    z.compressed_size = rd32(c + 20);
    z.size = rd32(c + 24);
    uint64_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    uint64_t disk_start = rd16(c + 34);
    z.header_offset = rd32(c + 42);
    if (pos + kCentralSize + name_len + extra_len + comment_len > cd_end)
      fail(where + ": name/extra/comment run past the central directory, expected them to end by byte " + std::to_string(cd_end));
    z.name.assign(reinterpret_cast<const char*>(c + kCentralSize), size_t(name_len));

    // zip64 extra field: 64-bit values for exactly the fields saturated above.
    const uint8_t* x = c + kCentralSize + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x + 4 <= x_end) {
      uint16_t id = rd16(x), len = rd16(x + 2);
      const uint8_t* d = x + 4;
      if (d + len > x_end) fail(where + ": extra field runs past its entry, expected " + std::to_string(len) + " bytes");
      if (id == 0x0001) {
        const uint8_t* q = d;
        auto take = [&](uint64_t& v) {
          if (q + 8 > d + len) fail(where + ": zip64 extra field too short, expected 8 more bytes");
          v = rd64(q);
          q += 8;
        };
        if (z.size == 0xffffffffu) take(z.size);
        if (z.compressed_size == 0xffffffffu) take(z.compressed_size);
        if (z.header_offset == 0xffffffffu) take(z.header_offset);
        if (disk_start == 0xffff) { uint64_t v; take(v); disk_start = v; }
      }
      x = d + len;
    }
    const std::string ename = "entry '" + printable(z.name) + "'";
    if (disk_start != 0) fail(ename + " starts on disk " + std::to_string(disk_start) + ", expected a single-file archive");
    if (z.flags & 0x1) fail(ename + " is encrypted, expected plain data");
    if (z.method != 0 && z.method != 8)
      fail(ename + " uses compression method " + std::to_string(z.method) + ", expected 0 (stored) or 8 (deflate)");
    if (z.method == 0 && z.compressed_size != z.size)
      fail(ename + " is stored with " + std::to_string(z.compressed_size) + " bytes but claims size " + std::to_string(z.size) +
           ", expected them equal");

    // Local header: its own name/extra lengths decide where the data starts
    // (torch pads the local extra field so data is 64-byte aligned). Sizes
    // come from the central directory: torch sets the data-descriptor flag and
    // leaves the local sizes zero.
    if (!file.contains(z.header_offset, kLocalSize) || z.header_offset >= cd_offset)
      fail(ename + ": local header offset " + std::to_string(z.header_offset) + " is out of range, expected below byte " +
           std::to_string(cd_offset));
    const uint8_t* l = base + z.header_offset;
    if (rd32(l) != kLocalSig)
      fail(ename + ": local header at byte " + std::to_string(z.header_offset) + " has signature " + hex32(rd32(l)) +
           ", expected " + hex32(kLocalSig));
    uint64_t lname = rd16(l + 26), lextra = rd16(l + 28);
    z.data_offset = z.header_offset + kLocalSize + lname + lextra;
    if (z.data_offset > cd_offset || z.compressed_size > cd_offset - z.data_offset)
      fail(ename + ": " + std::to_string(z.compressed_size) + " bytes of data at byte " + std::to_string(z.data_offset) +
           " run past the central directory at byte " + std::to_string(cd_offset) + " (file truncated or corrupt)");
    if (lname != name_len || std::memcmp(l + kLocalSize, z.name.data(), size_t(name_len)) != 0)
      fail(ename + ": local header at byte " + std::to_string(z.header_offset) +
           " names a different file, expected the central directory's name");
    if (by_name_.count(z.name)) fail(ename + " appears twice in the central directory, expected unique names");
    by_name_.emplace(z.name, entries_.size());
    entries_.push_back(std::move(z));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

ZipBytes ZipArchive::read(const ZipEntry& e) const {
  ZipBytes out;
  const uint8_t* src = file_.data() + e.data_offset;
  if (e.method == 0) {
    out.data = src;
    out.size = e.size;
    return out;
  }
  const std::string ename = "entry '" + printable(e.name) + "'";
  if (e.size > e.compressed_size * kMaxDeflateRatio + 64)
    fail(ename + " claims " + std::to_string(e.size) + " bytes inflated from " + std::to_string(e.compressed_size) +
         ", expected at most " + std::to_string(e.compressed_size * kMaxDeflateRatio + 64) + " (deflate's limit)");
  size_t alloc = size_t((e.size + 63) / 64 * 64);
  void* buf = std::aligned_alloc(64, alloc ? alloc : 64);
  if (!buf) fail(ename + ": out of memory inflating " + std::to_string(e.size) + " bytes");
  std::shared_ptr<const void> owner(buf, [](const void* p) { std::free(const_cast<void*>(p)); });

  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail(ename + ": zlib inflateInit2 failed");
  uint64_t in_left = e.compressed_size, out_left = e.size;
  zs.next_in = const_cast<Bytef*>(src);
  zs.next_out = static_cast<Bytef*>(buf);
  int rc = Z_OK;
  constexpr uint64_t kChunk = 1u << 30;  // z_stream counts are 32-bit
  while (rc == Z_OK) {
    if (zs.avail_in == 0) {
      zs.avail_in = uInt(std::min(in_left, kChunk));
      in_left -= zs.avail_in;
    }
    if (zs.avail_out == 0) {
      zs.avail_out = uInt(std::min(out_left, kChunk));
      out_left -= zs.avail_out;
    }
    uInt ai = zs.avail_in, ao = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR && ai == zs.avail_in && ao == zs.avail_out) break;  // no progress possible
  }
  uint64_t produced = e.size - out_left - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END)
    fail(ename + ": deflate data at byte " + std::to_string(e.data_offset) + " is corrupt (" +
         (rc == Z_BUF_ERROR ? std::string("ends early or inflates past its size") : "zlib error " + std::to_string(rc)) +
         "), expected " + std::to_string(e.size) + " bytes");
  if (produced != e.size)
    fail(ename + ": inflated to " + std::to_string(produced) + " bytes, expected " + std::to_string(e.size));
  uint32_t crc = uint32_t(crc32_z(0L, static_cast<const Bytef*>(buf), size_t(e.size)));
  if (crc != e.crc32) fail(ename + ": CRC-32 " + hex32(crc) + " of the inflated data, expected " + hex32(e.crc32));
  out.data = static_cast<const uint8_t*>(buf);
  out.size = e.size;
  out.copied = true;
  out.owner = std::move(owner);
  return out;
}

}  // namespace corvid
