"""Tool calling through the unchanged OpenAI Python SDK against the real SmolLM2-135M-Instruct.
Its template knows no tools, so it gets them in Hearth's fallback system prompt; with
`required` or a named function the grammar makes every call parse and match its schema,
even from a model this small."""

import json

import jsonschema
import openai
import pytest
from openai import OpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20},
                           "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 24}},
            "required": ["zone"], "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def client(shared_server):
    return OpenAI(base_url=shared_server.base_url, api_key="unused", max_retries=0)


def check_calls(message):
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function"
        assert call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    assert len({c.id for c in message.tool_calls}) == len(message.tool_calls), "unique ids"


def test_required_always_calls_a_valid_function(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    check_calls(choice.message)
    assert choice.message.content is None


def test_a_named_function_is_the_one_called(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, temperature=0, max_tokens=120,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    message = r.choices[0].message
    check_calls(message)
    assert [c.function.name for c in message.tool_calls] == ["get_time"]


def test_sampled_calls_are_valid_too(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required",
        temperature=1.2, seed=11, n=3, max_tokens=160)
    for choice in r.choices:
        assert choice.finish_reason in ("tool_calls", "length")
        if choice.finish_reason == "tool_calls":
            check_calls(choice.message)


def test_none_answers_in_text(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=30)
    message = r.choices[0].message
    assert not message.tool_calls
    assert message.content


def test_parallel_tool_calls_false_gives_exactly_one_call(client):
    ask = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
    r = client.chat.completions.create(
        model="smollm2", messages=ask, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
        temperature=0, max_tokens=200)
    check_calls(r.choices[0].message)
    assert len(r.choices[0].message.tool_calls) == 1


def test_a_streamed_call_arrives_as_openai_streams_it_and_equals_the_whole(client):
    kwargs = dict(model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required",
                  temperature=0, max_tokens=120)
    whole = client.chat.completions.create(**kwargs).choices[0].message
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas), "a call's text never shows as content"
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    first = calls[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == whole.tool_calls[0].function.name
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.index == 0)
    assert arguments == whole.tool_calls[0].function.arguments
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_a_full_round_trip_call_result_answer(client):
    first = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120)
    call = first.choices[0].message.tool_calls[0]
    messages = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 22, "sky": "sunny"})},
    ]
    r = client.chat.completions.create(
        model="smollm2", messages=messages, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=40)
    answer = r.choices[0].message
    assert answer.content and not answer.tool_calls
    alone = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=1)
    assert r.usage.prompt_tokens > alone.usage.prompt_tokens + 20, "the call and its result are in the prompt"


def test_legacy_functions_answer_with_function_call(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, temperature=0, max_tokens=120,
        functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    choice = r.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments), SCHEMAS["get_weather"])


def test_strict_pydantic_tools_from_the_sdk_helper(client):
    import pydantic

    class Lookup(pydantic.BaseModel):
        """Look a word up in the dictionary."""
        word: str = pydantic.Field(max_length=20)

    r = client.chat.completions.parse(
        model="smollm2", messages=[{"role": "user", "content": "Define 'hearth'."}],
        tools=[openai.pydantic_function_tool(Lookup)], tool_choice="required", temperature=0, max_tokens=80)
    call = r.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Lookup)


def test_bad_tool_requests_are_400s_naming_the_param(client):
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "format": "no-such-format"}}}}}
    for kwargs, param in [
        (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
        (dict(tool_choice="required"), "tool_choice"),
        (dict(tools=[{"type": "retrieval"}]), "tools[0].type"),
        (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools[0].function.name"),
        (dict(tools=[bad_schema], tool_choice="required"), "tools"),
        (dict(tools=TOOLS, functions=[WEATHER["function"]]), "functions"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="smollm2", messages=ASK, **kwargs)
        assert err.value.body["param"] == param, kwargs
