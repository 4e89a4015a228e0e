//! Test component for the route hook: `x-test-mode: forged` picks a target that is not a
//! candidate, `trap` traps; otherwise it picks the last candidate.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, clippy::too_many_arguments)]

wit_bindgen::generate!({ path: "../../../wit", world: "route-plugin" });

use exports::hearth::plugin::admission;
use hearth::plugin::types::Pick;

struct Plugin;

impl admission::Guest for Plugin {
    fn admit() -> Result<(), String> {
        Ok(())
    }
}

impl Guest for Plugin {
    fn route(
        head: RequestHead,
        _facts: Facts,
        _identity: Option<Identity>,
        candidates: Vec<Candidate>,
        _attempt: u32,
    ) -> RouteDecision {
        let mode = head
            .headers
            .iter()
            .find(|(n, _)| n == "x-test-mode")
            .map_or("", |(_, v)| v.as_str());
        match (mode, candidates.last()) {
            ("trap", _) => panic!("asked to trap"),
            ("forged", _) => RouteDecision::Pick(Pick {
                target: "not-a-candidate".into(),
                fallbacks: vec![],
            }),
            (_, Some(last)) => RouteDecision::Pick(Pick {
                target: last.id.clone(),
                fallbacks: vec![],
            }),
            (_, None) => RouteDecision::DefaultRouting,
        }
    }
}

export!(Plugin);
