#!/usr/bin/python3
"""Independent numpy reference of RWKV-5.0/5.1/5.2, RWKV-6.0 and RWKV-7 inference.

Written from the math in docs rwkv-reference.md (§1.3-1.4 layout and detection, §2 load
transforms, §2.8 the v7 loader, §4.0 skeleton, §4.2-4.7 forward math, state layouts and
precision), not from Corvid's C++ and not copied from ChatRWKV. It reuses the building blocks
of the RWKV-4 reference (rwkv_ref.py): bf16 rounding, the float64-accumulated matmul rounded to
float32, LayerNorm, the exact int8 scheme and its torch-fallback dequantisation.

API (like rwkv_ref.RWKV4):

    model = load_model("model.pth", "cpu bf16")        # picks RWKV5Plus (main class) or RWKV7
    state = model.new_state()
    logits, state = model.forward(tokens, state, full_output=False)
    flat = model.serialize_state(state)                 # StageState::serialize order

Classes:
  * RWKV5Plus -- the "main class" for v5.0, v5.1, v5.2 and v6.0 (version detected as in §1.4).
    Strategies "cpu fp32", "cpu bf16", "cpu fp32i8" (one stage).
  * RWKV7 -- the "v7 class" (§2.8, §4.5). Strategies "cpu fp32", "cpu bf16" (everything in the
    model dtype except the fp32 state; logits returned in the model dtype), and the Corvid
    extension "cpu fp32i8" (the v7 class has no int8: fp32 activations, §2.6 int8 for att
    receptance/key/value/output, ffn key/value and head; everything else fp32).

Numerics, as in rwkv_ref.py (see tests/reference/README.md, section "RWKV-5.x/6/7"):
  * activations are float32 arrays holding exact values of the activation type; every
    elementwise op done in the atype is computed in float32/float64 and rounded once;
  * matmuls accumulate in float64, then round to float32, then to the output type;
  * LayerNorm and GroupNorm: moments in float64, result rounded to float32 then (where the
    reference keeps the result in the atype) to the atype;
  * the WKV states are float32 and every elementwise state op rounds to float32.
Step mode and sequence mode run the same per-token recurrence, so they agree bit for bit.
"""
from __future__ import annotations

import os
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rwkv_ref import (MODES, ROUND, Matrix, layer_norm, load_checkpoint,  # noqa: E402
                      matmul_exact, quantize_u8, round_fp32)

F32 = np.float32


def _f64_unary(fn, x):
    """fn computed in float64 and rounded to float32 (torch's fp32 / bf16 kernels compute the
    transcendental in float and round once; the 1-ulp fp32 differences are far below tolerance)."""
    return fn(np.asarray(x, dtype=np.float64)).astype(F32)


def sigmoid(x):
    return _f64_unary(lambda z: 1.0 / (1.0 + np.exp(-z)), x)


def silu(x):
    return _f64_unary(lambda z: z / (1.0 + np.exp(-z)), x)


def tanh(x):
    return _f64_unary(np.tanh, x)


def exp_neg_exp(d):
    """w = exp(−exp(d)) as two fp32 operations (the inner exp is rounded to fp32 first), like
    torch's `torch.exp(-torch.exp(d.float()))` and a plain C++ `expf(-expf(d))`."""
    return _f64_unary(np.exp, -_f64_unary(np.exp, d))


def group_norm(y: np.ndarray, H: int, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """GroupNorm over H groups of the last axis (biased variance), per-channel affine; float64
    moments, rounded once to float32. y: [T, H*N]."""
    T, A = y.shape
    yd = y.astype(np.float64).reshape(T, H, A // H)
    mu = yd.mean(axis=-1, keepdims=True)
    var = ((yd - mu) ** 2).mean(axis=-1, keepdims=True)
    z = ((yd - mu) / np.sqrt(var + eps)).reshape(T, A)
    return (z * w.astype(np.float64) + b.astype(np.float64)).astype(F32)


def _is_proj(name: str) -> bool:
    """§2.3: the names whose matrices are transposed (out, in) -> (in, out)."""
    return any(s in name for s in ("key.weight", "value.weight", "receptance.weight",
                                   "gate.weight", "output.weight", "head.weight"))


def _shift(prev: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Row t shifts from row t-1, row 0 from the state (§4.0 sequence mode)."""
    return np.concatenate([prev[None, :], xx[:-1]], axis=0)


# =============================================================================================
# Main class: v5.0, v5.1, v5.2, v6.0.


def detect_version(tensors) -> tuple:
    """§1.4: scan the keys in dict order. Returns (version, H or None)."""
    version, H = 4.0, None
    for k, (val, _) in tensors.items():
        if "ln_x" in k:
            version = max(5.0, version)
        if "gate.weight" in k:
            version = max(5.1, version)
        if int(version) == 5 and "att.time_decay" in k:
            H = val.shape[0]
            if val.ndim > 1 and val.shape[1] > 1:
                version = max(5.2, version)
        if "time_maa" in k:
            version = max(6.0, version)
        if int(version) == 6 and "time_faaaa" in k:
            H = val.shape[0]
    return version, H


class RWKV5Plus:
    """ChatRWKV's main class for RWKV-5.x and RWKV-6.0 (one-stage CPU strategies)."""

    def __init__(self, tensors, strategy: str, emb_override: Optional[np.ndarray] = None):
        if strategy not in ("cpu fp32", "cpu bf16", "cpu fp32i8"):
            raise ValueError(f"{strategy}: this reference runs cpu fp32 / cpu bf16 / cpu fp32i8")
        self.mode = m = MODES[strategy]
        self.strategy_name = strategy
        self.R = 0  # RESCALE_LAYER: no "fp16" in these strategies (§2.2)
        self.version, H = detect_version(tensors)
        if self.version < 5:
            raise ValueError("not an RWKV-5/6 checkpoint (no ln_x / gate / time_maa key)")
        emb, emb_dt = tensors["emb.weight"]
        self.V, self.C = emb.shape
        self.L = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
        self.A = tensors["blocks.0.att.key.weight"][0].shape[0]
        self.F = tensors["blocks.0.ffn.key.weight"][0].shape[0]
        if H is None:
            raise ValueError("could not detect the head count (§1.4)")
        self.H, self.N = H, self.A // H
        rnd = m.rnd

        # §2.1 step 2: fold ln0 into emb in the file dtype (bf16 file: rounded to bf16; fp32 and
        # fp16 files: fp32, torch 1.13 has no fp16 CPU LayerNorm), then cast to the atype.
        w0, _ = tensors["blocks.0.ln0.weight"]
        b0, _ = tensors["blocks.0.ln0.bias"]
        fold_rnd = ROUND["bf16"] if emb_dt == "bf16" else round_fp32
        if emb_override is not None:
            self.emb = np.asarray(emb_override, dtype=F32)
        else:
            self.emb = rnd(layer_norm(emb, w0, b0, fold_rnd))

        # §2.1 step 3: time_faaaa means the bonus is stored as u itself.
        real_first = any(".time_faaaa" in k for k in tensors)
        self.has_time_state = any(".time_state" in k for k in tensors)
        H, N = self.H, self.N
        self.w: Dict[str, object] = {}
        for name, (val, fdt) in tensors.items():
            if name.startswith("emb.") or name.startswith("blocks.0.ln0."):
                continue
            name = name.replace(".time_faaaa", ".time_first")
            v = np.array(val, dtype=F32, copy=True)
            if ".time_" in name:
                v = np.squeeze(v)
            if _is_proj(name):
                v = np.ascontiguousarray(v.T)
            if ".time_decay" in name and "_w" not in name:        # §2.4, fp32
                if self.version < 6:
                    w = exp_neg_exp(v)
                    self.w[name] = w.reshape(H, -1, 1)  # (H,1,1) v5.0/5.1, (H,N,1) v5.2
                else:
                    self.w[name] = v.reshape(H, N)       # v6: raw d, exp(-exp) per token
            elif ".time_first" in name:
                u = v if real_first else _f64_unary(np.exp, v)
                self.w[name] = u.reshape(H, -1, 1)
            elif ".ln_x" in name:
                self.w[name] = v                          # fp32 for the GroupNorm
            elif v.ndim == 2 and "emb" not in name and "_w1" not in name and "_w2" not in name:
                if m.wtype == "u8":
                    q, mx, rx, my, ry = quantize_u8(v)
                    self.w[name] = Matrix(q=q, mx=rnd(mx), rx=rnd(rx), my=rnd(my), ry=rnd(ry),
                                          mm8=m.mm8)
                else:
                    self.w[name] = Matrix(w=ROUND[m.wtype](v))
            else:
                # vectors, LN, mixes, v6 LoRA (never quantised), time_maa_w2 (3-D) and
                # time_state: the atype (§2.5). [quirk] so time_state is rounded to bf16 in
                # "cpu bf16" before it becomes the fp32 initial state.
                self.w[name] = rnd(v)

    @classmethod
    def from_file(cls, path: str, strategy: str, **kw) -> "RWKV5Plus":
        return cls(load_checkpoint(path), strategy, **kw)

    # -- state ------------------------------------------------------------------------------

    def new_state(self):
        out = []
        for i in range(self.L):
            if self.has_time_state:
                # §4.6: stored [h][value][key]; the state is [h][key][value].
                S = np.ascontiguousarray(
                    self.w[f"blocks.{i}.att.time_state"].reshape(self.H, self.N, self.N)
                    .transpose(0, 2, 1)).astype(F32)
            else:
                S = np.zeros((self.H, self.N, self.N), F32)
            out.append(dict(att_shift=np.zeros(self.C, F32), S=S, ffn_shift=np.zeros(self.C, F32)))
        return out

    @staticmethod
    def copy_state(state):
        return [{k: v.copy() for k, v in s.items()} for s in state]

    @staticmethod
    def serialize_state(state) -> np.ndarray:
        """Per block att_shift[C], S[H][N key][N value], ffn_shift[C] (fp32)."""
        return np.concatenate([np.concatenate([s["att_shift"], s["S"].ravel(), s["ffn_shift"]])
                               for s in state]).astype(F32)

    # -- forward ----------------------------------------------------------------------------

    def _interp(self, xx, sx, mix):
        """v4/v5 mixing x̂⊙μ + ŝ⊙(1−μ), each op in the atype."""
        r = self.mode.rnd
        return r(r(xx * mix) + r(sx * r(F32(1) - mix)))

    def _wkv(self, r, k, v, w, u, S, per_token: bool):
        """Per-token recurrence of §4.3 on fp32 r, k, v [T, A]; w: (H,·,1) constant or
        [T, H, N] per token (v6); u: (H,·,1). S: [H, N key, N value] fp32. Returns y [T, A]."""
        T = r.shape[0]
        H, N = self.H, self.N
        y = np.empty((T, H * N), F32)
        for t in range(T):
            rt = r[t].reshape(H, N)
            kt = k[t].reshape(H, N, 1)
            vt = v[t].reshape(H, 1, N)
            a = (kt * vt).astype(F32)                        # k_j v_i, [H, j, i]
            inner = ((u * a).astype(F32) + S).astype(F32)    # u_j k_j v_i + S[j,i]
            y[t] = np.einsum("hj,hji->hi", rt.astype(np.float64),
                             inner.astype(np.float64)).astype(F32).reshape(-1)
            wt = w[t].reshape(H, N, 1) if per_token else w
            S = (a + (wt * S).astype(F32)).astype(F32)
        return y, S

    def _time_mix(self, i, x, st):
        m = self.mode
        rnd, at = m.rnd, m.atype
        kv_type = "fp32" if m.kv_fp32 else at  # "output_dtype=fp32": cpu bf16 rounds to bf16 first
        w = self.w
        p = f"blocks.{i}.att."
        ver = self.version
        xx = layer_norm(x, w[f"blocks.{i}.ln1.weight"], w[f"blocks.{i}.ln1.bias"], rnd)
        sx = _shift(st["att_shift"], xx)
        if ver < 6:
            kx = self._interp(xx, sx, w[p + "time_mix_k"])
            vx = self._interp(xx, sx, w[p + "time_mix_v"])
            rx = self._interp(xx, sx, w[p + "time_mix_r"])
            gx = self._interp(xx, sx, w[p + "time_mix_g"]) if ver >= 5.1 else None
            decay = w[p + "time_decay"]
        else:
            # §4.4: δ = ŝ − x̂; data-dependent mixes through the tanh LoRA (atype matmuls).
            d = rnd(sx - xx)
            xxx = rnd(xx + rnd(d * w[p + "time_maa_x"]))
            M1 = w[p + "time_maa_w1"]                     # (C, 5·Dm)
            M2 = w[p + "time_maa_w2"]                     # (5, Dm, C)
            Dm = M2.shape[1]
            hid = rnd(tanh(rnd(matmul_exact(xxx, M1))))   # [T, 5·Dm]
            mix = {}
            for s_i, s in enumerate("wkvrg"):
                ms = rnd(matmul_exact(hid[:, s_i * Dm:(s_i + 1) * Dm], M2[s_i]))
                mix[s] = rnd(xx + rnd(d * rnd(w[p + f"time_maa_{s}"] + ms)))
            wx, kx, vx, rx, gx = mix["w"], mix["k"], mix["v"], mix["r"], mix["g"]
            lora = rnd(matmul_exact(rnd(tanh(rnd(matmul_exact(wx, w[p + "time_decay_w1"])))),
                                    w[p + "time_decay_w2"]))
            dlog = (w[p + "time_decay"].reshape(1, -1) + lora).astype(F32)   # fp32 add
            decay = exp_neg_exp(dlog).reshape(-1, self.H, self.N)
        r = w[p + "receptance.weight"].apply(rx, kv_type, at)
        k = w[p + "key.weight"].apply(kx, kv_type, at)
        v = w[p + "value.weight"].apply(vx, kv_type, at)
        y, st["S"] = self._wkv(r, k, v, decay, w[p + "time_first"], st["S"], per_token=ver >= 6)
        o = rnd(group_norm(y, self.H, w[p + "ln_x.weight"], w[p + "ln_x.bias"], 64e-5))
        if gx is not None:
            g = rnd(silu(w[p + "gate.weight"].apply(gx, at, at)))
            o = rnd(o * g)
        out = w[p + "output.weight"].apply(o, at, at)
        st["att_shift"] = xx[-1].copy()
        return rnd(x + out)

    def _channel_mix(self, i, x, st):
        m = self.mode
        rnd, at = m.rnd, m.atype
        w = self.w
        p = f"blocks.{i}.ffn."
        xx = layer_norm(x, w[f"blocks.{i}.ln2.weight"], w[f"blocks.{i}.ln2.bias"], rnd)
        sx = _shift(st["ffn_shift"], xx)
        if self.version < 6:
            kx = self._interp(xx, sx, w[p + "time_mix_k"])
            rx = self._interp(xx, sx, w[p + "time_mix_r"])
        else:
            d = rnd(sx - xx)
            kx = rnd(xx + rnd(d * w[p + "time_maa_k"]))
            rx = rnd(xx + rnd(d * w[p + "time_maa_r"]))
        r = rnd(sigmoid(w[p + "receptance.weight"].apply(rx, at, at)))
        kk = np.maximum(w[p + "key.weight"].apply(kx, at, at), F32(0))
        out = rnd(r * w[p + "value.weight"].apply(rnd(kk * kk), at, at))
        st["ffn_shift"] = xx[-1].copy()
        return rnd(x + out)

    def forward(self, tokens: Sequence[int], state=None, full_output: bool = False):
        if state is None:
            state = self.new_state()
        tokens = list(tokens)
        assert len(tokens) >= 1 and all(0 <= t < self.V for t in tokens)
        rnd = self.mode.rnd
        x = self.emb[tokens]
        for i in range(self.L):
            x = rnd(x)
            x = self._time_mix(i, x, state[i])
            x = self._channel_mix(i, x, state[i])
        multi = full_output and len(tokens) > 1
        if not multi:
            x = x[-1:]
        x = layer_norm(x, self.w["ln_out.weight"], self.w["ln_out.bias"], rnd)
        logits = self.w["head.weight"].apply(x, self.mode.atype, self.mode.atype)  # .float() after
        return (logits if multi else logits[0]), state


# =============================================================================================
# The v7 class.

V7_MODES = {
    # name: (dtype of everything but the state, int8 matrices?)
    "cpu fp32": ("fp32", False),
    "cpu bf16": ("bf16", False),
    "cpu fp32i8": ("fp32", True),   # Corvid extension, not in the v7 class
}
V7_I8_NAMES = ("att.receptance.weight", "att.key.weight", "att.value.weight",
               "att.output.weight", "ffn.key.weight", "ffn.value.weight", "head.weight")
V7_DECAY_SCALE = F32(0.606531)  # the reference's literal for e^{-0.5} (exact: 0.60653066)


class RWKV7:
    """ChatRWKV's RWKV-7 class (§2.8, §4.5), without DeepEmbed."""

    # The torch path forms the outer products v⊗k and (−κ)⊗(κ⊙a) in the model dtype, so under
    # bf16 they are rounded before entering the fp32 state. False models a kernel that keeps
    # them in fp32 (tests/fixtures/models_v5plus/check_tolerances.py uses it as a "legitimate
    # variant"); the fixtures use True.
    round_outer_products = True

    def __init__(self, tensors, strategy: str, emb_override: Optional[np.ndarray] = None):
        if strategy not in V7_MODES:
            raise ValueError(f"{strategy}: the v7 reference runs " + ", ".join(V7_MODES))
        self.strategy_name = strategy
        self.dtype, self.i8 = V7_MODES[strategy]
        rnd = self.rnd = ROUND[self.dtype]
        self.H, self.N = tensors["blocks.0.att.r_k"][0].shape
        emb, _ = tensors["emb.weight"]
        self.V, self.C = emb.shape
        self.L = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
        self.A = self.H * self.N
        self.F = tensors["blocks.0.ffn.key.weight"][0].shape[0]
        self.w: Dict[str, object] = {}
        for name, (val, _) in tensors.items():
            v = np.array(val, dtype=F32, copy=True)
            if any(s in name for s in ("key.weight", "value.weight", "receptance.weight",
                                       "output.weight", "head.weight")):
                v = np.ascontiguousarray(v.T)
            v = np.squeeze(v)
            if name.endswith("att.r_k"):
                v = v.reshape(-1)
            if self.i8 and any(name.endswith(s) for s in V7_I8_NAMES):
                q, mx, rx, my, ry = quantize_u8(v)
                self.w[name] = Matrix(q=q, mx=mx, rx=rx, my=my, ry=ry, mm8="torch")
            elif name.endswith(".weight") and v.ndim == 2 and not name.startswith("emb."):
                self.w[name] = Matrix(w=rnd(v))
            else:
                self.w[name] = rnd(v)   # everything in the model dtype (§2.8 step 3)
        # §2.8 step 4: the fold is computed in the model dtype (not the file dtype as in the
        # main class): weights are cast first, then LayerNorm, rounded to the model dtype.
        if emb_override is not None:
            self.emb = np.asarray(emb_override, dtype=F32)
        else:
            self.emb = layer_norm(self.w.pop("emb.weight"), self.w["blocks.0.ln0.weight"],
                                  self.w["blocks.0.ln0.bias"], rnd)
        self.w.pop("emb.weight", None)

    @classmethod
    def from_file(cls, path: str, strategy: str, **kw) -> "RWKV7":
        return cls(load_checkpoint(path), strategy, **kw)

    def new_state(self):
        return [dict(att_shift=np.zeros(self.C, F32), S=np.zeros((self.H, self.N, self.N), F32),
                     ffn_shift=np.zeros(self.C, F32)) for _ in range(self.L)]

    copy_state = staticmethod(RWKV5Plus.copy_state)

    @staticmethod
    def serialize_state(state) -> np.ndarray:
        """Per block att_shift[C], S[H][N value][N key], ffn_shift[C] (fp32)."""
        return RWKV5Plus.serialize_state(state)

    def _mm(self, x, name):
        return self.w[name].apply(x, self.dtype, self.dtype)

    def _lora(self, x, a, b, mid=None):
        """(mid(x A)) B, each product and mid rounded to the model dtype."""
        rnd = self.rnd
        h = rnd(matmul_exact(x, self.w[a]))
        if mid is not None:
            h = rnd(mid(h))
        return rnd(matmul_exact(h, self.w[b]))

    def _time_mix(self, i, xx, st, v_first):
        rnd = self.rnd
        w = self.w
        p = f"blocks.{i}.att."
        H, N = self.H, self.N
        T = xx.shape[0]
        d = rnd(_shift(st["att_shift"], xx) - xx)
        xr, xw, xk, xv, xa, xg = (rnd(xx + rnd(d * w[p + "x_" + c])) for c in "rwkvag")
        r = self._mm(xr, p + "receptance.weight")
        k = self._mm(xk, p + "key.weight")
        v = self._mm(xv, p + "value.weight")
        wl = self._lora(xw, p + "w1", p + "w2", mid=tanh)
        a = rnd(sigmoid(rnd(w[p + "a0"] + self._lora(xa, p + "a1", p + "a2"))))
        g = self._lora(xg, p + "g1", p + "g2", mid=sigmoid)
        # κ = L2-normalize(k ⊙ k_k) per head: x / max(||x||, 1e-12), norm rounded to the dtype.
        kk = rnd(k * w[p + "k_k"]).reshape(T, H, N)
        nrm = rnd(np.sqrt((kk.astype(np.float64) ** 2).sum(-1, keepdims=True)).astype(F32))
        kap = rnd(kk / np.maximum(nrm, F32(1e-12))).reshape(T, H * N)
        k = rnd(k * rnd(F32(1) + rnd(rnd(a - F32(1)) * w[p + "k_a"])))
        if i == 0:
            v_first = v
        else:
            gate = rnd(sigmoid(rnd(w[p + "v0"] + self._lora(xv, p + "v1", p + "v2"))))
            v = rnd(v + rnd(rnd(v_first - v) * gate))
        # ω = exp(−0.606531·σ(float(w0 + w))), fp32.
        z = rnd(w[p + "w0"] + wl).astype(F32)
        omega = _f64_unary(np.exp, (-V7_DECAY_SCALE * sigmoid(z)).astype(F32))
        kapa = rnd(kap * a)
        S = st["S"]
        y = np.empty((T, H * N), F32)
        for t in range(T):
            vt = v[t].reshape(H, N, 1)
            ro = rnd if self.round_outer_products else round_fp32
            vk = ro(vt * k[t].reshape(H, 1, N))                        # [h][i][j] = v_i k_j
            ab = ro((-kap[t]).reshape(H, N, 1) * kapa[t].reshape(H, 1, N))  # [h][l][j]
            Sab = np.matmul(S.astype(np.float64), ab.astype(np.float64)).astype(F32)
            S = ((((S * omega[t].reshape(H, 1, N)).astype(F32) + Sab).astype(F32)) + vk).astype(F32)
            # y_i = Σ_j S[i,j] r_j, with S cast to the model dtype first (torch path).
            yt = np.einsum("hij,hj->hi", rnd(S).astype(np.float64),
                           r[t].reshape(H, N).astype(np.float64)).astype(F32)
            y[t] = rnd(yt).reshape(-1)
        st["S"] = S
        y = rnd(group_norm(y, H, w[p + "ln_x.weight"], w[p + "ln_x.bias"], 64e-5))
        rkr = rnd(rnd(r * k) * w[p + "r_k"]).reshape(T, H, N)
        bonus = rnd(rkr.astype(np.float64).sum(-1, keepdims=True).astype(F32))
        y = rnd(y + rnd(bonus * v.reshape(T, H, N)).reshape(T, H * N))
        out = self._mm(rnd(y * g), p + "output.weight")
        st["att_shift"] = xx[-1].copy()
        return out, v_first

    def _channel_mix(self, i, xx, st):
        rnd = self.rnd
        p = f"blocks.{i}.ffn."
        d = rnd(_shift(st["ffn_shift"], xx) - xx)
        kx = rnd(xx + rnd(d * self.w[p + "x_k"]))
        h = np.maximum(self._mm(kx, p + "key.weight"), F32(0))
        out = self._mm(rnd(h * h), p + "value.weight")
        st["ffn_shift"] = xx[-1].copy()
        return out

    def forward(self, tokens: Sequence[int], state=None, full_output: bool = False):
        if state is None:
            state = self.new_state()
        tokens = list(tokens)
        assert len(tokens) >= 1 and all(0 <= t < self.V for t in tokens)
        rnd = self.rnd
        w = self.w
        x = self.emb[tokens]
        v_first = None   # passes from layer to layer within one call, not part of the state
        for i in range(self.L):
            xx = layer_norm(x, w[f"blocks.{i}.ln1.weight"], w[f"blocks.{i}.ln1.bias"], rnd)
            out, v_first = self._time_mix(i, xx, state[i], v_first)
            x = rnd(x + out)
            xx = layer_norm(x, w[f"blocks.{i}.ln2.weight"], w[f"blocks.{i}.ln2.bias"], rnd)
            x = rnd(x + self._channel_mix(i, xx, state[i]))
        multi = full_output and len(tokens) > 1
        if not multi:
            x = x[-1:]
        x = layer_norm(x, w["ln_out.weight"], w["ln_out.bias"], rnd)
        logits = self._mm(x, "head.weight")   # in the model dtype (bf16 values for cpu bf16)
        return (logits if multi else logits[0]), state


# =============================================================================================


def is_v7(tensors) -> bool:
    """Corvid's autodetection (§1.4): v7 files have att.r_k / att.x_r."""
    return any(k.endswith("att.r_k") or k.endswith("att.x_r") for k in tensors)


def make_model(tensors, strategy: str, **kw):
    return (RWKV7 if is_v7(tensors) else RWKV5Plus)(tensors, strategy, **kw)


def load_model(path: str, strategy: str, **kw):
    return make_model(load_checkpoint(path), strategy, **kw)


def run_step(model, tokens: Sequence[int], state=None):
    """Feed tokens one at a time: logits [T, V] and the final state."""
    st = model.new_state() if state is None else state
    rows = []
    for t in tokens:
        lg, st = model.forward([t], st)
        rows.append(lg)
    return np.stack(rows).astype(F32), st


def run_chunked(model, tokens: Sequence[int], chunk: int):
    st = model.new_state()
    rows = []
    for s in range(0, len(tokens), chunk):
        part = list(tokens[s:s + chunk])
        lg, st = model.forward(part, st, full_output=True)
        rows.append(lg.reshape(len(part), -1))
    return np.concatenate(rows).astype(F32), st


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print("usage: rwkv_ref_v5plus.py MODEL STRATEGY TOKEN[,TOKEN...]  (prints last-token logits)")
        sys.exit(1)
    mdl = load_model(sys.argv[1], sys.argv[2])
    lg, _ = mdl.forward([int(t) for t in sys.argv[3].split(",")], None)
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    print(type(mdl).__name__, getattr(mdl, "version", "7.0"), lg)
