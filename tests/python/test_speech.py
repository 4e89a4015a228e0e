"""/v1/audio/speech from the OpenAI Python SDK, on the default Piper voice (joe).

Every response format is decoded by a real decoder (ffprobe/ffmpeg, not Hearth) and its
duration checked; the fox sentence goes round trip through Hearth's own Whisper tiny.en and
must come back word for word; long input streams sentence by sentence (the first audio
arrives long before the last), over a chunked body and as server-sent events.
"""

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import CONFIG, MODELS, Server

FOX = "The quick brown fox jumps over the lazy dog."
TWELVE = " ".join(
    [
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
    ]
)

SPEECH = CONFIG + f"""
[[deployments]]
name = "piper-joe"
aliases = ["tts-1", "tts-1-hd"]
kind = "speech"
  [deployments.voices]
  narrator = "0"
  [[deployments.targets]]
  source = "{MODELS}/piper-joe/en_US-joe-medium.onnx"

[[deployments]]
name = "whisper-tiny-en"
aliases = ["whisper-1"]
kind = "transcription"
  [[deployments.targets]]
  source = "{MODELS}/whisper-tiny-en"
"""

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("ffprobe")),
    reason="needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg; .ci/run installs them)",
)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hearth"), config=SPEECH)
    yield s
    s.stop()


def client(server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def speak(server, **kwargs) -> bytes:
    args = {"model": "tts-1", "voice": "alloy", "input": FOX, **kwargs}
    return client(server).audio.speech.create(**args).content


def probe_seconds(path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=sample_rate,channels,codec_name",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    info = json.loads(out.stdout)
    stream = info["streams"][0]
    # Opus is always decoded at 48 kHz (RFC 7845); the header records the 24 kHz input.
    rate = 48000 if stream["codec_name"] == "opus" else 24000
    assert int(stream["sample_rate"]) == rate and int(stream["channels"]) == 1, stream
    if "duration" in info["format"]:
        return float(info["format"]["duration"])
    # A streamed WAV's header says "unknown length": count the decoded samples instead.
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return len(pcm) / 2 / 24000


CODEC = {"mp3": "mp3", "opus": "opus", "flac": "flac", "wav": "pcm_s16le"}


@pytest.mark.parametrize("fmt", ["mp3", "opus", "flac", "wav"])
def test_every_format_decodes_to_speech_length(shared_server, tmp_path, fmt):
    audio = speak(shared_server, response_format=fmt)
    path = tmp_path / f"fox.{fmt}"
    path.write_bytes(audio)
    codec = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                            "stream=codec_name", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert codec == CODEC[fmt]
    seconds = probe_seconds(path)
    assert 2.0 < seconds < 4.5, f"{fmt}: {seconds} s"


def test_mp3_is_the_default_and_pcm_is_raw_24khz(shared_server):
    mp3 = speak(shared_server)
    assert mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0)
    pcm = speak(shared_server, response_format="pcm")
    assert len(pcm) % 2 == 0
    assert 2.0 < len(pcm) / 2 / 24000 < 4.5


def test_the_fox_comes_back_word_for_word_through_whisper(shared_server):
    wav = speak(shared_server, response_format="wav")
    text = client(shared_server).audio.transcriptions.create(
        model="whisper-1", file=("fox.wav", wav, "audio/wav"), response_format="text"
    )
    assert re.findall(r"[a-z]+", text.lower()) == re.findall(r"[a-z]+", FOX.lower()), text


def test_speed_scales_the_length(shared_server):
    normal = len(speak(shared_server, response_format="pcm"))
    fast = len(speak(shared_server, response_format="pcm", speed=2.0))
    slow = len(speak(shared_server, response_format="pcm", speed=0.5))
    # Durations are rounded up per phoneme and sampled with Piper's noise, so the ratios are
    # near 1/2 and 2, not exact.
    assert 0.4 < fast / normal < 0.75, fast / normal
    assert 1.6 < slow / normal < 2.4, slow / normal


def test_voices_by_openai_name_alias_and_id(shared_server):
    # Noise is sampled per request, so compare lengths only roughly; all must be speech.
    for voice in ["alloy", "nova", "shimmer", "narrator", "0"]:
        pcm = speak(shared_server, response_format="pcm", voice=voice,
                    instructions="Speak in a cheerful tone.")
        assert 2.0 < len(pcm) / 2 / 24000 < 4.5, voice


def test_long_input_streams_sentence_by_sentence(shared_server):
    chunks = []
    started = time.monotonic()
    first = None
    with client(shared_server).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TWELVE, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        for chunk in response.iter_bytes():
            if first is None:
                first = time.monotonic() - started
            chunks.append(chunk)
    total = time.monotonic() - started
    audio = b"".join(chunks)
    seconds = len(audio) / 2 / 24000
    assert 25 < seconds < 60, seconds
    assert len(chunks) >= 6
    # The first sentence is out long before the twelfth is synthesised.
    assert first < total / 3, (first, total)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "wav"])
def test_streamed_formats_arrive_in_pieces_that_decode(shared_server, tmp_path, fmt):
    pieces = []
    with client(shared_server).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TWELVE[:300], response_format=fmt
    ) as response:
        for chunk in response.iter_bytes(4096):
            pieces.append(chunk)
    path = tmp_path / f"long.{fmt}"
    path.write_bytes(b"".join(pieces))
    assert len(pieces) > 1
    assert probe_seconds(path) > 8


def test_sse_sends_base64_deltas_then_done_with_usage(shared_server, tmp_path):
    request = urllib.request.Request(
        shared_server.url("/v1/audio/speech"),
        data=json.dumps({"model": "tts-1", "voice": "alloy", "input": FOX + " " + FOX,
                         "stream_format": "sse", "response_format": "wav"}).encode(),
        headers={"content-type": "application/json"},
    )
    events = []
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response:
            line = line.decode().strip()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(FOX) * 2 + 1
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    path = tmp_path / "sse.wav"
    path.write_bytes(b"".join(base64.b64decode(d["audio"]) for d in deltas))
    assert 4.5 < probe_seconds(path) < 9


def bad(server, param, **kwargs):
    with pytest.raises(openai.BadRequestError) as caught:
        speak(server, **kwargs)
    error = caught.value.body
    assert error["param"] == param, error
    return error["message"]


def test_bad_input_is_a_400_naming_the_parameter(shared_server):
    bad(shared_server, "input", input="")
    bad(shared_server, "input", input="a" * 4097)
    message = bad(shared_server, "voice", voice="darth")
    assert "alloy" in message and "narrator" in message
    bad(shared_server, "speed", speed=4.5)
    bad(shared_server, "speed", speed=0.1)
    message = bad(shared_server, "response_format", response_format="aac")
    assert "mp3, opus, flac, wav, pcm" in message
    bad(shared_server, "response_format", response_format="ogg")
    bad(shared_server, "stream_format", extra_body={"stream_format": "ws"})
    with pytest.raises(openai.BadRequestError) as caught:
        client(shared_server).audio.speech.create(model="whisper-1", voice="alloy", input=FOX)
    assert caught.value.body["code"] == "model_not_supported"


def test_odd_text_is_spoken_not_crashed(shared_server):
    for text in ["3.14159 km/h, 25°C: naïve café №5!", "日本語", "...?!", "Dr. Smith paid $42.50 on 2026-12-02."]:
        pcm = speak(shared_server, response_format="pcm", input=text)
        assert len(pcm) % 2 == 0, text


def metric(server, name) -> float:
    text = urllib.request.urlopen(server.url("/metrics")).read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_a_client_that_leaves_stops_synthesis_and_usage_counts_characters(tmp_path):
    server = Server(tmp_path, config=SPEECH)
    try:
        with client(server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TWELVE * 3, response_format="pcm"
        ) as response:
            next(response.iter_bytes())
        deadline = time.time() + 30
        while metric(server, "hearth_speech_cancelled_total") < 1:
            assert time.time() < deadline, "synthesis went on after the client left"
            time.sleep(0.2)
        speak(server, response_format="pcm")
        usage = server.cli("usage").stdout
        header, *lines = usage.splitlines()
        column = header.split().index("CHARACTERS")
        row = next(line.split() for line in lines if line.startswith("deployment") and "piper-joe" in line)
        # The request that was cut off is not counted: usage is recorded once the text is spoken.
        assert row[column] == str(len(FOX)), usage
    finally:
        server.stop()
