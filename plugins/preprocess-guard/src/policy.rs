//! The guard's rules, free of bindings so that they can be unit-tested natively.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The token-limit fields that the cap applies to.
const TOKEN_FIELDS: &[&str] = &["max_tokens", "max_completion_tokens", "max_output_tokens"];
/// The body fields whose text the deny patterns are matched against.
const TEXT_FIELDS: &[&str] = &["messages", "prompt", "input", "instructions", "suffix"];
/// The header the host reads the model from before the body.
const MODEL_HEADER: &str = "x-gpustack-model";
/// How deep to look for text inside nested arrays/objects.
const MAX_DEPTH: usize = 6;

/// The configuration as written in `[plugins.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_tokens_cap: Option<u32>,
    system_prompt: Option<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    deny_patterns: Vec<String>,
    deny_message: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The largest completion-token limit a request may ask for.
    pub max_tokens_cap: Option<u32>,
    /// The system message added to chats that have none.
    pub system_prompt: Option<String>,
    /// Model renames, `from` → `to`.
    pub aliases: BTreeMap<String, String>,
    /// Blocked phrases: (as configured, lower-cased).
    pub deny_patterns: Vec<(String, String)>,
    /// The message of a content denial, instead of the default.
    pub deny_message: Option<String>,
}

/// A refusal (mirrors `types.denial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
}

/// What to do with a request (mirrors `types.preprocess-decision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass it on as it is.
    Unchanged,
    /// Pass it on with changes.
    Rewrite {
        /// The new body, if it changed.
        body: Option<Vec<u8>>,
        /// Headers to set.
        set_headers: Vec<(String, String)>,
        /// What was changed, for counters and logs: `alias`, `max_tokens_cap`,
        /// `system_prompt`.
        changes: Vec<&'static str>,
    },
    /// Refuse it.
    Deny(Denial),
}

impl Config {
    /// Parses and validates the config JSON the host hands over (`{}`, `null`
    /// or empty text mean "do nothing").
    pub fn parse(json: &str) -> Result<Config, String> {
        let json = json.trim();
        let raw: RawConfig = if json.is_empty() || json == "null" {
            RawConfig::default()
        } else {
            serde_json::from_str(json)
                .map_err(|e| format!("invalid preprocess-guard config: {e}"))?
        };
        let bad = |what: String| Err(format!("invalid preprocess-guard config: {what}"));
        if raw.max_tokens_cap == Some(0) {
            return bad("`max_tokens_cap` must be at least 1".into());
        }
        if raw
            .system_prompt
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return bad("`system_prompt` is empty".into());
        }
        if raw
            .deny_message
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return bad("`deny_message` is empty".into());
        }
        for (from, to) in &raw.aliases {
            if from.is_empty() || to.is_empty() {
                return bad(format!("alias {from:?} → {to:?} has an empty name"));
            }
        }
        let mut deny_patterns = Vec::with_capacity(raw.deny_patterns.len());
        for pattern in raw.deny_patterns {
            if pattern.trim().is_empty() {
                return bad(
                    "`deny_patterns` contains an empty pattern (it would match everything)".into(),
                );
            }
            let lower = pattern.to_lowercase();
            deny_patterns.push((pattern, lower));
        }
        Ok(Config {
            max_tokens_cap: raw.max_tokens_cap,
            system_prompt: raw.system_prompt,
            aliases: raw.aliases,
            deny_patterns,
            deny_message: raw.deny_message,
        })
    }

    /// Applies the rules (see the crate docs) to one request.
    pub fn apply(&self, headers: &[(String, String)], body: &[u8]) -> Outcome {
        let mut set_headers = Vec::new();
        let mut changes = Vec::new();
        if let Some(to) = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(MODEL_HEADER))
            .and_then(|(_, value)| self.aliases.get(value.trim()))
        {
            set_headers.push((MODEL_HEADER.to_owned(), to.clone()));
            changes.push("alias");
        }

        let mut body_changed = false;
        let mut json = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        if let Some(map) = &mut json {
            if let Some(pattern) = self.blocked_pattern(map) {
                let message = self.deny_message.clone().unwrap_or_else(|| {
                    format!("The request was rejected by the content policy: it contains the blocked phrase \"{pattern}\".")
                });
                return Outcome::Deny(Denial {
                    status: 400,
                    code: "content_rejected",
                    message,
                });
            }
            if self.rewrite_model(map) {
                body_changed = true;
                if !changes.contains(&"alias") {
                    changes.push("alias");
                }
            }
            if self.cap_tokens(map) {
                body_changed = true;
                changes.push("max_tokens_cap");
            }
            if self.add_system_prompt(map) {
                body_changed = true;
                changes.push("system_prompt");
            }
        }

        if !body_changed && set_headers.is_empty() {
            return Outcome::Unchanged;
        }
        let body = match (body_changed, json) {
            (true, Some(map)) => {
                Some(serde_json::to_vec(&Value::Object(map)).expect("a JSON value serialises"))
            }
            _ => None,
        };
        Outcome::Rewrite {
            body,
            set_headers,
            changes,
        }
    }

    /// The first configured pattern found in the body's text, as configured.
    fn blocked_pattern(&self, map: &Map<String, Value>) -> Option<&str> {
        if self.deny_patterns.is_empty() {
            return None;
        }
        let mut texts = Vec::new();
        for field in TEXT_FIELDS {
            if let Some(value) = map.get(*field) {
                collect_texts(value, 0, &mut texts);
            }
        }
        texts.iter().find_map(|text| {
            let lower = text.to_lowercase();
            self.deny_patterns
                .iter()
                .find(|(_, pattern)| lower.contains(pattern.as_str()))
                .map(|(original, _)| original.as_str())
        })
    }

    fn rewrite_model(&self, map: &mut Map<String, Value>) -> bool {
        let Some(Value::String(model)) = map.get_mut("model") else {
            return false;
        };
        match self.aliases.get(model.as_str()) {
            Some(to) => {
                *model = to.clone();
                true
            }
            None => false,
        }
    }

    fn cap_tokens(&self, map: &mut Map<String, Value>) -> bool {
        let Some(cap) = self.max_tokens_cap else {
            return false;
        };
        let mut changed = false;
        for field in TOKEN_FIELDS {
            if let Some(Value::Number(n)) = map.get(*field) {
                let over = match n.as_u64() {
                    Some(n) => n > u64::from(cap),
                    // Negative numbers are the host's to reject; fractions over the cap are capped.
                    None => n.as_f64().is_some_and(|f| f > f64::from(cap)),
                };
                if over {
                    map.insert((*field).to_owned(), Value::from(cap));
                    changed = true;
                }
            }
        }
        changed
    }

    fn add_system_prompt(&self, map: &mut Map<String, Value>) -> bool {
        let Some(prompt) = &self.system_prompt else {
            return false;
        };
        let Some(Value::Array(messages)) = map.get_mut("messages") else {
            return false;
        };
        let has_system = messages.iter().any(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        });
        if has_system {
            return false;
        }
        let mut message = Map::new();
        message.insert("role".to_owned(), Value::from("system"));
        message.insert("content".to_owned(), Value::from(prompt.as_str()));
        messages.insert(0, Value::Object(message));
        true
    }
}

/// Gathers the strings in `value`: a string itself, the items of a list, and
/// the `text` and `content` of an object (message or content part).
fn collect_texts<'a>(value: &'a Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_texts(item, depth + 1, out)),
        Value::Object(map) => {
            for key in ["text", "content"] {
                if let Some(v) = map.get(key) {
                    collect_texts(v, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(json: Value) -> Config {
        Config::parse(&json.to_string()).unwrap()
    }

    fn apply(config: &Config, body: Value) -> Outcome {
        config.apply(&[], body.to_string().as_bytes())
    }

    fn rewritten(outcome: Outcome) -> Value {
        match outcome {
            Outcome::Rewrite {
                body: Some(body), ..
            } => serde_json::from_slice(&body).unwrap(),
            other => panic!("expected a body rewrite, got {other:?}"),
        }
    }

    fn denial(outcome: Outcome) -> Denial {
        match outcome {
            Outcome::Deny(d) => d,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn empty_config_changes_nothing() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        let body = json!({"model": "m", "max_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(apply(&c, body), Outcome::Unchanged);
    }

    #[test]
    fn non_json_bodies_pass_unchanged() {
        let c = config(json!({"max_tokens_cap": 10, "deny_patterns": ["secret"]}));
        assert_eq!(c.apply(&[], b""), Outcome::Unchanged);
        assert_eq!(c.apply(&[], b"--boundary\r\nsecret"), Outcome::Unchanged);
        assert_eq!(c.apply(&[], b"[1,2]"), Outcome::Unchanged);
    }

    #[test]
    fn caps_present_token_limits_only() {
        let c = config(json!({"max_tokens_cap": 256}));
        let out = rewritten(apply(
            &c,
            json!({"max_tokens": 1000, "max_completion_tokens": 300.5}),
        ));
        assert_eq!(
            out,
            json!({"max_tokens": 256, "max_completion_tokens": 256})
        );
        // Under the cap, absent, negative or non-numeric: untouched.
        assert_eq!(apply(&c, json!({"max_tokens": 256})), Outcome::Unchanged);
        assert_eq!(apply(&c, json!({"messages": []})), Outcome::Unchanged);
        assert_eq!(
            apply(
                &c,
                json!({"max_tokens": -5, "max_completion_tokens": "9999"})
            ),
            Outcome::Unchanged
        );
        let out = rewritten(apply(&c, json!({"max_output_tokens": 99999999999u64})));
        assert_eq!(out["max_output_tokens"], 256);
    }

    #[test]
    fn system_prompt_is_added_first_when_missing() {
        let c = config(json!({"system_prompt": "Be brief."}));
        let out = rewritten(apply(
            &c,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ));
        assert_eq!(
            out["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
        );
        // A client's own system or developer message wins.
        for role in ["system", "developer"] {
            let body = json!({"messages": [{"role": "user", "content": "a"}, {"role": role, "content": "x"}]});
            assert_eq!(apply(&c, body), Outcome::Unchanged, "{role}");
        }
        // Completions bodies are not touched.
        assert_eq!(
            apply(&c, json!({"prompt": "once upon"})),
            Outcome::Unchanged
        );
    }

    #[test]
    fn aliases_rewrite_body_and_header() {
        let c = config(json!({"aliases": {"gpt-4o": "smollm2", "smollm2": "never-chained"}}));
        let out = rewritten(apply(&c, json!({"model": "gpt-4o", "messages": []})));
        assert_eq!(out["model"], "smollm2");
        assert_eq!(apply(&c, json!({"model": "GPT-4O"})), Outcome::Unchanged);

        let headers = vec![("x-gpustack-model".to_owned(), "gpt-4o".to_owned())];
        match c.apply(&headers, b"") {
            Outcome::Rewrite {
                body,
                set_headers,
                changes,
            } => {
                assert_eq!(body, None);
                assert_eq!(
                    set_headers,
                    [("x-gpustack-model".to_owned(), "smollm2".to_owned())]
                );
                assert_eq!(changes, ["alias"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deny_patterns_match_case_insensitively_in_all_text_shapes() {
        let c = config(json!({"deny_patterns": ["Forbidden Word", "ÉTÉ"]}));
        let bodies = [
            json!({"messages": [{"role": "user", "content": "say the FORBIDDEN word now"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "forbidden word"}]}]}),
            json!({"prompt": "a forbidden word"}),
            json!({"prompt": ["fine", "forbidden WORD"]}),
            json!({"input": "Forbidden Word"}),
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "forbidden word"}]}]}),
            json!({"instructions": "cet été"}),
        ];
        for body in bodies {
            let d = denial(apply(&c, body.clone()));
            assert_eq!((d.status, d.code), (400, "content_rejected"), "{body}");
            assert!(d.message.contains('"'), "{}", d.message);
        }
        let d = denial(apply(&c, json!({"prompt": "FORBIDDEN WORD"})));
        assert!(d.message.contains("\"Forbidden Word\""), "{}", d.message);
        // Split across parts, token ids and other fields do not match.
        let fine = [
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "forbidden"}, {"type": "text", "text": "word"}]}]}),
            json!({"prompt": [1, 2, 3]}),
            json!({"user": "forbidden word"}),
        ];
        for body in fine {
            assert_eq!(apply(&c, body.clone()), Outcome::Unchanged, "{body}");
        }
    }

    #[test]
    fn deny_message_from_config_and_deny_wins_over_rewrites() {
        let c = config(
            json!({"deny_patterns": ["bad"], "deny_message": "No.", "max_tokens_cap": 1, "system_prompt": "s"}),
        );
        let d = denial(apply(
            &c,
            json!({"max_tokens": 50, "messages": [{"role": "user", "content": "bad"}]}),
        ));
        assert_eq!(d.message, "No.");
        // The injected system prompt is not scanned.
        let c = config(json!({"deny_patterns": ["careful"], "system_prompt": "Be careful."}));
        let out = rewritten(apply(
            &c,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ));
        assert_eq!(out["messages"][0]["content"], "Be careful.");
    }

    #[test]
    fn all_rules_together() {
        let c = config(json!({"max_tokens_cap": 64, "system_prompt": "S", "aliases": {"a": "b"}}));
        match apply(
            &c,
            json!({"model": "a", "max_tokens": 65, "messages": [{"role": "user", "content": "u"}], "stream": true}),
        ) {
            Outcome::Rewrite {
                body: Some(body),
                set_headers,
                changes,
            } => {
                assert!(set_headers.is_empty());
                assert_eq!(changes, ["alias", "max_tokens_cap", "system_prompt"]);
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    v,
                    json!({"model": "b", "max_tokens": 64, "stream": true,
                           "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}]})
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        for bad in [
            r#"{"max_tokens_cap": 0}"#,
            r#"{"max_tokens_cap": -1}"#,
            r#"{"max_tokens_cap": "10"}"#,
            r#"{"system_prompt": "  "}"#,
            r#"{"deny_patterns": ["ok", ""]}"#,
            r#"{"deny_patterns": "single"}"#,
            r#"{"deny_message": ""}"#,
            r#"{"aliases": {"": "x"}}"#,
            r#"{"alias": {}}"#,
            "not json",
        ] {
            let e = Config::parse(bad).unwrap_err();
            assert!(
                e.starts_with("invalid preprocess-guard config"),
                "{bad}: {e}"
            );
        }
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("null").unwrap(), Config::default());
    }
}
