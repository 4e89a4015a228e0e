// Greedy continuations by llama.cpp (node-llama-cpp's prebuilt CPU build) of a few chat
// prompts on the default GGUF files, written to models/tests/fixtures/llamacpp_greedy.json:
// the reference that Hearth's quantised CPU path (GGUF blocks, 8-bit activations, as
// llama.cpp computes) is held to in models/tests/reference/llama_quantised.rs.
//
//   cd models/scripts/llamacpp && npm install && node greedy_reference.mjs
import { getLlama } from "node-llama-cpp";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const models = process.env.HEARTH_MODELS_DIR ?? path.join(here, "../../../.models");
const STEPS = 24;
const chatml = (system, user) =>
  `<|im_start|>system\n${system}<|im_end|>\n<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
const SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
const QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
const cases = [
  ["smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", chatml(SMOLLM_SYSTEM, "What is the capital of France?")],
  ["smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", chatml(SMOLLM_SYSTEM, "Name the capital of France.")],
  ["qwen2.5-coder-0.5b-instruct/model.gguf", chatml(QWEN_SYSTEM, "Write a Python function that reverses a string.")],
];

const llama = await getLlama({ gpu: false, build: "never" });
const out = { llama_cpp: llama.llamaCppRelease.release, steps: STEPS, cases: [] };
for (const [file, prompt] of cases) {
  const model = await llama.loadModel({ modelPath: path.join(models, file), gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 512, threads: 2 });
  const sequence = context.getSequence();
  const promptIds = Array.from(model.tokenize(prompt, true));
  const greedy = [];
  for await (const token of sequence.evaluate(promptIds, { temperature: 0 })) {
    greedy.push(token);
    if (greedy.length >= STEPS || model.isEogToken(token)) break;
  }
  out.cases.push({ model: file, prompt, prompt_ids: promptIds, greedy_ids: greedy, greedy_text: model.detokenize(greedy) });
  console.log(file, JSON.stringify(model.detokenize(greedy)));
  await context.dispose();
  await model.dispose();
}
writeFileSync(path.join(here, "../../tests/fixtures/llamacpp_greedy.json"), JSON.stringify(out, null, 1) + "\n");
