"""Structured outputs through the unchanged OpenAI Python SDK against the real
SmolLM2-135M-Instruct: a 135M model rarely writes valid JSON by itself, so every valid
answer here is the grammar's doing. Each answer is checked with `jsonschema`."""

import json
import math

import jsonschema
import openai
import pydantic
import pytest
from openai import OpenAI

ASK = [{"role": "user", "content": "Answer in JSON."}]


@pytest.fixture(scope="module")
def client(shared_server):
    return OpenAI(base_url=shared_server.base_url, api_key="unused", max_retries=0)


NAME = {"type": "string", "maxLength": 16}

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"], "additionalProperties": False,
    },
    "bounded_list": {
        "type": "object",
        "properties": {"colours": {"type": "array", "items": NAME, "minItems": 2, "maxItems": 3}},
        "required": ["colours"], "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green", "blue"]}},
        "required": ["colour"], "additionalProperties": False,
    },
    "const": {
        "type": "object",
        "properties": {"version": {"const": 2}, "name": NAME},
        "required": ["version", "name"], "additionalProperties": False,
    },
    "any_of": {
        "type": "object",
        "properties": {"value": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}},
        "required": ["value"], "additionalProperties": False,
    },
    "refs": {
        "$defs": {"point": {"type": "object",
                            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                            "required": ["x", "y"], "additionalProperties": False}},
        "type": "object",
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"], "additionalProperties": False,
    },
    "pattern": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
        "required": ["code"], "additionalProperties": False,
    },
    "formats": {
        "type": "object",
        "properties": {"day": {"type": "string", "format": "date"},
                       "id": {"type": "string", "format": "uuid"}},
        "required": ["day", "id"], "additionalProperties": False,
    },
    "number_limits": {
        "type": "object",
        "properties": {"price": {"type": "number", "minimum": 1, "maximum": 10},
                       "quantity": {"type": "integer", "exclusiveMinimum": 0, "maximum": 50}},
        "required": ["price", "quantity"], "additionalProperties": False,
    },
    "nested_objects": {
        "type": "object",
        "properties": {"tasks": {"type": "array", "maxItems": 2, "items": {
            "type": "object", "properties": {"title": NAME, "done": {"type": "boolean"}},
            "required": ["title", "done"], "additionalProperties": False}}},
        "required": ["tasks"], "additionalProperties": False,
    },
    "nullable": {
        "type": "object",
        "properties": {"nickname": {"type": ["string", "null"], "maxLength": 12}},
        "required": ["nickname"], "additionalProperties": False,
    },
}


def schema_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_answer_is_valid_against_its_schema(client, name):
    schema = SCHEMAS[name]
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, temperature=0, max_tokens=200,
        response_format=schema_format(name, schema))
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice
    value = json.loads(choice.message.content)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


def test_json_is_compact_and_sampled_choices_are_valid_too(client):
    schema = SCHEMAS["person"]
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, temperature=1.0, seed=3, n=3, max_tokens=200,
        response_format=schema_format("person", schema))
    assert len(r.choices) == 3
    for choice in r.choices:
        text = choice.message.content
        value = json.loads(text)
        jsonschema.validate(value, schema)
        assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False), text


def test_json_object_is_any_object(client):
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Describe a cat in JSON."}],
        temperature=0, max_tokens=60, response_format={"type": "json_object"})
    choice = r.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.finish_reason == "length"
        assert choice.message.content.startswith("{")


def test_max_tokens_cutting_the_json_says_length(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, temperature=0, max_tokens=3,
        response_format=schema_format("person", SCHEMAS["person"]))
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content.startswith("{\"")


def test_streamed_json_joins_to_the_whole_answer(client):
    kwargs = dict(model="smollm2", messages=ASK, temperature=0, max_tokens=200,
                  response_format=schema_format("refs", SCHEMAS["refs"]))
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    jsonschema.validate(json.loads(text), SCHEMAS["refs"])


def test_logprobs_describe_the_masked_distribution(client):
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, temperature=0, max_tokens=200, logprobs=True, top_logprobs=5,
        response_format=schema_format("enum", SCHEMAS["enum"]))
    entries = r.choices[0].logprobs.content
    for entry in entries:
        alternatives = [t.token for t in entry.top_logprobs]
        assert entry.token in alternatives
        mass = sum(math.exp(t.logprob) for t in entry.top_logprobs)
        assert mass <= 1.0001
    # Only tokens that start `{"colour":` may come first, and their probabilities are
    # renormalised over just those: unmasked, the model would rather write prose.
    first = entries[0].top_logprobs
    assert all(t.token.startswith("{") for t in first), first
    assert sum(math.exp(t.logprob) for t in first) == pytest.approx(1.0, abs=1e-3)


class Pet(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=12)
    species: str = pydantic.Field(max_length=12)
    age: int = pydantic.Field(ge=0, le=30)


def test_the_sdks_parse_helper_returns_the_pydantic_model(client):
    r = client.chat.completions.parse(
        model="smollm2", messages=[{"role": "user", "content": "Invent a pet."}],
        temperature=0, max_tokens=200, response_format=Pet)
    pet = r.choices[0].message.parsed
    assert isinstance(pet, Pet)
    assert 0 <= pet.age <= 30


def test_completions_take_a_schema_too(client):
    r = client.completions.create(
        model="smollm2", prompt="A person as JSON:", temperature=0, max_tokens=100,
        extra_body={"response_format": schema_format("person", SCHEMAS["person"])})
    jsonschema.validate(json.loads(r.choices[0].text), SCHEMAS["person"])


def test_schemas_that_cannot_be_enforced_are_400s_naming_the_keyword(client):
    for fmt, param, words in [
        (schema_format("x", {"type": "string", "format": "no-such-format"}), "response_format", "no-such-format"),
        (schema_format("x", {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}),
         "response_format", "example.com"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name", "name"),
        ({"type": "yaml"}, "response_format", "json_schema"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="smollm2", messages=ASK, response_format=fmt)
        assert err.value.body["param"] == param, fmt
        assert words in err.value.body["message"], err.value.body
