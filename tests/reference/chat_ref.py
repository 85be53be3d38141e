#!/usr/bin/python3
"""Reference of ChatRWKV's sampling, chat and benchmark procedures, for Corvid's tests.

Written from rwkv-reference.md §6-§8 (the behaviour of rwkv.utils.PIPELINE,
v2/chat.py and v2/benchmark_more.py), in numpy, independently of Corvid's C++.
The model forward pass is tests/reference/rwkv_ref.py's.

Subcommands (each writes the expected-output files the C++ tests read; CI has
no numpy, so the outputs are committed under tests/chat/data/):

  sampler-cases OUT.json       sample_logits with an injected uniform draw
  make-vocab OUT.txt N         a World-format vocabulary: 256 byte tokens + N pieces
  tweak-fixture IN OUT         a safetensors fixture whose greedy replies end (see tweak_fixture)
  chat MODEL VOCAB PROMPT SCRIPT OUT.json
                               a greedy chat session (see run_chat)
  questions MODEL VOCAB QUESTIONS OUT.json
                               benchmark_more.py on a question file
  lambada MODEL VOCAB JSONL LIMIT OUT.json
                               benchmark.py's LAMBADA perplexity/accuracy on the first LIMIT items

Tokenizer: the RWKV World format (ids, Python literals, byte lengths), encoded
by greedy longest-prefix match over UTF-8 bytes, decoded strictly (one U+FFFD
for the whole call on invalid UTF-8), as rwkv_tokenizer.TRIE_TOKENIZER does.
"""
import json
import struct
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


# ---------------------------------------------------------------------------
# World-format tokenizer (rwkv-reference §9.3).

class WorldTokenizer:
    def __init__(self, path):
        import ast
        self.idx2token = {}
        with open(path, 'r', encoding='utf-8') as f:
            for line in f:
                idx = int(line[:line.index(' ')])
                x = ast.literal_eval(line[line.index(' '):line.rindex(' ')])
                x = x.encode('utf-8') if isinstance(x, str) else x
                assert len(x) == int(line[line.rindex(' '):])
                self.idx2token[idx] = x
        self.token2idx = {v: k for k, v in self.idx2token.items()}
        self.max_len = max(len(v) for v in self.idx2token.values())

    def encode(self, text):
        src = text.encode('utf-8')
        out, i = [], 0
        while i < len(src):
            for n in range(min(self.max_len, len(src) - i), 0, -1):
                t = self.token2idx.get(src[i:i + n])
                if t is not None:
                    out.append(t)
                    i += n
                    break
            else:
                raise ValueError('byte without a token')
        return out

    def token_bytes(self, t):
        # Corvid's decision: id 0 (end of text) decodes to nothing.
        return self.idx2token.get(t, b'')

    def decode_bytes(self, tokens):
        return b''.join(self.token_bytes(t) for t in tokens)

    def decode(self, tokens):
        try:
            return self.decode_bytes(tokens).decode('utf-8')
        except UnicodeDecodeError:
            return '\ufffd'


def make_vocab(out_path, pieces_count):
    """A World-format vocabulary: ids 1-256 = bytes, then `pieces_count` pieces."""
    pieces = ['\n\n', '  ', ' the', ' a', ' to', ' and', ' of', ' is', ' you', ' I', ' it', ' that',
              ' in', ' for', ' what', ' how', ' are', ' do', ' can', ' me', ' my', ' your', ' be',
              ' have', ' was', ' not', ' with', ' this', ' on', ' at', 'ing', 'ed', 'er', 'ly', 's ',
              '. ', ', ', '? ', '! ', ': ', 'Bob', 'Alice', 'User', 'Bot', ' Q', ' A', 'Q:', 'A:',
              ' hello', ' name', ' story', ' time', ' once', ' upon', ' poem', ' write', ' who',
              ' good', ' day', ' tea', ' cake', '\uff0c', ' \u00e9t\u00e9', '\u4f60\u597d']
    assert len(pieces) >= pieces_count
    with open(out_path, 'w', encoding='utf-8') as f:
        for b in range(256):
            lit = repr(bytes([b])) if b >= 0x80 else repr(chr(b))
            f.write('%d %s 1\n' % (b + 1, lit))
        for k, p in enumerate(pieces[:pieces_count]):
            f.write('%d %r %d\n' % (257 + k, p, len(p.encode('utf-8'))))


# ---------------------------------------------------------------------------
# The chat procedure of v2/chat.py (rwkv-reference §7), greedy-capable.
# Corvid's documented decisions are applied where the reference has quirks:
#   top_p >= 1 = off; id 0 decodes to nothing; +prompt starts from an empty
#   state and becomes chat_init; -temp=/-top_p= remove the text typed;
#   AVOID_REPEAT marks that are not one token are skipped; commands match
#   case-insensitively.

def load_prompt(path):
    variables = {}
    with open(path, 'rb') as file:
        exec(compile(file.read(), path, 'exec'), variables)  # trusted test data, as chat.py does
    user, bot, interface, init_prompt = variables['user'], variables['bot'], variables['interface'], variables['init_prompt']
    init_prompt = init_prompt.strip().split('\n')
    for c in range(len(init_prompt)):
        init_prompt[c] = init_prompt[c].strip().strip('\u3000').strip('\r')
    init_prompt = '\n' + ('\n'.join(init_prompt)).strip() + '\n\n'
    return user, bot, interface, init_prompt


NEVER = -999999999
ALPACA = ('\nBelow is an instruction that describes a task. Write a response that appropriately '
          'completes the request.\n\n# Instruction:\n%s\n\n# Response:\n')


def f32_add(out, i, v):
    out[i] = np.float32(out[i]) + np.float32(v)


class Chat:
    CHAT_LEN_SHORT, CHAT_LEN_LONG, FREE_GEN_LEN, CHUNK_LEN = 40, 150, 256, 256

    def __init__(self, model, tok, prompt_file, temp, top_p, presence=0.4, frequency=0.4, decay=0.996):
        self.model, self.tok = model, tok
        self.GEN_TEMP, self.GEN_TOP_P = temp, top_p
        self.presence, self.frequency, self.decay = presence, frequency, decay
        self.END_OF_TEXT = 0
        self.END_OF_LINE = tok.encode('\n')[0]
        self.avoid = []
        for ch in '\uff0c\uff1a\uff1f\uff01':
            dd = tok.encode(ch)
            if len(dd) == 1:
                self.avoid += dd
        self.model_tokens, self.model_state = [], None
        self.all_state = {}
        self.printed = []
        self.margins = []
        self.setup_prompt(prompt_file)

    def p(self, s):
        self.printed.append(s)

    def run_rnn(self, tokens, newline_adj=0):
        tokens = [int(x) for x in tokens]
        self.model_tokens += tokens
        if self.model_state is None:
            self.model_state = self.model.new_state()
        while len(tokens) > 0:
            out, self.model_state = self.model.forward(tokens[:self.CHUNK_LEN], self.model_state)
            tokens = tokens[self.CHUNK_LEN:]
        out = np.array(out, dtype=np.float32)
        f32_add(out, self.END_OF_LINE, newline_adj)
        if self.model_tokens[-1] in self.avoid:
            out[self.model_tokens[-1]] = NEVER
        self.out = out
        return out

    def save(self, name, out):
        self.all_state[name] = dict(out=None if out is None else out.copy(),
                                    rnn=None if self.model_state is None else self.model.copy_state(self.model_state),
                                    token=list(self.model_tokens))

    def load(self, name):
        s = self.all_state[name]
        self.model_state = None if s['rnn'] is None else self.model.copy_state(s['rnn'])
        self.model_tokens = list(s['token'])
        return None if s['out'] is None else s['out'].copy()

    def setup_prompt(self, path):
        self.user, self.bot, self.interface, init_prompt = load_prompt(path)
        self.model_tokens, self.model_state = [], None
        out = self.run_rnn(self.tok.encode(init_prompt))  # World vocabulary: no fix_tokens
        self.save('chat_init', out)
        self.save('chat', out)

    def penalize_and_sample(self, out, occurrence, temp, top_p):
        for n in occurrence:
            pen = np.float32(self.presence + occurrence[n] * self.frequency)
            out[n] = np.float32(out[n]) - pen
        finite = np.sort(out[np.isfinite(out)])
        self.margins.append(float(finite[-1] - finite[-2]) if len(finite) > 1 else float('inf'))
        return sample_logits(out, temperature=temp, top_p=top_p, u=0.5)

    def record(self, occurrence, token):
        for k in occurrence:
            occurrence[k] *= self.decay
        occurrence[token] = occurrence.get(token, 0) + 1

    def on_message(self, message):
        msg = message.replace('\\n', '\n').strip()
        x_temp, x_top_p = self.GEN_TEMP, self.GEN_TOP_P
        for key in ('-temp=', '-top_p='):
            if key in msg:
                k = msg.index(key)
                text = msg[k + len(key):].split(' ')[0]
                v = float(text)
                msg = msg[:k] + msg[k + len(key) + len(text):]
                if key == '-temp=':
                    x_temp = v
                else:
                    x_top_p = v
        x_temp = min(max(x_temp, 0.2), 5)
        x_top_p = max(x_top_p, 0)
        msg = msg.strip()
        low = msg.lower()
        self.gen_start = None
        if low == '+reset':
            self.load('chat_init')
            self.save('chat', self.all_state['chat_init']['out'])
            self.p(f'{self.bot}{self.interface} Chat reset.\n\n')
            return
        if low[:8] == '+prompt ':
            self.setup_prompt(msg[8:].strip())
            return
        if low[:5] == '+gen ' or low[:3] == '+i ' or low[:4] == '+qa ' or low[:4] == '+qq ' or low in ('+++', '++'):
            if low[:5] == '+gen ':
                self.model_state, self.model_tokens = None, []
                out = self.run_rnn(self.tok.encode('\n' + msg[5:].strip()))
                self.save('gen_0', out)
            elif low[:3] == '+i ':
                m = msg[3:].strip().replace('\r\n', '\n').replace('\n\n', '\n')
                self.model_state, self.model_tokens = None, []
                out = self.run_rnn(self.tok.encode(ALPACA % m))
                self.save('gen_0', out)
            elif low[:4] == '+qq ':
                self.model_state, self.model_tokens = None, []
                out = self.run_rnn(self.tok.encode('\nQ: ' + msg[4:].strip() + '\nA:'))
                self.save('gen_0', out)
            elif low[:4] == '+qa ':
                out = self.load('chat_init')
                new = f"{self.user}{self.interface} {msg[4:].strip()}\n\n{self.bot}{self.interface}"
                out = self.run_rnn(self.tok.encode(new))
                self.save('gen_0', out)
            elif low == '+++':
                if 'gen_1' not in self.all_state:
                    return
                out = self.load('gen_1')
                self.save('gen_0', out)
            else:
                if 'gen_0' not in self.all_state:
                    return
                out = self.load('gen_0')
            begin = len(self.model_tokens)
            self.gen_start = begin
            out_last = begin
            occurrence = {}
            for i in range(self.FREE_GEN_LEN + 100):
                token = self.penalize_and_sample(out, occurrence, x_temp, x_top_p)
                if token == self.END_OF_TEXT:
                    break
                self.record(occurrence, token)
                out = self.run_rnn([token], newline_adj=-2 if low[:4] == '+qa ' else 0)
                xxx = self.tok.decode(self.model_tokens[out_last:])
                if '\ufffd' not in xxx:
                    self.p(xxx)
                    out_last = begin + i + 1
                    if i >= self.FREE_GEN_LEN:
                        break
            self.p('\n\n')
            self.save('gen_1', out)
            return
        if low == '+':
            if 'chat_pre' not in self.all_state:
                return
            out = self.load('chat_pre')
        else:
            out = self.load('chat')
            m = msg.strip().replace('\r\n', '\n').replace('\n\n', '\n')
            new = f"{self.user}{self.interface} {m}\n\n{self.bot}{self.interface}"
            out = self.run_rnn(self.tok.encode(new), newline_adj=NEVER)
            self.save('chat_pre', out)
        begin = len(self.model_tokens)
        self.gen_start = begin
        out_last = begin
        self.p(f'{self.bot}{self.interface}')
        occurrence = {}
        for i in range(999):
            if i <= 0:
                newline_adj = NEVER
            elif i <= self.CHAT_LEN_SHORT:
                newline_adj = (i - self.CHAT_LEN_SHORT) / 10
            elif i <= self.CHAT_LEN_LONG:
                newline_adj = 0
            else:
                newline_adj = min(3, (i - self.CHAT_LEN_LONG) * 0.25)
            token = self.penalize_and_sample(out, occurrence, x_temp, x_top_p)
            self.record(occurrence, token)
            out = self.run_rnn([token], newline_adj=newline_adj)
            out[self.END_OF_TEXT] = NEVER
            xxx = self.tok.decode(self.model_tokens[out_last:])
            if '\ufffd' not in xxx:
                self.p(xxx)
                out_last = begin + i + 1
            send_msg = self.tok.decode(self.model_tokens[begin:])
            if '\n\n' in send_msg:
                break
        self.save('chat', out)


def run_chat(model_path, vocab_path, prompt_path, script_path, out_path, strategy='cpu fp32', temp=1.0, top_p=0.0):
    import rwkv_ref
    model = rwkv_ref.RWKV4.from_file(model_path, strategy)
    tok = WorldTokenizer(vocab_path)
    chat = Chat(model, tok, prompt_path, temp, top_p)
    result = dict(generator='tests/reference/chat_ref.py chat', strategy=strategy, temperature=temp, top_p=top_p,
                  init_tokens=list(chat.model_tokens),
                  init_state=[float(x) for x in model.serialize_state(chat.model_state)], commands=[])
    with open(script_path, 'r', encoding='utf-8') as f:
        data_dir = __import__('os').path.dirname(__import__('os').path.abspath(script_path))
        lines = [l.rstrip('\n').replace('@DATA@', data_dir) for l in f]
    for line in lines:
        if not line.strip():
            continue
        chat.printed, chat.margins = [], []
        chat.on_message(line)
        result['commands'].append(dict(
            input=line.replace(data_dir, '@DATA@'), tokens_after=list(chat.model_tokens), gen_start=chat.gen_start,
            margins=chat.margins, printed=''.join(chat.printed),
            state_after=[float(x) for x in model.serialize_state(chat.model_state)] if chat.model_state is not None else []))
        print('%-40r %5d tokens, %d generated' % (line[:40], len(chat.model_tokens), len(chat.margins)), file=sys.stderr)
    with open(out_path, 'w') as f:
        json.dump(result, f)
        f.write('\n')


# ---------------------------------------------------------------------------
# benchmark_more.py (rwkv-reference §8) on a question file.

def run_questions(model_path, vocab_path, questions_path, out_path, strategy='cpu fp32', max_tokens=200):
    import rwkv_ref
    model = rwkv_ref.RWKV4.from_file(model_path, strategy)
    tok = WorldTokenizer(vocab_path)
    with open(questions_path, 'r', encoding='utf-8') as f:
        questions = [q.strip() for q in f.read().strip().split('\n')]
    result = dict(generator='tests/reference/chat_ref.py questions', strategy=strategy, questions=[])
    for q in questions:
        printed = f'Q: {q}\nA:'
        out_tokens, out_last, occurrence, margins = [], 0, {}, []
        state = model.new_state()
        ctx = f'Bob: {q}\n\nAlice:'
        for i in range(max_tokens):
            tokens = tok.encode(ctx) if i == 0 else [token]
            out, state = model.forward(tokens, state)
            out = np.array(out, dtype=np.float32)
            for n in occurrence:
                out[n] = np.float32(out[n]) - np.float32(0.2 + occurrence[n] * 0.2)
            finite = np.sort(out[np.isfinite(out)])
            margins.append(float(finite[-1] - finite[-2]))
            token = sample_logits(out, temperature=1.0, top_p=0, u=0.5)
            if token == 0:
                break
            out_tokens += [token]
            occurrence[token] = 1 + occurrence.get(token, 0)
            tmp = tok.decode(out_tokens[out_last:])
            if ('\ufffd' not in tmp) and (not tmp.endswith('\n')):
                printed += tmp
                out_last = i + 1
            if '\n\n' in tmp:
                break
        printed += '\n' + '=' * 50 + '\n'
        result['questions'].append(dict(question=q, tokens=out_tokens, margins=margins, printed=printed))
        print('%-40r %d tokens' % (q[:40], len(out_tokens)), file=sys.stderr)
    with open(out_path, 'w') as f:
        json.dump(result, f)
        f.write('\n')


# ---------------------------------------------------------------------------
# v2/benchmark.py's LAMBADA check (rwkv-reference §8): context padded with "\n",
# the last word (with its space) scored; ppl = exp(-sum logprob / items).

def run_lambada(model_path, vocab_path, jsonl_path, limit, out_path, strategy='cpu fp32'):
    import rwkv_ref
    model = rwkv_ref.RWKV4.from_file(model_path, strategy)
    tok = WorldTokenizer(vocab_path)
    pad = tok.encode('\n')
    items = []
    with open(jsonl_path, 'r', encoding='utf-8') as f:
        for line in f:
            if len(items) >= int(limit):
                break
            text = json.loads(line)['text']
            ctx, word = text.rsplit(' ', 1)
            items.append((ctx, ' ' + word))
    xsum, xacc, rows = 0.0, 0, []
    for ctx, word in items:
        src = pad + tok.encode(ctx)
        dst = tok.encode(word)
        out, _ = model.forward(src + dst, model.new_state(), full_output=True)
        out = np.asarray(out, dtype=np.float64).reshape(len(src) + len(dst), -1)
        logp, correct = 0.0, True
        for i in range(len(dst)):
            row = out[len(src) - 1 + i]
            m = row.max()
            lse = m + np.log(np.exp(row - m).sum())
            logp += float(row[dst[i]] - lse)
            if int(np.argmax(row)) != dst[i]:
                correct = False
        xsum += logp
        xacc += 1 if correct else 0
        rows.append(dict(logprob=logp, correct=correct, src_tokens=len(src), dst_tokens=len(dst)))
    n = len(items)
    result = dict(generator='tests/reference/chat_ref.py lambada', strategy=strategy, items=rows,
                  count=n, ppl=float(np.exp(-xsum / n)), acc=xacc / n * 100)
    with open(out_path, 'w') as f:
        json.dump(result, f)
        f.write('\n')


def tweak_fixture(src, dst):
    """A chat fixture whose replies end: scale the head rows of "\n" (11) and
    "\n\n" (257) by 2.5 and zero those of the bytes 0x80-0xFF (ids 129-256), so
    greedy replies reach "\n\n" and stay valid UTF-8."""
    blob = open(src, 'rb').read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    data = bytearray(blob[8 + n:])
    b, e = header['head.weight']['data_offsets']
    V, C = header['head.weight']['shape']
    w = np.frombuffer(bytes(data[b:e]), dtype='<f4').reshape(V, C).copy()
    for r in (11, 257):
        w[r] *= np.float32(2.5)
    w[129:257] = 0
    data[b:e] = w.astype('<f4').tobytes()
    open(dst, 'wb').write(blob[:8 + n] + bytes(data))


def main(argv):
    sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
    if len(argv) >= 3 and argv[1] == 'sampler-cases':
        sampler_cases(argv[2])
    elif len(argv) >= 4 and argv[1] == 'make-vocab':
        make_vocab(argv[2], int(argv[3]))
    elif len(argv) >= 4 and argv[1] == 'tweak-fixture':
        tweak_fixture(argv[2], argv[3])
    elif len(argv) >= 7 and argv[1] == 'chat':
        run_chat(*argv[2:7])
    elif len(argv) >= 7 and argv[1] == 'lambada':
        run_lambada(*argv[2:7])
    elif len(argv) >= 6 and argv[1] == 'questions':
        run_questions(*argv[2:6])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
