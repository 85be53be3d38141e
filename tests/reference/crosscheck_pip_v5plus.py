#!/usr/bin/python3
"""Cross-checks rwkv_ref_v5plus.py against ChatRWKV's real `rwkv` pip package (by hand, not CI).

    RWKV_JIT_ON=0 RWKV_CUDA_ON=0 /usr/bin/python3 tests/reference/crosscheck_pip_v5plus.py \
        --pkg DIR [--fixture NAME ... | --model FILE.pth ...] [--strategy "cpu fp32" ...]
        [--tokens 1,2,3] [--isolate-fold] [--exact-bf16-norms]

DIR holds the package as `rwkv/model.py` (copied out of a ChatRWKV checkout into /tmp; never
into this repo). The main class (v5/v6) and the v7 class cannot be imported in one process
(RWKV_V7_ON must be set before the import), so the script runs itself once per family in a
child process. For each fixture of tests/fixtures/models_v5plus/fixtures.json and strategy it
feeds the fixture's tokens to the package one at a time and in chunks of 5 (full_output),
and compares with the reference stepped: max |Δlogit| (step, seq), max |Δstate|, and the
package's own step-vs-seq difference.

Harness adaptations (they change no arithmetic):
  * torch 1.13's torch.load has no `mmap` argument, which the v7 class passes: it is dropped.
  * --exact-bf16-norms makes the package's bf16 LayerNorm, GroupNorm and SiLU compute in fp32
    and round once (what the reference models; torch 1.13's bf16 CPU norm kernels have ~1%
    moment error, and its bf16 silu rounds exp(-x), 1+exp(-x) and the quotient each to bf16),
    and bf16 `@` / torch.bmm accumulate in fp32 and round once (torch 1.13 accumulates small
    bf16 products -- M*K <= 4096 with a contiguous right operand -- in bf16; the fixtures' v6
    LoRA and all v7 matrices hit that, real-sized models do not). The v7 class is always TorchScript-compiled, so with this flag torch.jit.script /
    ScriptModule are replaced by plain Python before the import (same ops, run eagerly).
  * "cpu fp32i8" for v7 is a Corvid extension with no package counterpart: skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "models_v5plus")
sys.path.insert(0, HERE)


def pkg_state_flat(state, L):
    return np.concatenate([state[i * 3 + j].float().numpy().ravel() for i in range(L) for j in range(3)])


def run_family(args, family: str):
    import torch
    if family == "v7":
        os.environ["RWKV_V7_ON"] = "1"
        orig_load = torch.load
        torch.load = lambda *a, **k: orig_load(*a, **{x: y for x, y in k.items() if x != "mmap"})
    if args.exact_bf16_norms:
        import torch.nn.functional as F
        if family == "v7":
            torch.jit.script = lambda f, *a, **k: f
            torch.jit.script_method = lambda f: f
            torch.jit.ScriptModule = torch.nn.Module
        orig_ln, orig_gn = F.layer_norm, F.group_norm

        def ln(x, shape, weight=None, bias=None, eps=1e-5):
            if x.dtype == torch.bfloat16:
                return orig_ln(x.float(), shape, weight.float(), bias.float(), eps).to(torch.bfloat16)
            return orig_ln(x, shape, weight, bias, eps)

        def gn(x, num_groups, weight=None, bias=None, eps=1e-5):
            if x.dtype == torch.bfloat16:
                return orig_gn(x.float(), num_groups, weight.float(), bias.float(), eps).to(torch.bfloat16)
            return orig_gn(x, num_groups, weight, bias, eps)
        orig_silu = F.silu

        def silu(x, inplace=False):
            if x.dtype == torch.bfloat16:
                return orig_silu(x.float()).to(torch.bfloat16)
            return orig_silu(x)
        F.layer_norm, F.group_norm, F.silu = ln, gn, silu
        orig_mm, orig_bmm = torch.Tensor.__matmul__, torch.bmm

        def mm(a, b):
            if a.dtype == torch.bfloat16 and b.dtype == torch.bfloat16:
                return orig_mm(a.float(), b.float()).to(torch.bfloat16)
            return orig_mm(a, b)

        def bmm(a, b):
            if a.dtype == torch.bfloat16 and b.dtype == torch.bfloat16:
                return orig_bmm(a.float(), b.float()).to(torch.bfloat16)
            return orig_bmm(a, b)
        torch.Tensor.__matmul__, torch.bmm = mm, bmm
    sys.path.insert(0, args.pkg)
    from rwkv.model import RWKV  # the real package
    import rwkv_ref_v5plus as ref

    torch.set_num_threads(1)
    if args.model:
        cases = []
        for path in args.model:
            keys = torch.load(path, map_location="cpu").keys()
            v7 = any(k.endswith("att.r_k") for k in keys)
            L = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks."))
            cases.append(dict(name=os.path.basename(path)[:-4], path=path, L=L,
                              arch="v7.0" if v7 else "v5/6", tokens=None))
    else:
        man = json.load(open(os.path.join(FIX, "fixtures.json")))
        cases = [dict(fx, path=os.path.join(FIX, fx["files"][0]["file"])) for fx in man["fixtures"]]
    for fx in cases:
        if (fx["arch"] == "v7.0") != (family == "v7"):
            continue
        if args.fixture and fx["name"] not in args.fixture:
            continue
        path = fx["path"]
        tensors = ref.load_checkpoint(path)
        toks = fx["tokens"]
        if args.tokens:
            toks = [int(t) for t in args.tokens.split(",")]
        if toks is None:
            V = tensors["emb.weight"][0].shape[0]
            toks = [int(t) for t in np.random.RandomState(0).randint(0, V, size=16)]
        for s in args.strategy or ["cpu fp32", "cpu bf16", "cpu fp32i8"]:
            if family == "v7" and s.endswith("i8"):
                print(f"{fx['name']:20s} {s:11s} skipped (Corvid extension, not in the v7 class)")
                continue
            with open(os.devnull, "w") as dn:
                old = sys.stdout
                sys.stdout = dn
                try:
                    pm = RWKV(path[:-4], s)
                finally:
                    sys.stdout = old
            L = fx["L"]
            st, p_step = None, []
            for t in toks:
                lg, st = pm.forward([t], st)
                p_step.append(lg.float().numpy())
            p_step = np.stack(p_step)
            p_state = pkg_state_flat(st, L)
            st, p_seq = None, []
            for b in range(0, len(toks), args.chunk):
                part = toks[b:b + args.chunk]
                lg, st = pm.forward(part, st, full_output=True)
                p_seq.append(lg.float().numpy().reshape(len(part), -1))
            p_seq = np.concatenate(p_seq)
            model = ref.make_model(tensors, s)
            r_step, r_st = ref.run_step(model, toks)
            r_state = model.serialize_state(r_st)
            line = (f"{fx['name']:20s} {s:11s} step {np.abs(p_step - r_step).max():.3e} "
                    f"(mean {np.abs(p_step - r_step).mean():.1e})  seq {np.abs(p_seq - r_step).max():.3e}  "
                    f"state {np.abs(p_state - r_state).max():.3e}  "
                    f"pkg step-vs-seq {np.abs(p_step - p_seq).max():.3e}  max|logit| {np.abs(r_step).max():.2f}")
            if args.isolate_fold:
                emb = (pm.z if family == "v7" else pm.w)["emb.weight"].float().numpy()
                m2 = ref.make_model(tensors, s, emb_override=emb)
                r2, _ = ref.run_step(m2, toks)
                line += (f"  | pkg emb: step {np.abs(p_step - r2).max():.3e}"
                         f" fold Δ {np.abs(emb - model.emb).max():.2e}")
            print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pkg", required=True)
    ap.add_argument("--fixture", action="append")
    ap.add_argument("--model", action="append", help="a .pth instead of the fixtures (e.g. from "
                    "scripts/make_random_checkpoint.py --arch ...)")
    ap.add_argument("--tokens", help="comma-separated token ids (default: the fixture's / 16 random)")
    ap.add_argument("--strategy", action="append")
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument("--isolate-fold", action="store_true")
    ap.add_argument("--exact-bf16-norms", action="store_true")
    ap.add_argument("--family", choices=["main", "v7"], help="(internal) run one family")
    args = ap.parse_args()
    os.environ.setdefault("RWKV_CUDA_ON", "0")
    os.environ.setdefault("RWKV_JIT_ON", "0")
    if args.family:
        run_family(args, args.family)
        return
    for fam in ("main", "v7"):
        env = dict(os.environ)
        env.pop("RWKV_V7_ON", None)
        rc = subprocess.call([sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--family", fam], env=env)
        if rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()
