// NumPy .npy format version 1.0-3.0 (numpy/lib/format.py documents it):
//   "\x93NUMPY" major minor, header length (u16 for 1.x, u32 for 2.x/3.x),
//   an ASCII Python dict literal {'descr': '<f4', 'fortran_order': False,
//   'shape': (2, 3), } padded with spaces and '\n', then the raw data.
#include "corvid/io/npy.h"

#include <cctype>
#include <cstring>

#include "corvid/io/atomic_file.h"
#include "corvid/io/mapped_file.h"
#include "corvid/sdk/dtype.h"
#include "corvid/sdk/error.h"

namespace corvid {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  std::string dims;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] < 0 || __builtin_mul_overflow(n, uint64_t(shape[k]), &n))
      throw Error(path + ": invalid array shape, expected non-negative sizes");
    dims += std::to_string(shape[k]) + (shape.size() == 1 ? "," : k + 1 < shape.size() ? ", " : "");
  }
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so the data starts at a multiple of 64 (what numpy itself does).
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string pre = "\x93NUMPY";
  pre += char(1);
  pre += char(0);
  pre += char(header.size() & 0xff);
  pre += char(header.size() >> 8);
  AtomicFile f(path);
  f.write_at(0, pre.data(), pre.size());
  f.write_at(pre.size(), header.data(), header.size());
  if (n) f.write_at(pre.size() + header.size(), data, size_t(n * 4));
  f.commit();
}

namespace {

class HeaderParser {
 public:
  HeaderParser(const std::string& path, const char* s, size_t n, size_t base) : path_(path), s_(s), n_(n), base_(base) {}

  [[noreturn]] void fail(const std::string& expected) const {
    throw Error(path_ + ": malformed .npy header at byte " + std::to_string(base_ + i_) + ", expected " + expected);
  }
  void ws() { while (i_ < n_ && std::isspace(uint8_t(s_[i_]))) ++i_; }
  bool eat(char c) { ws(); if (i_ < n_ && s_[i_] == c) { ++i_; return true; } return false; }
  void expect(char c) { if (!eat(c)) fail(std::string("'") + c + "'"); }
  size_t pos() const { return base_ + i_; }
  std::string str() {
    ws();
    if (i_ >= n_ || (s_[i_] != '\'' && s_[i_] != '"')) fail("a quoted string");
    char q = s_[i_++];
    size_t start = i_;
    while (i_ < n_ && s_[i_] != q) ++i_;
    if (i_ >= n_) fail("a closing quote");
    return std::string(s_ + start, s_ + i_++);
  }
  std::string word() {
    ws();
    size_t start = i_;
    while (i_ < n_ && std::isalpha(uint8_t(s_[i_]))) ++i_;
    return std::string(s_ + start, s_ + i_);
  }
  std::vector<int64_t> int_tuple() {
    expect('(');
    std::vector<int64_t> v;
    while (!eat(')')) {
      ws();
      if (i_ >= n_ || !std::isdigit(uint8_t(s_[i_]))) fail("a non-negative integer or ')'");
      int64_t x = 0;
      while (i_ < n_ && std::isdigit(uint8_t(s_[i_]))) {
        if (x > (INT64_MAX - 9) / 10) fail("a dimension that fits in 64 bits");
        x = x * 10 + (s_[i_++] - '0');
      }
      v.push_back(x);
      if (v.size() > 32) fail("at most 32 dimensions");
      if (!eat(',')) { expect(')'); break; }
    }
    return v;
  }

 private:
  const std::string& path_;
  const char* s_;
  size_t n_, base_, i_ = 0;
};

}  // namespace

NpyArray read_npy(const std::string& path) {
  MappedFile f(path);
  const uint8_t* d = f.data();
  if (f.size() < 10 || std::memcmp(d, "\x93NUMPY", 6) != 0)
    throw Error(path + ": not a .npy file at byte 0, expected the magic \\x93NUMPY");
  uint8_t major = d[6];
  uint64_t hlen, hstart;
  if (major == 1) {
    hlen = uint64_t(d[8]) | uint64_t(d[9]) << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (f.size() < 12) throw Error(path + ": truncated .npy header at byte 8, expected a 4-byte header length");
    hlen = uint64_t(d[8]) | uint64_t(d[9]) << 8 | uint64_t(d[10]) << 16 | uint64_t(d[11]) << 24;
    hstart = 12;
  } else {
    throw Error(path + ": .npy format version " + std::to_string(major) + " at byte 6, expected 1, 2 or 3");
  }
  if (!f.contains(hstart, hlen))
    throw Error(path + ": .npy header length " + std::to_string(hlen) + " at byte 8 runs past the end of the file (" +
                std::to_string(f.size()) + " bytes)");

  HeaderParser p(path, reinterpret_cast<const char*>(d + hstart), size_t(hlen), size_t(hstart));
  std::string descr;
  bool have_descr = false, have_order = false, have_shape = false;
  NpyArray out;
  p.expect('{');
  while (!p.eat('}')) {
    size_t key_pos = p.pos();
    std::string key = p.str();
    p.expect(':');
    if (key == "descr") {
      descr = p.str();
      have_descr = true;
    } else if (key == "fortran_order") {
      std::string w = p.word();
      if (w != "False")
        throw Error(path + ": fortran_order " + (w.empty() ? std::string("?") : w) + " at byte " + std::to_string(key_pos) +
                    ", expected False (C order)");
      have_order = true;
    } else if (key == "shape") {
      out.shape = p.int_tuple();
      have_shape = true;
    } else {
      throw Error(path + ": unknown .npy header key '" + key + "' at byte " + std::to_string(key_pos) +
                  ", expected descr, fortran_order, shape");
    }
    if (!p.eat(',')) { p.expect('}'); break; }
  }
  if (!have_descr || !have_order || !have_shape)
    throw Error(path + ": .npy header at byte " + std::to_string(hstart) + " lacks descr, fortran_order or shape, expected all three");
  size_t es;
  if (descr == "<f4") es = 4;
  else if (descr == "<f8") es = 8;
  else if (descr == "<f2") es = 2;
  else
    throw Error(path + ": .npy dtype '" + descr + "' at byte " + std::to_string(hstart) + ", expected '<f4', '<f8' or '<f2'");

  uint64_t n = 1, bytes = 0;
  for (int64_t s : out.shape)
    if (__builtin_mul_overflow(n, uint64_t(s), &n)) throw Error(path + ": .npy shape overflows 64-bit sizes");
  const uint64_t data_at = hstart + hlen;
  if (__builtin_mul_overflow(n, uint64_t(es), &bytes) || bytes != f.size() - data_at)
    throw Error(path + ": .npy data at byte " + std::to_string(data_at) + " has " + std::to_string(f.size() - data_at) +
                " bytes, expected " + std::to_string(bytes) + " for " + descr);
  out.data.resize(size_t(n));
  const uint8_t* src = d + data_at;
  for (uint64_t k = 0; k < n; ++k) {
    if (es == 4) {
      std::memcpy(&out.data[k], src + k * 4, 4);
    } else if (es == 8) {
      double x;
      std::memcpy(&x, src + k * 8, 8);
      out.data[k] = float(x);
    } else {
      uint16_t h;
      std::memcpy(&h, src + k * 2, 2);
      out.data[k] = f16_to_f32(h);
    }
  }
  return out;
}

}  // namespace corvid
