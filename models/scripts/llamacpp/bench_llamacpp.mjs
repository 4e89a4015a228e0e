// llama.cpp on the same GGUF, thread count and token ids as Hearth's bench_llama
// (models/examples/bench_llama.rs): prefill of 16/128/512-token prompts, then 64 greedy decode
// steps each, then 8 sequences decoding together. llama.cpp is node-llama-cpp's prebuilt CPU
// build (no compiler needed; it picks its x86 kernel variant at run time).
//
//   cd models/scripts/llamacpp && npm install && node bench_llamacpp.mjs [model.gguf] [threads]
//
// Prints the process's RSS before loading the model and after (node itself is ~50 MB).
import { getLlama } from "node-llama-cpp";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const models = process.env.HEARTH_MODELS_DIR ?? path.join(here, "../../../.models");
const modelPath = process.argv[2] ?? path.join(models, "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
const threads = Number(process.argv[3] ?? 2);
const PROMPT_LENGTHS = [16, 128, 512];
const DECODE_STEPS = 64;

const rssMb = () => (process.memoryUsage().rss / 1e6).toFixed(0);
const llama = await getLlama({ gpu: false, build: "never" });
const rssBefore = rssMb();
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const ids = Array.from({ length: 1024 }, (_, i) => (i * 7919 + 13) % vocabSize);
console.log(`${modelPath}: llama.cpp ${llama.llamaCppRelease.release} (${llama.cpuMathCores ?? "?"} math cores), ${threads} threads`);

async function run(sequence, prompt, steps) {
  const start = performance.now();
  // yieldEogToken: pseudo-random prompts may sample an end-of-generation token (Qwen's do);
  // the bench times the steps, not the text, so generation goes on past it.
  const generator = sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true });
  await generator.next(); // the prompt's pass, and the first token sampled from it
  const prefillMs = performance.now() - start;
  const decodeStart = performance.now();
  for (let i = 0; i < steps; i++) await generator.next();
  const decodeMs = performance.now() - decodeStart;
  await generator.return();
  return { prefillMs, decodeMs };
}

const context = await model.createContext({ contextSize: 1024, threads, batchSize: 512, sequences: 8 });
{
  const warm = context.getSequence();
  await run(warm, ids.slice(0, 8), 1);
  warm.dispose();
}
console.log(`RSS: ${rssBefore} MB before the model, ${rssMb()} MB with it and a 1024-token context of 8 sequences`);
console.log(`| prompt tokens | prefill tok/s | decode tok/s (${DECODE_STEPS} steps after the prompt) |`);
console.log("|---:|---:|---:|");
for (const length of PROMPT_LENGTHS) {
  const sequence = context.getSequence();
  const { prefillMs, decodeMs } = await run(sequence, ids.slice(0, length), DECODE_STEPS);
  console.log(`| ${length} | ${(length / (prefillMs / 1000)).toFixed(0)} | ${(DECODE_STEPS / (decodeMs / 1000)).toFixed(1)} |`);
  sequence.dispose();
}

// 8 sequences after a 32-token prompt each, 16 decode steps together (llama.cpp batches them).
const sequences = Array.from({ length: 8 }, () => context.getSequence());
const generators = sequences.map((s) => s.evaluate(ids.slice(0, 32), { temperature: 0, yieldEogToken: true }));
await Promise.all(generators.map((g) => g.next()));
const start = performance.now();
for (let step = 0; step < 16; step++) await Promise.all(generators.map((g) => g.next()));
const batched = (8 * 16) / ((performance.now() - start) / 1000);
console.log(`\nbatched decode, 8 sequences at position 32+: ${batched.toFixed(1)} tok/s in total`);
await Promise.all(generators.map((g) => g.return()));
await context.dispose();
await model.dispose();
