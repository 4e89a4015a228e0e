"""The foundation contract through the unchanged OpenAI Python SDK: models,
keys and auth, and the error shapes the SDK maps to exception classes."""

import json
import urllib.error
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import CONFIG, Server


def client(server, key="unused"):
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_open_server_lists_models_with_aliases(server):
    ids = [m.id for m in client(server).models.list()]
    assert ids == ["smollm2", "all-minilm", "faces", "default", "text-embedding-3-small"]


def test_key_from_cli_lists_and_retrieves(server):
    key = server.create_key("--name", "sdk")
    assert key.startswith("hth_")
    models = client(server, key).models.list()
    assert {m.id for m in models.data} == {"smollm2", "all-minilm", "faces", "default", "text-embedding-3-small"}
    model = client(server, key).models.retrieve("default")
    assert model.id == "default"
    assert model.object == "model"
    assert model.owned_by == "hearth"


def test_wrong_key_raises_authentication_error(server):
    server.create_key("--name", "real")
    with pytest.raises(openai.AuthenticationError) as err:
        client(server, "hth_aaaaaaaaaaaa_notarealsecret").models.list()
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"


def test_revoked_key_stops_working_at_once(server):
    key = server.create_key("--name", "short-lived")
    c = client(server, key)
    assert c.models.list().data
    server.cli("keys", "revoke", key.split("_")[1])
    with pytest.raises(openai.AuthenticationError):
        c.models.list()


def test_unknown_model_raises_not_found(server):
    with pytest.raises(openai.NotFoundError) as err:
        client(server).models.retrieve("gpt-17")
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(server).chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])


def test_allow_list_raises_permission_denied(server):
    key = server.create_key("--name", "chat-only", "--models", "smollm2")
    c = client(server, key)
    assert [m.id for m in c.models.list()] == ["smollm2", "default"]
    with pytest.raises(openai.PermissionDeniedError) as err:
        c.models.retrieve("all-minilm")
    assert err.value.body["code"] == "model_not_allowed"


def test_bad_request_names_the_param(server):
    with pytest.raises(openai.BadRequestError) as err:
        client(server).embeddings.create(model="smollm2", input="hello")
    assert err.value.body["param"] == "model"
    assert err.value.body["code"] == "model_not_supported"


def test_a_broken_diffusers_folder_is_a_503_naming_the_missing_file(tmp_path):
    # A diffusers pipeline folder with nothing but its index: the deployment fails to load,
    # the rest of the server runs, and requests say which file is missing.
    pipeline = tmp_path / "sd-pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    config = CONFIG + f"""
[[deployments]]
name = "sd"
kind = "image"
  [[deployments.targets]]
  source = "{pipeline}"
"""
    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server", config=config)
    try:
        with pytest.raises(openai.APIStatusError) as err:
            client(server).images.generate(model="sd", prompt="a face")
        assert err.value.status_code == 503
        assert "tokenizer/vocab.json" in err.value.body["message"]
        faces = client(server).images.generate(model="faces", prompt="a face")
        assert len(faces.data) == 1
    finally:
        server.stop()


def raw(server, method, path, body=None):
    req = urllib.request.Request(server.url(path), data=body, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_malformed_json_and_wrong_method_use_the_envelope(server):
    status, body = raw(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400
    assert body["error"]["code"] == "invalid_json"
    status, body = raw(server, "DELETE", "/v1/models")
    assert status == 405
    assert set(body["error"]) == {"message", "type", "param", "code"}
