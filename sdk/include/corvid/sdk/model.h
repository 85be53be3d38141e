// What a backend is told about the model it serves.
#pragma once

#include <cstdint>
#include <string>

namespace corvid {

// RWKV architecture generations (rwkv-reference §1.3-1.4). The numeric value is
// version x 10, so comparisons such as `arch >= Arch::V6_0` read naturally.
enum class Arch : int { V4 = 40, V5_0 = 50, V5_1 = 51, V5_2 = 52, V6_0 = 60, V7_0 = 70 };

inline const char* arch_name(Arch a) {
  switch (a) {
    case Arch::V4: return "v4";
    case Arch::V5_0: return "v5.0";
    case Arch::V5_1: return "v5.1";
    case Arch::V5_2: return "v5.2";
    case Arch::V6_0: return "v6.0";
    case Arch::V7_0: return "v7.0";
  }
  return "?";
}

struct ModelHParams {
  Arch arch = Arch::V4;
  int n_layer = 0;    // L
  int n_embd = 0;     // C
  int n_att = 0;      // A (= C in released models)
  int n_ffn = 0;      // F
  int n_vocab = 0;    // V (rows of emb.weight)
  int n_head = 0;     // H (v5+; 0 for v4)
  int head_size = 0;  // N (v5+; 0 for v4)
  // RESCALE_LAYER R (rwkv-reference §2.2): one value for the whole pipeline.
  // Block l's att.output/ffn.value are divided by 2^floor(l/R) and x is halved
  // after every block with (l+1) % R == 0. 0 = off.
  int rescale_layer = 0;
};

}  // namespace corvid
