#!/usr/bin/env python3
"""A random-weight Hugging Face checkpoint with the exact shape of a real model, for speed
measurements where the real weights cannot travel (a GPU machine with no network): speed does
not depend on the weights' values. The tokenizer is the tiny test one from
`models/tests/fixtures/tiny-qwen2` (its ids are valid in every vocabulary); the text such a
model writes is noise.

    python3 models/scripts/make_random_checkpoint.py smollm2-135m /tmp/smollm2-random
    python3 models/scripts/make_random_checkpoint.py qwen2.5-0.5b /tmp/qwen-random

Needs numpy only (plus what generate_qwen_reference.py imports).
"""

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_qwen_reference import FIXTURES, random_weights, save_folder  # noqa: E402

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct's config.json.
    "smollm2-135m": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
        "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "hidden_act": "silu",
    },
    # Qwen/Qwen2.5-0.5B-Instruct's config.json.
    "qwen2.5-0.5b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "hidden_act": "silu",
    },
}


class FixtureTokenizer:
    """`save_folder` wants a tokenizer object; this one copies the tiny fixture's files."""

    def __init__(self):
        self.source = FIXTURES / "tiny-qwen2" / "tokenizer.json"

    def save(self, path):
        shutil.copy(self.source, path)

    def token_to_id(self, token):
        return {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}[token]


def main():
    shape, out = sys.argv[1], Path(sys.argv[2])
    config = dict(SHAPES[shape], eos_token_id=2)
    weights = random_weights(config, np.random.default_rng(0))
    import generate_qwen_reference as reference

    reference.FIXTURES = out.parent
    save_folder(out.name, config, weights, FixtureTokenizer())
    print(f"{shape}: {sum(w.size for w in weights.values()) / 1e6:.0f}M parameters in {out}")


if __name__ == "__main__":
    main()
