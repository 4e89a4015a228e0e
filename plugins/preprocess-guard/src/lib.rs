//! preprocess-guard: Hearth's default preprocess plugin (world
//! `preprocess-plugin`), which owns simple request hygiene: a max-token cap, a
//! default system prompt, model aliases and phrase-based rejection.
//!
//! Policy (see [`policy::Config::apply`]); only JSON object bodies are looked
//! at, anything else (multipart uploads, empty bodies) passes `unchanged`:
//! 1. Deny patterns: every configured pattern is matched as a case-insensitive
//!    substring (Unicode lower-casing, no regular expressions) against the
//!    client's text: `messages[].content` (a string, or the `text` of each
//!    content part), `prompt` (a string or list of strings), `input`,
//!    `instructions` and `suffix` (strings, lists, or message-like objects).
//!    Each text is matched on its own. A match denies the request with 400
//!    `content_rejected` and `deny_message`, or by default a message naming the
//!    matched pattern. Nothing else is applied to a denied request.
//! 2. Model aliases: a body `model` (and an `x-gpustack-model` header) equal to
//!    an alias key is replaced by its value; exact, case-sensitive, one step
//!    (no chains).
//! 3. Token cap: `max_tokens`, `max_completion_tokens` and `max_output_tokens`
//!    are lowered to `max_tokens_cap` when present and larger. Absent fields
//!    are NOT added (the model's own limit applies), and non-numeric values
//!    are left for the host to reject.
//! 4. System prompt: when the body has a `messages` array without any
//!    `system` or `developer` message, `{"role":"system","content":
//!    system_prompt}` is inserted first. A client's own system message is never
//!    replaced, and `prompt`-style (completions) bodies are not touched.
//!
//! When nothing applies the answer is `unchanged` (not a rewrite); a rewritten
//! body is re-serialised JSON (object keys may come out in another order).
//!
//! Config (JSON, all keys optional): `max_tokens_cap` (u32 ≥ 1), `system_prompt`
//! (string), `aliases` (`{"from": "to"}`), `deny_patterns` (list of strings),
//! `deny_message` (string). Unknown keys, empty strings and a 0 cap are refused
//! at admission.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod glue;
