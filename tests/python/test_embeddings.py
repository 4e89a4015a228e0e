"""Embeddings through the unchanged OpenAI Python SDK against the real
all-MiniLM-L6-v2, compared with the committed numpy reference."""

import json
import math
import pathlib

import pytest
from openai import OpenAI

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "models/tests/fixtures/minilm_reference.json"


def client(server):
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def reference():
    data = json.loads(FIXTURE.read_text())
    return [(c["sentence"], c["embedding"]) for c in data["cases"]]


def test_default_base64_path_matches_the_reference_to_4_decimals(server):
    cases = reference()
    # The SDK asks for base64 by default and decodes it to floats itself.
    result = client(server).embeddings.create(model="all-minilm", input=[s for s, _ in cases])
    assert len(result.data) == len(cases)
    for item, (sentence, expected) in zip(result.data, cases):
        assert len(item.embedding) == 384
        worst = max(abs(a - b) for a, b in zip(item.embedding, expected))
        assert worst < 1e-4, f"{sentence!r}: max abs diff {worst}"
    assert result.usage.prompt_tokens == sum(len(c["token_ids"]) for c in json.loads(FIXTURE.read_text())["cases"])


def test_float_format_and_semantics(server):
    result = client(server).embeddings.create(
        model="all-minilm", encoding_format="float",
        input=["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."],
    )
    food, bread, movie = (d.embedding for d in result.data)
    assert cos(food, bread) > cos(food, movie) + 0.5
    assert abs(cos(food, bread) - 0.7553) < 1e-3


def test_dimensions_truncate_and_renormalise(server):
    full = client(server).embeddings.create(model="all-minilm", input="Paris is in France.").data[0].embedding
    short = client(server).embeddings.create(model="all-minilm", input="Paris is in France.", dimensions=64).data[0].embedding
    assert len(short) == 64
    assert abs(math.sqrt(sum(x * x for x in short)) - 1) < 1e-5
    assert cos(short, full[:64]) > 0.99999


def test_aliases_and_token_input(server):
    c = client(server)
    text = c.embeddings.create(model="text-embedding-3-small", input="hello world").data[0].embedding
    cases = json.loads(FIXTURE.read_text())["cases"]
    tokens = c.embeddings.create(model="all-minilm", input=[cases[0]["token_ids"]]).data[0].embedding
    assert cos(tokens, cases[0]["embedding"]) > 0.9999
    assert len(text) == 384


def test_bad_dimensions_are_a_bad_request(server):
    import openai
    with pytest.raises(openai.BadRequestError) as err:
        client(server).embeddings.create(model="all-minilm", input="x", dimensions=1000)
    assert err.value.body["param"] == "dimensions"
