"""Chat from an upstream server through Hearth, with the unchanged OpenAI Python SDK: a second
Hearth process serves a model (the tiny Qwen3 checkpoint of the model tests), the front one
forwards to it, and a non-OpenAI endpoint of the upstream is reached through /model/proxy."""

import json
import pathlib
import urllib.request

import openai
import pytest

from conftest import ROOT, Server

TINY = ROOT / "models/tests/fixtures/tiny-qwen3"


@pytest.fixture(scope="module")
def hops(tmp_path_factory):
    upstream = Server(tmp_path_factory.mktemp("upstream"), config=(
        '[[deployments]]\nname = "tiny-qwen3"\nkind = "chat"\n'
        f'  [[deployments.targets]]\n  source = "{TINY}"\n  device = "cpu"\n'))
    front = Server(tmp_path_factory.mktemp("front"), config=(
        '[[deployments]]\nname = "tiny-qwen3"\nkind = "chat"\ngeneric_proxy = true\n'
        f'  [[deployments.targets]]\n  upstream = "http://{upstream.addr}"\n'))
    yield upstream, front
    front.stop()
    upstream.stop()


def test_streamed_chat_from_an_upstream_server(hops):
    upstream, front = hops
    question = [{"role": "user", "content": "What is the capital of France?"}]
    through = openai.OpenAI(base_url=front.base_url, api_key="unused-in-open-mode")
    direct = openai.OpenAI(base_url=upstream.base_url, api_key="unused-in-open-mode")

    chunks = list(through.chat.completions.create(
        model="tiny-qwen3", messages=question, stream=True, temperature=0, max_tokens=12))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    # No usage chunk the client did not ask for.
    assert all(c.usage is None for c in chunks)

    same = direct.chat.completions.create(
        model="tiny-qwen3", messages=question, temperature=0, max_tokens=12)
    assert text == same.choices[0].message.content

    # With include_usage asked for, the upstream's usage chunk comes through.
    with_usage = list(through.chat.completions.create(
        model="tiny-qwen3", messages=question, stream=True, temperature=0, max_tokens=12,
        stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 12


def test_a_non_openai_endpoint_through_the_generic_proxy(hops):
    _, front = hops
    request = urllib.request.Request(front.url("/model/proxy/readyz"),
                                     headers={"X-GPUStack-Model": "tiny-qwen3"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["deployments"]["tiny-qwen3"]["state"] == "ready"   # the upstream's own /readyz


def test_an_unknown_model_is_a_not_found_error(hops):
    _, front = hops
    client = openai.OpenAI(base_url=front.base_url, api_key="x")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
