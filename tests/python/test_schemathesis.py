"""Schemathesis (property-based requests generated from `/openapi.json`) against the real
binary, every route, bounded in time.

The front server serves a deployment of each kind that loads and answers fast: the tiny
random-weight Qwen3 of the model tests for chat and completions, MiniLM, the DCGAN faces and
the RDN upscaler, the Piper voice, Whisper tiny.en, and an upstream deployment (a second
Hearth with the same tiny Qwen3) for the proxy routes and the forwarded `/v1` routes. All of
them must be ready before the run starts, so a 5xx cannot be the honest 503 of a model that
failed to load: any 5xx is a failure. The schema the run reads is the served document with
one change: `model` (body field, header, `/v1/models/{id}`, the example requests) is narrowed
to the deployments of the route's kind, so generated requests reach the handlers' parsing
instead of stopping at `model_not_found` (negative cases still send other names).

Checks: no 5xx, every 4xx/5xx body in OpenAI's envelope (`schemathesis_hooks.py`), status
codes and content types as documented, no error of the run but the one known Schemathesis bug
(`TOOL_BUGS`); afterwards the server is alive and healthy, and its
own request counter shows ≥ 1,000 requests with every documented route among them.
Bounded by `--max-examples` per operation and `--max-time` for the whole run
(HEARTH_SCHEMATHESIS_SECONDS, default 150); the seed is fixed (HEARTH_SCHEMATHESIS_SEED) so a
CI failure replays locally.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request
from xml.etree import ElementTree

import pytest

from conftest import MODELS, ROOT, Server

TINY = ROOT / "models/tests/fixtures/tiny-qwen3"
HERE = pathlib.Path(__file__).resolve().parent
SECONDS = int(os.environ.get("HEARTH_SCHEMATHESIS_SECONDS", "150"))
SEED = os.environ.get("HEARTH_SCHEMATHESIS_SEED", "16005")
EXAMPLES = os.environ.get("HEARTH_SCHEMATHESIS_EXAMPLES", "40")

UPSTREAM = f"""
[[deployments]]
name = "remote"
kind = "chat"
  [[deployments.targets]]
  source = "{TINY}"
  device = "cpu"
"""


def front_config(upstream: str) -> str:
    return f"""
[[deployments]]
name = "tiny"
kind = "chat"
  [[deployments.targets]]
  source = "{TINY}"
  device = "cpu"

[[deployments]]
name = "minilm"
kind = "embedding"
  [[deployments.targets]]
  source = "{MODELS}/all-minilm-l6-v2"

[[deployments]]
name = "faces"
kind = "image"
  [[deployments.targets]]
  source = "{MODELS}/dcgan-faces/weights.tar"

[[deployments]]
name = "rdn-x2"
kind = "image"
  [[deployments.targets]]
  source = "{MODELS}/rdn-x2"

[[deployments]]
name = "joe"
kind = "speech"
  [[deployments.targets]]
  source = "{MODELS}/piper-joe/en_US-joe-medium.onnx"

[[deployments]]
name = "whisper"
kind = "transcription"
  [[deployments.targets]]
  source = "{MODELS}/whisper-tiny-en"

[[deployments]]
name = "remote"
kind = "chat"
generic_proxy = true
  [[deployments.targets]]
  upstream = "http://{upstream}"
"""


# The deployments each route's `model` is narrowed to.
TEXT = ["tiny", "remote"]
MODELS_OF = {
    "/v1/chat/completions": TEXT,
    "/v1/completions": TEXT,
    "/v1/embeddings": ["minilm"],
    "/v1/images/generations": ["faces"],
    "/v1/images/edits": ["rdn-x2"],
    "/v1/audio/speech": ["joe"],
    "/v1/audio/transcriptions": ["whisper"],
    "/v1/audio/translations": ["whisper"],
    "/model/proxy/{path}": ["remote"],
}
ALL = sorted({m for names in MODELS_OF.values() for m in names})


def get(server: Server, path: str):
    request = urllib.request.Request(server.url(path),
                                     headers={"Authorization": f"Bearer {server.admin_token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def wait_ready(server: Server, names, timeout=120.0):
    deadline = time.time() + timeout
    while True:
        try:
            _, body = get(server, "/readyz")
            states = {n: d["state"] for n, d in json.loads(body)["deployments"].items()}
        except OSError:
            states = {}
        if all(states.get(n) == "ready" for n in names):
            return
        failed = {n: s for n, s in states.items() if s not in ("ready", "loading")}
        assert not failed, f"deployments did not load: {failed}"
        assert time.time() < deadline, f"deployments still loading: {states}"
        time.sleep(0.2)


def narrowed(doc: dict) -> dict:
    """The document with `model` narrowed as the module docstring says."""
    schemas = doc["components"]["schemas"]

    def narrow(schema: dict, names):
        props = schema.get("properties", {})
        if "model" in props:
            props["model"] = {"type": "string", "enum": names}
        for example in [schema.get("example")] + schema.get("examples", []):
            if isinstance(example, dict) and "model" in example:
                example["model"] = names[0]
        for part in schema.get("allOf", []):
            narrow(part, names)

    for path, item in doc["paths"].items():
        names = MODELS_OF.get(path)
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "X-GPUStack-Model" and names:
                    parameter["schema"] = {"type": "string", "enum": names}
                if path == "/v1/models/{id}" and parameter["name"] == "id":
                    parameter["schema"] = {"type": "string", "enum": ALL}
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content["schema"].get("$ref", "")
                if names and ref.startswith("#/components/schemas/"):
                    narrow(schemas[ref.rsplit("/", 1)[1]], names)
    return doc


def request_counts(server: Server) -> dict:
    """`hearth_http_requests_total` per route and status class (`2xx`, `4xx`, …), from the
    server's own metrics."""
    _, text = get(server, "/metrics")
    counts = {}
    for line in text.decode().splitlines():
        match = re.match(r'hearth_http_requests_total\{(.*)\} (\S+)$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            key = (labels["route"], labels["status"][0] + "xx")
            counts[key] = counts.get(key, 0) + float(match.group(2))
    return counts


# Schemathesis' own bug, not the server's: its negative mode sometimes fails to mutate a
# multipart body with files ("ValueError: Unsupported type: 'Binary'", raised while drawing
# the case, before any request). That operation's remaining cases are skipped; every other
# error (a timeout, a connection refused, anything else) fails the test.
TOOL_BUGS = ("Unsupported type: 'Binary'",)


def outcomes(report: pathlib.Path):
    """The run's failures, errors and known tool bugs, from its JUnit report."""
    failures, errors, tool_errors = [], [], []
    for path in report.glob("junit*.xml"):
        for case in ElementTree.parse(path).getroot().iter("testcase"):
            for failure in case.iter("failure"):
                failures.append(f"{case.get('name')}: {failure.text}")
            for error in case.iter("error"):
                text = f"{case.get('name')}: {error.text}"
                (tool_errors if any(b in text for b in TOOL_BUGS) else errors).append(text)
    return failures, errors, tool_errors


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    upstream = Server(tmp_path_factory.mktemp("upstream"), config=UPSTREAM)
    front = Server(tmp_path_factory.mktemp("front"), config=front_config(upstream.addr))
    try:
        wait_ready(upstream, ["remote"])
        wait_ready(front, ALL)
        yield upstream, front
    finally:
        front.stop()
        upstream.stop()


def test_generated_requests_get_honest_answers(servers, tmp_path):
    upstream, front = servers
    _, raw = get(front, "/openapi.json")
    doc = json.loads(raw)
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(narrowed(doc)))
    before = request_counts(front)

    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    started = time.time()
    run = subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("st")), "--no-color", "run", str(schema),
         "--url", front.url(),
         "-H", f"Authorization: Bearer {front.admin_token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "openai_error_envelope",
         "--max-examples", EXAMPLES, "--max-time", str(SECONDS), "--seed", SEED,
         "--workers", "2", "--request-timeout", "60", "--generation-database", "none",
         "--suppress-health-check", "all",
         "--report", "junit", "--report-dir", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SECONDS + 120,
    )
    wall = time.time() - started
    after = request_counts(front)
    made = {}
    for (route, status), count in after.items():
        made.setdefault(route, {})[status] = int(count - before.get((route, status), 0))
    total = sum(sum(by_status.values()) for by_status in made.values())
    print(f"schemathesis: {total} requests in {wall:.0f} s (seed {SEED})")
    for route, by_status in sorted(made.items()):
        print(f"  {route}: {dict(sorted(by_status.items()))}")
    print(run.stdout[-6000:])
    failures, errors, tool_errors = outcomes(tmp_path / "report")
    if tool_errors:
        print(f"schemathesis' own errors, ignored: {len(tool_errors)}")
    assert not failures, "\n\n".join(failures)[:20000]
    assert not errors, "\n\n".join(errors)[:20000]
    assert run.returncode in (0, 1) and (run.returncode == 0 or tool_errors), (
        run.stdout[-20000:] + run.stderr[-4000:])

    assert front.proc.poll() is None, "the server exited"
    assert upstream.proc.poll() is None, "the upstream server exited"
    status, body = get(front, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    wait_ready(front, ALL, timeout=5)

    assert total >= 1000, f"only {total} requests: {made}"
    untested = [path for path in doc["paths"]
                if sum(made.get(path.replace("{path}", "{*path}"), {}).values()) == 0]
    assert not untested, f"routes no request reached: {untested} ({made})"
