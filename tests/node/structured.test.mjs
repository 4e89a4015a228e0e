// Structured outputs and tool calls through the unchanged OpenAI Node SDK against the real
// SmolLM2-135M-Instruct: the SDK's zod helper, and a streamed call as OpenAI streams it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { zodResponseFormat, zodFunction } from "openai/helpers/zod";
import { z } from "zod";
import { startServer } from "./harness.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

const client = () => new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0 });

const Recipe = z.object({
  title: z.string().max(20),
  servings: z.number().int().min(1).max(12),
  steps: z.array(z.string().max(24)).min(1).max(3),
  vegetarian: z.boolean(),
});

test("zodResponseFormat: parse returns a value the zod schema accepts", async () => {
  const r = await client().chat.completions.parse({
    model: "smollm2",
    messages: [{ role: "user", content: "A soup recipe." }],
    temperature: 0,
    max_tokens: 250,
    response_format: zodResponseFormat(Recipe, "recipe"),
  });
  const parsed = r.choices[0].message.parsed;
  assert.ok(parsed, r.choices[0].message.content);
  Recipe.parse(parsed);
  assert.equal(r.choices[0].finish_reason, "stop");
});

const Weather = z.object({ city: z.string().max(20), unit: z.enum(["celsius", "fahrenheit"]) });

test("a required tool call streams: id, type and name first, then the arguments; no content", async () => {
  const params = {
    model: "smollm2",
    messages: [{ role: "user", content: "Weather in Oslo?" }],
    tools: [zodFunction({ name: "get_weather", parameters: Weather })],
    tool_choice: "required",
    temperature: 0,
    max_tokens: 120,
  };
  const whole = await client().chat.completions.create(params);
  const stream = await client().chat.completions.create({ ...params, stream: true });
  const deltas = [];
  for await (const chunk of stream) if (chunk.choices[0]) deltas.push(chunk.choices[0]);
  assert.ok(deltas.every((d) => !d.delta.content), "no call text as content");
  const calls = deltas.flatMap((d) => d.delta.tool_calls ?? []);
  assert.equal(calls[0].index, 0);
  assert.match(calls[0].id, /^call_/);
  assert.equal(calls[0].type, "function");
  assert.equal(calls[0].function.name, "get_weather");
  const args = calls.filter((c) => c.index === 0).map((c) => c.function?.arguments ?? "").join("");
  assert.equal(args, whole.choices[0].message.tool_calls[0].function.arguments);
  Weather.parse(JSON.parse(args));
  assert.equal(deltas.at(-1).finish_reason, "tool_calls");
});
