// Speech through the unchanged OpenAI Node SDK on the default Piper voice: every format
// decoded by ffprobe (not Hearth), streaming, server-sent events and the error cases.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { CONFIG, MODELS, startServer } from "./harness.mjs";

const FOX = "The quick brown fox jumps over the lazy dog.";
let server;
let dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), "hearth-speech-"));
  server = await startServer(
    `${CONFIG}
[[deployments]]
name = "piper-joe"
aliases = ["tts-1"]
kind = "speech"
  [[deployments.targets]]
  source = "${MODELS}/piper-joe/en_US-joe-medium.onnx"
`,
  );
});
after(async () => {
  await server.stop();
});

const client = () => new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
const seconds = (path) => {
  const pcm = execFileSync("ffmpeg", ["-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", "24000", "-"], {
    maxBuffer: 1 << 26,
  });
  return pcm.length / 2 / 24000;
};

for (const format of ["mp3", "opus", "flac", "wav"]) {
  test(`${format} decodes to the sentence's length`, async () => {
    const response = await client().audio.speech.create({ model: "tts-1", voice: "alloy", input: FOX, response_format: format });
    const path = join(dir, `fox.${format}`);
    writeFileSync(path, Buffer.from(await response.arrayBuffer()));
    const s = seconds(path);
    assert.ok(s > 2 && s < 4.5, `${format}: ${s} s`);
  });
}

test("pcm streams in pieces as sentences are ready", async () => {
  const input = Array(6).fill(FOX).join(" ");
  const response = await client().audio.speech.create({ model: "tts-1", voice: "echo", input, response_format: "pcm" });
  let pieces = 0;
  let bytes = 0;
  for await (const chunk of response.body) {
    pieces += 1;
    bytes += chunk.length;
  }
  assert.ok(pieces >= 3, `${pieces} pieces`);
  const s = bytes / 2 / 24000;
  assert.ok(s > 12 && s < 27, `${s} s`);
});

test("sse sends speech.audio.delta then speech.audio.done", async () => {
  const response = await fetch(`${server.baseURL}/audio/speech`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tts-1", voice: "alloy", input: FOX, stream_format: "sse", response_format: "pcm" }),
  });
  const events = (await response.text())
    .split("\n")
    .filter((l) => l.startsWith("data: "))
    .map((l) => JSON.parse(l.slice(6)));
  assert.ok(events.some((e) => e.type === "speech.audio.delta" && e.audio.length > 0));
  const done = events.at(-1);
  assert.equal(done.type, "speech.audio.done");
  assert.equal(done.usage.input_tokens, FOX.length);
});

test("bad requests are 400s naming the parameter", async () => {
  for (const [param, extra] of [
    ["input", { input: "" }],
    ["voice", { voice: "nobody" }],
    ["speed", { speed: 9 }],
    ["response_format", { response_format: "aac" }],
  ]) {
    await assert.rejects(
      client().audio.speech.create({ model: "tts-1", voice: "alloy", input: FOX, ...extra }),
      (e) => e.status === 400 && e.error?.param === param,
      param,
    );
  }
});
