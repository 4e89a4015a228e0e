#!/usr/bin/env python3
"""Reference fixtures for the GGUF reader, tokenizer and Llama decoder of hearth-models.

A plain numpy Llama forward pass (float64) on SmolLM2-135M-Instruct's weights as the `gguf`
package dequantises them, with its own byte-level BPE tokenizer (GPT-2 split, each digit
apart, as llama.cpp's `smollm` pre-tokenizer) and llama.cpp's interleaved RoPE on the GGUF row
order (the Rust model un-permutes Q/K and uses rotate-half RoPE instead: agreement checks the
un-permutation). Also dequantises synthetic blocks of every type the Rust reader supports with
`gguf.quants.dequantize`.

    .venv/bin/pip install -r models/scripts/requirements.txt -r models/scripts/requirements-llama.txt
    .venv/bin/python models/scripts/generate_llama_reference.py [path/to/model.gguf]

Writes models/tests/fixtures/llama_reference.json and dequant_reference.json.
"""

import json
import os
import sys
from pathlib import Path

import gguf
import jinja2
import numpy as np
import regex

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
MODEL = Path(os.environ.get("HEARTH_MODELS_DIR", ROOT / ".models")) / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The capital of France is", "Hello, world! 1234 café 日本語 🙂 <|im_end|>"]
QUESTION = "What is the capital of France?"
GREEDY_TOKENS = 20
TOP_K = 10


def field(reader, key):
    return reader.fields[key].contents()


# --- tokenizer -------------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


class Bpe:
    def __init__(self, reader):
        tokens = field(reader, "tokenizer.ggml.tokens")
        types = field(reader, "tokenizer.ggml.token_type")
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(field(reader, "tokenizer.ggml.merges"))}
        self.specials = [t for t, ty in zip(tokens, types) if ty == 3]
        self.byte_map = bytes_to_unicode()

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 60:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        special = regex.compile("(" + "|".join(regex.escape(s) for s in self.specials) + ")")
        ids = []
        for chunk in special.split(text):
            if chunk in self.specials:
                ids.append(self.vocab[chunk])
                continue
            for piece in regex.split(r"(\p{N})", chunk):  # each digit on its own
                for word in GPT2_SPLIT.findall(piece):
                    ids += self.bpe("".join(self.byte_map[b] for b in word.encode("utf-8")))
        return ids


# --- model -----------------------------------------------------------------------------------

class Llama:
    def __init__(self, reader):
        arch = "llama"
        get = lambda k: field(reader, f"{arch}.{k}")
        self.layers_n = int(get("block_count"))
        self.heads = int(get("attention.head_count"))
        self.kv_heads = int(get("attention.head_count_kv"))
        self.hidden = int(get("embedding_length"))
        self.head_dim = self.hidden // self.heads
        self.theta = float(get("rope.freq_base"))
        self.eps = float(get("attention.layer_norm_rms_epsilon"))
        self.w = {}
        for t in reader.tensors:
            shape = [int(d) for d in reversed(t.shape)]  # ggml lists dims innermost first
            values = gguf.quants.dequantize(t.data, t.tensor_type)
            self.w[t.name] = values.reshape(shape).astype(np.float64)
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        # llama.cpp "normal" RoPE on GGUF rows: rotates adjacent pairs (x[2i], x[2i+1]).
        d = self.head_dim
        inv = self.theta ** (-np.arange(0, d, 2) / d)
        ang = positions[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids, cache):
        start = cache["len"]
        t = len(ids)
        pos = np.arange(start, start + t, dtype=np.float64)
        x = self.w["token_embd.weight"][ids]
        hd, group = self.head_dim, self.heads // self.kv_heads
        for i in range(self.layers_n):
            p = lambda n: self.w[f"blk.{i}.{n}.weight"]
            h = self.rms(x, p("attn_norm"))
            q = self.rope((h @ p("attn_q").T).reshape(t, self.heads, hd), pos)
            k = self.rope((h @ p("attn_k").T).reshape(t, self.kv_heads, hd), pos)
            v = (h @ p("attn_v").T).reshape(t, self.kv_heads, hd)
            if i in cache:
                k = np.concatenate([cache[i][0], k])
                v = np.concatenate([cache[i][1], v])
            cache[i] = (k, v)
            kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, kk) / np.sqrt(hd)
            mask = np.arange(k.shape[0])[None, :] > (start + np.arange(t))[:, None]
            scores = np.where(mask[None], -np.inf, scores)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            ctx = np.einsum("hqk,khd->qhd", probs, vv).reshape(t, -1)
            x = x + ctx @ p("attn_output").T
            h = self.rms(x, p("ffn_norm"))
            gate, up = h @ p("ffn_gate").T, h @ p("ffn_up").T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ p("ffn_down").T
        cache["len"] = start + t
        return self.rms(x[-1], self.w["output_norm.weight"]) @ self.lm_head.T


def top(logits):
    order = np.argsort(-logits, kind="stable")[:TOP_K]
    return [[int(i), float(logits[i])] for i in order]


# --- dequantisation --------------------------------------------------------------------------

def synthetic_blocks(rng):
    """Two blocks (one for the k-quants) of each type, with finite half-precision scales."""
    f16 = lambda *v: np.array(v, dtype=np.float16).tobytes()
    rand = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    scale = lambda: float(rng.uniform(0.001, 0.05)) * (1 if rng.random() < 0.5 else -1)
    T = gguf.GGMLQuantizationType
    return {
        T.F16: rng.normal(size=8).astype(np.float16).tobytes(),
        T.BF16: (rng.normal(size=8).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes(),
        T.Q8_0: b"".join(f16(scale()) + rand(32) for _ in range(2)),
        T.Q4_0: b"".join(f16(scale()) + rand(16) for _ in range(2)),
        T.Q4_1: b"".join(f16(scale(), scale()) + rand(16) for _ in range(2)),
        T.Q4_K: f16(scale(), abs(scale())) + rand(12) + rand(128),
        T.Q6_K: rand(128) + rand(64) + rand(16) + f16(scale()),
    }


def dequant_cases(reader):
    rng = np.random.default_rng(0)
    cases = []
    for qtype, raw in synthetic_blocks(rng).items():
        values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype)
        cases.append({"type": qtype.name, "type_id": int(qtype), "hex": raw.hex(), "values": [float(v) for v in values]})
    tensors = []
    for t in reader.tensors:
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"):
            flat = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)
            tensors.append({"name": t.name, "type": t.tensor_type.name, "first": [float(v) for v in flat[:64]],
                            "sum": float(flat.astype(np.float64).sum())})
    return cases, tensors


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL
    reader = gguf.GGUFReader(str(path))
    cases, tensors = dequant_cases(reader)
    (FIXTURES / "dequant_reference.json").write_text(json.dumps({"blocks": cases, "tensors": tensors}) + "\n")

    tok = Bpe(reader)
    model = Llama(reader)
    template = jinja2.Template(field(reader, "tokenizer.chat_template"))
    chat = template.render(messages=[{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    prompts = []
    for text in PROMPTS + [chat]:
        ids = tok.encode(text)
        logits = model.forward(np.array(ids), {"len": 0})
        prompts.append({"text": text, "token_ids": ids, "top_logits": top(logits)})
        print(f"{len(ids)} tokens, argmax {top(logits)[0]}: {text!r}")

    eos = int(field(reader, "tokenizer.ggml.eos_token_id"))
    cache = {"len": 0}
    logits = model.forward(np.array(prompts[-1]["token_ids"]), cache)
    greedy = []
    for _ in range(GREEDY_TOKENS):
        nxt = int(np.argmax(logits))
        greedy.append(nxt)
        if nxt == eos:
            break
        logits = model.forward(np.array([nxt]), cache)
    inv = {v: k for k, v in tok.byte_map.items()}
    tokens = field(reader, "tokenizer.ggml.tokens")
    text = b"".join(bytes(inv[c] for c in tokens[i]) for i in greedy if i != eos).decode("utf-8", "replace")
    print(f"greedy: {text!r}")
    assert "Paris" in text, text
    fixture = {"model": path.name, "prompts": prompts, "chat": {"question": QUESTION, "prompt": chat,
               "greedy_ids": greedy, "greedy_text": text}}
    (FIXTURES / "llama_reference.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
