"""Tool calling with the tool-capable default, Qwen2.5-Coder-0.5B-Instruct (GGUF), through the
unchanged OpenAI Python SDK: its own template renders the tools (Hermes `<tool_call>`), and
with `tool_choice: "auto"` the model decides to call; once it writes `<tool_call>` the
grammar holds the call to the function's schema. One server with only this model."""

import json

import jsonschema
import pytest
from conftest import MODELS, Server
from openai import OpenAI

CONFIG = f"""
[[deployments]]
name = "qwen2.5-coder-0.5b-instruct"
aliases = ["qwen"]
kind = "chat"
  [[deployments.targets]]
  source = "{MODELS}/qwen2.5-coder-0.5b-instruct/model.gguf"
"""

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"],
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city", "parameters": PARAMETERS}}]
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("qwen"), config=CONFIG)
    yield OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    server.stop()


def test_auto_the_model_chooses_to_call_with_valid_arguments(client):
    r = client.chat.completions.create(model="qwen", messages=ASK, tools=TOOLS, temperature=0, max_tokens=60)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMETERS)
    assert arguments["city"] == "Paris"
    assert choice.message.content is None


def test_auto_streamed_equals_the_whole_answer(client):
    kwargs = dict(model="qwen", messages=ASK, tools=TOOLS, temperature=0, max_tokens=60)
    whole = client.chat.completions.create(**kwargs).choices[0].message
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any("tool_call" in (d.content or "") for d in deltas)
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].function.name == whole.tool_calls[0].function.name
    assert "".join(tc.function.arguments or "" for tc in calls) == whole.tool_calls[0].function.arguments


def test_a_call_to_a_function_the_request_lacks_stays_content(client):
    # Asked for code, this small model invents an `add_numbers` call in a fenced block:
    # not one of the request's functions, so it is text, not a tool call.
    r = client.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "Write a Python function that adds two numbers."}],
        tools=TOOLS, temperature=0, max_tokens=40)
    choice = r.choices[0]
    assert not choice.message.tool_calls
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.content.strip()
