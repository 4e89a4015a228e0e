"""What the GGUF reference scripts share: metadata fields, GPT-2's byte table, a plain numpy
decoder (float64) for llama-family GGUF files on the weights the `gguf` package dequantises,
the top logits, and the dequantisation cases written into fixtures.

The decoder follows llama.cpp: RMSNorm, Q/K/V (with biases where the file has them), per-head
q/k RMSNorm where the file has it (qwen3), RoPE either on adjacent pairs as llama.cpp runs
`llama` files on their GGUF row order, or NeoX-style (pairs `i` and `i + d/2`) as it runs
`qwen2`/`qwen3`, grouped-query attention, SwiGLU, and `output.weight` or the tied embedding.
"""

import gguf
import numpy as np


def field(reader, key):
    return reader.fields[key].contents()


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


class Decoder:
    def __init__(self, reader, neox_rope):
        self.arch = field(reader, "general.architecture")
        self.neox_rope = neox_rope
        get = lambda k: field(reader, f"{self.arch}.{k}")
        self.layers_n = int(get("block_count"))
        self.heads = int(get("attention.head_count"))
        self.kv_heads = int(get("attention.head_count_kv"))
        self.hidden = int(get("embedding_length"))
        key_length = f"{self.arch}.attention.key_length"
        self.head_dim = int(field(reader, key_length)) if key_length in reader.fields else self.hidden // self.heads
        self.theta = float(get("rope.freq_base"))
        self.eps = float(get("attention.layer_norm_rms_epsilon"))
        self.w = {}
        for t in reader.tensors:
            shape = [int(d) for d in reversed(t.shape)]  # ggml lists dims innermost first
            values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
            # Embedding rows are only looked up: f32 saves memory (a gigabyte for Qwen).
            self.w[t.name] = values if t.name == "token_embd.weight" else values.astype(np.float64)
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"].astype(np.float64))

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        d = self.head_dim
        inv = self.theta ** (-np.arange(0, d, 2) / d)
        ang = positions[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.neox_rope:
            # Element i turns with element i + d/2 (Hugging Face's rotate-half).
            a, b = x[..., : d // 2], x[..., d // 2:]
            return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        # Adjacent pairs (x[2i], x[2i+1]), as llama.cpp rotates GGUF `llama` rows.
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids, cache):
        start, t = cache["len"], len(ids)
        pos = np.arange(start, start + t, dtype=np.float64)
        x = self.w["token_embd.weight"][ids].astype(np.float64)
        hd, group = self.head_dim, self.heads // self.kv_heads
        for i in range(self.layers_n):
            p = lambda n: self.w[f"blk.{i}.{n}"]

            def project(name, heads):
                y = h @ p(f"{name}.weight").T
                bias = self.w.get(f"blk.{i}.{name}.bias")
                return (y if bias is None else y + bias).reshape(t, heads, hd)

            h = self.rms(x, p("attn_norm.weight"))
            q, k, v = project("attn_q", self.heads), project("attn_k", self.kv_heads), project("attn_v", self.kv_heads)
            if f"blk.{i}.attn_q_norm.weight" in self.w:
                q = self.rms(q, p("attn_q_norm.weight"))
                k = self.rms(k, p("attn_k_norm.weight"))
            q, k = self.rope(q, pos), self.rope(k, pos)
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
            x = x + ctx @ p("attn_output.weight").T
            h = self.rms(x, p("ffn_norm.weight"))
            gate, up = h @ p("ffn_gate.weight").T, h @ p("ffn_up.weight").T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ p("ffn_down.weight").T
        cache["len"] = start + t
        return self.rms(x[-1], self.w["output_norm.weight"]) @ self.lm_head.T


def top(logits, k):
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in order]


def block_parts(rng):
    """Makers of a synthetic block's parts: half floats, random bytes, a finite random scale."""
    f16 = lambda *v: np.array(v, dtype=np.float16).tobytes()
    rand = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    scale = lambda: float(rng.uniform(0.001, 0.05)) * (1 if rng.random() < 0.5 else -1)
    return f16, rand, scale


def block_case(qtype, raw):
    """A synthetic block of `qtype` and the values the package dequantises it to."""
    values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype)
    return {"type": qtype.name, "type_id": int(qtype), "hex": raw.hex(), "values": [float(v) for v in values]}


def tensor_case(t):
    """A real tensor's first 64 dequantised values and the sum of all of them."""
    flat = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)
    return {"name": t.name, "type": t.tensor_type.name, "first": [float(v) for v in flat[:64]],
            "sum": float(flat.astype(np.float64).sum())}
