// Embeddings through the unchanged OpenAI Node SDK against the real all-MiniLM-L6-v2.
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
const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
const sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."];

test("default settings (base64 on the wire) give unit vectors with meaning", async () => {
  const result = await client().embeddings.create({ model: "all-minilm", input: sentences });
  assert.equal(result.data.length, 3);
  const [food, bread, movie] = result.data.map((d) => d.embedding);
  assert.equal(food.length, 384);
  assert.ok(Math.abs(dot(food, food) - 1) < 1e-5);
  assert.ok(Math.abs(dot(food, bread) - 0.7553) < 1e-3, `${dot(food, bread)}`);
  assert.ok(dot(food, bread) > dot(food, movie) + 0.5);
  assert.ok(result.usage.prompt_tokens > 20);
});

test("float and base64 agree", async () => {
  const asFloat = await client().embeddings.create({ model: "all-minilm", input: "hello", encoding_format: "float" });
  const asDefault = await client().embeddings.create({ model: "all-minilm", input: "hello" });
  const a = asFloat.data[0].embedding;
  const b = asDefault.data[0].embedding;
  assert.ok(a.every((x, i) => Math.abs(x - b[i]) < 1e-6));
});

test("dimensions truncate and renormalise", async () => {
  const result = await client().embeddings.create({ model: "all-minilm", input: sentences, dimensions: 32 });
  for (const d of result.data) {
    assert.equal(d.embedding.length, 32);
    assert.ok(Math.abs(dot(d.embedding, d.embedding) - 1) < 1e-5);
  }
});

test("an empty string is a BadRequestError naming input", async () => {
  await assert.rejects(client().embeddings.create({ model: "all-minilm", input: ["ok", ""] }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "input");
    return true;
  });
});
