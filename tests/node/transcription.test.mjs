// Transcription through the unchanged OpenAI Node SDK against the default Whisper tiny.en.
// The speech is made here by espeak-ng and encoded to MP3 by ffmpeg (programs that are not
// Hearth); the checks name words tiny.en gets right on this voice.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createReadStream, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { CONFIG, MODELS, startServer } from "./harness.mjs";

let server;
let wav;
let mp3;
let german;
before(async () => {
  const dir = mkdtempSync(join(tmpdir(), "hearth-audio-"));
  wav = join(dir, "speech.wav");
  mp3 = join(dir, "speech.mp3");
  execFileSync("espeak-ng", ["-v", "en-us", "-s", "150", "-w", wav, "Can you help me find my keys?"]);
  execFileSync("ffmpeg", ["-loglevel", "error", "-y", "-i", wav, "-c:a", "libmp3lame", mp3]);
  german = join(dir, "german.wav");
  execFileSync("espeak-ng", ["-v", "de", "-s", "140", "-w", german, "Guten Morgen, ich wohne in Berlin und trinke gerne Kaffee."]);
  // The shared deployments plus the two Whispers; only this suite's server loads them.
  server = await startServer(
    `${CONFIG}
[[deployments]]
name = "whisper-tiny-en"
aliases = ["whisper-1"]
kind = "transcription"
  [[deployments.targets]]
  source = "${MODELS}/whisper-tiny-en"

[[deployments]]
name = "whisper-base"
kind = "transcription"
  [[deployments.targets]]
  source = "${MODELS}/whisper-base"
`,
  );
});
after(async () => {
  await server.stop();
});

const client = () => new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, timeout: 300_000 });
const words = (text) => text.toLowerCase().match(/[a-z0-9']+/g) ?? [];
const hasWords = (text) => ["help", "find", "keys"].every((w) => words(text).includes(w));
const transcribe = (options) =>
  client().audio.transcriptions.create({ model: "whisper-1", file: createReadStream(mp3), ...options });

test("json answers text and duration usage", async () => {
  const result = await transcribe({});
  assert.ok(hasWords(result.text), result.text);
  assert.equal(result.usage.type, "duration");
  assert.ok(result.usage.seconds >= 1);
});

test("text, srt and vtt come back as strings", async () => {
  const text = await transcribe({ response_format: "text" });
  assert.equal(typeof text, "string");
  assert.ok(hasWords(text), text);
  const srt = await transcribe({ response_format: "srt" });
  assert.match(srt, /^1\n00:00:0\d,\d{3} --> 00:00:0\d,\d{3}\n/);
  const vtt = await transcribe({ response_format: "vtt" });
  assert.match(vtt, /^WEBVTT\n\n00:00:0\d\.\d{3} --> /);
});

test("verbose_json with word timestamps", async () => {
  const result = await transcribe({ response_format: "verbose_json", timestamp_granularities: ["word", "segment"] });
  assert.equal(result.language, "english");
  assert.equal(result.task, "transcribe");
  assert.ok(result.segments.length >= 1);
  assert.deepEqual(result.words.flatMap((w) => words(w.word)), words(result.text));
  for (let i = 1; i < result.words.length; i++) assert.ok(result.words[i].start >= result.words[i - 1].start);
});

test("stream yields deltas and one done event", async () => {
  const stream = await transcribe({ stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  const done = events.at(-1);
  assert.equal(done.type, "transcript.text.done");
  assert.equal(events.filter((e) => e.type === "transcript.text.done").length, 1);
  assert.equal(events.slice(0, -1).map((e) => e.delta).join(""), done.text);
  assert.ok(hasWords(done.text), done.text);
});

test("a multilingual model translates German into English", async () => {
  const result = await client().audio.translations.create({ model: "whisper-base", file: createReadStream(german) });
  assert.ok(["good", "morning", "berlin"].every((w) => words(result.text).includes(w)), result.text);
  const verbose = await client().audio.translations.create({
    model: "whisper-base",
    file: createReadStream(german),
    response_format: "verbose_json",
  });
  assert.equal(verbose.language, "german");
  assert.equal(verbose.task, "translate");
});

test("translation with an English-only model is a BadRequestError", async () => {
  await assert.rejects(
    client().audio.translations.create({ model: "whisper-1", file: createReadStream(wav) }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.match(err.error.message, /English-only/);
      return true;
    },
  );
});

test("timestamp_granularities without verbose_json is a BadRequestError", async () => {
  await assert.rejects(transcribe({ timestamp_granularities: ["word"] }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "timestamp_granularities");
    return true;
  });
});
