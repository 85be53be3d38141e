#!/usr/bin/python3
"""Reference of ChatRWKV's sampling, chat and benchmark procedures, for Corvid's tests.

Written from rwkv-reference.md §6-§8 (the behaviour of rwkv.utils.PIPELINE,
v2/chat.py and v2/benchmark_more.py), in numpy, independently of Corvid's C++.
The model forward pass is tests/reference/rwkv_ref.py's.

Subcommands (each writes the expected-output files the C++ tests read; CI has
no numpy, so the outputs are committed under tests/chat/data/):

  sampler-cases OUT.json       sample_logits with an injected uniform draw
  chat MODEL VOCAB PROMPT SCRIPT OUT.json
                               a greedy chat session (see run_chat)
  questions MODEL VOCAB QUESTIONS OUT.json
                               benchmark_more.py on a question file

Tokenizer: the RWKV World format (ids, Python literals, byte lengths), encoded
by greedy longest-prefix match over UTF-8 bytes, decoded strictly (one U+FFFD
for the whole call on invalid UTF-8), as rwkv_tokenizer.TRIE_TOKENIZER does.
"""
import json
import sys

import numpy as np


# ---------------------------------------------------------------------------
# §6.1 sample_logits (CPU path), with the uniform draw `u` given so a C++
# implementation can be compared draw for draw.

def softmax32(logits):
    x = np.asarray(logits, dtype=np.float32)
    m = np.max(x)
    e = np.exp(x - m).astype(np.float32)
    return (e / np.sum(e, dtype=np.float64)).astype(np.float32)


def sample_logits(logits, temperature=1.0, top_p=0.85, top_k=0, u=0.5, top_p_one_is_off=True):
    if temperature == 0:
        temperature = 1.0
        top_p = 0
    probs = softmax32(logits)
    # Corvid's documented decision: top_p >= 1 means no truncation (the
    # reference's fp32 cumsum may never reach 1.0 and then turns greedy).
    if not (top_p_one_is_off and top_p >= 1):
        # Stable sort, descending probability, lower id first among equals.
        order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
        sorted_probs = probs[order]
        cum = np.cumsum(sorted_probs, dtype=np.float32)
        hit = np.nonzero(cum >= np.float32(top_p))[0]
        cutoff = sorted_probs[hit[0] if len(hit) else 0]
        keep_p = probs >= cutoff
    else:
        order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
        keep_p = np.ones(len(probs), dtype=bool)
    keep = keep_p.copy()
    if 0 < top_k < len(probs):
        # "everything outside the top_k by sort order": among the survivors,
        # the first top_k in sort order.
        kept_sorted = [i for i in order if keep_p[i]][:top_k]
        keep[:] = False
        keep[kept_sorted] = True
    p = np.where(keep, probs, np.float32(0)).astype(np.float32)
    if temperature != 1.0:
        p = (p ** np.float32(1.0 / temperature)).astype(np.float32)
    # numpy.random.choice: cdf over ids in ascending order, searchsorted right.
    cdf = np.cumsum(p.astype(np.float64))
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, u, side='right'))


def sampler_cases(out_path):
    rng = np.random.RandomState(20240607)
    cases = []
    settings = [
        (1.0, 0.85, 0), (1.2, 0.5, 0), (0.7, 0.3, 0), (1.0, 0.0, 0), (0.0, 0.9, 0),
        (1.0, 1.0, 0), (1.5, 1.0, 5), (1.0, 0.9, 3), (2.0, 0.95, 10), (0.5, 0.2, 0),
    ]
    for n in (8, 40, 300):
        for (t, tp, tk) in settings:
            for scale in (1.0, 4.0):
                logits = (rng.randn(n) * scale).astype(np.float32)
                if n >= 40:
                    logits[rng.randint(0, n, 3)] = -np.inf  # banned ids
                for _ in range(3):
                    u = float(rng.random_sample())
                    tok = sample_logits(logits, t, tp, tk, u)
                    cases.append({
                        'logits': [float(x) if np.isfinite(x) else None for x in logits],
                        'temperature': t, 'top_p': tp, 'top_k': tk, 'u': u, 'expected': tok,
                    })
    with open(out_path, 'w') as f:
        json.dump({'generator': 'tests/reference/chat_ref.py sampler-cases', 'cases': cases}, f)
        f.write('\n')


def main(argv):
    if len(argv) >= 2 and argv[1] == 'sampler-cases':
        sampler_cases(argv[2])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
