//! rust-blocklist: a Hearth preprocess plugin. It refuses (400) any request whose body contains the
//! `blocked` word of its config, and tags every other request with an `x-rust-blocklist` header.
//!
//! Build: `cargo build --release` (the component is
//! `target/wasm32-wasip2/release/rust_blocklist.wasm`); check: `hearth plugin check <that file>`;
//! install: copy it into the server's plugins folder.
#![allow(unsafe_code)]

wit_bindgen::generate!({ path: "wit", world: "preprocess-plugin" });

use exports::hearth::plugin::admission;
use hearth::plugin::host;
use hearth::plugin::types::{Denial, Rewrite};

struct Plugin;

/// The `blocked` value of the plugin's config (`{"blocked": "..."}`), default `forbidden`.
fn blocked_word() -> String {
    let config = host::config();
    config
        .find("\"blocked\"")
        .and_then(|at| {
            let rest = config[at + "\"blocked\"".len()..].trim_start().strip_prefix(':')?;
            let rest = rest.trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .unwrap_or_else(|| "forbidden".to_owned())
}

impl admission::Guest for Plugin {
    fn admit() -> Result<(), String> {
        if blocked_word().is_empty() {
            return Err("\"blocked\" must not be empty".into());
        }
        Ok(())
    }
}

impl Guest for Plugin {
    fn preprocess(
        _head: RequestHead,
        facts: Facts,
        _identity: Option<Identity>,
        body: Vec<u8>,
    ) -> PreprocessDecision {
        let word = blocked_word();
        if String::from_utf8_lossy(&body).to_lowercase().contains(&word.to_lowercase()) {
            host::counter_add("refused", 1);
            return PreprocessDecision::Deny(Denial {
                status: 400,
                code: "content_rejected".into(),
                message: format!("Requests that mention `{word}` are not accepted here."),
                headers: vec![],
            });
        }
        PreprocessDecision::Rewrite(Rewrite {
            body: None,
            set_headers: vec![("x-rust-blocklist".into(), facts.endpoint)],
            remove_headers: vec![],
        })
    }
}

export!(Plugin);
