#!/usr/bin/python3
"""Writes chatrwkv_converted_tiny.pth: a file shaped like ChatRWKV's
convert_model.py output (rwkv-reference §5) for the tiny fixture: matrices
transposed (saved as non-contiguous views), ln0 folded away, time_decay as
-exp(d), and the three non-tensor keys _strategy, _rescale_layer, _version.
Only its recognition matters (corvid-convert must refuse it), so the
transforms are the shape-level ones, not a full re-implementation.

    /usr/bin/python3 tests/convert/data/make_chatrwkv_converted.py
"""
import os
import torch

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "..", "fixtures", "models", "rwkv4_tiny_fp32.pth")
w = torch.load(src, map_location="cpu")
out = {}
for k, v in w.items():
    if k.startswith("blocks.0.ln0."):
        continue
    if k == "emb.weight":
        v = torch.nn.functional.layer_norm(v, (v.shape[1],), weight=w["blocks.0.ln0.weight"], bias=w["blocks.0.ln0.bias"])
    if ".time_" in k:
        v = v.squeeze()
    if k.endswith("time_decay"):
        v = -torch.exp(v.float())
    if any(s in k for s in ("key.weight", "value.weight", "receptance.weight", "output.weight", "head.weight")):
        v = v.t()
    out[k] = v
out["_strategy"] = "cpu fp32"
out["_rescale_layer"] = 0
out["_version"] = "0.7"
torch.save(out, os.path.join(here, "chatrwkv_converted_tiny.pth"))
