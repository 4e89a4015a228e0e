#!/usr/bin/env python3
"""Tiny random-weight Stable Diffusion pipelines in the exact diffusers folder layout, and a
numpy reference of every part of them, for the Rust diffusion pipeline in hearth-models.

Writes (all under models/tests/fixtures/):

* `tiny-sd/`: a StableDiffusionPipeline folder (`model_index.json`, `text_encoder/`,
  `tokenizer/`, `unet/`, `vae/`, `scheduler/`), f32 weights in `model.safetensors` /
  `diffusion_pytorch_model.safetensors`. CLIPTextModel (quick_gelu, 3 layers, width 32), a
  4-channel UNet2DConditionModel (CrossAttnDownBlock2D + DownBlock2D, conv proj_in/proj_out,
  `attention_head_dim` 4 read as the number of heads), AutoencoderKL with 2 blocks (scale
  factor 2: 16x16 image <-> 8x8 latent), EulerDiscreteScheduler with SD 1.5's values (plus the
  leftover PNDM keys `skip_prk_steps`/`set_alpha_to_one`/`clip_sample` real SD configs carry).
  The text encoder file also holds the int64 `text_model.embeddings.position_ids` buffer that
  older transformers saved (real SD 1.5 files have it; a loader must skip it).
  Its tokenizer pads with `<|endoftext|>` like SD 1.5's.
* `tiny-sd-inpaint/`: a StableDiffusionInpaintPipeline folder whose weights exist ONLY as fp16
  variant files (`*.fp16.safetensors`, dtype F16): CLIPTextModel with exact erf gelu, a
  9-channel UNet (three down blocks, linear proj_in/proj_out, `attention_head_dim` [2, 4, 4]
  as SD 2.x's list), AutoencoderKL with 3 blocks (scale factor 4), DDIMScheduler like SD 2.x
  (v_prediction, set_alpha_to_one false). Its tokenizer pads with `!` (id 0) like SD 2.x's.
  Every reference number for it is computed from the f16-rounded weights.
* `diffusion_reference.json`: tokenizer ids, text-encoder hidden states (with and without
  clip_skip), UNet outputs, VAE decode/encode, scheduler trajectories driven by a synthetic
  model, and whole pipelines (text2img, img2img, inpaint). Flat row-major float lists.

    .venv/bin/pip install -r models/scripts/requirements.txt
    .venv/bin/python models/scripts/generate_diffusion_reference.py

Everything is deterministic (fixed numpy seeds); the reference runs in float64. The same code
also runs once in float32 (f32 weights, f32 time-embedding arithmetic like torch's) and the
largest f32-vs-f64 gap of each section, times a margin, gives the recommended `tolerances`.
`models/scripts/check_diffusion_reference_with_diffusers.py` cross-checks every section
against diffusers/transformers themselves where torch is installed (run with torch 2.15,
diffusers 0.42.1, transformers 5.25: every tokenizer id equal, models within 7.4e-7 of
diffusers in float64 and 2e-6 in float32, scheduler trajectories within 3e-5, pipelines
within 3.6e-5).

Tokenizer. A CLIP byte-level BPE built like the real 49408-token vocab: the 256
bytes_to_unicode characters (in that function's order, so `!` is id 0), the same 256 with
`</w>`, then one token per merge (150 merges learned greedily from CORPUS: most frequent pair,
ties to the lexicographically smallest pair, a pair whose concatenation already exists is
skipped), then `<|startoftext|>` and `<|endoftext|>`. Tokenization follows transformers'
CLIPTokenizer without ftfy: whitespace runs collapsed to one space, stripped, lowercased;
CLIP's regex; bytes mapped through bytes_to_unicode; BPE with `</w>` on a word's last symbol;
ids = [bos] + ids[:75] + [eos], padded to 77 with the pad id. Special tokens are split out of the
raw text before all that, as transformers does with added tokens: as tiny-sd-inpaint's (and
SD 2.x's) pad token is `!`, every `!` in its prompts becomes id 0 (the bare byte token), never
part of a BPE word (`!!` is [0, 0] there but `!` + `!</w>` with SD 1.5's tokenizer).

Text encoder (transformers CLIPTextModel): token + position embeddings; per layer
x += out_proj(attn(layer_norm1(x))) with the causal mask and scale head_dim**-0.5, then
x += fc2(act(fc1(layer_norm2(x)))); last_hidden_state = final_layer_norm(x). clip_skip=1 is
diffusers' encode_prompt: final_layer_norm(hidden_states[-(clip_skip + 1)]), i.e. of the
output of the second-to-last layer. No attention mask over the padding (SD's text encoders
have no `use_attention_mask`). quick_gelu is x * sigmoid(1.702 x); gelu is the exact erf form.

UNet (diffusers UNet2DConditionModel): timestep embedding
[cos(t f_i), sin(t f_i)] with f_i = exp(-ln(10000) i / half), i < half = block_out_channels[0]/2
(flip_sin_to_cos=True puts cos first, freq_shift 0), then linear_1, silu, linear_2. Each
ResnetBlock2D: silu(GroupNorm(eps=norm_eps)) -> conv1 -> + time_emb_proj(silu(temb)) ->
silu(GroupNorm) -> conv2, plus the 1x1 conv_shortcut when channels change, output scale 1.
Transformer2DModel: GroupNorm(groups=norm_num_groups, eps=1e-6 always) -> proj_in (1x1 conv
before flattening, or Linear after flattening when use_linear_projection) -> BasicTransformerBlock
(LayerNorm eps 1e-5; self-attn, cross-attn on the text, GEGLU feed-forward
`h, gate = proj(x).chunk(2); h * gelu(gate)`, inner dim 4x; q/k/v without bias, to_out with
bias, softmax scale head_dim**-0.5) -> proj_out -> + input. Heads per block =
attention_head_dim[i] (the naming quirk), head_dim = channels / heads; the up blocks use the
reversed list. Downsample: 3x3 conv stride 2 padding 1. Upsample: nearest x2 then 3x3 conv.
Skip connections concatenate [hidden, skip] on channels, skips popped last-in first-out.

VAE (AutoencoderKL): all GroupNorms eps 1e-6 with norm_num_groups; encoder downsample pads
(0, 1, 0, 1) (right and bottom only) then a stride-2 3x3 conv with no padding; the mid block is
resnet, attention, resnet, the attention being one head over all channels with its own
GroupNorm (`mid_block.attentions.0.group_norm`) before to_q/to_k/to_v (with biases), to_out.0,
plus the residual. quant_conv (1x1) after the encoder; logvar clamped to [-30, 20].
post_quant_conv (1x1) before the decoder; the decoder's up blocks have layers_per_block + 1
resnets. `vae_decode.latent` is what goes into post_quant_conv (already / scaling_factor);
`image` is the raw decoder output, not clamped.

Schedulers. Each `schedulers` entry runs, with the synthetic model
out = 0.3 * xin * cos(t / 300) + 0.05 * sin(t / 100):
x = initial * init_noise_sigma; for i, t: xin = scale_model_input(x, t); x = step(out, t, x).
Betas: linear = linspace(beta_start, beta_end, 1000); scaled_linear =
linspace(sqrt(beta_start), sqrt(beta_end), 1000) ** 2; alphas_cumprod = cumprod(1 - betas).
* Euler (EulerDiscreteScheduler): timesteps by spacing — leading: arange(N) * (1000 // N),
  reversed, + steps_offset; trailing: round(arange(1000, 0, -1000 / N)) - 1; linspace:
  linspace(0, 999, N) reversed (fractional). sigmas = np.interp(timesteps, 0..999,
  sqrt((1 - ac) / ac)) with a final 0 appended. init_noise_sigma = max sigma for
  linspace/trailing, sqrt(max sigma^2 + 1) for leading. scale_model_input divides by
  sqrt(sigma^2 + 1). step: x0 = x - sigma * eps (epsilon) or
  x0 = -sigma / sqrt(sigma^2 + 1) * v + x / (sigma^2 + 1) (v_prediction);
  x_next = x + (x - x0) / sigma * (sigma_next - sigma).
* Euler ancestral: same sigmas; sigma_up = sqrt(s_next^2 (s^2 - s_next^2) / s^2),
  sigma_down = sqrt(s_next^2 - sigma_up^2); x_next = x + (x - x0) / s * (sigma_down - s)
  + noise * sigma_up. A noise is drawn at every step (the last one is multiplied by 0).
* DDIM (eta 0): prev_t = t - 1000 // N; alpha_prev = ac[prev_t], or for prev_t < 0
  1.0 if set_alpha_to_one else ac[0]; x0 from epsilon (x - sqrt(1-a) e) / sqrt(a) or
  v_prediction sqrt(a) x - sqrt(1-a) v (and eps = sqrt(a) v + sqrt(1-a) x); clip_sample clamps
  x0 to [-1, 1]; x_prev = sqrt(alpha_prev) x0 + sqrt(1 - alpha_prev) eps. init_noise_sigma 1.
* DPM-Solver++ 2M (DPMSolverMultistepScheduler, dpmsolver++, midpoint, lower_order_final,
  final_sigmas_type zero): timesteps leading: arange(N + 1) * (1000 // (N + 1)) reversed,
  last dropped, + steps_offset; linspace: round(linspace(0, 999, N + 1)) reversed, last
  dropped; trailing as Euler. sigmas interpolated as Euler's, final 0. alpha_t =
  1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t, lambda = ln alpha_t - ln sigma_t; the model
  output is converted to x0 (eps: (x - sigma_t e) / alpha_t; v: alpha_t x - sigma_t v). Step 0
  and the last step are first order: x = sigma_t / sigma_s x - alpha_t (e^-h - 1) D0 (the last,
  to sigma 0, returns x0 itself); the others second order with r0 = h_prev / h,
  D1 = (m0 - m1) / r0: x = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0
  - 0.5 alpha_t (e^-h - 1) D1. scale_model_input is the identity; init_noise_sigma 1.
* LCM (LCMScheduler): k = 1000 // original_inference_steps; the 50 origin timesteps
  (1..50) * k - 1 reversed, indexed at floor(linspace(0, 50, N, endpoint=False)). Boundary
  scalings with t' = t * timestep_scaling: c_skip = 0.25 / (t'^2 + 0.25),
  c_out = t' / sqrt(t'^2 + 0.25); denoised = c_out * x0 + c_skip * x; between steps
  x = sqrt(ac[t_next]) denoised + sqrt(1 - ac[t_next]) noise (noises[i] for i < N - 1), the
  last step returns denoised. init_noise_sigma 1.

Pipelines (diffusers StableDiffusion*Pipeline semantics). Prompt embeddings [uncond, cond] for
classifier-free guidance noise = u + g (c - u), skipped (cond only, batch 1) when g <= 1; the
negative prompt "" when none is given. `initial_noise` is N(0, 1) of the latent shape.
text2img: latents = initial_noise * init_noise_sigma, loop, decode(latents / scaling_factor).
img2img (StableDiffusionImg2ImgPipeline): init_timestep = min(int(N * strength), N),
t_start = N - init_timestep, timesteps[t_start:], set_begin_index(t_start); image latents =
scaling_factor * the MEAN of the VAE posterior (diffusers samples it with the generator; the
mean keeps the test deterministic: pass sample_mode="argmax" to get this); latents =
add_noise(image_latents, initial_noise, first kept timestep) (Euler: + noise * sigma).
inpaint, 9-channel UNet (StableDiffusionInpaintPipeline): mask 1 = repaint; the latent mask is
F.interpolate(mask, size=latent) with mode "nearest" (source index floor(i * in / out), i.e.
the top-left pixel of each block); masked_image = image * (mask < 0.5); masked image latents =
scaling_factor * posterior mean; strength 1.0 -> latents = initial_noise * init_noise_sigma;
UNet input = cat([scale_model_input(cat([latents] * 2)), mask, masked_image_latents]) with mask
and masked latents doubled for the CFG batch. inpaint, 4-channel UNet: image latents of the
whole image (mean), latents = initial_noise * init_noise_sigma (strength 1.0), and after each
step latents = (1 - m) * init + m * latents with init = add_noise(image_latents,
initial_noise, timesteps[i + 1]) (Euler: sigma of the next step), and at the last step init =
image_latents itself. `decoded` is the raw vae.decode(final_latents / scaling_factor).
"""

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import load_file, save_file

try:  # transformers uses the `regex` module; `re` is equivalent for the ASCII texts here.
    import regex as _re

    CLIP_PATTERN = _re.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        _re.IGNORECASE,
    )
except ImportError:
    import re as _re

    CLIP_PATTERN = _re.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
        _re.IGNORECASE,
    )

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
OUT_JSON = FIXTURES / "diffusion_reference.json"
DIFFUSERS_VERSION = "0.30.3"
TRANSFORMERS_VERSION = "4.44.2"
MAX_LEN = 77
NUM_MERGES = 150

CORPUS = """
a photo of a cat sitting on the mat. the cat is orange and the dog is brown.
a painting of a mountain landscape at sunset, highly detailed, trending on artstation.
portrait photo of an old man with a beard, studio lighting, sharp focus, photorealistic.
a red car parked in front of a house; the sky is blue and the grass is green.
an astronaut riding a horse on the moon, digital art, cinematic lighting, 4k.
a bowl of fruit on a wooden table, oil painting, still life, soft light.
the quick brown fox jumps over the lazy dog. it's a photo of the cat's toy!
a cute cat, a cute dog, a photo of a cat and a dog playing in the garden.
"""

TOKENIZER_TEXTS = [
    "a photo of a cat",
    "  A PHOTO of a Cat,   on the Mat!!  ",
    "3 cats and 42 dogs in 2024",
    "xylophone quizzically",
    "it's the cat's toy",
    "wow! a cat!dog",
    "",
    " ".join(["a photo of a cat sitting on the mat with a dog"] * 8),
]

# ----------------------------------------------------------------------------- dtype plumbing

DT = np.float64  # set per run: float64 for the reference, float32 for the tolerance estimate


def as_dt(x):
    return np.asarray(x, dtype=DT)


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def clean_text(text):
    """transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False) then join."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        out.append(" " if ch in " \t\n\r" or unicodedata.category(ch) == "Zs" else ch)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(tok.lower() for tok in text.split())


def pre_tokenize(text):
    words = []
    for token in CLIP_PATTERN.findall(clean_text(text)):
        words.append("".join(BYTE_ENCODER[b] for b in token.encode("utf-8")))
    return words


def learn_merges(corpus, count):
    freqs = {}
    for w in pre_tokenize(corpus):
        freqs[w] = freqs.get(w, 0) + 1
    words = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in freqs}
    vocab = set(BYTE_ENCODER.values()) | {c + "</w>" for c in BYTE_ENCODER.values()}
    merges, banned = [], set()
    while len(merges) < count:
        pairs = {}
        for w, syms in words.items():
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + freqs[w]
        candidates = sorted((-c, p) for p, c in pairs.items() if p not in banned)
        if not candidates:
            break
        pair = candidates[0][1]
        if pair[0] + pair[1] in vocab:
            banned.add(pair)
            continue
        merges.append(pair)
        vocab.add(pair[0] + pair[1])
        for w, syms in words.items():
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == pair:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[w] = tuple(out)
    return merges


class ClipTokenizer:
    def __init__(self, merges, pad_token):
        tokens = list(BYTE_ENCODER.values())
        tokens += [t + "</w>" for t in tokens]
        tokens += [a + b for a, b in merges]
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        assert len(set(tokens)) == len(tokens)
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.merges = merges
        self.bos = self.vocab["<|startoftext|>"]
        self.eos = self.vocab["<|endoftext|>"]
        self.pad_token = pad_token
        self.pad = self.vocab[pad_token]

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def encode(self, text):
        # transformers splits the special tokens (bos, eos and the pad token: `!` for SD 2.x)
        # out of the raw text first; each becomes its own id, the pieces between are BPE'd.
        specials = sorted({"<|startoftext|>", "<|endoftext|>", self.pad_token}, key=len, reverse=True)
        pieces = _re.split("(" + "|".join(_re.escape(t) for t in specials) + ")", text)
        ids = []
        for piece in pieces:
            if piece in specials:
                ids.append(self.vocab[piece])
                continue
            for w in pre_tokenize(piece):
                ids.extend(self.vocab[s] for s in self.bpe(w))
        ids = [self.bos] + ids[: MAX_LEN - 2] + [self.eos]
        return ids + [self.pad] * (MAX_LEN - len(ids))


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def special_token(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_tokenizer(folder, tok):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tok.vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in tok.merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pad = tok.pad_token if tok.pad_token != "<|endoftext|>" else special_token(tok.pad_token)
    special = {
        "bos_token": special_token("<|startoftext|>"),
        "eos_token": special_token("<|endoftext|>"),
        "pad_token": pad,
        "unk_token": special_token("<|endoftext|>"),
    }
    dump_json(folder / "special_tokens_map.json", special)
    config = {
        "add_prefix_space": False,
        "bos_token": added_token("<|startoftext|>"),
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": added_token("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": MAX_LEN,
        "pad_token": tok.pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": added_token("<|endoftext|>"),
    }
    dump_json(folder / "tokenizer_config.json", config)


# ----------------------------------------------------------------------------- configs

TINY_SD_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu")
TINY_INPAINT_TEXT = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3, hidden_act="gelu")


def text_config(spec, tok, dtype):
    return {
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": tok.bos,
        "dropout": 0.0,
        "eos_token_id": tok.eos,
        "hidden_act": spec["hidden_act"],
        "hidden_size": spec["hidden_size"],
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": spec["intermediate_size"],
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": MAX_LEN,
        "model_type": "clip_text_model",
        "num_attention_heads": spec["num_attention_heads"],
        "num_hidden_layers": spec["num_hidden_layers"],
        "pad_token_id": tok.pad,
        "projection_dim": spec["hidden_size"],
        "torch_dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION,
        "vocab_size": len(tok.vocab),
    }


def unet_config(**over):
    cfg = {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "addition_embed_type": None,
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": None,
        "attention_head_dim": 8,
        "attention_type": "default",
        "block_out_channels": None,
        "center_input_sample": False,
        "class_embed_type": None,
        "class_embeddings_concat": False,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": None,
        "cross_attention_norm": None,
        "down_block_types": None,
        "downsample_padding": 1,
        "dropout": 0.0,
        "dual_cross_attention": False,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 1,
        "mid_block_only_cross_attention": None,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": None,
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "default",
        "reverse_transformer_layers_per_block": None,
        "sample_size": 8,
        "time_cond_proj_dim": None,
        "time_embedding_act_fn": None,
        "time_embedding_dim": None,
        "time_embedding_type": "positional",
        "timestep_post_act": None,
        "transformer_layers_per_block": 1,
        "up_block_types": None,
        "upcast_attention": False,
        "use_linear_projection": False,
    }
    cfg.update(over)
    return cfg


TINY_SD_UNET = unet_config(
    in_channels=4,
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[16, 32],
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=32,
    attention_head_dim=4,
    use_linear_projection=False,
)
TINY_INPAINT_UNET = unet_config(
    in_channels=9,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[8, 16, 16],
    layers_per_block=2,
    norm_num_groups=4,
    cross_attention_dim=24,
    attention_head_dim=[2, 4, 4],
    use_linear_projection=True,
)


def vae_config(blocks, sample_size):
    return {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": blocks,
        "down_block_types": ["DownEncoderBlock2D"] * len(blocks),
        "force_upcast": True,
        "in_channels": 3,
        "latent_channels": 4,
        "latents_mean": None,
        "latents_std": None,
        "layers_per_block": 1,
        "mid_block_add_attention": True,
        "norm_num_groups": 4,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": 0.18215,
        "shift_factor": None,
        "up_block_types": ["UpDecoderBlock2D"] * len(blocks),
        "use_post_quant_conv": True,
        "use_quant_conv": True,
    }


TINY_SD_VAE = vae_config([8, 16], 16)
TINY_INPAINT_VAE = vae_config([8, 8, 16], 32)

SD_BETAS = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "trained_betas": None}


def euler_config(**over):
    cfg = {
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **SD_BETAS,
        "clip_sample": False,
        "final_sigmas_type": "zero",
        "interpolation_type": "linear",
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "sigma_max": None,
        "sigma_min": None,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "timestep_type": "discrete",
        "use_beta_sigmas": False,
        "use_exponential_sigmas": False,
        "use_karras_sigmas": False,
    }
    cfg.update(over)
    return cfg


def euler_ancestral_config(**over):
    cfg = {
        "_class_name": "EulerAncestralDiscreteScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **SD_BETAS,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }
    cfg.update(over)
    return cfg


def ddim_config(**over):
    cfg = {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **SD_BETAS,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "thresholding": False,
        "timestep_spacing": "leading",
    }
    cfg.update(over)
    return cfg


def dpm_config(**over):
    cfg = {
        "_class_name": "DPMSolverMultistepScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **SD_BETAS,
        "algorithm_type": "dpmsolver++",
        "dynamic_thresholding_ratio": 0.995,
        "euler_at_final": False,
        "final_sigmas_type": "zero",
        "lower_order_final": True,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "solver_order": 2,
        "solver_type": "midpoint",
        "steps_offset": 1,
        "thresholding": False,
        "timestep_spacing": "leading",
        "use_beta_sigmas": False,
        "use_exponential_sigmas": False,
        "use_flow_sigmas": False,
        "use_karras_sigmas": False,
        "use_lu_lambdas": False,
        "variance_type": None,
    }
    cfg.update(over)
    return cfg


def lcm_config(**over):
    cfg = {
        "_class_name": "LCMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **SD_BETAS,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "original_inference_steps": 50,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 1,
        "thresholding": False,
        "timestep_scaling": 10.0,
        "timestep_spacing": "leading",
    }
    cfg.update(over)
    return cfg


TINY_SD_SCHEDULER = euler_config()
TINY_INPAINT_SCHEDULER = ddim_config(prediction_type="v_prediction")


def model_index(cls, scheduler_cls):
    return {
        "_class_name": cls,
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", scheduler_cls],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


# ----------------------------------------------------------------------------- random weights


class Weights:
    """Collects named tensors in creation order; std ~ 1/sqrt(fan_in) keeps activations O(1)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = {}

    def put(self, name, array):
        assert name not in self.tensors, name
        self.tensors[name] = np.asarray(array, dtype=np.float32)

    def linear(self, name, out_f, in_f, bias=True):
        self.put(f"{name}.weight", self.rng.standard_normal((out_f, in_f)) / math.sqrt(in_f))
        if bias:
            self.put(f"{name}.bias", 0.1 * self.rng.standard_normal(out_f))

    def conv(self, name, out_c, in_c, k):
        self.put(f"{name}.weight", self.rng.standard_normal((out_c, in_c, k, k)) / math.sqrt(in_c * k * k))
        self.put(f"{name}.bias", 0.1 * self.rng.standard_normal(out_c))

    def norm(self, name, c):
        self.put(f"{name}.weight", 1.0 + 0.1 * self.rng.standard_normal(c))
        self.put(f"{name}.bias", 0.1 * self.rng.standard_normal(c))


def build_text_encoder(w, spec, vocab_size):
    d, inter = spec["hidden_size"], spec["intermediate_size"]
    w.put("text_model.embeddings.token_embedding.weight", 0.5 * w.rng.standard_normal((vocab_size, d)))
    w.put("text_model.embeddings.position_embedding.weight", 0.2 * w.rng.standard_normal((MAX_LEN, d)))
    for i in range(spec["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            w.linear(f"{p}.self_attn.{proj}", d, d)
        w.norm(f"{p}.layer_norm1", d)
        w.linear(f"{p}.mlp.fc1", inter, d)
        w.linear(f"{p}.mlp.fc2", d, inter)
        w.norm(f"{p}.layer_norm2", d)
    w.norm("text_model.final_layer_norm", d)


def build_resnet(w, p, in_c, out_c, temb_c):
    w.norm(f"{p}.norm1", in_c)
    w.conv(f"{p}.conv1", out_c, in_c, 3)
    if temb_c is not None:
        w.linear(f"{p}.time_emb_proj", out_c, temb_c)
    w.norm(f"{p}.norm2", out_c)
    w.conv(f"{p}.conv2", out_c, out_c, 3)
    if in_c != out_c:
        w.conv(f"{p}.conv_shortcut", out_c, in_c, 1)


def build_transformer(w, p, c, cross_dim, linear_proj):
    w.norm(f"{p}.norm", c)
    if linear_proj:
        w.linear(f"{p}.proj_in", c, c)
    else:
        w.conv(f"{p}.proj_in", c, c, 1)
    b = f"{p}.transformer_blocks.0"
    w.norm(f"{b}.norm1", c)
    w.linear(f"{b}.attn1.to_q", c, c, bias=False)
    w.linear(f"{b}.attn1.to_k", c, c, bias=False)
    w.linear(f"{b}.attn1.to_v", c, c, bias=False)
    w.linear(f"{b}.attn1.to_out.0", c, c)
    w.norm(f"{b}.norm2", c)
    w.linear(f"{b}.attn2.to_q", c, c, bias=False)
    w.linear(f"{b}.attn2.to_k", c, cross_dim, bias=False)
    w.linear(f"{b}.attn2.to_v", c, cross_dim, bias=False)
    w.linear(f"{b}.attn2.to_out.0", c, c)
    w.norm(f"{b}.norm3", c)
    w.linear(f"{b}.ff.net.0.proj", 8 * c, c)
    w.linear(f"{b}.ff.net.2", c, 4 * c)
    if linear_proj:
        w.linear(f"{p}.proj_out", c, c)
    else:
        w.conv(f"{p}.proj_out", c, c, 1)


def unet_layout(cfg):
    """Per down/up block: (type, in, out, prev, heads, layers, resample) as diffusers builds them."""
    boc = cfg["block_out_channels"]
    n = len(boc)
    heads = cfg["attention_head_dim"]
    heads = [heads] * n if isinstance(heads, int) else list(heads)
    layers = cfg["layers_per_block"]
    downs, ups = [], []
    out_c = boc[0]
    for i, t in enumerate(cfg["down_block_types"]):
        in_c, out_c = out_c, boc[i]
        downs.append((t, in_c, out_c, None, heads[i], layers, i != n - 1))
    rboc, rheads = boc[::-1], heads[::-1]
    out_c = rboc[0]
    for i, t in enumerate(cfg["up_block_types"]):
        prev, out_c = out_c, rboc[i]
        in_c = rboc[min(i + 1, n - 1)]
        ups.append((t, in_c, out_c, prev, rheads[i], layers + 1, i != n - 1))
    return downs, ups, heads[-1]


def build_unet(w, cfg):
    boc = cfg["block_out_channels"]
    temb = boc[0] * 4
    cross, lin = cfg["cross_attention_dim"], cfg["use_linear_projection"]
    downs, ups, _ = unet_layout(cfg)
    w.conv("conv_in", boc[0], cfg["in_channels"], 3)
    w.linear("time_embedding.linear_1", temb, boc[0])
    w.linear("time_embedding.linear_2", temb, temb)
    for i, (t, in_c, out_c, _, _, layers, down) in enumerate(downs):
        for j in range(layers):
            build_resnet(w, f"down_blocks.{i}.resnets.{j}", in_c if j == 0 else out_c, out_c, temb)
            if t.startswith("CrossAttn"):
                build_transformer(w, f"down_blocks.{i}.attentions.{j}", out_c, cross, lin)
        if down:
            w.conv(f"down_blocks.{i}.downsamplers.0.conv", out_c, out_c, 3)
    c = boc[-1]
    build_resnet(w, "mid_block.resnets.0", c, c, temb)
    build_transformer(w, "mid_block.attentions.0", c, cross, lin)
    build_resnet(w, "mid_block.resnets.1", c, c, temb)
    for i, (t, in_c, out_c, prev, _, layers, up) in enumerate(ups):
        for j in range(layers):
            skip = in_c if j == layers - 1 else out_c
            res_in = prev if j == 0 else out_c
            build_resnet(w, f"up_blocks.{i}.resnets.{j}", res_in + skip, out_c, temb)
            if t.startswith("CrossAttn"):
                build_transformer(w, f"up_blocks.{i}.attentions.{j}", out_c, cross, lin)
        if up:
            w.conv(f"up_blocks.{i}.upsamplers.0.conv", out_c, out_c, 3)
    w.norm("conv_norm_out", boc[0])
    w.conv("conv_out", cfg["out_channels"], boc[0], 3)


def build_vae_attention(w, p, c):
    w.norm(f"{p}.group_norm", c)
    w.linear(f"{p}.to_q", c, c)
    w.linear(f"{p}.to_k", c, c)
    w.linear(f"{p}.to_v", c, c)
    w.linear(f"{p}.to_out.0", c, c)


def build_vae(w, cfg):
    boc, layers, lat = cfg["block_out_channels"], cfg["layers_per_block"], cfg["latent_channels"]
    n = len(boc)
    w.conv("encoder.conv_in", boc[0], cfg["in_channels"], 3)
    out_c = boc[0]
    for i in range(n):
        in_c, out_c = out_c, boc[i]
        for j in range(layers):
            build_resnet(w, f"encoder.down_blocks.{i}.resnets.{j}", in_c if j == 0 else out_c, out_c, None)
        if i != n - 1:
            w.conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", out_c, out_c, 3)
    c = boc[-1]
    build_resnet(w, "encoder.mid_block.resnets.0", c, c, None)
    build_vae_attention(w, "encoder.mid_block.attentions.0", c)
    build_resnet(w, "encoder.mid_block.resnets.1", c, c, None)
    w.norm("encoder.conv_norm_out", c)
    w.conv("encoder.conv_out", 2 * lat, c, 3)
    w.conv("quant_conv", 2 * lat, 2 * lat, 1)
    w.conv("post_quant_conv", lat, lat, 1)
    w.conv("decoder.conv_in", c, lat, 3)
    build_resnet(w, "decoder.mid_block.resnets.0", c, c, None)
    build_vae_attention(w, "decoder.mid_block.attentions.0", c)
    build_resnet(w, "decoder.mid_block.resnets.1", c, c, None)
    rboc = boc[::-1]
    out_c = rboc[0]
    for i in range(n):
        prev, out_c = out_c, rboc[i]
        for j in range(layers + 1):
            build_resnet(w, f"decoder.up_blocks.{i}.resnets.{j}", prev if j == 0 else out_c, out_c, None)
        if i != n - 1:
            w.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", out_c, out_c, 3)
    w.norm("decoder.conv_norm_out", boc[0])
    w.conv("decoder.conv_out", cfg["out_channels"], boc[0], 3)


# ----------------------------------------------------------------------------- numpy ops


def conv2d(x, P, name, stride=1, pad=1):
    weight, bias = P[f"{name}.weight"], P[f"{name}.bias"]
    pads = (pad, pad, pad, pad) if isinstance(pad, int) else pad  # top, bottom, left, right
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    k = weight.shape[2]
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    return out + bias[None, :, None, None]


def linear(x, P, name):
    out = x @ P[f"{name}.weight"].T
    b = P.get(f"{name}.bias")
    return out if b is None else out + b


def group_norm(x, P, name, groups, eps):
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y * P[f"{name}.weight"].reshape(shape) + P[f"{name}.bias"].reshape(shape)


def layer_norm(x, P, name, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * P[f"{name}.weight"] + P[f"{name}.bias"]


def silu(x):
    return x / (1.0 + np.exp(-x))


_ERF = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return (0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)).astype(np.float64))).astype(x.dtype)


def quick_gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def attention(q, k, v, heads, mask=None):
    b, lq, d = q.shape
    hd = d // heads
    q = q.reshape(b, lq, heads, hd).transpose(0, 2, 1, 3)
    k = k.reshape(b, -1, heads, hd).transpose(0, 2, 1, 3)
    v = v.reshape(b, -1, heads, hd).transpose(0, 2, 1, 3)
    s = (q @ k.transpose(0, 1, 3, 2)) * (hd**-0.5)
    if mask is not None:
        s = s + mask
    return (softmax(s) @ v).transpose(0, 2, 1, 3).reshape(b, lq, d)


def upsample_nearest2(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


def interpolate_nearest(x, size):
    """torch F.interpolate(mode="nearest"): source index floor(dst * in / out)."""
    h, w = x.shape[2:]
    rows = np.floor(np.arange(size[0]) * (h / size[0])).astype(int)
    cols = np.floor(np.arange(size[1]) * (w / size[1])).astype(int)
    return x[:, :, rows][:, :, :, cols]


# ----------------------------------------------------------------------------- models


def text_encoder_forward(P, spec, ids, clip_skip=0):
    ids = np.asarray(ids)[None, :]
    x = P["text_model.embeddings.token_embedding.weight"][ids] + P["text_model.embeddings.position_embedding.weight"][None, : ids.shape[1]]
    n, heads = ids.shape[1], spec["num_attention_heads"]
    mask = np.triu(np.full((n, n), -np.inf, dtype=DT), k=1)
    act = quick_gelu if spec["hidden_act"] == "quick_gelu" else gelu
    hidden_states = [x]
    for i in range(spec["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}"
        h = layer_norm(x, P, f"{p}.layer_norm1", 1e-5)
        q = linear(h, P, f"{p}.self_attn.q_proj")
        k = linear(h, P, f"{p}.self_attn.k_proj")
        v = linear(h, P, f"{p}.self_attn.v_proj")
        x = x + linear(attention(q, k, v, heads, mask), P, f"{p}.self_attn.out_proj")
        h = layer_norm(x, P, f"{p}.layer_norm2", 1e-5)
        x = x + linear(act(linear(h, P, f"{p}.mlp.fc1")), P, f"{p}.mlp.fc2")
        hidden_states.append(x)
    return layer_norm(hidden_states[-(clip_skip + 1)], P, "text_model.final_layer_norm", 1e-5)


def timestep_embedding(timesteps, dim):
    half = dim // 2
    exponent = (-math.log(10000.0) * np.arange(half, dtype=DT)) / DT(half)
    args = as_dt(timesteps)[:, None] * np.exp(exponent)[None, :]
    return np.concatenate([np.cos(args), np.sin(args)], axis=-1)  # flip_sin_to_cos=True


def resnet(P, p, x, temb, groups, eps):
    h = conv2d(silu(group_norm(x, P, f"{p}.norm1", groups, eps)), P, f"{p}.conv1")
    if temb is not None:
        h = h + linear(silu(temb), P, f"{p}.time_emb_proj")[:, :, None, None]
    h = conv2d(silu(group_norm(h, P, f"{p}.norm2", groups, eps)), P, f"{p}.conv2")
    if f"{p}.conv_shortcut.weight" in P:
        x = conv2d(x, P, f"{p}.conv_shortcut", pad=0)
    return x + h


def transformer2d(P, p, x, context, heads, groups, linear_proj):
    b, c, hgt, wid = x.shape
    h = group_norm(x, P, f"{p}.norm", groups, 1e-6)
    if linear_proj:
        h = linear(h.transpose(0, 2, 3, 1).reshape(b, hgt * wid, c), P, f"{p}.proj_in")
    else:
        h = conv2d(h, P, f"{p}.proj_in", pad=0).transpose(0, 2, 3, 1).reshape(b, hgt * wid, c)
    t = f"{p}.transformer_blocks.0"
    n = layer_norm(h, P, f"{t}.norm1", 1e-5)
    q, k, v = (linear(n, P, f"{t}.attn1.to_{z}") for z in "qkv")
    h = h + linear(attention(q, k, v, heads), P, f"{t}.attn1.to_out.0")
    n = layer_norm(h, P, f"{t}.norm2", 1e-5)
    q = linear(n, P, f"{t}.attn2.to_q")
    k, v = linear(context, P, f"{t}.attn2.to_k"), linear(context, P, f"{t}.attn2.to_v")
    h = h + linear(attention(q, k, v, heads), P, f"{t}.attn2.to_out.0")
    n = layer_norm(h, P, f"{t}.norm3", 1e-5)
    a, gate = np.split(linear(n, P, f"{t}.ff.net.0.proj"), 2, axis=-1)
    h = h + linear(a * gelu(gate), P, f"{t}.ff.net.2")
    if linear_proj:
        h = linear(h, P, f"{p}.proj_out").reshape(b, hgt, wid, c).transpose(0, 3, 1, 2)
    else:
        h = conv2d(h.reshape(b, hgt, wid, c).transpose(0, 3, 1, 2), P, f"{p}.proj_out", pad=0)
    return h + x


def unet_forward(P, cfg, sample, timesteps, context):
    boc, groups, eps, lin = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["norm_eps"], cfg["use_linear_projection"]
    downs, ups, mid_heads = unet_layout(cfg)
    t_emb = timestep_embedding(np.broadcast_to(as_dt(timesteps), (sample.shape[0],)), boc[0])
    temb = linear(silu(linear(t_emb, P, "time_embedding.linear_1")), P, "time_embedding.linear_2")
    h = conv2d(sample, P, "conv_in")
    skips = [h]
    for i, (t, _, _, _, heads, layers, down) in enumerate(downs):
        for j in range(layers):
            h = resnet(P, f"down_blocks.{i}.resnets.{j}", h, temb, groups, eps)
            if t.startswith("CrossAttn"):
                h = transformer2d(P, f"down_blocks.{i}.attentions.{j}", h, context, heads, groups, lin)
            skips.append(h)
        if down:
            h = conv2d(h, P, f"down_blocks.{i}.downsamplers.0.conv", stride=2, pad=1)
            skips.append(h)
    h = resnet(P, "mid_block.resnets.0", h, temb, groups, eps)
    h = transformer2d(P, "mid_block.attentions.0", h, context, mid_heads, groups, lin)
    h = resnet(P, "mid_block.resnets.1", h, temb, groups, eps)
    for i, (t, _, _, _, heads, layers, up) in enumerate(ups):
        for j in range(layers):
            h = np.concatenate([h, skips.pop()], axis=1)
            h = resnet(P, f"up_blocks.{i}.resnets.{j}", h, temb, groups, eps)
            if t.startswith("CrossAttn"):
                h = transformer2d(P, f"up_blocks.{i}.attentions.{j}", h, context, heads, groups, lin)
        if up:
            h = conv2d(upsample_nearest2(h), P, f"up_blocks.{i}.upsamplers.0.conv")
    assert not skips
    h = silu(group_norm(h, P, "conv_norm_out", groups, eps))
    return conv2d(h, P, "conv_out")


def vae_attention(P, p, x, groups):
    b, c, hgt, wid = x.shape
    h = group_norm(x, P, f"{p}.group_norm", groups, 1e-6).reshape(b, c, hgt * wid).transpose(0, 2, 1)
    q, k, v = (linear(h, P, f"{p}.to_{z}") for z in "qkv")
    o = linear(attention(q, k, v, 1), P, f"{p}.to_out.0")
    return o.transpose(0, 2, 1).reshape(b, c, hgt, wid) + x


def vae_mid(P, p, h, groups):
    h = resnet(P, f"{p}.resnets.0", h, None, groups, 1e-6)
    h = vae_attention(P, f"{p}.attentions.0", h, groups)
    return resnet(P, f"{p}.resnets.1", h, None, groups, 1e-6)


def vae_encode(P, cfg, image):
    """Returns (mean, logvar) of the posterior after quant_conv, logvar clamped to [-30, 20]."""
    n, layers, groups = len(cfg["block_out_channels"]), cfg["layers_per_block"], cfg["norm_num_groups"]
    h = conv2d(image, P, "encoder.conv_in")
    for i in range(n):
        for j in range(layers):
            h = resnet(P, f"encoder.down_blocks.{i}.resnets.{j}", h, None, groups, 1e-6)
        if i != n - 1:
            h = conv2d(h, P, f"encoder.down_blocks.{i}.downsamplers.0.conv", stride=2, pad=(0, 1, 0, 1))
    h = vae_mid(P, "encoder.mid_block", h, groups)
    h = conv2d(silu(group_norm(h, P, "encoder.conv_norm_out", groups, 1e-6)), P, "encoder.conv_out")
    h = conv2d(h, P, "quant_conv", pad=0)
    mean, logvar = np.split(h, 2, axis=1)
    return mean, np.clip(logvar, -30.0, 20.0)


def vae_decode(P, cfg, z):
    n, layers, groups = len(cfg["block_out_channels"]), cfg["layers_per_block"], cfg["norm_num_groups"]
    h = conv2d(conv2d(z, P, "post_quant_conv", pad=0), P, "decoder.conv_in")
    h = vae_mid(P, "decoder.mid_block", h, groups)
    for i in range(n):
        for j in range(layers + 1):
            h = resnet(P, f"decoder.up_blocks.{i}.resnets.{j}", h, None, groups, 1e-6)
        if i != n - 1:
            h = conv2d(upsample_nearest2(h), P, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    h = silu(group_norm(h, P, "decoder.conv_norm_out", groups, 1e-6))
    return conv2d(h, P, "decoder.conv_out")


# ----------------------------------------------------------------------------- schedulers


def alphas_cumprod(cfg):
    n = cfg["num_train_timesteps"]
    if cfg["beta_schedule"] == "linear":
        betas = np.linspace(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = np.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n) ** 2
    else:
        raise ValueError(cfg["beta_schedule"])
    return np.cumprod(1.0 - as_dt(betas))


def spaced_timesteps(cfg, n):
    """Euler / Euler-ancestral / DDIM spacing (DDIM rounds linspace to integers)."""
    total, spacing = cfg["num_train_timesteps"], cfg["timestep_spacing"]
    if spacing == "linspace":
        return np.linspace(0, total - 1, n)[::-1].copy()
    if spacing == "leading":
        return (np.arange(n) * (total // n)).round()[::-1].astype(np.float64) + cfg["steps_offset"]
    if spacing == "trailing":
        return np.arange(total, 0, -total / n).round() - 1
    raise ValueError(spacing)


class Scheduler:
    needs_noise = False
    order = 1

    def __init__(self, cfg):
        self.cfg = cfg
        self.ac = alphas_cumprod(cfg)
        self.step_index = None
        self.begin_index = None
        self.sigmas = None

    def init_step_index(self, t):
        if self.step_index is None:
            if self.begin_index is not None:
                self.step_index = self.begin_index
            else:
                hits = np.nonzero(self.timesteps == t)[0]
                self.step_index = int(hits[1] if len(hits) > 1 else hits[0])

    def scale_model_input(self, x, t):
        return x


class Euler(Scheduler):
    def set_timesteps(self, n):
        self.timesteps = spaced_timesteps(self.cfg, n)
        all_sigmas = np.sqrt((1 - self.ac) / self.ac)
        self.sigmas = np.concatenate([np.interp(self.timesteps, np.arange(len(all_sigmas)), all_sigmas), [0.0]]).astype(DT)

    @property
    def init_noise_sigma(self):
        m = self.sigmas.max()
        return m if self.cfg["timestep_spacing"] in ("linspace", "trailing") else math.sqrt(m * m + 1)

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        return x / np.sqrt(self.sigmas[self.step_index] ** 2 + 1)

    def x0(self, out, x, sigma):
        if self.cfg["prediction_type"] == "epsilon":
            return x - sigma * out
        return out * (-sigma / np.sqrt(sigma**2 + 1)) + x / (sigma**2 + 1)

    def step(self, out, t, x, noise=None):
        self.init_step_index(t)
        s, s_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        x0 = self.x0(out, x, s)
        self.step_index += 1
        return x + (x - x0) / s * (s_next - s)

    def add_noise(self, x0, noise, t):
        if self.begin_index is None:
            idx = int(np.nonzero(self.timesteps == t)[0][0])
        elif self.step_index is not None:
            idx = self.step_index
        else:
            idx = self.begin_index
        return x0 + noise * self.sigmas[idx]


class EulerAncestral(Euler):
    needs_noise = True

    def step(self, out, t, x, noise=None):
        self.init_step_index(t)
        s, s_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        x0 = self.x0(out, x, s)
        sigma_up = np.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
        sigma_down = np.sqrt(s_next**2 - sigma_up**2)
        self.step_index += 1
        return x + (x - x0) / s * (sigma_down - s) + noise * sigma_up


class DDIM(Scheduler):
    init_noise_sigma = 1.0

    def set_timesteps(self, n):
        self.n = n
        total = self.cfg["num_train_timesteps"]
        if self.cfg["timestep_spacing"] == "linspace":
            self.timesteps = np.linspace(0, total - 1, n).round()[::-1].astype(np.int64)
        else:
            self.timesteps = spaced_timesteps(self.cfg, n).astype(np.int64)

    def step(self, out, t, x, noise=None):
        t = int(t)
        prev = t - self.cfg["num_train_timesteps"] // self.n
        a = self.ac[t]
        a_prev = self.ac[prev] if prev >= 0 else (DT(1.0) if self.cfg["set_alpha_to_one"] else self.ac[0])
        if self.cfg["prediction_type"] == "epsilon":
            x0, eps = (x - np.sqrt(1 - a) * out) / np.sqrt(a), out
        else:
            x0, eps = np.sqrt(a) * x - np.sqrt(1 - a) * out, np.sqrt(a) * out + np.sqrt(1 - a) * x
        if self.cfg["clip_sample"]:
            x0 = np.clip(x0, -self.cfg["clip_sample_range"], self.cfg["clip_sample_range"])
        return np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps

    def add_noise(self, x0, noise, t):
        a = self.ac[int(t)]
        return np.sqrt(a) * x0 + np.sqrt(1 - a) * noise


class DPMSolver2M(Scheduler):
    init_noise_sigma = 1.0

    def set_timesteps(self, n):
        total, spacing = self.cfg["num_train_timesteps"], self.cfg["timestep_spacing"]
        if spacing == "linspace":
            ts = np.linspace(0, total - 1, n + 1).round()[::-1][:-1]
        elif spacing == "leading":
            ts = (np.arange(n + 1) * (total // (n + 1))).round()[::-1][:-1] + self.cfg["steps_offset"]
        else:
            ts = np.arange(total, 0, -total / n).round() - 1
        self.timesteps = ts.astype(np.int64)
        all_sigmas = np.sqrt((1 - self.ac) / self.ac)
        self.sigmas = np.concatenate([np.interp(self.timesteps, np.arange(len(all_sigmas)), all_sigmas), [0.0]]).astype(DT)
        self.outputs = []
        self.lower_order_nums = 0

    @staticmethod
    def alpha_sigma(sigma):
        alpha = 1 / np.sqrt(sigma**2 + 1)
        return alpha, sigma * alpha

    def step(self, out, t, x, noise=None):
        self.init_step_index(t)
        i = self.step_index
        alpha_s, sigma_s = self.alpha_sigma(self.sigmas[i])
        if self.cfg["prediction_type"] == "epsilon":
            x0 = (x - sigma_s * out) / alpha_s
        else:
            x0 = alpha_s * x - sigma_s * out
        self.outputs = (self.outputs + [x0])[-2:]
        last = i == len(self.timesteps) - 1
        alpha_t, sigma_t = self.alpha_sigma(self.sigmas[i + 1])
        if self.sigmas[i + 1] == 0:
            new = x0  # first order to sigma 0: sigma_t / sigma_s x -> 0, exp(-h) -> 0
        else:
            lam = lambda a, s: np.log(a) - np.log(s)
            h = lam(alpha_t, sigma_t) - lam(alpha_s, sigma_s)
            if self.lower_order_nums < 1 or last:
                new = sigma_t / sigma_s * x - alpha_t * (np.exp(-h) - 1.0) * x0
            else:
                alpha_p, sigma_p = self.alpha_sigma(self.sigmas[i - 1])
                h0 = lam(alpha_s, sigma_s) - lam(alpha_p, sigma_p)
                d1 = (self.outputs[-1] - self.outputs[-2]) / (h0 / h)
                new = sigma_t / sigma_s * x - alpha_t * (np.exp(-h) - 1.0) * x0 - 0.5 * alpha_t * (np.exp(-h) - 1.0) * d1
        self.lower_order_nums = min(self.lower_order_nums + 1, 2)
        self.step_index += 1
        return new


class LCM(Scheduler):
    init_noise_sigma = 1.0
    needs_noise = True

    def set_timesteps(self, n):
        k = self.cfg["num_train_timesteps"] // self.cfg["original_inference_steps"]
        origin = (np.arange(1, self.cfg["original_inference_steps"] + 1) * k - 1)[::-1]
        idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
        self.timesteps = origin[idx].astype(np.int64)
        self.n = n

    def step(self, out, t, x, noise=None):
        self.init_step_index(t)
        i = self.step_index
        t = int(t)
        t_prev = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else t
        a, a_prev = self.ac[t], self.ac[t_prev]
        st = t * self.cfg["timestep_scaling"]
        c_skip = 0.25 / (st**2 + 0.25)
        c_out = st / (st**2 + 0.25) ** 0.5
        if self.cfg["prediction_type"] == "epsilon":
            x0 = (x - np.sqrt(1 - a) * out) / np.sqrt(a)
        else:
            x0 = np.sqrt(a) * x - np.sqrt(1 - a) * out
        denoised = c_out * x0 + c_skip * x
        self.step_index += 1
        if i != self.n - 1:
            return np.sqrt(a_prev) * denoised + np.sqrt(1 - a_prev) * noise
        return denoised


SCHEDULERS = {
    "EulerDiscreteScheduler": Euler,
    "EulerAncestralDiscreteScheduler": EulerAncestral,
    "DDIMScheduler": DDIM,
    "DPMSolverMultistepScheduler": DPMSolver2M,
    "LCMScheduler": LCM,
}


def make_scheduler(cfg):
    return SCHEDULERS[cfg["_class_name"]](cfg)


SCHEDULER_CASES = [
    ("euler_leading_eps_4", euler_config(), 4),
    ("euler_leading_eps_7", euler_config(), 7),
    ("euler_trailing_turbo_1", euler_config(timestep_spacing="trailing"), 1),
    ("euler_trailing_turbo_4", euler_config(timestep_spacing="trailing"), 4),
    ("euler_leading_vpred_4", euler_config(prediction_type="v_prediction"), 4),
    ("euler_linspace_eps_7", euler_config(timestep_spacing="linspace", steps_offset=0), 7),
    ("euler_linear_betas_leading_4", euler_config(beta_schedule="linear", beta_start=0.0001, beta_end=0.02), 4),
    ("euler_ancestral_leading_4", euler_ancestral_config(), 4),
    ("ddim_leading_eps_4", ddim_config(), 4),
    ("ddim_leading_vpred_4", TINY_INPAINT_SCHEDULER, 4),
    ("ddim_trailing_clip_alpha_one_4", ddim_config(timestep_spacing="trailing", clip_sample=True, set_alpha_to_one=True), 4),
    ("dpmpp_2m_leading_eps_4", dpm_config(), 4),
    ("dpmpp_2m_leading_eps_7", dpm_config(), 7),
    ("dpmpp_2m_linspace_eps_7", dpm_config(timestep_spacing="linspace", steps_offset=0), 7),
    ("dpmpp_2m_leading_vpred_4", dpm_config(prediction_type="v_prediction"), 4),
    ("dpmpp_2m_trailing_vpred_7", dpm_config(prediction_type="v_prediction", timestep_spacing="trailing"), 7),
    ("lcm_1", lcm_config(), 1),
    ("lcm_4", lcm_config(), 4),
]


def synthetic_model(xin, t):
    t = float(t)
    return 0.3 * xin * math.cos(t / 300.0) + 0.05 * math.sin(t / 100.0)


def run_scheduler_case(cfg, steps, initial, noises):
    s = make_scheduler(cfg)
    s.set_timesteps(steps)
    x = as_dt(initial) * s.init_noise_sigma
    for i, t in enumerate(s.timesteps):
        xin = s.scale_model_input(x, t)
        x = s.step(synthetic_model(xin, t), t, x, noise=None if noises is None else as_dt(noises[i]))
    return s, x


# ----------------------------------------------------------------------------- pipelines


class Pipeline:
    def __init__(self, name, folder, text_spec, unet_cfg, vae_cfg, sched_cfg, tok, weights):
        self.name, self.folder = name, folder
        self.text_spec, self.unet_cfg, self.vae_cfg, self.sched_cfg = text_spec, unet_cfg, vae_cfg, sched_cfg
        self.tok = tok
        self.weights = weights  # component -> {name: array as stored (f32 or f16)}

    def params(self, component):
        return {k: v.astype(DT) for k, v in self.weights[component].items() if v.dtype.kind == "f"}

    def encode_text(self, text, clip_skip=0):
        return text_encoder_forward(self.params("text_encoder"), self.text_spec, self.tok.encode(text), clip_skip)

    @property
    def vae_scale(self):
        return 2 ** (len(self.vae_cfg["block_out_channels"]) - 1)


def run_pipeline(pipe, mode, sched_cfg, prompt, negative, g, steps, strength, height, width, noise, image, mask):
    unet_p, vae_p = pipe.params("unet"), pipe.params("vae")
    sf = pipe.vae_cfg["scaling_factor"]
    cfg_on = g > 1
    cond = pipe.encode_text(prompt)
    context = np.concatenate([pipe.encode_text(negative), cond]) if cfg_on else cond
    s = make_scheduler(sched_cfg)
    s.set_timesteps(steps)
    noise = as_dt(noise)
    timesteps = s.timesteps
    if mode in ("img2img", "inpaint"):
        init_t = min(int(steps * strength), steps)
        t_start = max(steps - init_t, 0)
        timesteps = s.timesteps[t_start:]
        s.begin_index = t_start
    lat_hw = (height // pipe.vae_scale, width // pipe.vae_scale)
    if mode == "text2img":
        latents = noise * s.init_noise_sigma
    elif mode == "img2img":
        image_latents = sf * vae_encode(vae_p, pipe.vae_cfg, as_dt(image))[0]
        latents = s.add_noise(image_latents, noise, timesteps[0])
    else:
        mask = as_dt(mask)
        image = as_dt(image)
        assert strength == 1.0
        latents = noise * s.init_noise_sigma
        mask_lat = interpolate_nearest(mask, lat_hw)
        if pipe.unet_cfg["in_channels"] == 9:
            masked_latents = sf * vae_encode(vae_p, pipe.vae_cfg, image * (mask < 0.5))[0]
        else:
            image_latents = sf * vae_encode(vae_p, pipe.vae_cfg, image)[0]
    for i, t in enumerate(timesteps):
        x = np.concatenate([latents] * 2) if cfg_on else latents
        x = s.scale_model_input(x, t)
        if mode == "inpaint" and pipe.unet_cfg["in_channels"] == 9:
            reps = 2 if cfg_on else 1
            x = np.concatenate([x, np.concatenate([mask_lat] * reps), np.concatenate([masked_latents] * reps)], axis=1)
        out = unet_forward(unet_p, pipe.unet_cfg, x, np.full(x.shape[0], float(t)), context)
        if cfg_on:
            u, c = np.split(out, 2)
            out = u + g * (c - u)
        latents = s.step(out, t, latents)
        if mode == "inpaint" and pipe.unet_cfg["in_channels"] == 4:
            init = image_latents
            if i < len(timesteps) - 1:
                init = s.add_noise(image_latents, noise, timesteps[i + 1])
            latents = (1 - mask_lat) * init + mask_lat * latents
    decoded = vae_decode(vae_p, pipe.vae_cfg, latents / sf)
    return latents, decoded


# ----------------------------------------------------------------------------- fixture files


def dump_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_safetensors(path, tensors, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in tensors.items()}
    save_file(out, str(path), metadata={"format": "pt"})


def write_pipeline(folder, cls, tok, text_spec, unet_cfg, vae_cfg, sched_cfg, seed, fp16):
    for old in folder.rglob("*.safetensors"):
        old.unlink()
    weights = {}
    te = Weights(seed)
    build_text_encoder(te, text_spec, len(tok.vocab))
    un = Weights(seed + 1)
    build_unet(un, unet_cfg)
    va = Weights(seed + 2)
    build_vae(va, vae_cfg)
    dtype, suffix, dname = (np.float16, ".fp16", "float16") if fp16 else (np.float32, "", "float32")
    te_tensors = dict(te.tensors)
    if not fp16:
        te_tensors["text_model.embeddings.position_ids"] = np.arange(MAX_LEN, dtype=np.int64)[None, :]
    files = {
        "text_encoder": folder / "text_encoder" / f"model{suffix}.safetensors",
        "unet": folder / "unet" / f"diffusion_pytorch_model{suffix}.safetensors",
        "vae": folder / "vae" / f"diffusion_pytorch_model{suffix}.safetensors",
    }
    write_safetensors(files["text_encoder"], te_tensors, dtype)
    write_safetensors(files["unet"], un.tensors, dtype)
    write_safetensors(files["vae"], va.tensors, dtype)
    dump_json(folder / "model_index.json", model_index(cls, sched_cfg["_class_name"]))
    dump_json(folder / "text_encoder" / "config.json", text_config(text_spec, tok, dname))
    dump_json(folder / "unet" / "config.json", unet_cfg)
    dump_json(folder / "vae" / "config.json", vae_cfg)
    dump_json(folder / "scheduler" / "scheduler_config.json", sched_cfg)
    write_tokenizer(folder / "tokenizer", tok)
    for comp, path in files.items():  # the reference reads back exactly what was written
        weights[comp] = load_file(str(path))
    return weights


def test_image(rng, h, w):
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    base = np.stack([np.sin(3 * xx + 1.0) * np.cos(2 * yy), xx * yy, np.cos(4 * (xx + yy)) * 0.8])
    image = np.clip(base + 0.2 * rng.standard_normal((3, h, w)), -1, 1)
    # An 8-bit picture, as clients upload: byte b is b / 127.5 - 1 (diffusers' preprocessing).
    return (np.round((image + 1) * 127.5) / 127.5 - 1)[None]


def test_mask(h, w):
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx, r = 0.42 * h, 0.55 * w, 0.3 * h
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float64)[None, None]


# ----------------------------------------------------------------------------- reference


def flat(a):
    return np.asarray(a, dtype=np.float64).ravel()


def compute_reference(pipes, tok_sd, tok_inp):
    """Everything as float64 arrays (or plain values) in a nested structure; dtype = DT."""
    rng = np.random.default_rng(1234)
    ref = {"tokenizer": [], "text_encoder": [], "unet": [], "vae_decode": [], "vae_encode": [], "schedulers": [], "pipelines": []}
    toks = {"tiny-sd": tok_sd, "tiny-sd-inpaint": tok_inp}
    for name, tok in toks.items():
        for text in TOKENIZER_TEXTS:
            ref["tokenizer"].append({"pipeline": name, "text": text, "ids": tok.encode(text)})
    for name, pipe in pipes.items():
        skips = [0, 1] if name == "tiny-sd-inpaint" else [0]
        for clip_skip in skips:
            for text in ["a photo of a cat", ""]:
                hidden = pipe.encode_text(text, clip_skip)
                ref["text_encoder"].append({"pipeline": name, "text": text, "clip_skip": clip_skip, "shape": list(hidden.shape), "hidden": hidden})
    for name, pipe in pipes.items():
        cfg = pipe.unet_cfg
        sample = rng.standard_normal((2, cfg["in_channels"], 8, 8))
        timesteps = [999.0, 261.0] if name == "tiny-sd" else [751.0, 41.0]
        context = np.concatenate([pipe.encode_text(""), pipe.encode_text("a photo of a cat")])
        out = unet_forward(pipe.params("unet"), cfg, as_dt(sample), timesteps, context)
        ref["unet"].append({"pipeline": name, "sample_shape": list(sample.shape), "sample": sample, "timesteps": timesteps,
                            "context_shape": list(context.shape), "context": context, "output": out})
        # sanity: the text must matter
        same = unet_forward(pipe.params("unet"), cfg, as_dt(sample[:1]), timesteps[:1], context[1:])
        ref.setdefault("_checks", []).append((f"{name} unet cond-vs-uncond max diff", np.abs(same - out[:1]).max()))
    for name, pipe in pipes.items():
        latent = rng.standard_normal((1, 4, 8, 8))
        image = vae_decode(pipe.params("vae"), pipe.vae_cfg, as_dt(latent))
        ref["vae_decode"].append({"pipeline": name, "latent_shape": list(latent.shape), "latent": latent, "image_shape": list(image.shape), "image": image})
        size = 8 * pipe.vae_scale
        img = test_image(rng, size, size)
        mean, logvar = vae_encode(pipe.params("vae"), pipe.vae_cfg, as_dt(img))
        ref["vae_encode"].append({"pipeline": name, "image_shape": list(img.shape), "image": img, "latent_shape": list(mean.shape), "mean": mean, "logvar": logvar})
    for case, cfg, steps in SCHEDULER_CASES:
        initial = rng.standard_normal((1, 4, 4, 4))
        needs = SCHEDULERS[cfg["_class_name"]].needs_noise
        noises = [rng.standard_normal((1, 4, 4, 4)) for _ in range(steps)] if needs else None
        s, final = run_scheduler_case(cfg, steps, initial, noises)
        ref["schedulers"].append({
            "name": case, "config": cfg, "steps": steps,
            "timesteps": [float(t) for t in s.timesteps],
            "sigmas": None if s.sigmas is None else s.sigmas,
            "init_noise_sigma": float(s.init_noise_sigma),
            "shape": [1, 4, 4, 4], "initial": initial, "noises": noises, "final": final,
        })
    sd, inp = pipes["tiny-sd"], pipes["tiny-sd-inpaint"]
    img16 = test_image(rng, 16, 16)
    img32 = test_image(rng, 32, 32)
    runs = [
        ("text2img_euler_cfg", sd, "text2img", TINY_SD_SCHEDULER, "a photo of a cat", "", 7.5, 4, None, None, None),
        ("text2img_ddim_negative", sd, "text2img", ddim_config(), "a photo of a cat", "blurry", 5.0, 4, None, None, None),
        ("text2img_turbo_1step", sd, "text2img", euler_config(timestep_spacing="trailing"), "a photo of a cat", "", 1.0, 1, None, None, None),
        ("img2img_euler", sd, "img2img", TINY_SD_SCHEDULER, "a photo of a cat", "", 7.5, 4, 0.5, img16, None),
        ("inpaint_9ch_ddim_vpred", inp, "inpaint", TINY_INPAINT_SCHEDULER, "a photo of a cat", "", 7.5, 4, 1.0, img32, test_mask(32, 32)),
        ("inpaint_4ch_blend_euler", sd, "inpaint", TINY_SD_SCHEDULER, "a photo of a cat", "", 7.5, 4, 1.0, img16, test_mask(16, 16)),
    ]
    for name, pipe, mode, scfg, prompt, neg, g, steps, strength, image, mask in runs:
        size = image.shape[2] if image is not None else 16
        noise = rng.standard_normal((1, 4, size // pipe.vae_scale, size // pipe.vae_scale))
        final, decoded = run_pipeline(pipe, mode, scfg, prompt, neg, g, steps, strength, size, size, noise, image, mask)
        ref["pipelines"].append({
            "name": name, "pipeline": pipe.name, "mode": mode, "scheduler": scfg, "prompt": prompt, "negative_prompt": neg,
            "guidance_scale": g, "steps": steps, "strength": strength, "height": size, "width": size,
            "initial_noise_shape": list(noise.shape), "initial_noise": noise, "image": image, "mask": mask,
            "final_latents": final, "decoded": decoded,
        })
    return ref


OUTPUT_KEYS = {
    "text_encoder": ["hidden"],
    "unet": ["output"],
    "vae_decode": ["image"],
    "vae_encode": ["mean", "logvar"],
    "schedulers": ["final", "sigmas"],
    "pipelines": ["final_latents", "decoded"],
}


def to_json(value):
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iu":
            return [int(v) for v in value.ravel()]
        return [float(f"{v:.8g}") for v in flat(value)]
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (np.floating,)):
        return float(f"{float(value):.8g}")
    return value


def main():
    global DT
    merges = learn_merges(CORPUS, NUM_MERGES)
    tok_sd = ClipTokenizer(merges, "<|endoftext|>")
    tok_inp = ClipTokenizer(merges, "!")
    w_sd = write_pipeline(FIXTURES / "tiny-sd", "StableDiffusionPipeline", tok_sd, TINY_SD_TEXT, TINY_SD_UNET, TINY_SD_VAE, TINY_SD_SCHEDULER, 100, fp16=False)
    w_inp = write_pipeline(FIXTURES / "tiny-sd-inpaint", "StableDiffusionInpaintPipeline", tok_inp, TINY_INPAINT_TEXT, TINY_INPAINT_UNET, TINY_INPAINT_VAE, TINY_INPAINT_SCHEDULER, 200, fp16=True)
    pipes = {
        "tiny-sd": Pipeline("tiny-sd", FIXTURES / "tiny-sd", TINY_SD_TEXT, TINY_SD_UNET, TINY_SD_VAE, TINY_SD_SCHEDULER, tok_sd, w_sd),
        "tiny-sd-inpaint": Pipeline("tiny-sd-inpaint", FIXTURES / "tiny-sd-inpaint", TINY_INPAINT_TEXT, TINY_INPAINT_UNET, TINY_INPAINT_VAE, TINY_INPAINT_SCHEDULER, tok_inp, w_inp),
    }
    print(f"vocab {len(tok_sd.vocab)} tokens, {len(merges)} merges")

    DT = np.float64
    ref = compute_reference(pipes, tok_sd, tok_inp)
    DT = np.float32
    ref32 = compute_reference(pipes, tok_sd, tok_inp)
    DT = np.float64

    for label, value in ref.pop("_checks"):
        print(f"{label}: {value:.4g}")
        assert value > 1e-3, label
    ref32.pop("_checks")
    tolerances = {}
    for section, keys in OUTPUT_KEYS.items():
        worst_gap, worst_abs = 0.0, 0.0
        for e64, e32 in zip(ref[section], ref32[section]):
            for key in keys:
                if e64[key] is None:
                    continue
                a, b = flat(e64[key]), flat(e32[key])
                assert np.all(np.isfinite(a)), (section, key)
                worst_gap = max(worst_gap, float(np.abs(a - b).max()))
                worst_abs = max(worst_abs, float(np.abs(a).max()))
        print(f"{section:13s} max|value| {worst_abs:10.4g}   f32-vs-f64 max gap {worst_gap:.3g}")
        # 20x the float32 gap, rounded up to 1 or 2 or 5 times a power of ten, at least 1e-4
        want = max(20 * worst_gap, 1e-4)
        exp = math.floor(math.log10(want))
        mant = next(m for m in (1, 2, 5, 10) if m * 10**exp >= want)
        tolerances[section] = float(f"{mant * 10**exp:.1g}")
    for e in ref["pipelines"]:
        print(f"  pipeline {e['name']:26s} |latents| {np.abs(e['final_latents']).max():8.4f}  |decoded| {np.abs(e['decoded']).max():8.4f}")
    for e in ref["schedulers"]:
        print(f"  scheduler {e['name']:32s} t={[int(t) if float(t).is_integer() else t for t in e['timesteps']]} |final| {np.abs(e['final']).max():.4f}")
    ids = {e["text"]: e["ids"] for e in ref["tokenizer"] if e["pipeline"] == "tiny-sd"}
    print("  ids('a photo of a cat') =", ids["a photo of a cat"][:8])

    out = {
        "script": "models/scripts/generate_diffusion_reference.py",
        "tolerances": {
            "text_encoder": tolerances["text_encoder"],
            "unet": tolerances["unet"],
            "vae": max(tolerances["vae_decode"], tolerances["vae_encode"]),
            "scheduler": tolerances["schedulers"],
            "pipeline": tolerances["pipelines"],
        },
    }
    for section in ["tokenizer", "text_encoder", "unet", "vae_decode", "vae_encode", "schedulers", "pipelines"]:
        out[section] = [to_json(e) for e in ref[section]]
    OUT_JSON.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print("tolerances", out["tolerances"])
    total = sum(p.stat().st_size for d in ("tiny-sd", "tiny-sd-inpaint") for p in (FIXTURES / d).rglob("*") if p.is_file())
    print(f"wrote {OUT_JSON.relative_to(ROOT)} ({OUT_JSON.stat().st_size} bytes); pipeline folders {total} bytes")


if __name__ == "__main__":
    main()
