"""Starts the real `hearth` binary for the OpenAI Python SDK suite.

The binary comes from $HEARTH_BIN (scripts/test sets it), else from the cargo
target dir. Each server gets a temporary data dir and port 0; the address and
the local admin token are read from the files the server publishes.
"""

import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("HEARTH_MODELS_DIR", ROOT / ".models"))

CONFIG = (ROOT / "tests/config.toml").read_text().replace("@MODELS@", str(MODELS))


def hearth_bin() -> str:
    if os.environ.get("HEARTH_BIN"):
        return os.environ["HEARTH_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "hearth")


class Server:
    def __init__(self, tmp: pathlib.Path, config: str = CONFIG, args=()):
        self.tmp = tmp
        self.data = tmp / "data"
        (tmp / "hearth.toml").write_text(config)
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(
            [hearth_bin(), "serve", "--config", str(tmp / "hearth.toml"),
             "--data-dir", str(self.data), "--bind", "127.0.0.1:0", *args],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")},
        )
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("hearth exited: " + (tmp / "server.log").read_text())
            try:
                info = json.loads((self.data / "server.json").read_text())
                if info["pid"] == self.proc.pid:
                    self.addr = info["addr"]
                    self.admin_token = (self.data / "admin.token").read_text().strip()
                    urllib.request.urlopen(self.url("/healthz"), timeout=2)
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.time() > deadline:
                raise RuntimeError("hearth did not start: " + (tmp / "server.log").read_text())
            time.sleep(0.05)

    def url(self, path: str = "") -> str:
        return f"http://{self.addr}{path}"

    @property
    def base_url(self) -> str:
        return self.url("/v1")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([hearth_bin(), "--data-dir", str(self.data), *args],
                              capture_output=True, text=True, check=True)

    def create_key(self, *args: str) -> str:
        out = self.cli("keys", "create", *args)
        return out.stdout.strip().splitlines()[-1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a whole module of read-only tests (loading the chat model takes seconds)."""
    s = Server(tmp_path_factory.mktemp("hearth"))
    yield s
    s.stop()
