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
from gguf_numpy import Decoder, block_case, block_parts, bytes_to_unicode, field, tensor_case, top

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
MODEL = Path(os.environ.get("HEARTH_MODELS_DIR", ROOT / ".models")) / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The capital of France is", "Hello, world! 1234 café 日本語 🙂 <|im_end|>"]
QUESTION = "What is the capital of France?"
GREEDY_TOKENS = 20
TOP_K = 10


# --- tokenizer -------------------------------------------------------------------------------

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


# --- dequantisation --------------------------------------------------------------------------

def synthetic_blocks(rng):
    """Two blocks (one for the k-quants) of each type, with finite half-precision scales."""
    f16, rand, scale = block_parts(rng)
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
        cases.append(block_case(qtype, raw))
    tensors = [tensor_case(t) for t in reader.tensors
               if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight")]
    return cases, tensors


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL
    reader = gguf.GGUFReader(str(path))
    cases, tensors = dequant_cases(reader)
    (FIXTURES / "dequant_reference.json").write_text(json.dumps({"blocks": cases, "tensors": tensors}) + "\n")

    tok = Bpe(reader)
    model = Decoder(reader, neox_rope=False)
    template = jinja2.Template(field(reader, "tokenizer.chat_template"))
    chat = template.render(messages=[{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    prompts = []
    for text in PROMPTS + [chat]:
        ids = tok.encode(text)
        logits = model.forward(np.array(ids), {"len": 0})
        prompts.append({"text": text, "token_ids": ids, "top_logits": top(logits, TOP_K)})
        print(f"{len(ids)} tokens, argmax {top(logits, TOP_K)[0]}: {text!r}")

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
