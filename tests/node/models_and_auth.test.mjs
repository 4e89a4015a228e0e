// The foundation contract through the unchanged OpenAI Node SDK.
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

const client = (apiKey = "unused") => new OpenAI({ baseURL: server.baseURL, apiKey, maxRetries: 0 });

test("lists models with aliases while open", async () => {
  const ids = [];
  for await (const model of client().models.list()) ids.push(model.id);
  assert.deepEqual(ids, ["smollm2", "all-minilm", "faces", "default", "text-embedding-3-small"]);
});

test("unknown model is a NotFoundError", async () => {
  await assert.rejects(client().models.retrieve("gpt-17"), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.code, "model_not_found");
    return true;
  });
});

test("bad request names the param", async () => {
  await assert.rejects(client().embeddings.create({ model: "smollm2", input: "hi" }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "model");
    return true;
  });
});

test("keys: a CLI key works, a wrong key is an AuthenticationError, allow-lists give 403", async () => {
  const key = server.createKey("--name", "node", "--models", "default");
  const model = await client(key).models.retrieve("smollm2");
  assert.equal(model.id, "smollm2");
  assert.equal(model.object, "model");
  await assert.rejects(client("hth_aaaaaaaaaaaa_wrongsecret").models.list(), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError);
    assert.equal(err.status, 401);
    return true;
  });
  await assert.rejects(client().models.list(), OpenAI.AuthenticationError, "open mode ends with the first key");
  await assert.rejects(client(key).models.retrieve("all-minilm"), (err) => {
    assert.ok(err instanceof OpenAI.PermissionDeniedError);
    assert.equal(err.code, "model_not_allowed");
    return true;
  });
});
