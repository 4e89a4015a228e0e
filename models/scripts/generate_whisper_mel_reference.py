#!/usr/bin/env python3
"""Writes models/tests/fixtures/whisper_mel_reference.json for hearth-models.

openai-whisper's `log_mel_spectrogram` written out in numpy (float64): a 400-point
periodic Hann window every 160 samples, reflect padding of 200 samples at both ends
(torch.stft(center=True)), the last frame dropped, the power spectrum through the mel
filters of openai-whisper's own `mel_filters.npz`, log10 clamped at 1e-10, a dynamic
range of 8 below the maximum, then (x + 4) / 4. The input is a deterministic test signal
that the Rust test rebuilds from the same formula (`test_signal` there).

    .venv/bin/pip install -r models/scripts/requirements.txt
    .venv/bin/python models/scripts/generate_whisper_mel_reference.py

The filters are $HEARTH_MODELS_DIR/whisper-mel-filters/mel_{80,128}.npy, by default under
<repo>/.models (scripts/fetch-models extracts them from the openai-whisper sdist).
"""

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FILTERS = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models")) / "whisper-mel-filters"
OUT = REPO / "models" / "tests" / "fixtures" / "whisper_mel_reference.json"

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
SAMPLES = 8000  # half a second: 50 frames


def test_signal(n: int) -> np.ndarray:
    """A chirp from 200 Hz upwards plus a gated 1 kHz tone, computed in float64, stored as f32."""
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 1400 * t * t))
    gate = np.where(np.arange(n) % 800 < 400, 1.0, 0.2)
    tone = 0.25 * np.sin(2 * np.pi * 1000 * t) * gate
    return (chirp + tone).astype(np.float32)


def log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    x = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = 1 + (len(x) - N_FFT) // HOP
    stft = np.stack([np.fft.rfft(x[i * HOP : i * HOP + N_FFT] * window) for i in range(frames)], axis=1)
    power = np.abs(stft[:, :-1]) ** 2
    mel = filters.astype(np.float64) @ power
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def main() -> None:
    audio = test_signal(SAMPLES)
    fixture = {"samples": SAMPLES, "cases": []}
    for n_mels in (80, 128):
        filters = np.load(FILTERS / f"mel_{n_mels}.npy")
        spec = log_mel(audio, filters)
        assert spec.shape == (n_mels, SAMPLES // HOP), spec.shape
        fixture["cases"].append(
            {
                "n_mels": n_mels,
                "n_frames": spec.shape[1],
                "values": [round(float(v), 7) for v in spec.reshape(-1)],
            }
        )
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
