#!/usr/bin/env python3
"""A random-weight UNet and VAE with the exact shape of Stable Diffusion 1.5's, for speed
measurements (`models/examples/bench_diffusion.rs`) where the real 2 GB of weights cannot
travel: speed does not depend on the weights' values, and what the models draw is noise.

Writes, under FOLDER (default /tmp/sd15-shaped):

* `unet/config.json`: SD 1.5's UNet2DConditionModel config, key for key
  (runwayml/stable-diffusion-v1-5 `unet/config.json`: block_out_channels [320, 640, 1280,
  1280], layers_per_block 2, cross_attention_dim 768, attention_head_dim 8, three
  CrossAttnDownBlock2D and a DownBlock2D, UpBlock2D and three CrossAttnUpBlock2D,
  norm_num_groups 32, sample_size 64, 4 channels in and out; proj_in/proj_out as 1×1
  convolutions), and `unet/diffusion_pytorch_model.fp16.safetensors`: 686 tensors,
  859,520,964 parameters, 1.72 GB in f16.
* `vae/config.json`: SD 1.5's AutoencoderKL config (block_out_channels [128, 256, 512, 512],
  layers_per_block 2, latent_channels 4, norm_num_groups 32, sample_size 512) and
  `vae/diffusion_pytorch_model.fp16.safetensors` (encoder and decoder, 83,653,863
  parameters, with diffusers' current attention names `to_q`/`to_k`/`to_v`/`to_out.0`).

The tensor names and shapes come from the builders of the tiny-fixture writer
(`generate_diffusion_reference.py`: `build_unet`, `build_vae`, the same diffusers naming the
Rust loader reads), run here with a recorder instead of numpy arrays; each tensor is then
drawn and written on its own (std 1/sqrt(fan_in) for weights, 0.1 for biases, 1 ± 0.1 for
norm gains: activations stay O(1)), so memory stays at one tensor, not the whole model.

    .venv/bin/python models/scripts/make_sd15_shaped_unet.py [FOLDER]

Needs numpy (and what generate_diffusion_reference.py imports); ~20 s, 1.9 GB on disk.
"""

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_diffusion_reference import build_unet, build_vae  # noqa: E402

# runwayml/stable-diffusion-v1-5, unet/config.json.
SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# runwayml/stable-diffusion-v1-5, vae/config.json.
SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# SD 1.5's real parameter counts (diffusers' `num_parameters()`), as a check of the layout.
EXPECTED_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863}


class Recorder:
    """The tiny writer's `Weights` interface, recording (name, shape, kind) instead of drawing."""

    def __init__(self):
        self.specs = []
        self.names = set()

    def put(self, name, shape, kind, fan_in=1):
        assert name not in self.names, name
        self.names.add(name)
        self.specs.append((name, tuple(shape), kind, fan_in))

    def linear(self, name, out_f, in_f, bias=True):
        self.put(f"{name}.weight", (out_f, in_f), "weight", in_f)
        if bias:
            self.put(f"{name}.bias", (out_f,), "bias")

    def conv(self, name, out_c, in_c, k):
        self.put(f"{name}.weight", (out_c, in_c, k, k), "weight", in_c * k * k)
        self.put(f"{name}.bias", (out_c,), "bias")

    def norm(self, name, c):
        self.put(f"{name}.weight", (c,), "gain")
        self.put(f"{name}.bias", (c,), "bias")


def draw(rng, shape, kind, fan_in):
    x = rng.standard_normal(shape, dtype=np.float32)
    if kind == "weight":
        x *= 1.0 / math.sqrt(fan_in)
    elif kind == "bias":
        x *= 0.1
    else:
        x = 1.0 + 0.1 * x
    return x.astype(np.float16)


def write_streaming(path, specs, seed):
    """A safetensors file (F16) written tensor by tensor: the header from the shapes first."""
    header, offset = {}, 0
    for name, shape, _, _ in specs:
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape, kind, fan_in in specs:
            f.write(draw(rng, shape, kind, fan_in).tobytes())
    return offset


def write_component(folder, component, config, build, seed):
    recorder = Recorder()
    build(recorder, config)
    parameters = sum(math.prod(shape) for _, shape, _, _ in recorder.specs)
    expected = EXPECTED_PARAMETERS[component]
    assert parameters == expected, f"{component}: {parameters} parameters, SD 1.5 has {expected}"
    (folder / component).mkdir(parents=True, exist_ok=True)
    (folder / component / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    path = folder / component / "diffusion_pytorch_model.fp16.safetensors"
    size = write_streaming(path, recorder.specs, seed)
    print(f"{path}: {len(recorder.specs)} tensors, {parameters:,} parameters, {size / 1e9:.2f} GB")


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sd15-shaped")
    # The tiny writer's builder reads `use_linear_projection`; SD 1.5 leaves it at its
    # default (False: proj_in/proj_out are 1×1 convolutions).
    write_component(folder, "unet", SD15_UNET, lambda w, c: build_unet(w, {**c, "use_linear_projection": False}), 15)
    write_component(folder, "vae", SD15_VAE, build_vae, 16)


if __name__ == "__main__":
    main()
