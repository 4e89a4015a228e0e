"""Chat and text completions through the unchanged OpenAI Python SDK against the
real SmolLM2-135M-Instruct, with vLLM's streaming semantics."""

import openai
import pytest
from openai import OpenAI

QUESTION = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def client(shared_server):
    return OpenAI(base_url=shared_server.base_url, api_key="unused", max_retries=0)


def test_plain_chat_answers_paris(client):
    r = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0)
    choice = r.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert r.object == "chat.completion"
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_joins_to_the_plain_answer_with_one_finish(client):
    plain = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=20)
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=20, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert all(c.usage is None for c in chunks), "no usage chunk unless asked"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content


def test_include_usage_adds_one_final_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=8, stream=True,
        stream_options={"include_usage": True}))
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    plain = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=8)
    assert chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_max_completion_tokens_gives_length(client):
    r = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_stop_string_is_not_emitted(client):
    r = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, stop=[" Paris"])
    assert r.choices[0].message.content == "The capital of France is"
    assert r.choices[0].finish_reason == "stop"


def test_seed_reproduces_and_n_gives_two_choices(client):
    ask = dict(model="smollm2", messages=[{"role": "user", "content": "Tell me a short story."}],
               temperature=1.0, max_tokens=16, seed=1234)
    a = client.chat.completions.create(**ask)
    b = client.chat.completions.create(**ask)
    assert a.choices[0].message.content == b.choices[0].message.content
    two = client.chat.completions.create(n=2, **ask)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].message.content != two.choices[1].message.content


def test_logprobs_have_openais_shape(client):
    r = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=4,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
    assert "".join(e.token for e in content) == r.choices[0].message.content


def test_bad_parameters_name_their_param(client):
    for kwargs, param in [
        (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
        (dict(temperature=3), "temperature"),
        (dict(n=0), "n"),
        (dict(max_tokens=100_000), "max_tokens"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="smollm2", messages=QUESTION, **kwargs)
        assert err.value.body["param"] == param, kwargs


def test_completions_prompt_forms_and_echo(client):
    r = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=3, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    text = r.choices[0].text
    echoed = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=3,
                                       temperature=0, echo=True)
    assert echoed.choices[0].text == "The capital of France is" + text
    many = client.completions.create(model="smollm2", prompt=["One, two,", "A, B,"], max_tokens=2, temperature=0)
    assert [c.index for c in many.choices] == [0, 1]
    tokens = client.completions.create(model="smollm2", prompt=[504, 3575, 282], max_tokens=2, temperature=0)
    assert tokens.usage.prompt_tokens == 3
    lp = client.completions.create(model="smollm2", prompt="Hello", max_tokens=2, temperature=0, logprobs=2)
    assert len(lp.choices[0].logprobs.tokens) == 2
    assert all(len(t) == 2 for t in lp.choices[0].logprobs.top_logprobs)


def test_completions_stream(client):
    chunks = list(client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4,
                                            temperature=0, stream=True))
    plain = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]
