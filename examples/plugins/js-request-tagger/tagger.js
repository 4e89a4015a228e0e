// request-tagger: a Hearth preprocess plugin written in JavaScript (componentize-js).
//
// It refuses (413, code `prompt_too_long`) requests whose estimated prompt is longer than the
// config's `max_prompt_tokens`, and tags every other request with an `x-request-tagger` header
// naming the API it calls (visible to later plugins and to upstream servers).
//
//   [[plugins]]
//   hook = "preprocess"
//   path = "examples/plugins/js-request-tagger/request_tagger.wasm"
//   memory_mb = 64            # the JS engine needs more than the 16 MiB default
//     [plugins.config]
//     max_prompt_tokens = 2000
import { config, counterAdd } from "hearth:plugin/host@0.1.0";

function limit() {
  const parsed = JSON.parse(config() || "{}");
  const max = parsed.max_prompt_tokens ?? 4096;
  if (!Number.isInteger(max) || max <= 0) {
    throw "max_prompt_tokens must be a positive integer";
  }
  return max;
}

export const admission = {
  admit() {
    limit();
  },
};

export function preprocess(head, facts, identity, body) {
  const max = limit();
  if (facts.promptTokens !== undefined && facts.promptTokens > max) {
    counterAdd("refused", 1n);
    return {
      tag: "deny",
      val: {
        status: 413,
        code: "prompt_too_long",
        message: `The prompt is about ${facts.promptTokens} tokens; this server accepts at most ${max}.`,
        headers: [],
      },
    };
  }
  return {
    tag: "rewrite",
    val: { body: undefined, setHeaders: [["x-request-tagger", facts.endpoint]], removeHeaders: [] },
  };
}
