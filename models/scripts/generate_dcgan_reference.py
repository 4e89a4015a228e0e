#!/usr/bin/env python3
"""Writes models/tests/fixtures/dcgan_reference.json for hearth-models.

A numpy DCGAN generator (the PyTorch tutorial's layout: ConvTranspose2d 4x4, stride 1 then 2,
BatchNorm2d in eval mode, ReLU, final tanh) runs the weights of gan-face-generate==1.1.1
(`weights.tar`, key `netG_state_dict`) on three fixed latents. The checkpoint is read with
zipfile and pickle alone (a persistent-id unpickler), so no PyTorch is needed. The fixture
keeps the latents, every 7th output value and each image's per-channel means.

    python3 -m venv /tmp/npv && /tmp/npv/bin/pip install numpy==2.4.6
    /tmp/npv/bin/python models/scripts/generate_dcgan_reference.py

The weights are $HEARTH_MODELS_DIR/dcgan-faces (default <repo>/.models; scripts/fetch-models
installs them).
"""

import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("HEARTH_MODELS_DIR", ROOT / ".models"))
CHECKPOINT = MODELS / "dcgan-faces" / "weights.tar"
OUT = ROOT / "models" / "tests" / "fixtures" / "dcgan_reference.json"
STRIDE = 7
EPS = 1e-5

DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "LongStorage": np.int64}


def load_state_dicts(path):
    archive = zipfile.ZipFile(path)
    prefix = archive.namelist()[0].split("/")[0]

    def rebuild_tensor(storage, offset, size, stride, *_):
        count = int(np.prod(size)) if size else 1
        flat = storage[offset : offset + max(count, 1)]
        if not size:
            return flat.reshape(())
        strides = [s * flat.itemsize for s in stride]
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides).copy()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return rebuild_tensor
            if module == "torch" and name in DTYPES:
                return name
            if module == "collections" and name == "OrderedDict":
                return OrderedDict
            if module.startswith("torch"):
                return lambda *args, **kwargs: None
            return super().find_class(module, name)

        def persistent_load(self, pid):
            _, kind, key, _location, _count = pid
            raw = archive.read(f"{prefix}/data/{key}")
            return np.frombuffer(raw, dtype=DTYPES[kind])

    return Unpickler(archive.open(f"{prefix}/data.pkl")).load()


def conv_transpose(x, weight, stride, padding):
    """x [n, in, h, w], weight [in, out, k, k] -> [n, out, (h-1)*s - 2p + k, ...]."""
    n, _, h, w = x.shape
    _, out, k, _ = weight.shape
    full = np.zeros((n, out, (h - 1) * stride + k, (w - 1) * stride + k), dtype=np.float64)
    for ki in range(k):
        for kj in range(k):
            contribution = np.einsum("nchw,cd->ndhw", x, weight[:, :, ki, kj])
            full[:, :, ki : ki + (h - 1) * stride + 1 : stride, kj : kj + (w - 1) * stride + 1 : stride] += contribution
    end_h, end_w = full.shape[2] - padding, full.shape[3] - padding
    return full[:, :, padding:end_h, padding:end_w]


def generate(state, latents):
    x = latents.reshape(latents.shape[0], -1, 1, 1).astype(np.float64)
    convs = sorted({int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].ndim == 4})
    for position, index in enumerate(convs):
        stride, padding = (1, 0) if position == 0 else (2, 1)
        x = conv_transpose(x, state[f"main.{index}.weight"].astype(np.float64), stride, padding)
        norm = f"main.{index + 1}"
        if f"{norm}.running_mean" in state:
            mean = state[f"{norm}.running_mean"].astype(np.float64)[None, :, None, None]
            var = state[f"{norm}.running_var"].astype(np.float64)[None, :, None, None]
            gamma = state[f"{norm}.weight"].astype(np.float64)[None, :, None, None]
            beta = state[f"{norm}.bias"].astype(np.float64)[None, :, None, None]
            x = (x - mean) / np.sqrt(var + EPS) * gamma + beta
        x = np.tanh(x) if position == len(convs) - 1 else np.maximum(x, 0.0)
    return x


def main():
    checkpoint = load_state_dicts(CHECKPOINT)
    state = checkpoint["netG_state_dict"]
    latents = np.random.default_rng(20261202).standard_normal((3, 100)).astype(np.float32)
    images = generate(state, latents)
    print("output", images.shape, "range", images.min(), images.max())
    flat = images.reshape(-1)
    fixture = {
        "latents": [[round(float(v), 7) for v in row] for row in latents],
        "shape": list(images.shape),
        "stride": STRIDE,
        "strided": [round(float(v), 6) for v in flat[::STRIDE]],
        "channel_means": [[round(float(v), 7) for v in image.mean(axis=(1, 2))] for image in images],
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
