#!/usr/bin/python3
"""Random RWKV-4/5.2/6/7 checkpoints of real shapes, for benchmarks (never committed: make them locally).

Usage (Debian's python3-torch; from the repo root):

    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 169M --out /tmp/rwkv4-169m-bf16.pth
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 430M --dtype fp32 --out /tmp/rwkv4-430m-fp32.pth
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 1.5B --out /tmp/rwkv4-1b5.safetensors --format safetensors
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 6x512 --vocab 1000 --out /tmp/small.pth

    /usr/bin/python3 scripts/make_random_checkpoint.py --arch v6 --shape 1.5B --out /tmp/rwkv6-1b6-bf16.pth
    /usr/bin/python3 scripts/make_random_checkpoint.py --arch v7 --shape 0.1B --out /tmp/rwkv7-0b1-bf16.pth

  --arch    v4 (default) | v5.2 | v6 | v7
  --shape   169M / 0.1B (12x768) | 430M / 0.4B (24x1024) | 1.5B (24x2048) | 3B (32x2560) |
            7B (32x4096) | LxC (e.g. 6x512; C a multiple of 64 for v5.2/v6/v7)
  --dtype   bf16 (default, like released weights) | fp16 | fp32
  --vocab   rows of emb/head (default 50277, the 20B tokenizer's, for v4; 65536, the World
            tokenizer's, for v5.2/v6/v7)
  --format  pth (torch.save zip, default; also chosen by a .pth suffix) | safetensors
            (default when --out ends with .safetensors)
  --seed    base seed (default 0); every tensor has its own generator seeded from (seed, index),
            so the same arguments give the same values in either format.

The tensors are named, shaped and ordered like BlinkDL's RWKV-4 Pile/Raven .pth files
(rwkv-reference §1.2): emb, per block ln1/ln2 (+ ln0 in block 0), att.time_decay/time_first/
time_mix_k/v/r, att.key/value/receptance/output, ffn.time_mix_k/r, ffn.key/receptance/value,
ln_out, head. Matrices are randn/sqrt(fan_in) (key 2x, head 2x); time_decay spans -5..+3 across
channels like RWKV-4's initialisation, so the WKV decays are realistic.

--arch v5.2 / v6 / v7 write World-shaped files (rwkv-reference §1.3), head size N = 64 so
H = C/64, in released key order:
  * v5.2: FFN width F = int(3.5·C) rounded down to a multiple of 32 (2688 at C=768, 7168 at
    2048, 14336 at 4096, as in the World models), time_mix_k/v/r/g, time_decay and time_faaaa
    (H, N), gate and ln_x.
  * v6: the same F; LoRA widths Dm = 32 (time_maa_w1 (C, 5·Dm), time_maa_w2 (5, Dm, C)) and
    Dd = 64 (time_decay_w1/w2), both doubled at C = 4096 (§1.3, [GK] from the v6 demo/training
    code).
  * v7: F = 4·C; LoRA widths from the RWKV-7 training code's rule ([GK], not in our docs):
    D_decay = D_aaa = max(32, round(1.8·√C/32)·32), D_mv = max(32, round(1.3·√C/32)·32),
    D_gate = max(32, round(0.6·C^0.8/32)·32) -- 64/64/32/128 at C=768, 96/96/64/256 at 2048,
    128/128/96/480 at 4096. v0/v1/v2 are written in block 0 too (unused there, as in real files).
Values: w = exp(−exp(d)) in (0, 1) spanning slow to fast decays per head, v7 decays
ω = exp(−0.6065·σ(w0 + …)) spanning 0.6…0.998, mixes in (0, 1), LN weights ≈ 1, matrices
randn/√fan_in, LoRA outputs of order 0.1–0.5.

Memory: each tensor is made in fp32 and cast before the next one is made. safetensors output is
streamed to disk tensor by tensor (peak RAM about one fp32 tensor: the 3B embedding, 0.5 GB);
pth output holds the cast tensors for torch.save (peak about the file size plus one fp32 tensor).
The parameter count is printed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import torch

SHAPES = {"169M": (12, 768), "430M": (24, 1024), "1.5B": (24, 2048), "3B": (32, 2560),
          "0.1B": (12, 768), "0.4B": (24, 1024), "7B": (32, 4096)}
ARCHS = ("v4", "v5.2", "v6", "v7")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ST_TAG = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


# Makers shared by both generations: each returns make(generator) -> fp32 tensor.
def normal(shape, scale):
    return lambda g: torch.randn(*shape, generator=g) * scale


def around_one(C: int):   # LayerNorm / GroupNorm weights
    return lambda g: 1.0 + torch.randn(C, generator=g) * 0.1


def small(C: int):        # their biases
    return lambda g: torch.randn(C, generator=g) * 0.05


def tensor_specs(L: int, C: int, V: int):
    """(name, shape, make(generator) -> fp32 tensor) in real checkpoint order."""
    F = 4 * C
    ch = torch.arange(C, dtype=torch.float32) / max(C - 1, 1)
    ln_w, ln_b = around_one(C), small(C)

    yield "emb.weight", (V, C), normal((V, C), 0.5)
    for i in range(L):
        p = f"blocks.{i}."
        r01 = i / max(L - 1, 1)
        r1a0 = 1.0 - i / L
        yield p + "ln1.weight", (C,), ln_w
        yield p + "ln1.bias", (C,), ln_b
        yield p + "ln2.weight", (C,), ln_w
        yield p + "ln2.bias", (C,), ln_b
        if i == 0:
            yield p + "ln0.weight", (C,), ln_w
            yield p + "ln0.bias", (C,), ln_b
        yield p + "att.time_decay", (C,), \
            (lambda r: lambda g: -5.0 + 8.0 * ch ** (0.7 + 1.3 * r) + torch.randn(C, generator=g) * 0.3)(r01)
        yield p + "att.time_first", (C,), \
            lambda g: math.log(0.3) + 0.5 * (((torch.arange(C) + 1) % 3) - 1).float() + torch.randn(C, generator=g) * 0.3
        for nm, lo in (("k", 0.8), ("v", 0.7), ("r", 0.9)):
            yield p + f"att.time_mix_{nm}", (1, 1, C), \
                (lambda e, lo: lambda g: (ch ** e * lo + torch.rand(C, generator=g) * (1 - lo)).reshape(1, 1, C))(r1a0, lo)
        yield p + "att.key.weight", (C, C), normal((C, C), 2.0 / math.sqrt(C))
        yield p + "att.value.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        yield p + "att.receptance.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        yield p + "att.output.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        for nm in ("k", "r"):
            yield p + f"ffn.time_mix_{nm}", (1, 1, C), \
                (lambda e: lambda g: (ch ** e * 0.8 + torch.rand(C, generator=g) * 0.2).reshape(1, 1, C))(r1a0)
        yield p + "ffn.key.weight", (F, C), normal((F, C), 1.0 / math.sqrt(C))
        yield p + "ffn.receptance.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        yield p + "ffn.value.weight", (C, F), normal((C, F), 1.0 / math.sqrt(F))
    yield "ln_out.weight", (C,), ln_w
    yield "ln_out.bias", (C,), ln_b
    yield "head.weight", (V, C), normal((V, C), 2.0 / math.sqrt(C))


def _lora32(x: float) -> int:
    return max(32, int(round(x / 32)) * 32)


def lora_dims(arch: str, C: int) -> dict:
    if arch == "v6":
        k = 2 if C == 4096 else 1
        return {"Dm": 32 * k, "Dd": 64 * k}
    if arch == "v7":
        return {"D_decay": _lora32(1.8 * C ** 0.5), "D_aaa": _lora32(1.8 * C ** 0.5),
                "D_mv": _lora32(1.3 * C ** 0.5), "D_gate": _lora32(0.6 * C ** 0.8)}
    return {}


def ffn_dim(arch: str, C: int) -> int:
    return 4 * C if arch in ("v4", "v7") else int(C * 3.5) // 32 * 32


def tensor_specs_v5plus(arch: str, L: int, C: int, V: int):
    """(name, shape, make(generator) -> fp32 tensor) for v5.2 / v6 / v7, in released key order."""
    N = 64
    H = C // N
    F = ffn_dim(arch, C)
    D = lora_dims(arch, C)
    jj = torch.arange(N, dtype=torch.float32) / (N - 1)   # position inside a head

    ln_w, ln_b = around_one(C), small(C)

    def mix(g):   # token-shift mix in (0, 1), spread across channels
        ch = torch.arange(C, dtype=torch.float32) / (C - 1)
        e = 0.3 + torch.rand(1, generator=g).item()
        return (0.15 + 0.7 * ch ** e + 0.1 * torch.rand(C, generator=g)).clamp(1e-3, 1 - 1e-3).reshape(1, 1, C)

    def per_head_ramp(lo, span, r, shape):   # lo .. lo+span across each head, + noise
        return lambda g: ((lo + span * jj ** (0.7 + 1.3 * r)).repeat(H)
                          + torch.randn(C, generator=g) * 0.3).reshape(shape)

    yield "emb.weight", (V, C), normal((V, C), 0.5)
    for i in range(L):
        p = f"blocks.{i}."
        r01 = i / max(L - 1, 1)
        lns = [("ln1.weight", ln_w), ("ln1.bias", ln_b), ("ln2.weight", ln_w), ("ln2.bias", ln_b)]
        if i == 0:
            lns = ([("ln0.weight", ln_w), ("ln0.bias", ln_b)] + lns) if arch == "v7" else \
                (lns + [("ln0.weight", ln_w), ("ln0.bias", ln_b)])
        for nm, fn in lns:
            yield p + nm, (C,), fn
        if arch == "v7":
            for nm in "rwkvag":
                yield p + f"att.x_{nm}", (1, 1, C), mix
            yield p + "att.w0", (1, 1, C), per_head_ramp(-6.0, 8.0, r01, (1, 1, C))
            for a, b, Dk, s_out in (("w1", "w2", "D_decay", 0.5), ("a1", "a2", "D_aaa", 0.5),
                                    ("v1", "v2", "D_mv", 0.5), ("g1", "g2", "D_gate", 1.0)):
                if a == "a1":
                    yield p + "att.a0", (1, 1, C), normal((1, 1, C), 0.5)
                if a == "v1":
                    yield p + "att.v0", (1, 1, C), (lambda g: 0.5 + torch.randn(1, 1, C, generator=g) * 0.5)
                yield p + f"att.{a}", (C, D[Dk]), normal((C, D[Dk]), 1.0 / math.sqrt(C))
                yield p + f"att.{b}", (D[Dk], C), normal((D[Dk], C), s_out / math.sqrt(D[Dk]))
            yield p + "att.k_k", (1, 1, C), (lambda g: 0.85 + torch.randn(1, 1, C, generator=g) * 0.1)
            yield p + "att.k_a", (1, 1, C), (lambda g: 1.0 + torch.randn(1, 1, C, generator=g) * 0.1)
            yield p + "att.r_k", (H, N), normal((H, N), 0.3)
        elif arch == "v6":
            for nm in "xwkvrg":
                yield p + f"att.time_maa_{nm}", (1, 1, C), mix
            yield p + "att.time_maa_w1", (C, 5 * D["Dm"]), normal((C, 5 * D["Dm"]), 0.5 / math.sqrt(C))
            yield p + "att.time_maa_w2", (5, D["Dm"], C), normal((5, D["Dm"], C), 0.3 / math.sqrt(D["Dm"]))
            yield p + "att.time_decay", (1, 1, C), per_head_ramp(-6.0, 5.0, r01, (1, 1, C))
            yield p + "att.time_decay_w1", (C, D["Dd"]), normal((C, D["Dd"]), 1.0 / math.sqrt(C))
            yield p + "att.time_decay_w2", (D["Dd"], C), normal((D["Dd"], C), 0.3 / math.sqrt(D["Dd"]))
            yield p + "att.time_faaaa", (H, N), (lambda g: 0.5 + torch.randn(H, N, generator=g) * 0.3)
        else:  # v5.2
            for nm in "kvrg":
                yield p + f"att.time_mix_{nm}", (1, 1, C), mix
            yield p + "att.time_decay", (H, N), per_head_ramp(-6.0, 5.0, r01, (H, N))
            yield p + "att.time_faaaa", (H, N), (lambda g: 0.5 + torch.randn(H, N, generator=g) * 0.3)
        for nm in ("receptance", "key", "value", "output"):
            yield p + f"att.{nm}.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        if arch != "v7":
            yield p + "att.gate.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        yield p + "att.ln_x.weight", (C,), ln_w
        yield p + "att.ln_x.bias", (C,), ln_b
        if arch == "v7":
            yield p + "ffn.x_k", (1, 1, C), mix
        else:
            pre = "time_maa" if arch == "v6" else "time_mix"
            yield p + f"ffn.{pre}_k", (1, 1, C), mix
            yield p + f"ffn.{pre}_r", (1, 1, C), mix
        yield p + "ffn.key.weight", (F, C), normal((F, C), 1.0 / math.sqrt(C))
        if arch != "v7":
            yield p + "ffn.receptance.weight", (C, C), normal((C, C), 1.0 / math.sqrt(C))
        yield p + "ffn.value.weight", (C, F), normal((C, F), 1.0 / math.sqrt(F))
    yield "ln_out.weight", (C,), ln_w
    yield "ln_out.bias", (C,), ln_b
    yield "head.weight", (V, C), normal((V, C), 2.0 / math.sqrt(C))


def make(spec_fn, idx: int, seed: int, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + idx)
    t = spec_fn(g).to(dtype).contiguous()
    return t


def write_safetensors(path: str, specs, seed: int, dtype) -> int:
    elt = torch.tensor([], dtype=dtype).element_size()
    header = OrderedDict()
    off = 0
    for name, shape, _ in specs:
        n = math.prod(shape) * elt
        header[name] = {"dtype": ST_TAG[dtype], "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt", "source": "corvid scripts/make_random_checkpoint.py"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".part"
    nparams = 0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for idx, (name, shape, fn) in enumerate(specs):
            t = make(fn, idx, seed, dtype)
            assert tuple(t.shape) == tuple(shape), name
            nparams += t.numel()
            raw = t.view(torch.int16) if dtype == torch.bfloat16 else t
            f.write(raw.numpy().tobytes())  # little-endian hosts (x86, arm64)
            del t, raw
    os.replace(tmp, path)  # no partial output file on failure
    return nparams


def write_pth(path: str, specs, seed: int, dtype) -> int:
    sd = OrderedDict()
    nparams = 0
    for idx, (name, shape, fn) in enumerate(specs):
        sd[name] = make(fn, idx, seed, dtype)
        nparams += sd[name].numel()
    # Save under the final file name inside a scratch folder (torch names the zip's root folder
    # after the file, as in real checkpoints), then move it into place.
    tmpdir = path + ".tmpdir"
    os.makedirs(tmpdir, exist_ok=True)
    tmp = os.path.join(tmpdir, os.path.basename(path))
    try:
        torch.save(sd, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        os.rmdir(tmpdir)
    return nparams


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Random RWKV-4/5.2/6/7 checkpoint of a real shape (for benchmarks).")
    ap.add_argument("--arch", default="v4", choices=ARCHS)
    ap.add_argument("--shape", required=True, help="169M | 430M | 1.5B | 3B | 0.1B | 0.4B | 7B | LxC")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--vocab", type=int, help="default 50277 (v4), 65536 (v5.2/v6/v7)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=["pth", "safetensors"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.shape in SHAPES:
        L, C = SHAPES[a.shape]
    else:
        try:
            L, C = (int(v) for v in a.shape.lower().split("x"))
            assert L > 0 and C > 0
        except Exception:
            print(f"--shape {a.shape!r}: expected 169M, 430M, 1.5B, 3B, 0.1B, 0.4B, 7B or LxC (e.g. 6x512)",
                  file=sys.stderr)
            return 1
    if a.arch != "v4" and C % 64 != 0:
        print(f"--shape {a.shape!r}: {a.arch} needs n_embd a multiple of the head size 64, got {C}",
              file=sys.stderr)
        return 1
    if a.vocab is None:
        a.vocab = 50277 if a.arch == "v4" else 65536
    if a.vocab <= 0:
        print(f"--vocab {a.vocab}: expected a positive number", file=sys.stderr)
        return 1
    parent = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(parent):
        print(f"--out {a.out}: folder {parent} does not exist", file=sys.stderr)
        return 1
    fmt = a.format or ("safetensors" if a.out.endswith(".safetensors") else "pth")
    specs = list(tensor_specs(L, C, a.vocab) if a.arch == "v4" else tensor_specs_v5plus(a.arch, L, C, a.vocab))
    dtype = DTYPES[a.dtype]
    writer = write_safetensors if fmt == "safetensors" else write_pth
    n = writer(a.out, specs, a.seed, dtype)
    if a.arch == "v4":
        print(f"{a.out}: RWKV-4 L={L} C={C} V={a.vocab} {a.dtype} {fmt}, {n:,} parameters "
              f"({n / 1e6:.1f}M), {os.path.getsize(a.out):,} bytes")
    else:
        extra = " ".join(f"{k}={v}" for k, v in lora_dims(a.arch, C).items())
        print(f"{a.out}: RWKV-{a.arch[1:]} L={L} C={C} H={C // 64} N=64 F={ffn_dim(a.arch, C)} {extra} "
              f"V={a.vocab} {a.dtype} {fmt}, {n:,} parameters ({n / 1e6:.1f}M), "
              f"{os.path.getsize(a.out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
