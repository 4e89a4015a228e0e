// Images through the unchanged OpenAI Node SDK: the DCGAN face generator (`faces`) and the
// RDN x2 upscaler (`rdn-x2`). Results are checked by their own headers (PNG IHDR, JPEG SOF,
// WebP VP8L), URLs are fetched without a key, and edits take one image, a list and a mask.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import OpenAI, { toFile } from "openai";
import { CONFIG, MODELS, startServer } from "./harness.mjs";

const FIXTURE = readFileSync(join(MODELS, "rdn-x2", "fixture.png"));
let server;
before(async () => {
  server = await startServer(
    `${CONFIG}
[[deployments]]
name = "rdn-x2"
kind = "image"
  [[deployments.targets]]
  source = "${MODELS}/rdn-x2"
`,
  );
});
after(async () => {
  await server.stop();
});

const client = () => new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, timeout: 300_000 });

// [format, width, height] from the file's own header.
function probe(bytes) {
  if (bytes.subarray(1, 4).toString() === "PNG") return ["png", bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    for (let at = 2; at < bytes.length; ) {
      const marker = bytes[at + 1];
      const length = bytes.readUInt16BE(at + 2);
      if (marker >= 0xc0 && marker <= 0xc2) return ["jpeg", bytes.readUInt16BE(at + 7), bytes.readUInt16BE(at + 5)];
      at += 2 + length;
    }
  }
  if (bytes.subarray(0, 4).toString() === "RIFF" && bytes.subarray(8, 12).toString() === "WEBP") {
    const chunk = bytes.subarray(12, 16).toString();
    if (chunk === "VP8L") {
      const bits = bytes.readUInt32LE(21);
      return ["webp", (bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1];
    }
    if (chunk === "VP8X") return ["webp", bytes.readUIntLE(24, 3) + 1, bytes.readUIntLE(27, 3) + 1];
  }
  return ["unknown", 0, 0];
}

const decoded = (item) => probe(Buffer.from(item.b64_json, "base64"));

// A minimal RGBA PNG written here (not by Hearth): transparent where `editable(x, y)`.
function maskPng(width, height, editable) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
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
  header.set([8, 6, 0, 0, 0], 8);
  const rows = Buffer.alloc(height * (1 + width * 4));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows[y * (1 + width * 4) + 1 + x * 4 + 3] = editable(x, y) ? 0 : 255;
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

test("images.generate returns n faces as base64 in every output format", async () => {
  const result = await client().images.generate({ model: "faces", prompt: "a face", n: 2 });
  assert.equal(result.data.length, 2);
  for (const item of result.data) assert.deepEqual(decoded(item), ["png", 64, 64]);
  assert.notEqual(result.data[0].b64_json, result.data[1].b64_json);
  for (const format of ["jpeg", "webp"]) {
    const other = await client().images.generate({ model: "faces", prompt: "a face", output_format: format });
    assert.deepEqual(decoded(other.data[0]), [format, 64, 64]);
  }
});

test("a seed reproduces the same image", async () => {
  const a = await client().images.generate({ model: "faces", prompt: "x", seed: 77 });
  const b = await client().images.generate({ model: "faces", prompt: "y", seed: 77 });
  assert.equal(a.data[0].b64_json, b.data[0].b64_json);
  assert.equal(a.seed, 77);
});

test("response_format url links serve the image without a key", async () => {
  const result = await client().images.generate({ model: "faces", prompt: "x", response_format: "url" });
  const url = result.data[0].url;
  assert.ok(url.startsWith(server.url("/v1/images/files/")), url);
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/png");
  assert.deepEqual(probe(Buffer.from(await response.arrayBuffer())), ["png", 64, 64]);
});

test("images.edit upscales one image, a list of images, and blends a mask", async () => {
  const file = () => toFile(FIXTURE, "fixture.png", { type: "image/png" });
  const one = await client().images.edit({ model: "rdn-x2", image: await file(), prompt: "upscale" });
  assert.deepEqual(decoded(one.data[0]), ["png", 256, 256]);

  const list = await client().images.edit({ model: "rdn-x2", image: [await file(), await file()], prompt: "upscale" });
  assert.equal(list.data.length, 2);
  assert.equal(list.data[0].b64_json, one.data[0].b64_json);

  const mask = await toFile(maskPng(128, 128, (x) => x < 64), "mask.png", { type: "image/png" });
  const masked = await client().images.edit({
    model: "rdn-x2",
    image: await file(),
    mask,
    prompt: "upscale",
    response_format: "url",
    output_format: "webp",
  });
  const response = await fetch(masked.data[0].url);
  assert.equal(response.status, 200);
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.deepEqual(probe(bytes), ["webp", 256, 256]);
  assert.notEqual(bytes.toString("base64"), one.data[0].b64_json);
});

test("asking a model for what it does not do is a 400 model_not_supported", async () => {
  await assert.rejects(
    client().images.generate({ model: "rdn-x2", prompt: "x" }),
    (e) => e.status === 400 && e.code === "model_not_supported",
  );
  await assert.rejects(
    client().images.edit({ model: "faces", image: await toFile(FIXTURE, "f.png", { type: "image/png" }), prompt: "x" }),
    (e) => e.status === 400 && e.code === "model_not_supported",
  );
});

test("bad parameters are 400s naming them", async () => {
  for (const [param, extra] of [
    ["prompt", { prompt: "" }],
    ["n", { n: 11 }],
    ["size", { size: "256x256" }],
    ["output_format", { output_format: "tiff" }],
  ]) {
    await assert.rejects(
      client().images.generate({ model: "faces", prompt: "x", ...extra }),
      (e) => e.status === 400 && e.param === param,
      param,
    );
  }
  await assert.rejects(
    client().images.edit({
      model: "rdn-x2",
      prompt: "x",
      image: await toFile(FIXTURE, "f.png", { type: "image/png" }),
      mask: await toFile(maskPng(10, 10, () => true), "m.png", { type: "image/png" }),
    }),
    (e) => e.status === 400 && e.param === "mask",
  );
});
