"""Constrained-decoding benchmark (not a test): decode tokens/s of SmolLM2 with no grammar, a
JSON schema, and the lazy `auto` tool grammar, at 1 and 8 concurrent streams, and the grammar
engine's mask time per round (the `hearth_generation_mask_seconds` histogram; masks are
computed on a second thread while the forward pass runs). Decode speed is measured from each
stream's first token to its last, so it leaves out the prompt's prefill and the grammar's
compilation (both once per request; time to first token is reported beside it).

Run: HEARTH_BIN=~/.cache/hearth/target/debug/hearth .venv/bin/python tests/python/bench_structured.py
"""

import json
import pathlib
import re
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import Server  # noqa: E402
from openai import OpenAI  # noqa: E402

MAX_TOKENS = 64
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
# Long enough that every request runs to MAX_TOKENS, as the unconstrained one does.
SCHEMA = {"type": "json_schema", "json_schema": {"name": "story", "schema": {
    "type": "object", "properties": {"title": {"type": "string", "maxLength": 40},
                                     "story": {"type": "string", "minLength": 600}},
    "required": ["title", "story"], "additionalProperties": False}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
# The fallback system message SmolLM2 gets with TOOLS (README, "Templates without tools"):
# the control row with the same prompt and no grammar separates the grammar's cost from
# the longer prompt's.
FALLBACK = (
    "You can call functions to help with the user's request. The functions, as JSON Schema:\n"
    "<tools>\n" + json.dumps(TOOLS[0], separators=(",", ":")) + "\n</tools>\n"
    "To call a function, answer with only this block for each call:\n"
    "<tool_call>\n{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}\n</tool_call>")
MODES = {
    "none": {},
    "json_schema": {"response_format": SCHEMA},
    "none, tools' prompt": {"messages": [{"role": "system", "content": FALLBACK}] + PROMPT},
    "tools auto (lazy)": {"tools": TOOLS},
}


def mask_totals(server):
    text = urllib.request.urlopen(server.url("/metrics")).read().decode()
    total = re.search(r"^hearth_generation_mask_seconds_sum (\S+)", text, re.M)
    count = re.search(r"^hearth_generation_mask_seconds_count (\S+)", text, re.M)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def run(client, extra, streams):
    """(aggregate decode tokens/s, tokens, median time to first token in ms)."""
    results = []

    def one():
        start = time.perf_counter()
        first = last = None
        tokens = 0
        kwargs = {"messages": PROMPT, **extra}
        for chunk in client.chat.completions.create(
                model="smollm2", temperature=0, max_tokens=MAX_TOKENS,
                stream=True, stream_options={"include_usage": True}, **kwargs):
            now = time.perf_counter()
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            elif chunk.choices and chunk.choices[0].delta.role is None:
                # Any delta after the role prelude: a token has been generated.
                first = first or now
                last = now
        results.append((first - start, first, last, tokens))

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tokens = sum(r[3] for r in results)
    # Tokens after each stream's first, over the span in which the streams decoded.
    span = max(r[2] for r in results) - min(r[1] for r in results)
    ttft = sorted(r[0] for r in results)[len(results) // 2] * 1000
    return (tokens - len(results)) / span, tokens, ttft


def main():
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp))
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        run(client, {}, 1)  # warm-up
        print("| grammar | streams | tokens | decode tokens/s | vs none | TTFT p50 ms | mask ms per round (mean) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for streams in (1, 8):
            baseline = None
            for name, extra in MODES.items():
                best = (0.0, 0, 0.0)
                before = mask_totals(server)
                for _ in range(3):
                    best = max(best, run(client, extra, streams))
                after = mask_totals(server)
                steps = after[1] - before[1]
                mask_ms = (after[0] - before[0]) / steps * 1000 if steps else 0.0
                baseline = baseline or best[0]
                print(f"| {name} | {streams} | {best[1]} | {best[0]:.1f} | "
                      f"{best[0] / baseline * 100:.0f}% | {best[2]:.0f} | {mask_ms:.3f} |")
        server.stop()


if __name__ == "__main__":
    main()
