"""/v1/audio/transcriptions and /v1/audio/translations from the OpenAI Python SDK.

The speech is made at test time by programs that are not Hearth: espeak-ng speaks the
sentences, ffmpeg encodes them into every container and codec the API takes. The served
model is the default Whisper tiny.en (an English-only model, so translation is refused);
language detection and translation run on the multilingual Whisper base, on German that
espeak-ng speaks.
Words are compared after lower-casing and dropping punctuation; each check names the
words the sentence must contain, which tiny.en gets right on this voice (it mishears a few
others, as faster-whisper on the same weights does).
"""

import json
import re
import shutil
import subprocess
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import CONFIG, MODELS, Server

SENTENCES = [
    ("Please send the report to my office before noon.", ["send", "report", "office", "noon"]),
    ("We are going to the beach on Saturday.", ["going", "beach", "saturday"]),
    ("Can you help me find my keys?", ["help", "find", "keys"]),
    ("My favorite color is blue.", ["favorite", "color", "blue"]),
    ("The train to London leaves at seven o'clock.", ["train", "london", "leaves"]),
    ("Open the window, it is very hot in here.", ["open", "window", "hot"]),
    ("The library closes at nine in the evening.", ["library", "closes", "evening"]),
    ("I bought three apples and a loaf of bread.", ["apples", "bread"]),
    ("Turn left at the next traffic light.", ["turn", "left", "traffic", "light"]),
    ("The meeting has been moved to Thursday.", ["meeting", "moved", "thursday"]),
    ("Dinner will be ready in ten minutes.", ["dinner", "ready", "minutes"]),
    ("Our flight to Paris was delayed by an hour.", ["flight", "paris", "delayed"]),
    ("The museum has a new exhibition about dinosaurs.", ["museum", "dinosaurs"]),
    ("He forgot his umbrella at the restaurant.", ["forgot", "umbrella", "restaurant"]),
    ("The price of the ticket is twenty dollars.", ["price", "ticket"]),
    ("Please close the door when you leave.", ["close", "door", "leave"]),
]
FIRST, FIRST_WORDS = SENTENCES[0]
GERMAN = "Guten Morgen, ich wohne in Berlin und trinke gerne Kaffee."

# The shared suites' deployments, plus the default Whisper (as `examples/hearth.toml` names it)
# and the multilingual base model; only this module's servers load them.
TRANSCRIPTION = CONFIG + f"""
[[deployments]]
name = "whisper-tiny-en"
aliases = ["whisper-1"]
kind = "transcription"
  [[deployments.targets]]
  source = "{MODELS}/whisper-tiny-en"

[[deployments]]
name = "whisper-base"
kind = "transcription"
  [[deployments.targets]]
  source = "{MODELS}/whisper-base"
"""

# ffmpeg arguments per upload: container/codec and the file name the SDK sends.
CODECS = {
    "wav": ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "m4a": ["-c:a", "aac", "-b:a", "96k"],
    "webm": ["-c:a", "libopus", "-b:a", "48k"],
    "opus": ["-c:a", "libopus", "-b:a", "48k"],
}

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("ffmpeg")),
    reason="needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg; .ci/run installs them)",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def speak(text: str, out, voice: str = "en-us") -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(out), text], check=True)


def encode(source, out, args) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), *args, str(out)], check=True)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Every sentence as a WAV, the first in every codec, and all of them as one clip longer
    than a minute."""
    folder = tmp_path_factory.mktemp("audio")
    spoken = []
    for i, (text, _) in enumerate(SENTENCES):
        path = folder / f"sentence{i}.wav"
        speak(text, path)
        spoken.append(path)
    files = {"sentences": spoken}
    for ext, args in CODECS.items():
        files[ext] = folder / f"first.{ext}"
        encode(spoken[0], files[ext], args)
    # The sixteen sentences with 1.5 s of silence between: 68 s, so Whisper needs three
    # windows and sentences straddle window edges.
    silence = folder / "silence.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=22050:cl=mono", "-t", "1.5", "-c:a", "pcm_s16le", str(silence)], check=True)
    parts = folder / "parts.txt"
    parts.write_text("".join(f"file '{p}'\nfile '{silence}'\n" for p in spoken))
    files["german"] = folder / "german.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-s", "140", "-w", str(files["german"]), GERMAN], check=True)
    files["long"] = folder / "long.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(parts),
                    "-c:a", "libmp3lame", "-b:a", "64k", str(files["long"])], check=True)
    return files


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server with the Whisper deployments for the module's read-only tests."""
    s = Server(tmp_path_factory.mktemp("hearth"), config=TRANSCRIPTION)
    yield s
    s.stop()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, config=TRANSCRIPTION)
    yield s
    s.stop()


def client(server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def transcribe(server, path, **kwargs):
    with open(path, "rb") as f:
        return client(server).audio.transcriptions.create(model="whisper-1", file=f, **kwargs)


def has_words(text: str, expected: list[str]) -> bool:
    found = words(text)
    return all(w in found for w in expected)


def test_json_is_text_and_duration_usage(shared_server, audio):
    result = transcribe(shared_server, audio["wav"])
    assert has_words(result.text, FIRST_WORDS), result.text
    assert result.usage.type == "duration"
    assert 2 <= result.usage.seconds <= 5


@pytest.mark.parametrize("ext", list(CODECS))
def test_every_codec_transcribes(shared_server, audio, ext):
    text = transcribe(shared_server, audio[ext], response_format="text")
    assert isinstance(text, str)
    assert has_words(text, FIRST_WORDS), f"{ext}: {text!r}"


def test_text_srt_and_vtt_are_plain_text(shared_server, audio):
    text = transcribe(shared_server, audio["flac"], response_format="text")
    assert isinstance(text, str) and text.endswith("\n") and has_words(text, FIRST_WORDS)
    srt = transcribe(shared_server, audio["flac"], response_format="srt")
    lines = srt.strip().splitlines()
    assert lines[0] == "1"
    assert re.fullmatch(r"00:00:0\d,\d{3} --> 00:00:0\d,\d{3}", lines[1]), lines[1]
    assert has_words(" ".join(lines[2:]), FIRST_WORDS)
    vtt = transcribe(shared_server, audio["flac"], response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    assert re.search(r"00:00:0\d\.\d{3} --> 00:00:0\d\.\d{3}", vtt), vtt


def test_verbose_json_has_segments_and_words(shared_server, audio):
    result = transcribe(shared_server, audio["wav"], response_format="verbose_json",
                        timestamp_granularities=["word", "segment"])
    assert result.task == "transcribe"
    assert result.language == "english"
    assert 2.5 < result.duration < 5
    assert has_words(result.text, FIRST_WORDS)
    (segment,) = result.segments
    assert segment.id == 0 and segment.seek == 0
    assert 0 <= segment.start < segment.end <= result.duration + 0.5
    assert segment.temperature == 0.0
    assert segment.avg_logprob < 0 and 0 <= segment.no_speech_prob < 0.5
    assert segment.compression_ratio > 0 and segment.tokens
    spoken = [words(w.word) for w in result.words]
    assert [w for ws in spoken for w in ws] == words(result.text)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end for w in result.words)
    assert result.words[-1].end <= result.duration + 0.5
    # "noon" is the last word: it ends in the last second of speech.
    assert result.words[-1].end > result.duration - 1.5


def test_words_alone_leave_out_segments(shared_server, audio):
    result = transcribe(shared_server, audio["wav"], response_format="verbose_json",
                        timestamp_granularities=["word"])
    assert result.words and not getattr(result, "segments", None)


def test_stream_sends_deltas_then_done(shared_server, audio):
    with open(audio["wav"], "rb") as f:
        stream = client(shared_server).audio.transcriptions.create(model="whisper-1", file=f, stream=True)
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    assert set(kinds[:-1]) == {"transcript.text.delta"}
    done = events[-1]
    assert "".join(e.delta for e in events[:-1]) == done.text
    assert has_words(done.text, FIRST_WORDS)
    assert done.usage.type == "tokens" and done.usage.output_tokens > 0


def test_a_long_clip_loses_nothing_at_window_edges(shared_server, audio):
    result = transcribe(shared_server, audio["long"], response_format="verbose_json")
    assert result.duration > 60
    found = words(result.text)
    # Every sentence's words, in order.
    expected = [w for _, ws in SENTENCES for w in ws]
    at = 0
    for w in found:
        if at < len(expected) and w == expected[at]:
            at += 1
    assert at == len(expected), f"missing {expected[at:]} in {result.text!r}"
    assert found.count("keys") == 1 and found.count("umbrella") == 1, result.text
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[-1] > 55
    assert len({s.seek for s in result.segments}) >= 3
    assert [s.id for s in result.segments] == list(range(len(result.segments)))


def test_prompt_and_temperature_are_accepted(shared_server, audio):
    result = transcribe(shared_server, audio["wav"], prompt="A note about the quarterly report.",
                        temperature=0.2, language="en")
    assert has_words(result.text, ["report", "office"])


def raw_upload(server, path, fields, content: bytes, filename="clip.wav"):
    boundary = "hearthboundary"
    body = b""
    for name, value in fields.items():
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(server.url(path), data=body, method="POST",
                                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bad_audio_is_a_400_naming_the_file(shared_server, audio):
    cases = {
        "empty": b"",
        "garbage": b"this is not audio, just some text pretending" * 10,
        "truncated": audio["mp3"].read_bytes()[:200],
    }
    for what, content in cases.items():
        status, body = raw_upload(shared_server, "/v1/audio/transcriptions", {"model": "whisper-1"}, content,
                                  filename="clip.mp3")
        assert status == 400, (what, body)
        assert body["error"]["param"] == "file", (what, body)
        assert body["error"]["type"] == "invalid_request_error"
    _, body = raw_upload(shared_server, "/v1/audio/transcriptions", {"model": "whisper-1"},
                         audio["mp3"].read_bytes()[:200], filename="clip.mp3")
    assert "mp3" in body["error"]["message"], body


def test_an_upload_over_25_mb_is_413(shared_server):
    status, body = raw_upload(shared_server, "/v1/audio/transcriptions", {"model": "whisper-1"},
                              b"\0" * (25 * 1024 * 1024 + 1))
    assert status == 413, body
    assert body["error"]["param"] == "file"


def test_parameter_errors(shared_server, audio):
    c = client(shared_server)
    with pytest.raises(openai.BadRequestError) as err, open(audio["wav"], "rb") as f:
        c.audio.transcriptions.create(model="whisper-1", file=f, timestamp_granularities=["word"])
    assert err.value.body["param"] == "timestamp_granularities"
    with pytest.raises(openai.BadRequestError) as err, open(audio["wav"], "rb") as f:
        c.audio.transcriptions.create(model="whisper-1", file=f, language="fr")
    assert "English-only" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err, open(audio["wav"], "rb") as f:
        c.audio.transcriptions.create(model="whisper-1", file=f, response_format="docx")
    assert err.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as err, open(audio["wav"], "rb") as f:
        c.audio.transcriptions.create(model="smollm2", file=f)
    assert err.value.body["code"] == "model_not_supported"


def test_translation_needs_a_multilingual_model(shared_server, audio):
    with pytest.raises(openai.BadRequestError) as err, open(audio["wav"], "rb") as f:
        client(shared_server).audio.translations.create(model="whisper-1", file=f)
    assert "English-only" in err.value.body["message"]
    assert err.value.body["param"] == "model"


def test_usage_counts_audio_seconds(server, audio):
    key = server.create_key("--name", "listener")
    with open(audio["wav"], "rb") as f:
        OpenAI(base_url=server.base_url, api_key=key, max_retries=0).audio.transcriptions.create(
            model="whisper-1", file=f)
    out = server.cli("usage").stdout
    header, *lines = out.splitlines()
    column = header.split().index("AUDIO_SECONDS")
    rows = [line.split() for line in lines]
    deployment = next(r for r in rows if r[1] == "whisper-tiny-en")
    assert 2.5 < float(deployment[column]) < 5, out
    keyed = [r for r in rows if r[0] == "key"]
    assert keyed and 2.5 < float(keyed[0][column]) < 5, out


def test_a_multilingual_model_detects_the_language_and_translates(shared_server, audio):
    c = client(shared_server)
    with open(audio["german"], "rb") as f:
        heard = c.audio.transcriptions.create(model="whisper-base", file=f, response_format="verbose_json")
    assert heard.language == "german"
    assert has_words(heard.text, ["guten", "morgen", "berlin"]), heard.text
    with open(audio["german"], "rb") as f:
        given = c.audio.transcriptions.create(model="whisper-base", file=f, language="de")
    assert has_words(given.text, ["berlin"]), given.text
    with open(audio["german"], "rb") as f:
        english = c.audio.translations.create(model="whisper-base", file=f)
    assert has_words(english.text, ["good", "morning", "berlin"]), english.text
    with open(audio["german"], "rb") as f:
        verbose = c.audio.translations.create(model="whisper-base", file=f, response_format="verbose_json")
    assert verbose.task == "translate" and verbose.language == "german"
    with open(audio["german"], "rb") as f:
        srt = c.audio.translations.create(model="whisper-base", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:0") and "Berlin" in srt
