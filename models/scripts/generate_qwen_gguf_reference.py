#!/usr/bin/env python3
"""Reference fixture for Qwen GGUF files in hearth-models: Qwen2.5-Coder-0.5B-Instruct
(Q4_K_M, `general.architecture = qwen2`) as `scripts/fetch-models` installs it.

* Weights: every tensor as the `gguf` package dequantises it (`gguf.quants.dequantize`), kept in
  GGUF row order. A plain numpy decoder in float64 runs the whole model the way llama.cpp runs
  `qwen2`: RMSNorm, Q/K/V with biases, NeoX RoPE (pairs `i` and `i + d/2`, no row permutation
  to undo), grouped-query attention, SwiGLU, the untied `output.weight`. (Per-head q/k RMSNorm
  for `qwen3` files is there too, unused by this model.)
* Tokenizer: byte-level BPE from `tokenizer.ggml.tokens`/`merges`, built twice and required
  to agree: by hand (NFC, the Qwen2 split regex with the `regex` module, GPT-2's byte table,
  merges by rank, control and user-defined tokens cut out first) and with Hugging Face
  `tokenizers` configured as Qwen's own tokenizer.json is (NFC, an isolating `Split` on the same
  regex, `ByteLevel` without its regex, `<tool_call>` as a non-special added token).
* Chat: the GGUF's own template rendered with jinja2 as transformers' `apply_chat_template`
  does (trim_blocks, lstrip_blocks), greedy decoding until `<|im_end|>`; the script refuses to
  write a fixture whose answer lacks "Paris".
* Dequantisation: synthetic blocks of Q5_0, Q5_1, Q2_K, Q3_K and Q5_K through
  `gguf.quants.dequantize`, and the first values and sums of real tensors of each type in the
  file.

    .venv/bin/pip install -r models/scripts/requirements-qwen.txt
    .venv/bin/python models/scripts/generate_qwen_gguf_reference.py [path/to/model.gguf]

About two minutes and 6 GB of memory. Writes models/tests/fixtures/qwen_gguf_reference.json.
"""

import json
import os
import sys
import unicodedata
from pathlib import Path

import gguf
import jinja2
import numpy as np
import regex
from gguf_numpy import Decoder, block_case, block_parts, bytes_to_unicode, field, tensor_case, top
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
MODEL = Path(os.environ.get("HEARTH_MODELS_DIR", ROOT / ".models")) / "qwen2.5-coder-0.5b-instruct" / "model.gguf"
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TOKENIZER_TEXTS = [
    "Hello world, 123 <tool_call>",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
    "I'M here, HE'S there\r\n\n  indented\tcafé 日本語 🙂 1234567 x+=1;;\n",
    # Decomposed é (e + U+0301): NFC composes it, as Qwen's tokenizer.json does.
    "cafe\u0301",
]
PROMPTS = ["The capital of France is", "def fibonacci(n):"]
QUESTION = "What is the capital of France?"
GREEDY_TOKENS = 16
TOP_K = 10
FIRST = 16
CONTROL, USER_DEFINED = 3, 4


# --- tokenizer -------------------------------------------------------------------------------

class HandBpe:
    """The Qwen2 tokenizer written out: added tokens first, then NFC, split, bytes, merges."""

    def __init__(self, tokens, types, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.added = {t for t, ty in zip(tokens, types) if ty in (CONTROL, USER_DEFINED)}
        # Longest first, so no added token is cut by a shorter one it starts with.
        self.added_re = regex.compile("(" + "|".join(regex.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
        self.split = regex.compile(QWEN2_SPLIT)
        self.byte_map = bytes_to_unicode()

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            rank, i = min((self.ranks.get(pair, 1 << 60), i) for i, pair in enumerate(zip(parts, parts[1:])))
            if rank == 1 << 60:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        for chunk in self.added_re.split(text):
            if chunk in self.vocab and chunk in self.added:
                ids.append(self.vocab[chunk])
                continue
            for word in self.split.findall(unicodedata.normalize("NFC", chunk)):
                ids += self.bpe("".join(self.byte_map[b] for b in word.encode("utf-8")))
        return ids


def hf_tokenizer(tokens, types, merges):
    """Hugging Face tokenizers set up as Qwen2's tokenizer.json, from the GGUF vocabulary."""
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab, [tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == USER_DEFINED])
    return tok


# --- dequantisation --------------------------------------------------------------------------

def synthetic_blocks(rng):
    """Two blocks (one for the k-quants) of each type added for Qwen, finite half scales."""
    f16, rand, scale = block_parts(rng)
    T = gguf.GGMLQuantizationType
    return {
        T.Q5_0: b"".join(f16(scale()) + rand(4) + rand(16) for _ in range(2)),
        T.Q5_1: b"".join(f16(scale(), scale()) + rand(4) + rand(16) for _ in range(2)),
        T.Q2_K: rand(16) + rand(64) + f16(scale(), abs(scale())),
        T.Q3_K: rand(32) + rand(64) + rand(12) + f16(scale()),
        T.Q5_K: f16(scale(), abs(scale())) + rand(12) + rand(32) + rand(128),
    }


def dequant_cases(reader):
    rng = np.random.default_rng(14)
    blocks = []
    for qtype, raw in synthetic_blocks(rng).items():
        blocks.append(block_case(qtype, raw))
    tensors, seen = [], set()
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in seen or t.name.endswith("norm.weight"):
            continue
        seen.add(kind)
        tensors.append(tensor_case(t))
    return blocks, tensors


def render_chat(template, messages):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL
    reader = gguf.GGUFReader(str(path))
    blocks, tensors = dequant_cases(reader)

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    assert field(reader, "tokenizer.ggml.pre") == "qwen2"
    hand, hf = HandBpe(tokens, types, merges), hf_tokenizer(tokens, types, merges)

    def encode(text):
        a, b = hand.encode(text), hf.encode(text, add_special_tokens=False).ids
        assert a == b, f"{text!r}: by hand {a}, tokenizers {b}"
        return a

    tokenizer_cases = [{"text": text, "token_ids": encode(text)} for text in TOKENIZER_TEXTS]
    for case in tokenizer_cases:
        print(f"tokens {case['token_ids']}: {case['text']!r}")

    model = Decoder(reader, neox_rope=True)
    assert model.arch in ("qwen2", "qwen3"), model.arch
    template = field(reader, "tokenizer.chat_template")
    chat = render_chat(template, [{"role": "user", "content": QUESTION}])
    prompts = []
    for text in PROMPTS:
        ids = encode(text)
        logits = model.forward(np.array(ids), {"len": 0})
        prompts.append({"text": text, "token_ids": ids, "top_logits": top(logits, TOP_K),
                        "first_logits": [float(v) for v in logits[:FIRST]]})
        print(f"{len(ids)} tokens, argmax {top(logits, TOP_K)[0]}: {text!r}")

    eos = int(field(reader, "tokenizer.ggml.eos_token_id"))
    chat_ids = encode(chat)
    cache = {"len": 0}
    logits = model.forward(np.array(chat_ids), cache)
    greedy, gaps = [], []
    for _ in range(GREEDY_TOKENS):
        best = np.sort(logits)[-2:]
        gaps.append(float(best[1] - best[0]))
        nxt = int(np.argmax(logits))
        greedy.append(nxt)
        if nxt == eos:
            break
        logits = model.forward(np.array([nxt]), cache)
    text = hf.decode([i for i in greedy if i != eos], skip_special_tokens=False)
    print(f"greedy {greedy}: {text!r}, smallest top-2 gap {min(gaps):.3f}")
    assert "Paris" in text, text
    fixture = {
        "model": path.name,
        "tokenizer": tokenizer_cases,
        "prompts": prompts,
        "chat": {"question": QUESTION, "prompt": chat, "token_ids": chat_ids, "greedy_ids": greedy,
                 "greedy_text": text, "min_gap": min(gaps)},
        "dequant": {"blocks": blocks, "tensors": tensors},
    }
    (FIXTURES / "qwen_gguf_reference.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
