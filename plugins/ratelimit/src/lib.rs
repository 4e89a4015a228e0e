//! ratelimit: Hearth's rate-limit plugin (world `preprocess-plugin`), which owns
//! per-caller request and token budgets per minute.
//!
//! Policy (see [`policy::check`]):
//! - The caller is the identity's key id (`key:<id>`); an anonymous caller, or
//!   a request without identity, is its client IP (`ip:<address>`, port
//!   dropped), or `anonymous` when the host gave no address.
//! - Time is cut into fixed 60-second windows of the host's monotonic clock
//!   (`window = now-ns / 60 s`; not aligned to wall-clock minutes, and the
//!   count starts afresh when the host process restarts). Each caller has two
//!   counters per window in the host key-value store, `req:<caller>:<window>`
//!   and `tok:<caller>:<window>`, bumped with the atomic `kv-incr` and created
//!   with a 120 s TTL so old windows vanish on their own.
//! - A request costs 1 request and `max tokens + prompt tokens` tokens, where
//!   max tokens is `facts.max-tokens`, else `default_max_tokens` for the
//!   generating endpoints (`chat.completions`, `completions`) and 0 for the
//!   others, and prompt tokens is the host's estimate (0 when unknown).
//! - Over a limit → deny 429 `rate_limit_exceeded` with `retry-after` (the whole
//!   seconds left in the window, 1–60) and `x-ratelimit-limit-*` /
//!   `x-ratelimit-remaining-*` headers. A denied request is refunded: it does
//!   not count against either budget. A single request that costs more tokens
//!   than the whole per-minute budget is denied the same way, saying so.
//! - Otherwise the request passes `unchanged`. Limits are per host process
//!   (the key-value store is not shared between machines).
//!
//! Config (JSON): `requests_per_minute` (u32 ≥ 1), `tokens_per_minute`
//! (u32 ≥ 1) — at least one of the two is required — and `default_max_tokens`
//! (u32, default 256).

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod glue;
