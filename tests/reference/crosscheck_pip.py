#!/usr/bin/python3
"""Cross-checks rwkv_ref.py against ChatRWKV's real `rwkv` pip package (run by hand, not in CI).

    RWKV_JIT_ON=1 RWKV_CUDA_ON=0 /usr/bin/python3 tests/reference/crosscheck_pip.py \
        --pkg DIR [--model FILE.pth ...] [--strategy "cpu fp32" ...] [--tokens 1,2,3]

--exact-bf16-layernorm (with RWKV_JIT_ON=0) swaps torch's bf16 LayerNorm for fp32-then-round.
DIR is a folder holding the package as `rwkv/model.py` (e.g. copied out of a ChatRWKV checkout
into /tmp; never into this repo). For each model and strategy it runs the package in step mode
and in sequence mode (chunks of 5, full_output) and the reference, and prints max |Δlogit| and
max |Δstate|. With --isolate-fold it also reruns the reference with the package's own folded
embedding, which separates the emb+ln0 fold (torch-version dependent for bf16 files) from the
rest of the forward pass. Without --model it uses every fixture in fixtures.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "models")
sys.path.insert(0, HERE)
import rwkv_ref  # noqa: E402


def pkg_state_flat(state, L):
    parts = []
    for i in range(L):
        for j in range(5):
            parts.append(state[i * 5 + j].float().numpy().ravel())
    return np.concatenate(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pkg", required=True)
    ap.add_argument("--model", action="append")
    ap.add_argument("--strategy", action="append")
    ap.add_argument("--tokens")
    ap.add_argument("--chunk", type=int, default=5)
    ap.add_argument("--isolate-fold", action="store_true")
    ap.add_argument("--exact-bf16-layernorm", action="store_true",
                    help="make the package's bf16 LayerNorm compute in fp32 and round once "
                         "(what rwkv_ref models; torch 1.13's own bf16 kernel is less precise). "
                         "Needs RWKV_JIT_ON=0.")
    args = ap.parse_args()
    os.environ.setdefault("RWKV_CUDA_ON", "0")
    sys.path.insert(0, args.pkg)
    import torch
    from rwkv.model import RWKV  # the real package

    torch.set_num_threads(1)
    if args.exact_bf16_layernorm:
        import torch.nn.functional as F
        orig_ln = F.layer_norm

        def ln(x, shape, weight=None, bias=None, eps=1e-5):
            if x.dtype == torch.bfloat16:
                return orig_ln(x.float(), shape, weight.float(), bias.float(), eps).to(torch.bfloat16)
            return orig_ln(x, shape, weight, bias, eps)
        F.layer_norm = ln
    strategies = args.strategy or ["cpu fp32", "cpu bf16", "cpu fp32i8"]
    if args.model:
        models = [(m, None) for m in args.model]
    else:
        man = json.load(open(os.path.join(FIX, "fixtures.json")))
        models = [(os.path.join(FIX, f["files"][0]["file"]), f["tokens"]) for f in man["fixtures"]]
    for path, toks in models:
        tensors = rwkv_ref.load_checkpoint(path)
        V = tensors["emb.weight"][0].shape[0]
        if args.tokens:
            toks = [int(t) for t in args.tokens.split(",")]
        if toks is None:
            toks = [int(t) for t in np.random.RandomState(0).randint(0, V, size=16)]
        for s in strategies:
            with open(os.devnull, "w") as dn:
                old = sys.stdout
                sys.stdout = dn
                try:
                    pm = RWKV(path[:-4] if path.endswith(".pth") else path, s)
                finally:
                    sys.stdout = old
            L = pm.args.n_layer
            # package, step mode
            st = None
            p_step = []
            for t in toks:
                lg, st = pm.forward([t], st)
                p_step.append(lg.float().numpy())
            p_step = np.stack(p_step)
            p_state = pkg_state_flat(st, L)
            # package, sequence mode
            st = None
            p_seq = []
            for b in range(0, len(toks), args.chunk):
                part = toks[b:b + args.chunk]
                lg, st = pm.forward(part, st, full_output=True)
                p_seq.append(lg.float().numpy().reshape(len(part), -1))
            p_seq = np.concatenate(p_seq)
            ref = rwkv_ref.RWKV4(tensors, s)
            r_step, r_st = rwkv_ref.run_step(ref, toks)
            r_state = ref.serialize_state(r_st)
            fin = np.isfinite(r_state) & np.isfinite(p_state)
            line = (f"{os.path.basename(path):28s} {s:11s} step {np.abs(p_step - r_step).max():.3e} "
                    f"(mean {np.abs(p_step - r_step).mean():.1e})  "
                    f"seq {np.abs(p_seq - r_step).max():.3e}  state {np.abs(p_state - r_state)[fin].max():.3e}  "
                    f"pkg step-vs-seq {np.abs(p_step - p_seq).max():.3e}  max|logit| {np.abs(r_step).max():.2f}")
            if args.isolate_fold:
                emb = pm.w["emb.weight"].float().numpy()
                ref2 = rwkv_ref.RWKV4(tensors, s, emb_override=emb)
                r2, _ = rwkv_ref.run_step(ref2, toks)
                line += (f"  | pkg emb: step {np.abs(p_step - r2).max():.3e}"
                         f" fold Δ {np.abs(emb - ref.emb).max():.2e} ({int((emb != ref.emb).sum())} elems)")
            print(line, flush=True)


if __name__ == "__main__":
    main()
