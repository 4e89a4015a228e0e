//! auth-keys: Hearth's default auth plugin (world `auth-plugin`), which owns
//! turning a request's API key into an identity, and the scope check.
//!
//! Policy (see [`policy::authenticate`]):
//! - The key is read from `Authorization: Bearer <key>`, else `X-API-Key`, else
//!   the extra header named in the config; the first that is present wins. An
//!   `Authorization` header with another scheme (e.g. `Basic`) counts as a
//!   malformed key. An empty value counts as no key.
//! - The key is checked with the host's `keys.verify`. Unknown, malformed or
//!   revoked keys are denied with 401 `invalid_api_key` (the message shows a
//!   masked key, OpenAI-style); an expired key gets 401 `invalid_api_key` with a
//!   message saying that it expired. All 401s carry `WWW-Authenticate: Bearer`.
//! - No key: in open mode (`keys.open-mode()`, i.e. no key exists yet and auth
//!   is not required) the request is let in as the anonymous identity
//!   (key id `anonymous`, scope `inference` only, all models; the management
//!   API answers 401 `missing_api_key`);
//!   otherwise 401 `missing_api_key`. In open mode a key that fails
//!   verification is ignored (clients such as the OpenAI SDKs insist on sending
//!   some key) and the request is anonymous too; a key that verifies is used.
//! - Scopes: paths under `/v1/keys` and `/v1/usage` (the management API) need
//!   the `management` scope, every other path needs `inference`; otherwise 403
//!   `insufficient_scope`. The identity carries the key's allowed models; the
//!   host enforces them once it knows the model.
//!
//! Config (JSON, all keys optional): `{"header": "x-goog-api-key"}` names one
//! more header to read the key from (checked after the two standard ones).

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod glue;
