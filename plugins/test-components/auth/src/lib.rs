//! Test component for the auth hook: behaves as the request's `x-test-mode` header says
//! (`trap`, `loop`, `bad-status`, `deny`; anything else allows with the `inference` scope).
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, clippy::too_many_arguments)]

wit_bindgen::generate!({ path: "../../../wit", world: "auth-plugin" });

use exports::hearth::plugin::admission;
use hearth::plugin::types::{Denial, Identity};

struct Plugin;

fn mode(head: &RequestHead) -> &str {
    head.headers
        .iter()
        .find(|(n, _)| n == "x-test-mode")
        .map_or("", |(_, v)| v.as_str())
}

impl admission::Guest for Plugin {
    fn admit() -> Result<(), String> {
        Ok(())
    }
}

impl Guest for Plugin {
    fn authenticate(head: RequestHead) -> AuthDecision {
        match mode(&head) {
            "trap" => panic!("asked to trap"),
            "loop" => loop {
                std::hint::black_box(0u64);
            },
            "bad-status" => AuthDecision::Deny(Denial {
                status: 200,
                code: "ok".into(),
                message: "a denial must not be a success".into(),
                headers: vec![],
            }),
            "deny" => AuthDecision::Deny(Denial {
                status: 401,
                code: "test_denied".into(),
                message: "denied by the test plugin".into(),
                headers: vec![("x-test-plugin".into(), "auth".into())],
            }),
            _ => AuthDecision::Allow(Identity {
                key_id: "test".into(),
                key_name: "test".into(),
                scopes: vec!["inference".into()],
                allowed_models: vec![],
                expires_at: None,
                anonymous: false,
            }),
        }
    }
}

export!(Plugin);
