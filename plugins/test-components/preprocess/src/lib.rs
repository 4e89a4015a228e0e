//! Test component for the preprocess hook: behaves as the request's `x-test-mode` header says
//! (`trap`, `loop`, `memory` (grows past 16 MiB), `leak` (answers how many calls this
//! instance has seen: always 1 when every call gets a fresh instance), `slow` (busy for 20 ms),
//! `bad-header`, `version` (denies with the `version` of its config); anything else passes).
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, clippy::too_many_arguments)]

wit_bindgen::generate!({ path: "../../../wit", world: "preprocess-plugin" });

use std::sync::atomic::{AtomicU32, Ordering};

use exports::hearth::plugin::admission;
use hearth::plugin::host;
use hearth::plugin::types::Denial;

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Plugin;

fn deny(
    status: u16,
    code: &str,
    message: String,
    headers: Vec<(String, String)>,
) -> PreprocessDecision {
    PreprocessDecision::Deny(Denial {
        status,
        code: code.into(),
        message,
        headers,
    })
}

impl admission::Guest for Plugin {
    fn admit() -> Result<(), String> {
        if host::config().contains("\"refuse\"") {
            return Err("this version refuses to load".into());
        }
        Ok(())
    }
}

impl Guest for Plugin {
    fn preprocess(
        head: RequestHead,
        _facts: Facts,
        _identity: Option<Identity>,
        _body: Vec<u8>,
    ) -> PreprocessDecision {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let mode = head
            .headers
            .iter()
            .find(|(n, _)| n == "x-test-mode")
            .map_or(String::new(), |(_, v)| v.clone());
        match mode.as_str() {
            "trap" => panic!("asked to trap"),
            "loop" => loop {
                std::hint::black_box(0u64);
            },
            "memory" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                for _ in 0..64 {
                    hog.push(vec![1u8; 1 << 20]);
                }
                deny(400, "unreachable", format!("{}", hog.len()), vec![])
            }
            "leak" => deny(400, "calls", calls.to_string(), vec![]),
            "slow" => {
                let start = host::now_ns();
                while host::now_ns() - start < 20_000_000 {}
                PreprocessDecision::Unchanged
            }
            "bad-header" => deny(
                400,
                "bad",
                "framing".into(),
                vec![("content-length".into(), "1".into())],
            ),
            "version" => deny(418, "version", host::config(), vec![]),
            _ => PreprocessDecision::Unchanged,
        }
    }
}

export!(Plugin);
