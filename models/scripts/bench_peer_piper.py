#!/usr/bin/env python3
"""piper-tts (onnxruntime) on the voice Hearth serves, the peer of `bench_vits`: the same
texts, sentence by sentence as `PiperVoice.synthesize` yields them, two threads.

    python3 -m venv /tmp/vits && /tmp/vits/bin/pip install -r models/scripts/requirements-vits.txt
    /tmp/vits/bin/python models/scripts/bench_peer_piper.py
"""

import os
import time
from pathlib import Path

import onnxruntime
from piper import PiperVoice

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models"))
VOICE = MODELS / "piper-joe" / "en_US-joe-medium.onnx"
ONE = "The quick brown fox jumps over the lazy dog."
TWELVE = " ".join([
    "The weather was cold and bright this morning.",
    "We walked along the river to the old bridge.",
    "A small boat was tied to a wooden post.",
    "Two children were feeding bread to the ducks.",
    "Further on, a man was painting the water.",
    "His dog slept in the shade of a tree.",
    "We stopped at a cafe for a cup of tea.",
    "The owner told us about the town's history.",
    "In the afternoon the clouds came in from the sea.",
    "By four o'clock it had started to rain.",
    "We took the bus back to the station.",
    "It was a good day, and we were tired.",
])


def run(voice, text):
    started = time.perf_counter()
    first = None
    samples = 0
    for chunk in voice.synthesize(text):
        samples += len(chunk.audio_float_array)
        if first is None:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started, samples / voice.config.sample_rate


def main():
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(VOICE), options, providers=["CPUExecutionProvider"])
    voice = PiperVoice.load(str(VOICE))
    voice.session = session
    run(voice, ONE)
    print(f"piper-tts, onnxruntime {onnxruntime.__version__}, 2 threads")
    print("| text | audio (s) | first audio (s) | total (s) | RTF |")
    print("|---|---:|---:|---:|---:|")
    for name, text in [("1 sentence", ONE), ("12 sentences", TWELVE)]:
        first, total, seconds = min((run(voice, text) for _ in range(3)), key=lambda r: r[1])
        print(f"| {name} | {seconds:.2f} | {first:.3f} | {total:.3f} | {total / seconds:.3f} |")


if __name__ == "__main__":
    main()
