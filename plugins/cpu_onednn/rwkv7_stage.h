// RWKV-7 on the CPU (rwkv-reference §4.5). The stage lives in rwkv7_stage.cpp
// (created through arch_dispatch.h); this header exposes the pieces that are
// new against RWKV-4/5/6 so tests can check them alone against double loops.
#pragma once

namespace corvid::cpu::v7 {

// One token of the RWKV-7 state update and read-out for one head of N
// channels, fp32. S is [value i][key j], row-major N×N (§4.6):
//   S[i,j] ← S[i,j]·ω_j + (Σ_l S[i,l]·(−κ_l))·κ_j·a_j + v_i·k_j   (Σ over the old S)
//   y_i = Σ_j S[i,j]·r_j                                             (the new S)
// bf16 = false: the rank-1 form above, all fp32.
// bf16 = true: the reference's bf16 points (tests/reference/README item 7):
//   ab[l,j] = bf16(−κ_l·bf16(κ_j·a_j)), vk[i,j] = bf16(v_i·k_j),
//   S ← ((S⊙ω) + S·ab) + vk in fp32, y_i = bf16(Σ_j bf16(S[i,j])·r_j).
//   ab_scratch: N·N floats, sa_scratch: N floats.
void wkv7_head_step(const float* r, const float* w, const float* k, const float* v, const float* kappa,
                    const float* a, float* S, float* y, int N, bool bf16, float* ab_scratch, float* sa_scratch);

// The bf16 form above on AVX-512 for N % 16 == 0 (needs avx512f/bw/vl; the
// stage calls it when its kernel family has them): S·ab vectorised over j with
// every output's sum still taken over l in order, so the bits equal
// wkv7_head_step(..., bf16 = true, ...). The scalar-per-output version ran at
// ≈ 4 G multiply-adds/s and took ≈ 13 ms of a 0.4B bf16 token.
void wkv7_head_step_bf16_avx512(const float* r, const float* w, const float* k, const float* v, const float* kappa,
                                const float* a, float* S, float* y, int N, float* ab_scratch, float* sa_scratch);

// κ = x / max(‖x‖, 1e-12) per head of N (x = k ⊙ k_k), H heads. The norm is
// summed in double, rounded to fp32 (and to bf16 under bf16, like the quotient).
void l2_normalize_heads(const float* x, float* out, int H, int N, bool bf16);

}  // namespace corvid::cpu::v7
