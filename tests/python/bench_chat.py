"""Chat serving benchmark (not a test): time to first token and aggregate decode
tokens/s with 1, 4 and 8 concurrent streams against the real server and model.

Run: HEARTH_BIN=~/.cache/hearth/target/debug/hearth .venv/bin/python tests/python/bench_chat.py
"""

import pathlib
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import Server  # noqa: E402
from openai import OpenAI  # noqa: E402

MAX_TOKENS = 64
PROMPT = [{"role": "user", "content": "Write a short paragraph about the history of Paris."}]


def one_stream(client, out):
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(model="smollm2", messages=PROMPT, temperature=0,
                                            max_tokens=MAX_TOKENS, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    out.append((first, tokens, time.perf_counter() - start))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp))
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        one_stream(client, [])  # warm-up
        print("| streams | TTFT p50 ms | aggregate tokens/s | per-stream tokens/s |")
        print("|---:|---:|---:|---:|")
        for streams in (1, 4, 8):
            results = []
            threads = [threading.Thread(target=one_stream, args=(client, results)) for _ in range(streams)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            total = sum(r[1] for r in results)
            ttft = statistics.median(r[0] for r in results) * 1000
            per_stream = statistics.mean(r[1] / r[2] for r in results)
            print(f"| {streams} | {ttft:.0f} | {total / wall:.1f} | {per_stream:.1f} |")
        server.stop()


if __name__ == "__main__":
    main()
