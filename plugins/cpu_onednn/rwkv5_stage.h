// RWKV-5.0/5.1/5.2 and RWKV-6.0 on the CPU (rwkv-reference §4.3, §4.4).
// The stage itself lives in rwkv5_stage.cpp (created through arch_dispatch.h);
// this header exposes the two pieces that are new against RWKV-4 so tests can
// check them alone against double-precision loops.
#pragma once

namespace corvid::cpu::v5 {

// One token of the RWKV-5/6 WKV recurrence for one head of N channels, fp32
// (§4.3; S is [key j][value i], row-major N×N):
//   y_i = Σ_j r_j·(u_j·k_j·v_i + S[j,i]);   S[j,i] ← k_j·v_i + w_j·S[j,i]
void wkv5_head_step(const float* r, const float* k, const float* v, const float* u, const float* w, float* S,
                    float* y, int N);

// GroupNorm over H groups of N (ln_x): per head (y − μ)/sqrt(σ² + eps)·γ + β,
// biased variance, moments in double, result rounded to fp32 (§4.3).
void group_norm(const float* y, const float* gamma, const float* beta, float* out, int H, int N, float eps);

}  // namespace corvid::cpu::v5
