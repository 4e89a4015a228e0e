#!/usr/bin/env python3
"""Tiny random-weight Hugging Face model folders and their reference outputs, for the
safetensors loader and the Qwen-style parts of the Llama decoder in hearth-models.

Two folders, each a complete Hugging Face checkpoint (`config.json`, `*.safetensors`,
`tokenizer.json`, `tokenizer_config.json`, `generation_config.json`):

* `tiny-qwen2`: Qwen2 (biases on the Q/K/V projections), tied embeddings, one bf16
  `model.safetensors`, Llama-3 RoPE scaling (`rope_scaling.rope_type = "llama3"`).
* `tiny-qwen3`: Qwen3 (RMSNorm on each query and key head before RoPE), an explicit
  `head_dim` wider than `hidden_size / heads`, an untied LM head, f16 weights sharded over
  two files with `model.safetensors.index.json`.

The reference is a plain numpy forward pass in float64 on the stored (bf16/f16-rounded)
weights, written from the Hugging Face modeling code's semantics (rotate-half RoPE, q/k norm
per head before RoPE, biases after the projection). It records the logits of the last position
of a few prompts, a greedy continuation, and the chat template rendered by jinja2 (what
transformers' `apply_chat_template` does) for the Rust side to match.
`models/scripts/check_qwen_reference_transformers.py` cross-checks these numbers against
transformers itself where torch is installed.

    .venv/bin/pip install -r models/scripts/requirements.txt -r models/scripts/requirements-llama.txt
    .venv/bin/python models/scripts/generate_qwen_reference.py

Writes models/tests/fixtures/tiny-qwen2/, tiny-qwen3/ and qwen_reference.json.
"""

import json
import struct
from pathlib import Path

import jinja2
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB = 320
PROMPTS = ["The capital of France is", "Hello, world! 1234 café 日本語"]
GREEDY_TOKENS = 12
# The greedy continuation is only a fair test if every step's winner is clear of the runner-up
# by far more than f32 rounding (~1e-6 here).
MIN_GREEDY_GAP = 1e-3

CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] | trim + '<|im_end|>\\n' }}"
    "{%- set loop_messages = messages[1:] %}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}"
    "{%- set loop_messages = messages %}"
    "{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] not in ['user', 'assistant'] %}"
    "{{- raise_exception('Only user and assistant roles are supported after the system message') }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHAT = [
    {"role": "system", "content": "  Answer briefly.  "},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Hello, world! Numbers like 1234 and 5678 are split into digits.",
    "café, naïve, 日本語, emoji 🙂 and other bytes are byte-level tokens.",
    "You are a tiny test model. Answer briefly. What is the capital of France?",
] * 4

CONFIGS = {
    "tiny-qwen2": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": 256,
        "rope_theta": 1000000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "bos_token_id": None,
        "eos_token_id": 0,
    },
    "tiny-qwen3": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 24,
        "attention_bias": False,
        "vocab_size": VOCAB,
        "max_position_embeddings": 128,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "hidden_act": "silu",
        "bos_token_id": None,
        "eos_token_id": 2,
    },
}


def train_tokenizer():
    """A byte-level BPE (GPT-2 split) with Qwen's special tokens, trained on a fixed corpus."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 16,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return tokenizer


# --- storage -----------------------------------------------------------------------------------

def to_bf16(values):
    """Round-to-nearest-even f32 -> bf16 bits, and the f64 values those bits stand for."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    back = (rounded.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return rounded.tobytes(), back


def to_f16(values):
    half = np.asarray(values, dtype=np.float16)
    return half.tobytes(), half.astype(np.float64)


def write_safetensors(path, tensors, dtype):
    """Writes `tensors` ({name: (shape, raw bytes)}) in the safetensors format."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def random_weights(config, rng):
    """Hugging Face tensor names and shapes (`[out, in]` for linear layers), random values."""
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    qwen2 = config["model_type"] == "qwen2"
    qwen3 = config["model_type"] == "qwen3"
    normal = lambda *shape, std=0.25: rng.normal(0.0, std, size=shape)
    norm = lambda n: 1.0 + rng.normal(0.0, 0.1, size=n)
    w = {"model.embed_tokens.weight": normal(config["vocab_size"], hidden, std=1.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(hidden)
        w[p + "post_attention_layernorm.weight"] = norm(hidden)
        w[p + "self_attn.q_proj.weight"] = normal(heads * head_dim, hidden)
        w[p + "self_attn.k_proj.weight"] = normal(kv_heads * head_dim, hidden)
        w[p + "self_attn.v_proj.weight"] = normal(kv_heads * head_dim, hidden)
        w[p + "self_attn.o_proj.weight"] = normal(hidden, heads * head_dim)
        if qwen2:
            w[p + "self_attn.q_proj.bias"] = normal(heads * head_dim, std=0.5)
            w[p + "self_attn.k_proj.bias"] = normal(kv_heads * head_dim, std=0.5)
            w[p + "self_attn.v_proj.bias"] = normal(kv_heads * head_dim, std=0.5)
        if qwen3:
            w[p + "self_attn.q_norm.weight"] = norm(head_dim)
            w[p + "self_attn.k_norm.weight"] = norm(head_dim)
        w[p + "mlp.gate_proj.weight"] = normal(ffn, hidden)
        w[p + "mlp.up_proj.weight"] = normal(ffn, hidden)
        w[p + "mlp.down_proj.weight"] = normal(hidden, ffn)
    w["model.norm.weight"] = norm(hidden)
    if not config["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(config["vocab_size"], hidden, std=0.5)
    return w


def save_folder(name, config, weights, tokenizer):
    folder = FIXTURES / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.safetensors"):
        old.unlink()
    bf16 = config["torch_dtype"] == "bfloat16"
    convert, dtype = (to_bf16, "BF16") if bf16 else (to_f16, "F16")
    stored, tensors = {}, {}
    for key, values in weights.items():
        raw, back = convert(values)
        tensors[key] = (values.shape, raw)
        stored[key] = back
    if bf16:
        write_safetensors(folder / "model.safetensors", tensors, dtype)
    else:
        names = sorted(tensors)
        shards = [names[: len(names) // 2], names[len(names) // 2 :]]
        weight_map = {}
        for index, shard in enumerate(shards, start=1):
            file = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(folder / file, {n: tensors[n] for n in shard}, dtype)
            weight_map.update({n: file for n in shard})
        index_json = {"metadata": {"total_size": sum(len(t[1]) for t in tensors.values())}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "Qwen2Tokenizer",
    }, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps({
        "eos_token_id": [tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")],
    }, indent=2) + "\n")
    return stored


# --- the reference decoder ---------------------------------------------------------------------

def inverse_frequencies(config, head_dim):
    inv = config["rope_theta"] ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type") == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        smooth = (original / wavelen - low) / (high - low)
        scaled = np.where(wavelen > original / low, inv / factor, inv)
        medium = (wavelen <= original / low) & (wavelen >= original / high)
        inv = np.where(medium, (1 - smooth) * inv / factor + smooth * inv, scaled)
    return inv


class Decoder:
    def __init__(self, config, w):
        self.c, self.w = config, w
        self.heads, self.kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
        self.head_dim = config.get("head_dim") or config["hidden_size"] // self.heads
        self.inv_freq = inverse_frequencies(config, self.head_dim)
        self.lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])

    def rms(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.c["rms_norm_eps"]) * weight

    def rope(self, x, positions):
        angles = np.outer(positions, self.inv_freq)  # [t, d/2]
        cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[:, None, :]
        sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[:, None, :]
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def logits(self, ids):
        """Logits of every position of `ids` (one causal pass)."""
        w, t, hd = self.w, len(ids), self.head_dim
        x = w["model.embed_tokens.weight"][ids]
        positions = np.arange(t, dtype=np.float64)
        for i in range(self.c["num_hidden_layers"]):
            p = lambda name: w[f"model.layers.{i}.{name}"]
            bias = lambda name: w.get(f"model.layers.{i}.self_attn.{name}.bias", 0.0)
            h = self.rms(x, p("input_layernorm.weight"))
            q = (h @ p("self_attn.q_proj.weight").T + bias("q_proj")).reshape(t, self.heads, hd)
            k = (h @ p("self_attn.k_proj.weight").T + bias("k_proj")).reshape(t, self.kv_heads, hd)
            v = (h @ p("self_attn.v_proj.weight").T + bias("v_proj")).reshape(t, self.kv_heads, hd)
            if f"model.layers.{i}.self_attn.q_norm.weight" in w:
                q = self.rms(q, p("self_attn.q_norm.weight"))
                k = self.rms(k, p("self_attn.k_norm.weight"))
            q, k = self.rope(q, positions), self.rope(k, positions)
            group = self.heads // self.kv_heads
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
            scores = scores + np.triu(np.full((t, t), -np.inf), 1)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.einsum("hts,shd->thd", scores, v).reshape(t, self.heads * hd)
            x = x + context @ p("self_attn.o_proj.weight").T
            h = self.rms(x, p("post_attention_layernorm.weight"))
            gate = h @ p("mlp.gate_proj.weight").T
            up = h @ p("mlp.up_proj.weight").T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ p("mlp.down_proj.weight").T
        return self.rms(x, w["model.norm.weight"]) @ self.lm_head.T

    def greedy(self, ids, steps):
        ids, out, gaps = list(ids), [], []
        for _ in range(steps):
            last = self.logits(ids)[-1]
            best = np.sort(last)[-2:]
            gaps.append(float(best[1] - best[0]))
            token = int(np.argmax(last))
            out.append(token)
            ids.append(token)
        return out, min(gaps)


def render_chat(tokenizer_config, messages):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    template = env.from_string(tokenizer_config["chat_template"])
    return template.render(messages=messages, add_generation_prompt=True, bos_token="", eos_token=tokenizer_config["eos_token"])


def main():
    tokenizer = train_tokenizer()
    fixture = {}
    for seed, (name, config) in enumerate(CONFIGS.items(), start=1):
        rng = np.random.default_rng(seed)
        weights = random_weights(config, rng)
        stored = save_folder(name, config, weights, tokenizer)
        decoder = Decoder(config, stored)
        tokenizer_config = json.loads((FIXTURES / name / "tokenizer_config.json").read_text())
        chat_prompt = render_chat(tokenizer_config, CHAT)
        chat_ids = tokenizer.encode(chat_prompt, add_special_tokens=False).ids
        prompts = []
        for text in PROMPTS:
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            prompts.append({"text": text, "token_ids": ids, "last_logits": decoder.logits(ids)[-1].tolist()})
        greedy, gap = decoder.greedy(chat_ids, GREEDY_TOKENS)
        assert gap > MIN_GREEDY_GAP, f"{name}: greedy step margin {gap} too small; change the seed"
        fixture[name] = {
            "prompts": prompts,
            "chat": {"messages": CHAT, "prompt": chat_prompt, "token_ids": chat_ids, "greedy_ids": greedy, "min_gap": gap},
        }
        print(f"{name}: {len(stored)} tensors, chat prompt {len(chat_ids)} tokens, greedy {greedy}, min gap {gap:.4f}")
    (FIXTURES / "qwen_reference.json").write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    main()
