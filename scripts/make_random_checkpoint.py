#!/usr/bin/python3
"""Random RWKV-4 checkpoints of real shapes, for benchmarks (never committed: make them locally).

Usage (Debian's python3-torch; from the repo root):

    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 169M --out /tmp/rwkv4-169m-bf16.pth
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 430M --dtype fp32 --out /tmp/rwkv4-430m-fp32.pth
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 1.5B --out /tmp/rwkv4-1b5.safetensors --format safetensors
    /usr/bin/python3 scripts/make_random_checkpoint.py --shape 6x512 --vocab 1000 --out /tmp/small.pth

  --shape   169M (12x768) | 430M (24x1024) | 1.5B (24x2048) | 3B (32x2560) | LxC (e.g. 6x512)
  --dtype   bf16 (default, like released weights) | fp16 | fp32
  --vocab   rows of emb/head (default 50277, the 20B tokenizer's)
  --format  pth (torch.save zip, default; also chosen by a .pth suffix) | safetensors
            (default when --out ends with .safetensors)
  --seed    base seed (default 0); every tensor has its own generator seeded from (seed, index),
            so the same arguments give the same values in either format.

The tensors are named, shaped and ordered like BlinkDL's RWKV-4 Pile/Raven .pth files
(rwkv-reference §1.2): emb, per block ln1/ln2 (+ ln0 in block 0), att.time_decay/time_first/
time_mix_k/v/r, att.key/value/receptance/output, ffn.time_mix_k/r, ffn.key/receptance/value,
ln_out, head. Matrices are randn/sqrt(fan_in) (key 2x, head 2x); time_decay spans -5..+3 across
channels like RWKV-4's initialisation, so the WKV decays are realistic.

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

SHAPES = {"169M": (12, 768), "430M": (24, 1024), "1.5B": (24, 2048), "3B": (32, 2560)}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ST_TAG = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_specs(L: int, C: int, V: int):
    """(name, shape, make(generator) -> fp32 tensor) in real checkpoint order."""
    F = 4 * C
    ch = torch.arange(C, dtype=torch.float32) / max(C - 1, 1)

    def normal(shape, scale):
        return lambda g: torch.randn(*shape, generator=g) * scale

    def around_one(g):
        return 1.0 + torch.randn(C, generator=g) * 0.1

    def small(g):
        return torch.randn(C, generator=g) * 0.05

    yield "emb.weight", (V, C), normal((V, C), 0.5)
    for i in range(L):
        p = f"blocks.{i}."
        r01 = i / max(L - 1, 1)
        r1a0 = 1.0 - i / L
        yield p + "ln1.weight", (C,), around_one
        yield p + "ln1.bias", (C,), small
        yield p + "ln2.weight", (C,), around_one
        yield p + "ln2.bias", (C,), small
        if i == 0:
            yield p + "ln0.weight", (C,), around_one
            yield p + "ln0.bias", (C,), small
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
    yield "ln_out.weight", (C,), around_one
    yield "ln_out.bias", (C,), small
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
    ap = argparse.ArgumentParser(description="Random RWKV-4 checkpoint of a real shape (for benchmarks).")
    ap.add_argument("--shape", required=True, help="169M | 430M | 1.5B | 3B | LxC")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--vocab", type=int, default=50277)
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
            print(f"--shape {a.shape!r}: expected 169M, 430M, 1.5B, 3B or LxC (e.g. 6x512)", file=sys.stderr)
            return 1
    if a.vocab <= 0:
        print(f"--vocab {a.vocab}: expected a positive number", file=sys.stderr)
        return 1
    parent = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(parent):
        print(f"--out {a.out}: folder {parent} does not exist", file=sys.stderr)
        return 1
    fmt = a.format or ("safetensors" if a.out.endswith(".safetensors") else "pth")
    specs = list(tensor_specs(L, C, a.vocab))
    dtype = DTYPES[a.dtype]
    writer = write_safetensors if fmt == "safetensors" else write_pth
    n = writer(a.out, specs, a.seed, dtype)
    print(f"{a.out}: RWKV-4 L={L} C={C} V={a.vocab} {a.dtype} {fmt}, {n:,} parameters "
          f"({n / 1e6:.1f}M), {os.path.getsize(a.out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
