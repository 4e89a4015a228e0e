#!/usr/bin/env python3
"""Writes models/tests/fixtures/minilm_reference.json for hearth-models.

A plain numpy BERT forward pass (float64) on the real all-MiniLM-L6-v2 weights,
followed by the sentence-transformers pipeline of that model: mean pooling over
the attention mask, then L2 normalisation. Before writing anything it checks the
published cosines (0.7553 and -0.046), so a wrong reference can never be
committed.

    .venv/bin/pip install -r models/scripts/requirements.txt
    .venv/bin/python models/scripts/generate_embedding_reference.py

The model folder is $HEARTH_MODELS_DIR/all-minilm-l6-v2, by default
<repo>/.models/all-minilm-l6-v2 (installed by scripts/fetch-models).
"""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models")) / "all-minilm-l6-v2"
OUT = REPO / "models" / "tests" / "fixtures" / "minilm_reference.json"

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "Hearth serves models locally.",
    "Crème brûlée à Zürich: naïve café façade, 東京 and Ελληνικά — ça coûte 5 €.",
    (
        "The lighthouse keeper climbed the spiral staircase every evening at dusk, "
        "carrying a small brass lantern, a notebook full of weather observations, "
        "and a thermos of strong black tea, because the old automatic lamp had "
        "failed twice during the winter storms and the harbour master insisted that "
        "someone watch the light until the fishing boats were safely home again. "
        "On clear nights he also counted ships on the horizon, wrote down their "
        "colours and directions, and sent the list to the museum in town."
    ),
]

# Published figures for this model (sentence-transformers model card).
EXPECTED = [((0, 1), 0.7553, 0.001), ((0, 2), -0.046, 0.01)]

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, w, b):
    # torch layout: weight is [out, in]
    return x @ w.T + b


def encode(ids, weights, cfg):
    """BERT forward for one unpadded sequence; returns [seq, hidden]."""
    w = weights
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    head_dim = hidden // heads
    seq = len(ids)

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:seq]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name, inp):
            return linear(inp, w[p + name + ".weight"], w[p + name + ".bias"])

        def split(t):
            return t.reshape(seq, heads, head_dim).transpose(1, 0, 2)

        q = split(lin("attention.self.query", x))
        k = split(lin("attention.self.key", x))
        v = split(lin("attention.self.value", x))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores -= scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)
        attn = lin("attention.output.dense", ctx)
        x = layer_norm(
            attn + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inter = gelu(lin("intermediate.dense", x))
        out = lin("output.dense", inter)
        x = layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def main():
    if not (MODEL_DIR / "model.safetensors").is_file():
        sys.exit(f"model not found in {MODEL_DIR}: run scripts/fetch-models")
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    pooling = json.loads((MODEL_DIR / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"], "this generator implements mean pooling only"

    weights = {
        k: v.astype(np.float64)
        for k, v in load_file(str(MODEL_DIR / "model.safetensors")).items()
        if k != "embeddings.position_ids"
    }
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    token_ids, embeddings = [], []
    for sentence in SENTENCES:
        ids = tokenizer.encode(sentence, add_special_tokens=True).ids
        hidden = encode(ids, weights, cfg)
        pooled = hidden.mean(0)  # no padding: the mask is all ones
        embeddings.append(pooled / np.linalg.norm(pooled))
        token_ids.append(ids)

    for (a, b), want, tol in EXPECTED:
        got = float(embeddings[a] @ embeddings[b])
        print(f"cos({SENTENCES[a]!r}, {SENTENCES[b]!r}) = {got:.4f} (published {want})")
        assert abs(got - want) <= tol, f"cosine {got:.4f} is not {want} ± {tol}"
    print("token counts:", [len(ids) for ids in token_ids])

    fixture = {
        "model": "all-minilm-l6-v2",
        "generator": "models/scripts/generate_embedding_reference.py",
        "pooling": "mean",
        "normalize": True,
        "dimensions": cfg["hidden_size"],
        "cases": [
            {"sentence": s, "token_ids": ids, "embedding": [round(float(v), 7) for v in e]}
            for s, ids, e in zip(SENTENCES, token_ids, embeddings)
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
