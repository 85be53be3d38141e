// Element types and the strategy "precision" (activation type + weight type).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace corvid {

enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, U8 = 3, I8 = 4, I32 = 5, I64 = 6 };

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::U8: return 1;
    case DType::I8: return 1;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

// Short names, as used in safetensors headers ("F32", "BF16", ...).
inline constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
  }
  return "?";
}

inline std::optional<DType> dtype_from_name(std::string_view s) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::U8, DType::I8, DType::I32, DType::I64})
    if (s == dtype_name(t)) return t;
  return std::nullopt;
}

// ---- scalar conversions (exact, round-to-nearest-even; no hardware needed) ----

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
      man &= 0x3ffu;
      u = sign | uint32_t(127 - 15 - e) << 23 | man << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);      // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);     // overflow (incl. rounding) -> inf
  if (a < 0x38800000u) {                                      // subnormal or zero in fp16
    if (a < 0x33000000u) return uint16_t(sign);               // < half of smallest subnormal
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;                                  // 14 - (e - 127) + 10 ... -> 113..125
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((a >> 13) - ((127 - 15) << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

// ---- precision: what a strategy stage's dtype word means ----
//
// "fp32", "fp16", "bf16" -> activations and weights in that type.
// "fp32i8", "fp16i8", "bf16i8" -> activations in the base type, matrices as uint8
// with the reference's per-row/per-column scales (rwkv-reference §2.6).
struct Precision {
  DType atype = DType::F32;  // activations, vectors, LayerNorm parameters
  DType wtype = DType::F32;  // 2-D matrices (U8 = int8 quantized)

  bool quantized() const { return wtype == DType::U8; }
  friend bool operator==(const Precision&, const Precision&) = default;
};

inline std::string precision_name(Precision p) {
  std::string base = p.atype == DType::F32 ? "fp32" : p.atype == DType::F16 ? "fp16" : p.atype == DType::BF16 ? "bf16" : "?";
  return p.quantized() ? base + "i8" : base;
}

inline std::optional<Precision> precision_from_name(std::string_view s) {
  bool q = s.size() > 2 && s.substr(s.size() - 2) == "i8";
  std::string_view base = q ? s.substr(0, s.size() - 2) : s;
  DType a;
  if (base == "fp32") a = DType::F32;
  else if (base == "fp16") a = DType::F16;
  else if (base == "bf16") a = DType::BF16;
  else return std::nullopt;
  return Precision{a, q ? DType::U8 : a};
}

}  // namespace corvid
