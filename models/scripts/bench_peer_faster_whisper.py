#!/usr/bin/env python3
"""Peer benchmark: faster-whisper (CTranslate2) on the same tiny.en folder Hearth serves,
to compare with models/examples/bench_whisper.rs.

The clip is made with espeak-ng and ffmpeg (`--make-clip PATH`: the sixteen sentences of
tests/python/test_transcription.py with 1.5 s of silence between them, 68 s, 16 kHz mono
WAV). faster-whisper runs with the
settings Hearth's defaults match: greedy (beam 1), temperature fallback, timestamps, no
VAD, condition on previous text, `cpu_threads` 2, at compute_type float32 and int8. It
prints the real-time factor and the time of the first segment (the generator yields
segments as they are decoded).

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r models/scripts/requirements-whisper-bench.txt
    .venv-bench/bin/python models/scripts/bench_peer_faster_whisper.py --make-clip /tmp/bench_clip.wav
"""

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models")) / "whisper-tiny-en"
SENTENCES = [
    "Please send the report to my office before noon.",
    "We are going to the beach on Saturday.",
    "Can you help me find my keys?",
    "My favorite color is blue.",
    "The train to London leaves at seven o'clock.",
    "Open the window, it is very hot in here.",
    "The library closes at nine in the evening.",
    "I bought three apples and a loaf of bread.",
    "Turn left at the next traffic light.",
    "The meeting has been moved to Thursday.",
    "Dinner will be ready in ten minutes.",
    "Our flight to Paris was delayed by an hour.",
    "The museum has a new exhibition about dinosaurs.",
    "He forgot his umbrella at the restaurant.",
    "The price of the ticket is twenty dollars.",
    "Please close the door when you leave.",
]


def make_clip(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = []
        for i, text in enumerate(SENTENCES):
            wav = tmp / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
            parts.append(wav)
        silence = tmp / "silence.wav"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono",
                        "-t", "1.5", "-c:a", "pcm_s16le", str(silence)], check=True)
        listing = tmp / "list.txt"
        listing.write_text("".join(f"file '{p}'\nfile '{silence}'\n" for p in parts))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(out)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--make-clip", type=Path, help="write the benchmark clip here first")
    args = parser.parse_args()
    clip = args.clip or args.make_clip
    if args.make_clip:
        make_clip(args.make_clip)
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio

    audio = decode_audio(str(clip), sampling_rate=16000)
    seconds = len(audio) / 16000
    print(f"clip: {clip} ({seconds:.1f} s), model: {MODEL}")
    print("| compute_type | seconds | real-time factor | first segment (s) |")
    print("|---|---:|---:|---:|")
    for compute_type in ("float32", "int8"):
        model = WhisperModel(str(MODEL), device="cpu", compute_type=compute_type, cpu_threads=2)
        list(model.transcribe(audio[:16000], beam_size=1)[0])  # warm-up
        start = time.perf_counter()
        segments, _ = model.transcribe(audio, beam_size=1, vad_filter=False, condition_on_previous_text=True)
        first = None
        text = []
        for segment in segments:
            if first is None:
                first = time.perf_counter() - start
            text.append(segment.text)
        total = time.perf_counter() - start
        print(f"| {compute_type} | {total:.2f} | {total / seconds:.3f} | {first:.2f} |")
    print("text:", "".join(text))


if __name__ == "__main__":
    main()
