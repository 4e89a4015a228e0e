// Chat through the unchanged OpenAI Node SDK against the real SmolLM2-135M-Instruct.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer } from "./harness.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

const client = () => new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "Name the capital of France." }];

test("plain chat answers Paris", async () => {
  const r = await client().chat.completions.create({ model: "smollm2", messages, temperature: 0 });
  assert.match(r.choices[0].message.content, /Paris/);
  assert.equal(r.choices[0].finish_reason, "stop");
});

test("stream: role first, one finish, usage last when asked, joined text equals plain", async () => {
  const plain = await client().chat.completions.create({ model: "smollm2", messages, temperature: 0, max_tokens: 12 });
  const stream = await client().chat.completions.create({
    model: "smollm2", messages, temperature: 0, max_tokens: 12, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const finishes = chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason);
  assert.deepEqual(finishes, [plain.choices[0].finish_reason]);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, plain.usage);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.equal(text, plain.choices[0].message.content);
});

test("n=2, stop, seed and logprobs", async () => {
  const ask = { model: "smollm2", messages, temperature: 1, max_tokens: 10, seed: 7 };
  const a = await client().chat.completions.create(ask);
  const b = await client().chat.completions.create(ask);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const two = await client().chat.completions.create({ ...ask, n: 2 });
  assert.equal(two.choices.length, 2);
  const stopped = await client().chat.completions.create({ model: "smollm2", messages, temperature: 0, stop: " Paris" });
  assert.equal(stopped.choices[0].message.content, "The capital of France is");
  const lp = await client().chat.completions.create({
    model: "smollm2", messages, temperature: 0, max_tokens: 3, logprobs: true, top_logprobs: 2,
  });
  assert.equal(lp.choices[0].logprobs.content.length, 3);
  assert.ok(lp.choices[0].logprobs.content.every((e) => e.top_logprobs.length === 2 && e.logprob <= 0));
});
