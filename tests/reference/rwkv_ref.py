#!/usr/bin/python3
"""Independent numpy reference of RWKV-4 inference, as ChatRWKV's `rwkv` pip package computes it.

Written from the math in docs rwkv-reference.md §1, §2 and §4 (not from Corvid's C++ and not
copied from ChatRWKV). Every numeric test of Corvid compares against outputs of this file
(committed as .npy under tests/fixtures/models/expected/, since CI has no numpy/torch).

API (mirrors the pip package's RWKV class):

    model = RWKV4.from_file("model.pth", "cpu fp32")   # or .safetensors; strategy, see MODES
    state = model.new_state()
    logits, state = model.forward([187, 510], state)                   # last token's logits [V]
    logits, state = model.forward(tokens, state, full_output=True)     # every token's [T, V]
    flat = model.serialize_state(state)                                # StageState::serialize order

`forward` updates `state` in place (like the reference) and returns it; one token is "step
mode", several are "sequence mode". Both run the same per-token recurrence here, so their
results agree exactly: the only difference in the real package is the rounding inside torch's
kernels, which this reference models as "exact, then rounded once" in both modes.

Strategies (MODES): "cpu fp32", "cpu bf16", "cpu fp32i8", and the CUDA emulations
"cuda fp16", "cuda fp16i8" (for later CUDA tests). A multi-stage plan can be given as a list
of (mode, n_slots) pairs, e.g. [("cuda fp16i8", 3), ("cpu fp32", None)]; RESCALE_LAYER is 6
when "fp16" occurs in any stage's mode name (rwkv-reference §2.2), else 0, unless given.

Numerics (what is emulated; see tests/reference/README.md for the evidence):
  * Activations are float32 arrays holding exactly the values of the activation type
    (atype). `rnd` rounds float32 to the atype (bf16/fp16 round-to-nearest-even).
  * Every elementwise op the reference does in the atype is done in float32 and rounded
    (torch's CPU bf16 and CUDA fp16 elementwise kernels compute in float and round once).
  * Matrix products are accumulated in float64 and rounded to float32, then to the output
    type: the "fp32 accumulate, round once" of oneDNN/MKL-DNN bf16 GEMM and cuBLAS fp32-compute.
  * LayerNorm: moments in float64, result rounded to float32 then to the atype.
    [deviation] torch 1.13 (Debian) computes bf16 LayerNorm moments with ~1% error; we do not
    copy that (torch-version and CPU-specific); see README.
  * WKV: float32 throughout, max trick, p starts at -1e30 (§4.1).
  * int8 (§2.6): exact quantisation in float32, constant rows/columns guarded (range 0,
    divide by 1) instead of the reference's NaN. Dequantised product:
      - "cpu fp32i8" (torch fallback): W' = ((q+0.5)*ry)*rx + my + mx in float32, then x @ W'.
      - "cuda fp16i8" (operators.cu kernel): W' = (q+0.5)*rx*ry + mx + my in float32 from the
        fp16 side tensors, fp32 accumulation, output rounded to fp16 (also for k and v).
  * k and v (TimeMix) are requested as fp32 by the reference: with torch matmul they are
    rounded to the atype first ("cpu bf16"); with the cuBLAS path (RWKV_CUDA_ON=1, "cuda fp16")
    they come out in fp32 unrounded. Mode.kv_fp32 selects this.
"""
from __future__ import annotations

import json
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

# ---------------------------------------------------------------------------------------------
# Rounding to the 16-bit float types.


def round_bf16(a) -> np.ndarray:
    """float32 -> nearest bf16 (ties to even), returned as float32. NaN/inf pass through."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = r.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, out).astype(np.float32)


def round_fp16(a) -> np.ndarray:
    """float32 -> nearest fp16 (ties to even, overflow to inf), returned as float32."""
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


def round_fp32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


ROUND = {"fp32": round_fp32, "bf16": round_bf16, "fp16": round_fp16}

# ---------------------------------------------------------------------------------------------
# Strategies.


@dataclass(frozen=True)
class Mode:
    name: str
    atype: str          # activation type: fp32 | bf16 | fp16
    wtype: str          # weight type: fp32 | bf16 | fp16 | u8
    kv_fp32: bool       # TimeMix k, v leave the matmul in fp32 without rounding to atype
    mm8: str = "torch"  # int8 product: "torch" (fallback formula) or "cuda" (operators.cu)

    @property
    def rnd(self):
        return ROUND[self.atype]


MODES: Dict[str, Mode] = {
    "cpu fp32": Mode("cpu fp32", "fp32", "fp32", kv_fp32=True),
    "cpu bf16": Mode("cpu bf16", "bf16", "bf16", kv_fp32=False),
    "cpu fp32i8": Mode("cpu fp32i8", "fp32", "u8", kv_fp32=True, mm8="torch"),
    "cuda fp16": Mode("cuda fp16", "fp16", "fp16", kv_fp32=True),
    "cuda fp16i8": Mode("cuda fp16i8", "fp16", "u8", kv_fp32=False, mm8="cuda"),
}

# ---------------------------------------------------------------------------------------------
# Checkpoint reading: name -> (float32 values, file dtype), in file order.

Tensors = "OrderedDict[str, Tuple[np.ndarray, str]]"

_TORCH_DT = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}
_ST_DT = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}


def load_pth(path: str):
    import torch  # only the loader needs torch; the math below is numpy only

    sd = torch.load(path, map_location="cpu")
    out = OrderedDict()
    for k, t in sd.items():
        out[k] = (t.detach().float().contiguous().numpy().copy(), _TORCH_DT[str(t.dtype)])
    return out


def load_safetensors(path: str):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    data = memoryview(blob)[8 + n:]
    out = OrderedDict()
    for k, meta in header.items():
        if k == "__metadata__":
            continue
        dt = _ST_DT[meta["dtype"]]
        b, e = meta["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype={"fp32": "<f4", "fp16": "<f2", "bf16": "<u2"}[dt])
        if dt == "bf16":
            vals = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            vals = raw.astype(np.float32)
        out[k] = (vals.reshape(meta["shape"]).copy(), dt)
    return out


def load_checkpoint(path: str):
    return load_safetensors(path) if path.endswith(".safetensors") else load_pth(path)


# ---------------------------------------------------------------------------------------------
# Building blocks.


def matmul_exact(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w accumulated in float64, rounded to float32 (deterministic across BLAS builds)."""
    return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, rnd) -> np.ndarray:
    """LayerNorm over the last axis, eps 1e-5, biased variance; exact math, rounded once."""
    xd = x.astype(np.float64)
    mu = xd.mean(axis=-1, keepdims=True)
    var = ((xd - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (xd - mu) / np.sqrt(var + 1e-5) * w.astype(np.float64) + b.astype(np.float64)
    return rnd(y.astype(np.float32))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def quantize_u8(W: np.ndarray):
    """The reference's int8 scheme (rwkv-reference §2.6) on fp32 W (n in-rows x m out-cols).

    Returns q (uint8), mx (m), rx (m) = colmax/16, my (n,1), ry (n,1) = rowmax/16, all float32
    before rounding to the atype. Constant rows/columns: range 0, divide by 1 (documented
    deviation from the reference's division by zero)."""
    W = np.array(W, dtype=np.float32, copy=True)
    n, m = W.shape

    def col_min(W):
        mx = W.min(axis=0)
        return W - mx, mx

    def row_min(W):
        my = W.min(axis=1, keepdims=True)
        return W - my, my

    if n > m:
        W, my = row_min(W)
        W, mx = col_min(W)
    else:
        W, mx = col_min(W)
        W, my = row_min(W)
    rx = W.max(axis=0)
    W = W / np.where(rx != 0, rx, np.float32(1)).astype(np.float32)
    ry = W.max(axis=1, keepdims=True)
    W = W / np.where(ry != 0, ry, np.float32(1)).astype(np.float32)
    q = np.clip(np.floor(W * np.float32(256)), 0, 255).astype(np.uint8)
    return (q, mx.astype(np.float32), (rx / np.float32(16)).astype(np.float32),
            my.astype(np.float32), (ry / np.float32(16)).astype(np.float32))


@dataclass
class Matrix:
    """A prepared (in, out) matrix: plain values in wtype, or int8 codes + side tensors."""
    w: Optional[np.ndarray] = None  # float32 values of wtype (plain)
    q: Optional[np.ndarray] = None  # uint8 codes (int8)
    mx: Optional[np.ndarray] = None
    rx: Optional[np.ndarray] = None
    my: Optional[np.ndarray] = None
    ry: Optional[np.ndarray] = None
    mm8: str = "torch"

    def dequantized(self, atype: str) -> np.ndarray:
        """W' as the reference's int8 product sees it (float32 values)."""
        qf = self.q.astype(np.float32) + np.float32(0.5)
        if self.mm8 == "cuda":
            # operators.cu: (float(w) + 0.5f) * rx[k] * ry[j] + mx[k] + my[j], all in fp32.
            return (((qf * self.rx[None, :]) * self.ry) + self.mx[None, :]) + self.my
        # torch fallback: ((w.to(atype) + 0.5) * ry * rx + my + mx), every op in the atype.
        r = ROUND[atype]
        t = r(qf * self.ry)
        t = r(t * self.rx[None, :])
        t = r(t + self.my)
        return r(t + self.mx[None, :])

    def apply(self, x: np.ndarray, out_type: str, atype: str) -> np.ndarray:
        """x @ W, accumulated exactly, rounded to float32 and then to out_type."""
        w = self.w if self.q is None else self.dequantized(atype)
        return ROUND[out_type](matmul_exact(x, w))


# ---------------------------------------------------------------------------------------------
# The model.


class RWKV4:
    EPS_P = np.float32(-1e30)

    def __init__(self, tensors, strategy: Union[str, Sequence[Tuple[str, Optional[int]]]],
                 rescale_layer: Optional[int] = None, emb_override: Optional[np.ndarray] = None):
        """tensors: name -> (float32 values, file dtype 'fp32'|'fp16'|'bf16'), raw checkpoint.
        emb_override: use this folded embedding (already in layer 0's atype) instead of
        folding; only for cross-checks that isolate the fold."""
        for k in tensors:
            if "ln_x" in k or "gate.weight" in k or "time_maa" in k or "time_faaaa" in k:
                raise ValueError(f"{k}: only RWKV-4 checkpoints are supported by this reference")
        emb, emb_dt = tensors["emb.weight"]
        self.V, self.C = emb.shape
        self.L = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
        self.A = tensors["blocks.0.att.key.weight"][0].shape[0]
        self.F = tensors["blocks.0.ffn.key.weight"][0].shape[0]

        # Slot plan: slots 0..L-1 are blocks, slot L is ln_out + head (rwkv-reference §3.2).
        stages = [(strategy, None)] if isinstance(strategy, str) else list(strategy)
        self.strategy_name = " -> ".join(s for s, _ in stages)
        slots: List[Mode] = []
        for i, (name, n) in enumerate(stages):
            cnt = (self.L + 1 - len(slots)) if n is None or i == len(stages) - 1 else n
            slots += [MODES[name]] * cnt
        self.slots = slots[: self.L + 1]
        assert len(self.slots) == self.L + 1
        if rescale_layer is None:
            rescale_layer = 6 if any("fp16" in s for s, _ in stages) else 0
        self.R = rescale_layer

        # §2.1 step 2: fold ln0 into emb, in the file dtype where torch can (fp32, bf16 on
        # CPU), else fp32 (torch 1.13 raises for fp16 LayerNorm on CPU); then layer 0's atype.
        w0, _ = tensors["blocks.0.ln0.weight"]
        b0, _ = tensors["blocks.0.ln0.bias"]
        fold_rnd = ROUND["bf16"] if emb_dt == "bf16" else ROUND["fp32"]
        if emb_override is not None:
            self.emb = np.asarray(emb_override, dtype=np.float32)
        else:
            self.emb = self.slots[0].rnd(layer_norm(emb, w0, b0, fold_rnd))

        self.w: Dict[str, object] = {}
        for name, (val, fdt) in tensors.items():
            if name.startswith("emb.") or name.startswith("blocks.0.ln0."):
                continue
            layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
            if "ln_out." in name or "head." in name:
                layer = self.L
            mode = self.slots[layer]
            v = np.array(val, dtype=np.float32, copy=True)
            # §2.2: RESCALE division first, in the file dtype (a power of two: exact unless
            # the result is subnormal, which rounding to the file dtype reproduces).
            if self.R > 0 and ("att.output.weight" in name or "ffn.value.weight" in name):
                v = ROUND[fdt](v / np.float32(2 ** (layer // self.R)))
            if ".time_" in name:
                v = v.reshape(-1)  # squeeze
            is_mat = any(s in name for s in ("key.weight", "value.weight", "receptance.weight",
                                              "output.weight", "head.weight"))
            if is_mat:
                v = np.ascontiguousarray(v.T)  # (out, in) -> (in, out)
            if ".time_decay" in name:
                self.w[name] = (-np.exp(v.astype(np.float32))).astype(np.float32)  # w = -exp(d)
            elif ".time_first" in name:
                self.w[name] = v.astype(np.float32)                                 # u
            elif v.ndim == 2:
                if mode.wtype == "u8":
                    q, mx, rx, my, ry = quantize_u8(v)
                    r = mode.rnd
                    self.w[name] = Matrix(q=q, mx=r(mx), rx=r(rx), my=r(my), ry=r(ry), mm8=mode.mm8)
                else:
                    self.w[name] = Matrix(w=ROUND[mode.wtype](v))
            else:
                self.w[name] = mode.rnd(v)

    @classmethod
    def from_file(cls, path: str, strategy, **kw) -> "RWKV4":
        return cls(load_checkpoint(path), strategy, **kw)

    # -- state ------------------------------------------------------------------------------

    def new_state(self) -> List[Dict[str, np.ndarray]]:
        return [dict(att_shift=np.zeros(self.C, np.float32), a=np.zeros(self.A, np.float32),
                     b=np.zeros(self.A, np.float32), p=np.full(self.A, self.EPS_P, np.float32),
                     ffn_shift=np.zeros(self.C, np.float32)) for _ in range(self.L)]

    @staticmethod
    def copy_state(state):
        return [{k: v.copy() for k, v in s.items()} for s in state]

    @staticmethod
    def serialize_state(state) -> np.ndarray:
        """Canonical order (sdk backend.h StageState::serialize): per block
        att_shift[C], a[A], b[A], p[A], ffn_shift[C], as fp32."""
        return np.concatenate([np.concatenate([s["att_shift"], s["a"], s["b"], s["p"], s["ffn_shift"]])
                               for s in state]).astype(np.float32)

    # -- forward ----------------------------------------------------------------------------

    def _mix(self, xx, sx, mix, rnd):
        # x̂⊙μ + ŝ⊙(1−μ), each op in the atype.
        return rnd(rnd(xx * mix) + rnd(sx * rnd(np.float32(1) - mix)))

    def _time_mix(self, i: int, x: np.ndarray, st) -> np.ndarray:
        m = self.slots[i]
        rnd, at = m.rnd, m.atype
        w = self.w
        p = f"blocks.{i}."
        xx = layer_norm(x, w[p + "ln1.weight"], w[p + "ln1.bias"], rnd)
        sx = np.concatenate([st["att_shift"][None, :], xx[:-1]], axis=0)  # row t shifts from t-1
        kx = self._mix(xx, sx, w[p + "att.time_mix_k"], rnd)
        vx = self._mix(xx, sx, w[p + "att.time_mix_v"], rnd)
        rx = self._mix(xx, sx, w[p + "att.time_mix_r"], rnd)
        r = rnd(sigmoid(w[p + "att.receptance.weight"].apply(rx, at, at)))
        kv_type = "fp32" if m.kv_fp32 else at
        k = w[p + "att.key.weight"].apply(kx, kv_type, at)
        v = w[p + "att.value.weight"].apply(vx, kv_type, at)
        u = w[p + "att.time_first"]
        dec = w[p + "att.time_decay"]
        a, b, pp = st["a"], st["b"], st["p"]
        wkv = np.empty_like(xx)
        with np.errstate(over="ignore", under="ignore"):
            for t in range(x.shape[0]):
                kt, vt = k[t], v[t]
                ww = u + kt
                q = np.maximum(pp, ww)
                e1 = np.exp(pp - q)
                e2 = np.exp(ww - q)
                wkv[t] = rnd((e1 * a + e2 * vt) / (e1 * b + e2))
                ww = dec + pp
                q = np.maximum(ww, kt)
                e1 = np.exp(ww - q)
                e2 = np.exp(kt - q)
                a = e1 * a + e2 * vt
                b = e1 * b + e2
                pp = q
        st["a"], st["b"], st["p"] = a.astype(np.float32), b.astype(np.float32), pp.astype(np.float32)
        st["att_shift"] = xx[-1].copy()
        out = w[p + "att.output.weight"].apply(rnd(r * wkv), at, at)
        return rnd(x + out)

    def _channel_mix(self, i: int, x: np.ndarray, st) -> np.ndarray:
        m = self.slots[i]
        rnd, at = m.rnd, m.atype
        w = self.w
        p = f"blocks.{i}."
        xx = layer_norm(x, w[p + "ln2.weight"], w[p + "ln2.bias"], rnd)
        sx = np.concatenate([st["ffn_shift"][None, :], xx[:-1]], axis=0)
        kx = self._mix(xx, sx, w[p + "ffn.time_mix_k"], rnd)
        rx = self._mix(xx, sx, w[p + "ffn.time_mix_r"], rnd)
        r = rnd(sigmoid(w[p + "ffn.receptance.weight"].apply(rx, at, at)))
        kk = np.maximum(w[p + "ffn.key.weight"].apply(kx, at, at), np.float32(0))
        vx = rnd(kk * kk)  # relu(.)**2 in the atype
        out = rnd(r * w[p + "ffn.value.weight"].apply(vx, at, at))
        st["ffn_shift"] = xx[-1].copy()
        return rnd(x + out)

    def forward(self, tokens: Sequence[int], state=None, full_output: bool = False):
        """Returns (logits, state): logits [V] for the last token, or [T, V] with
        full_output and T > 1 (like the reference's sequence mode)."""
        if state is None:
            state = self.new_state()
        tokens = list(tokens)
        assert len(tokens) >= 1 and all(0 <= t < self.V for t in tokens)
        x = self.emb[tokens]  # [T, C], layer 0's atype
        for i in range(self.L):
            rnd = self.slots[i].rnd
            x = rnd(x)  # x.to(atype) entering this layer's stage
            x = self._time_mix(i, x, state[i])
            x = self._channel_mix(i, x, state[i])
            if self.R > 0 and (i + 1) % self.R == 0:
                x = rnd(x / np.float32(2))
        if not (full_output and len(tokens) > 1):
            x = x[-1:]
        hm = self.slots[self.L]
        x = hm.rnd(x)
        x = layer_norm(x, self.w["ln_out.weight"], self.w["ln_out.bias"], hm.rnd)
        logits = self.w["head.weight"].apply(x, hm.atype, hm.atype)
        return (logits if full_output and len(tokens) > 1 else logits[0]), state


# ---------------------------------------------------------------------------------------------
# Helpers for expected-output generation.


def run_step(model: RWKV4, tokens: Sequence[int]):
    """Feed tokens one at a time: logits [T, V] (row t after token t) and final state."""
    st = model.new_state()
    rows = []
    for t in tokens:
        lg, st = model.forward([t], st)
        rows.append(lg)
    return np.stack(rows).astype(np.float32), st


def run_chunked(model: RWKV4, tokens: Sequence[int], chunk: int):
    """Feed tokens in chunks of `chunk` (state carried), full_output per chunk: [T, V]."""
    st = model.new_state()
    rows = []
    for s in range(0, len(tokens), chunk):
        part = list(tokens[s:s + chunk])
        lg, st = model.forward(part, st, full_output=True)
        rows.append(lg.reshape(len(part), -1))
    return np.concatenate(rows).astype(np.float32), st


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 4:
        print("usage: rwkv_ref.py MODEL STRATEGY TOKEN[,TOKEN...]  (prints last-token logits)")
        sys.exit(1)
    mdl = RWKV4.from_file(sys.argv[1], sys.argv[2])
    toks = [int(t) for t in sys.argv[3].split(",")]
    lg, _ = mdl.forward(toks, None)
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    print(lg)
