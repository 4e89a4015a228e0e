// Stable Diffusion through the unchanged OpenAI Node SDK, on the tiny random-weight diffusers
// folders under models/tests/fixtures: `tiny-sd` (text-to-image, Euler, native 16x16) and
// `tiny-sd-inpaint` (a 9-channel inpainting UNet, DDIM, native 32x32). The pictures are
// noise, so behaviour is checked: seeds reproduce bytes, parameters change pictures, sizes
// are read from the PNG's own header, pixels from a PNG decoder written here (not Hearth's),
// streams send OpenAI's events, bad input is a 400 naming the parameter, and a client that
// leaves stops its work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, inflateSync } from "node:zlib";
import OpenAI, { toFile } from "openai";
import { startServer } from "./harness.mjs";

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), "../../models/tests/fixtures");
const SAMPLERS = ["euler", "euler_a", "ddim", "dpm++_2m", "lcm"];
const CONFIG = `
[[deployments]]
name = "tiny-sd"
aliases = ["dall-e-2"]
kind = "image"
  [deployments.diffusion]
  steps = 4
  [[deployments.targets]]
  source = "${join(FIXTURES, "tiny-sd")}"

[[deployments]]
name = "tiny-inpaint"
kind = "image"
  [deployments.diffusion]
  steps = 3
  [[deployments.targets]]
  source = "${join(FIXTURES, "tiny-sd-inpaint")}"
`;

let server;
before(async () => {
  server = await startServer(CONFIG);
});
after(async () => {
  await server.stop();
});

const client = (s = server, timeout = 300_000) =>
  new OpenAI({ baseURL: s.baseURL, apiKey: "unused", maxRetries: 0, timeout });

// --- PNG, written and read here --------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

// An 8-bit RGB (3 channels) or RGBA (4) PNG of `width`×`height` from `pixel(x, y)`.
function encodePng(width, height, channels, pixel) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4);
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, channels === 4 ? 6 : 2, 0, 0, 0], 8);
  const stride = 1 + width * channels;
  const rows = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set(pixel(x, y), y * stride + 1 + x * channels);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// { width, height, channels, data } of an 8-bit, non-interlaced RGB or RGBA PNG.
function decodePng(bytes) {
  assert.equal(bytes.subarray(1, 4).toString(), "PNG");
  let at = 8;
  let width, height, channels;
  const idat = [];
  while (at < bytes.length) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.subarray(at + 4, at + 8).toString();
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, "8-bit");
      assert.equal(data[12], 0, "not interlaced");
      channels = { 2: 3, 6: 4 }[data[9]];
      assert.ok(channels, `colour type ${data[9]}`);
    } else if (type === "IDAT") idat.push(data);
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let i = 0; i < stride; i++) {
      const v = raw[y * (stride + 1) + 1 + i];
      const a = i >= channels ? out[y * stride + i - channels] : 0;
      const b = y > 0 ? out[(y - 1) * stride + i] : 0;
      const c = y > 0 && i >= channels ? out[(y - 1) * stride + i - channels] : 0;
      const paeth = () => {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      };
      const predictor = [0, a, b, (a + b) >> 1, filter === 4 ? paeth() : 0][filter];
      out[y * stride + i] = (v + predictor) & 0xff;
    }
  }
  return { width, height, channels, data: out };
}

const bytesOf = (b64) => Buffer.from(b64, "base64");
// [format, width, height] from the PNG header (or the JPEG frame).
function probe(bytes) {
  if (bytes.subarray(1, 4).toString() === "PNG") return ["png", bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    for (let at = 2; at < bytes.length; ) {
      const marker = bytes[at + 1];
      if (marker >= 0xc0 && marker <= 0xc2) return ["jpeg", bytes.readUInt16BE(at + 7), bytes.readUInt16BE(at + 5)];
      at += 2 + bytes.readUInt16BE(at + 2);
    }
  }
  return ["unknown", 0, 0];
}
const size = (b64) => probe(bytesOf(b64));

// Mean absolute difference of two decoded RGB pictures over columns [x0, x1).
function meanDifference(p, q, x0 = 0, x1 = p.width) {
  assert.deepEqual([p.width, p.height], [q.width, q.height]);
  let sum = 0;
  let count = 0;
  for (let y = 0; y < p.height; y++) {
    for (let x = x0; x < x1; x++) {
      for (let k = 0; k < 3; k++) {
        sum += Math.abs(p.data[(y * p.width + x) * p.channels + k] - q.data[(y * q.width + x) * q.channels + k]);
        count++;
      }
    }
  }
  return sum / count;
}
function spread(pictures, x0, x1) {
  let total = 0;
  let pairs = 0;
  for (let i = 0; i < pictures.length; i++) {
    for (let j = i + 1; j < pictures.length; j++) {
      total += meanDifference(pictures[i], pictures[j], x0, x1);
      pairs++;
    }
  }
  return total / pairs;
}

const card = (w, h, turn = 0) =>
  encodePng(w, h, 3, (x, y) => {
    const [u, v] = turn ? [y, x] : [x, y];
    return [(u * 255) / (w - 1), (v * 255) / (h - 1), (Math.floor((u * 4) / w) + Math.floor((v * 4) / h)) % 2 ? 255 : 0];
  });
// OpenAI's mask: transparent (repainted) where `editable(x, y)`, opaque elsewhere.
const mask = (w, h, editable = (x) => x < w / 2) => encodePng(w, h, 4, (x, y) => [0, 0, 0, editable(x, y) ? 0 : 255]);
const file = (bytes, name = "picture.png") => toFile(bytes, name, { type: "image/png" });

const generate = (body, s = server) => client(s).images.generate({ model: "tiny-sd", prompt: "a lighthouse", ...body });
const edit = async (picture, body = {}) =>
  client().images.edit({ model: "tiny-sd", prompt: "watercolour", image: await file(picture), ...body });
const inpaint = async (picture, m, body = {}) =>
  client().images.edit({
    model: "tiny-inpaint",
    prompt: "a window",
    image: await file(picture),
    mask: await file(m, "mask.png"),
    ...body,
  });

async function rejects400(promise, param, label = param) {
  await assert.rejects(
    promise,
    (e) => {
      assert.equal(e.status, 400, `${label}: ${e}`);
      assert.equal(e.param, param, `${label}: ${JSON.stringify(e.error)}`);
      assert.equal(e.type, "invalid_request_error");
      return true;
    },
    label,
  );
}

// --- tests -----------------------------------------------------------------------------

test("/v1/models shows the diffusion facts", async () => {
  const sd = (await client().models.retrieve("tiny-sd")).image;
  assert.deepEqual(sd.capabilities, ["generate", "edit"]);
  assert.equal(sd.family, "diffusion");
  assert.equal(sd.uses_prompt, true);
  assert.deepEqual(sd.size_range, { multiple: 8, min: 8, max: 32, default: 16 });
  assert.deepEqual(sd.samplers, SAMPLERS);
  const inpainting = (await client().models.retrieve("tiny-inpaint")).image;
  assert.deepEqual(inpainting.capabilities, ["edit"]);
  assert.deepEqual(inpainting.size_range, { multiple: 8, min: 16, max: 64, default: 32 });
});

test("a seed reproduces byte-identical PNGs; image i uses seed + i", async () => {
  const two = await generate({ n: 2, seed: 42 });
  assert.equal(two.data.length, 2);
  for (const item of two.data) assert.deepEqual(size(item.b64_json), ["png", 16, 16]);
  assert.equal(two.size, "16x16");
  assert.equal(two.seed, 42);
  assert.notEqual(two.data[0].b64_json, two.data[1].b64_json);
  const again = await generate({ n: 2, seed: 42 });
  assert.deepEqual(again.data.map((d) => d.b64_json), two.data.map((d) => d.b64_json));
  assert.equal((await generate({ seed: 43 })).data[0].b64_json, two.data[1].b64_json);
  assert.equal((await generate({ model: "dall-e-2", seed: 42 })).data[0].b64_json, two.data[0].b64_json);
  // Other seeds and prompts make other images.
  assert.notEqual((await generate({ seed: 44 })).data[0].b64_json, two.data[0].b64_json);
  assert.notEqual((await generate({ seed: 42, prompt: "a bicycle" })).data[0].b64_json, two.data[0].b64_json);
  // The seed the server picked reproduces its image.
  const unseeded = await generate({});
  assert.ok(Number.isSafeInteger(unseeded.seed));
  assert.equal((await generate({ seed: unseeded.seed })).data[0].b64_json, unseeded.data[0].b64_json);
});

test("free sizes within the range, non-square included", async () => {
  for (const [asked, w, h] of [["32x16", 32, 16], ["16x32", 16, 32], ["8x24", 8, 24], ["auto", 16, 16]]) {
    const result = await generate({ size: asked, seed: 3 });
    assert.deepEqual(size(result.data[0].b64_json), ["png", w, h], asked);
    assert.equal(result.size, `${w}x${h}`);
  }
  const jpeg = await generate({ size: "32x16", output_format: "jpeg", seed: 3 });
  assert.deepEqual(size(jpeg.data[0].b64_json), ["jpeg", 32, 16]);
});

test("steps, guidance_scale, negative_prompt, clip_skip and each sampler change the image", async () => {
  const image = async (extra) => (await generate({ seed: 7, ...extra })).data[0].b64_json;
  const base = await image({});
  assert.equal(await image({ steps: 4 }), base, "steps = 4 is the deployment's default");
  assert.equal(await image({ sampler: "euler" }), base, "Euler is the folder's scheduler");
  assert.equal(await image({ guidance_scale: 7.5 }), base);
  for (const extra of [{ steps: 6 }, { guidance_scale: 2 }, { negative_prompt: "fog" }, { clip_skip: 1 }]) {
    assert.notEqual(await image(extra), base, JSON.stringify(extra));
  }
  const bySampler = {};
  for (const sampler of SAMPLERS) {
    bySampler[sampler] = await image({ sampler });
    assert.deepEqual(size(bySampler[sampler]), ["png", 16, 16], sampler);
  }
  assert.equal(new Set(Object.values(bySampler)).size, SAMPLERS.length);
  assert.equal(await image({ sampler: "euler_a" }), bySampler.euler_a, "a stochastic sampler follows the seed");
});

test("bad parameters are 400s naming them", async () => {
  for (const [param, extra] of [
    ["size", { size: "20x20" }],
    ["size", { size: "40x40" }],
    ["size", { size: "1024x1024" }],
    ["steps", { steps: 0 }],
    ["steps", { steps: 151 }],
    ["sampler", { sampler: "plms" }],
    ["guidance_scale", { guidance_scale: 60 }],
    ["clip_skip", { clip_skip: 9 }],
    ["strength", { strength: 0.5 }],
    ["partial_images", { partial_images: 2 }],
    ["partial_images", { stream: true, partial_images: 5 }],
    ["response_format", { stream: true, response_format: "url" }],
    ["prompt", { prompt: "" }],
    ["eta", { eta: 0 }],
  ]) {
    await rejects400(generate({ seed: 1, ...extra }), param, JSON.stringify(extra));
  }
  // No prompt at all (the SDK would send one: raw JSON).
  const response = await fetch(server.url("/v1/images/generations"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-sd" }),
  });
  assert.equal(response.status, 400);
  const body = await response.json();
  assert.equal(body.error.param, "prompt");
  assert.equal(body.error.type, "invalid_request_error");
  await assert.rejects(
    client().images.generate({ model: "tiny-inpaint", prompt: "x" }),
    (e) => e.status === 400 && e.code === "model_not_supported",
  );
});

test("img2img: strength 0.3 and 0.9 differ, and 0.3 is set more by the picture than the seed", async () => {
  const picture = card(16, 16);
  const low = await edit(picture, { n: 4, seed: 100, strength: 0.3 });
  const high = await edit(picture, { n: 4, seed: 100, strength: 0.9 });
  assert.equal(low.data.length, 4);
  for (const item of [...low.data, ...high.data]) assert.deepEqual(size(item.b64_json), ["png", 16, 16]);
  assert.notEqual(low.data[0].b64_json, high.data[0].b64_json);
  // Same request, same bytes. (Not compared with n = 1: a different batch may move a channel
  // value by 1.)
  const lowAgain = await edit(picture, { n: 4, seed: 100, strength: 0.3 });
  assert.deepEqual(lowAgain.data.map((d) => d.b64_json), low.data.map((d) => d.b64_json));
  assert.notEqual((await edit(card(16, 16, 1), { seed: 100, strength: 0.3 })).data[0].b64_json, low.data[0].b64_json);
  // Random weights: the VAE does not give the picture back, so results are compared with each
  // other: four seeds land closer together at 0.3 (one of the 4 steps) than at 0.9.
  const decoded = (r) => r.data.map((d) => decodePng(bytesOf(d.b64_json)));
  const [a, b] = [spread(decoded(low), 0, 16), spread(decoded(high), 0, 16)];
  assert.ok(a < 0.75 * b, `${a} vs ${b}`);
  // size auto: the picture's own shape fitted to the range.
  assert.equal((await edit(card(64, 48), { seed: 1 })).size, "32x24");
  assert.deepEqual(size((await edit(picture, { size: "32x16", seed: 1 })).data[0].b64_json), ["png", 32, 16]);
  await rejects400(edit(picture, { strength: 0 }), "strength");
});

test("inpainting: a mask repaints reproducibly; the inpainting model needs one", async () => {
  const picture = card(32, 32);
  const first = await inpaint(picture, mask(32, 32), { n: 2, seed: 21 });
  for (const item of first.data) assert.deepEqual(size(item.b64_json), ["png", 32, 32]);
  assert.notEqual(first.data[0].b64_json, first.data[1].b64_json);
  const again = await inpaint(picture, mask(32, 32), { n: 2, seed: 21 });
  assert.deepEqual(again.data.map((d) => d.b64_json), first.data.map((d) => d.b64_json));
  assert.equal((await inpaint(card(64, 48), mask(64, 48), { seed: 1 })).size, "64x48");
  await rejects400(
    client().images.edit({ model: "tiny-inpaint", prompt: "x", image: await file(picture) }),
    "mask",
    "no mask",
  );
  await rejects400(inpaint(picture, mask(16, 16)), "mask", "mask of another size");
  await rejects400(inpaint(picture, card(32, 32)), "mask", "mask without alpha");
});

test("a mask on the text-to-image model blends latents: the kept half varies less across seeds", async () => {
  const picture = card(16, 16);
  const results = [];
  for (let seed = 0; seed < 4; seed++) {
    results.push(await inpaint(picture, mask(16, 16), { model: "tiny-sd", seed }));
  }
  const pictures = results.map((r) => decodePng(bytesOf(r.data[0].b64_json)));
  for (const p of pictures) assert.deepEqual([p.width, p.height], [16, 16]);
  const [repainted, kept] = [spread(pictures, 0, 8), spread(pictures, 8, 16)];
  assert.ok(kept < 0.5 * repainted, `kept ${kept} vs repainted ${repainted}`);
});

test("a streamed generation sends partial images 0 and 1, then the completed image", async () => {
  const stream = await generate({ stream: true, partial_images: 2, seed: 42 });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(
    events.map((e) => e.type),
    ["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"],
  );
  assert.deepEqual(events.slice(0, 2).map((e) => e.partial_image_index), [0, 1]);
  for (const event of events) {
    assert.deepEqual(size(event.b64_json), ["png", 16, 16]);
    assert.equal(event.size, "16x16");
    assert.equal(event.output_format, "png");
    assert.equal(event.background, "opaque");
    assert.equal(event.image_index, 0);
    assert.ok(Number.isInteger(event.created_at));
  }
  assert.equal(events.at(-1).b64_json, (await generate({ seed: 42 })).data[0].b64_json);
  // n = 2: one completed event per image.
  const two = [];
  for await (const event of await generate({ stream: true, partial_images: 1, n: 2, size: "32x16", seed: 8 })) {
    two.push(event);
  }
  const completed = two.filter((e) => e.type === "image_generation.completed");
  assert.deepEqual(completed.map((e) => e.image_index).sort(), [0, 1]);
  for (const event of two) assert.deepEqual(size(event.b64_json), ["png", 32, 16]);
});

test("a streamed edit sends image_edit events", async () => {
  const picture = card(32, 32);
  const events = [];
  for await (const event of await inpaint(picture, mask(32, 32), { stream: true, partial_images: 1, seed: 21 })) {
    events.push(event);
  }
  assert.deepEqual(events.map((e) => e.type), ["image_edit.partial_image", "image_edit.completed"]);
  for (const event of events) assert.deepEqual(size(event.b64_json), ["png", 32, 32]);
  assert.equal(events.at(-1).b64_json, (await inpaint(picture, mask(32, 32), { seed: 21 })).data[0].b64_json);
});

async function metric(s, name) {
  const text = await (await fetch(s.url("/metrics"))).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

async function cancelledWithin(s, ms) {
  const deadline = Date.now() + ms;
  while ((await metric(s, "hearth_image_cancelled_total")) < 1) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

async function answersPromptly(s) {
  const started = Date.now();
  const result = await generate({ seed: 1 }, s);
  assert.deepEqual(size(result.data[0].b64_json), ["png", 16, 16]);
  return Date.now() - started;
}

const LONG = { n: 4, size: "32x32", steps: 150 };

test("aborting a long generation stops it and the server answers at once", async () => {
  const own = await startServer(CONFIG);
  try {
    const controller = new AbortController();
    const pending = client(own).images.generate({ model: "tiny-sd", prompt: "x", ...LONG }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 500);
    await assert.rejects(pending, (e) => e.name === "APIUserAbortError" || e.constructor.name === "APIUserAbortError");
    assert.ok(await cancelledWithin(own, 10_000), "the generation went on after the client left");
    assert.ok((await answersPromptly(own)) < 3000);
  } finally {
    await own.stop();
  }
});

test("leaving a stream after its first partial image stops it", async () => {
  const own = await startServer(CONFIG);
  try {
    const stream = await generate({ ...LONG, stream: true, partial_images: 3 }, own);
    for await (const event of stream) {
      assert.equal(event.type, "image_generation.partial_image");
      break; // the SDK aborts the request
    }
    assert.ok(await cancelledWithin(own, 10_000), "the stream's work went on after the client left");
    assert.ok((await answersPromptly(own)) < 3000);
  } finally {
    await own.stop();
  }
});
