//! The rate-limit check, free of bindings so that it can be unit-tested natively.

use std::net::SocketAddr;

use serde::Deserialize;

/// The length of a window in nanoseconds.
pub const WINDOW_NS: u64 = 60_000_000_000;
/// The TTL of a window's counters: long enough to outlive the window wherever
/// in it they were created.
pub const COUNTER_TTL_MS: u64 = 120_000;
/// The endpoints whose requests generate tokens without saying how many.
const GENERATING_ENDPOINTS: &[&str] = &["chat.completions", "completions"];

/// The validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Requests per caller per window.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens per caller per window.
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// The completion tokens charged to a generating request without a limit.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
}

fn default_max_tokens() -> u32 {
    256
}

impl Config {
    /// Parses and validates the config JSON the host hands over.
    pub fn parse(json: &str) -> Result<Config, String> {
        let json = json.trim();
        let json = if json.is_empty() || json == "null" {
            "{}"
        } else {
            json
        };
        let config: Config =
            serde_json::from_str(json).map_err(|e| format!("invalid ratelimit config: {e}"))?;
        if config.requests_per_minute.is_none() && config.tokens_per_minute.is_none() {
            return Err(
                "invalid ratelimit config: set `requests_per_minute` and/or `tokens_per_minute`"
                    .to_owned(),
            );
        }
        if config.requests_per_minute == Some(0) || config.tokens_per_minute == Some(0) {
            return Err(
                "invalid ratelimit config: a limit of 0 would refuse every request".to_owned(),
            );
        }
        Ok(config)
    }
}

/// The host's atomic counters (`host.kv-incr`), so that tests can stand in.
pub trait Counters {
    /// Adds `delta` to `key` (created at 0 with `ttl_ms`) and returns the new value.
    fn incr(&mut self, key: &str, delta: i64, ttl_ms: u64) -> i64;
}

/// What the check needs to know about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Who pays: see [`caller`].
    pub caller: &'a str,
    /// `facts.endpoint`.
    pub endpoint: &'a str,
    /// `facts.max-tokens`.
    pub max_tokens: Option<u32>,
    /// `facts.prompt-tokens`.
    pub prompt_tokens: Option<u32>,
    /// `host.now-ns()`.
    pub now_ns: u64,
}

/// A refusal (mirrors `types.denial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status (429).
    pub status: u16,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
    /// `retry-after` and `x-ratelimit-*` headers.
    pub headers: Vec<(String, String)>,
}

/// Names the caller: `key:<key id>` for a key, else `ip:<client ip>`, else
/// `anonymous`. `key` is the identity's (key id, anonymous) when there is one.
pub fn caller(key: Option<(&str, bool)>, client_addr: Option<&str>) -> String {
    match (key, client_addr) {
        (Some((id, false)), _) => format!("key:{id}"),
        (_, Some(addr)) => {
            let ip = addr
                .parse::<SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| addr.to_owned());
            format!("ip:{ip}")
        }
        (_, None) => "anonymous".to_owned(),
    }
}

/// The tokens a request is charged.
pub fn token_cost(config: &Config, request: &Request<'_>) -> u64 {
    let completion = match request.max_tokens {
        Some(n) => n,
        None if GENERATING_ENDPOINTS.contains(&request.endpoint) => config.default_max_tokens,
        None => 0,
    };
    u64::from(completion) + u64::from(request.prompt_tokens.unwrap_or(0))
}

/// Charges `request` to its caller's budgets for the current window, or
/// refuses it (charging nothing).
pub fn check(
    config: &Config,
    counters: &mut impl Counters,
    request: &Request<'_>,
) -> Result<(), Denial> {
    let window = request.now_ns / WINDOW_NS;
    let retry_after = 60 - (request.now_ns % WINDOW_NS) / 1_000_000_000;
    let req_key = format!("req:{}:{window}", request.caller);
    let tok_key = format!("tok:{}:{window}", request.caller);

    if let Some(limit) = config.requests_per_minute {
        let used = counters.incr(&req_key, 1, COUNTER_TTL_MS);
        if used > i64::from(limit) {
            counters.incr(&req_key, -1, COUNTER_TTL_MS);
            return Err(denial(
                format!(
                    "Rate limit reached for requests per minute: limit {limit}. Please try again in {retry_after}s."
                ),
                retry_after,
                [("requests", limit, 0)],
            ));
        }
    }

    if let Some(limit) = config.tokens_per_minute {
        let cost = token_cost(config, request);
        let delta = i64::try_from(cost).unwrap_or(i64::MAX);
        let used = counters.incr(&tok_key, delta, COUNTER_TTL_MS);
        if used > i64::from(limit) {
            counters.incr(&tok_key, -delta, COUNTER_TTL_MS);
            if config.requests_per_minute.is_some() {
                counters.incr(&req_key, -1, COUNTER_TTL_MS);
            }
            let before = used.saturating_sub(delta).max(0);
            let remaining =
                u32::try_from(i64::from(limit).saturating_sub(before).max(0)).unwrap_or(0);
            let message = if cost > u64::from(limit) {
                format!(
                    "Request too large: it needs {cost} tokens, more than the limit of {limit} tokens per minute. \
                     Lower max_tokens or shorten the prompt."
                )
            } else {
                format!(
                    "Rate limit reached for tokens per minute: limit {limit}, used {before}, requested {cost}. \
                     Please try again in {retry_after}s."
                )
            };
            return Err(denial(message, retry_after, [("tokens", limit, remaining)]));
        }
    }
    Ok(())
}

fn denial<const N: usize>(
    message: String,
    retry_after: u64,
    limits: [(&str, u32, u32); N],
) -> Denial {
    let mut headers = vec![("retry-after".to_owned(), retry_after.to_string())];
    for (what, limit, remaining) in limits {
        headers.push((format!("x-ratelimit-limit-{what}"), limit.to_string()));
        headers.push((
            format!("x-ratelimit-remaining-{what}"),
            remaining.to_string(),
        ));
    }
    Denial {
        status: 429,
        code: "rate_limit_exceeded",
        message,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// An in-memory stand-in for the host's `kv-incr` (TTL only recorded).
    #[derive(Default)]
    struct Fake {
        values: HashMap<String, i64>,
        ttls: Vec<u64>,
    }

    impl Counters for Fake {
        fn incr(&mut self, key: &str, delta: i64, ttl_ms: u64) -> i64 {
            self.ttls.push(ttl_ms);
            let v = self.values.entry(key.to_owned()).or_insert(0);
            *v = v.saturating_add(delta);
            *v
        }
    }

    const SEC: u64 = 1_000_000_000;

    fn req(caller: &str, now_ns: u64) -> Request<'_> {
        Request {
            caller,
            endpoint: "chat.completions",
            max_tokens: Some(10),
            prompt_tokens: Some(5),
            now_ns,
        }
    }

    fn header<'a>(d: &'a Denial, name: &str) -> Option<&'a str> {
        d.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn requests_per_minute_are_enforced_per_window() {
        let config = Config::parse(r#"{"requests_per_minute": 3}"#).unwrap();
        let mut kv = Fake::default();
        let t0 = 1_000 * WINDOW_NS + 42 * SEC; // 42 s into a window
        for _ in 0..3 {
            check(&config, &mut kv, &req("key:a", t0)).unwrap();
        }
        let d = check(&config, &mut kv, &req("key:a", t0 + SEC / 2)).unwrap_err();
        assert_eq!((d.status, d.code), (429, "rate_limit_exceeded"));
        assert_eq!(header(&d, "retry-after"), Some("18"));
        assert_eq!(header(&d, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(header(&d, "x-ratelimit-remaining-requests"), Some("0"));
        assert!(d.message.contains("try again in 18s"), "{}", d.message);
        // Another caller has its own budget.
        check(&config, &mut kv, &req("key:b", t0)).unwrap();
        // The denied request was not counted; the next window starts afresh.
        assert_eq!(kv.values[&format!("req:key:a:{}", 1_000)], 3);
        check(&config, &mut kv, &req("key:a", t0 + 18 * SEC)).unwrap();
        assert!(kv.ttls.iter().all(|&ttl| ttl == COUNTER_TTL_MS));
    }

    #[test]
    fn retry_after_is_between_1_and_60() {
        let config = Config::parse(r#"{"requests_per_minute": 1}"#).unwrap();
        for (offset, expected) in [
            (0, "60"),
            (59 * SEC + SEC / 2, "1"),
            (SEC - 1, "60"),
            (SEC, "59"),
        ] {
            let mut kv = Fake::default();
            let now = 7 * WINDOW_NS + offset;
            check(&config, &mut kv, &req("c", now)).unwrap();
            let d = check(&config, &mut kv, &req("c", now)).unwrap_err();
            assert_eq!(header(&d, "retry-after"), Some(expected), "offset {offset}");
        }
    }

    #[test]
    fn tokens_per_minute_count_max_plus_prompt_and_refund_denials() {
        let config =
            Config::parse(r#"{"requests_per_minute": 100, "tokens_per_minute": 40}"#).unwrap();
        let mut kv = Fake::default();
        check(&config, &mut kv, &req("k", 0)).unwrap(); // 15
        check(&config, &mut kv, &req("k", 0)).unwrap(); // 30
        let d = check(&config, &mut kv, &req("k", 0)).unwrap_err(); // 45 > 40
        assert!(d.message.contains("used 30, requested 15"), "{}", d.message);
        assert_eq!(header(&d, "x-ratelimit-remaining-tokens"), Some("10"));
        assert_eq!(header(&d, "x-ratelimit-limit-tokens"), Some("40"));
        assert_eq!(kv.values["tok:k:0"], 30);
        assert_eq!(kv.values["req:k:0"], 2);
        // A smaller request still fits.
        let small = Request {
            max_tokens: Some(5),
            prompt_tokens: Some(5),
            ..req("k", 0)
        };
        check(&config, &mut kv, &small).unwrap();
        assert_eq!(kv.values["tok:k:0"], 40);
    }

    #[test]
    fn a_request_larger_than_the_budget_says_so() {
        let config = Config::parse(r#"{"tokens_per_minute": 100}"#).unwrap();
        let mut kv = Fake::default();
        let big = Request {
            max_tokens: Some(4096),
            ..req("k", 0)
        };
        let d = check(&config, &mut kv, &big).unwrap_err();
        assert!(
            d.message
                .starts_with("Request too large: it needs 4101 tokens"),
            "{}",
            d.message
        );
        assert_eq!(kv.values["tok:k:0"], 0);
        assert!(
            !kv.values.contains_key("req:k:0"),
            "no request counter without a request limit"
        );
    }

    #[test]
    fn token_cost_defaults() {
        let config =
            Config::parse(r#"{"tokens_per_minute": 1000, "default_max_tokens": 100}"#).unwrap();
        let base = Request {
            caller: "c",
            endpoint: "chat.completions",
            max_tokens: None,
            prompt_tokens: None,
            now_ns: 0,
        };
        assert_eq!(token_cost(&config, &base), 100);
        assert_eq!(
            token_cost(
                &config,
                &Request {
                    endpoint: "completions",
                    prompt_tokens: Some(7),
                    ..base
                }
            ),
            107
        );
        assert_eq!(
            token_cost(
                &config,
                &Request {
                    endpoint: "embeddings",
                    prompt_tokens: Some(7),
                    ..base
                }
            ),
            7
        );
        assert_eq!(
            token_cost(
                &config,
                &Request {
                    endpoint: "models",
                    ..base
                }
            ),
            0
        );
        assert_eq!(
            token_cost(
                &config,
                &Request {
                    endpoint: "proxy",
                    max_tokens: Some(9),
                    ..base
                }
            ),
            9
        );
        assert_eq!(
            Config::parse(r#"{"tokens_per_minute": 1}"#)
                .unwrap()
                .default_max_tokens,
            256
        );
    }

    #[test]
    fn caller_names() {
        assert_eq!(caller(Some(("abc", false)), Some("1.2.3.4:5")), "key:abc");
        assert_eq!(
            caller(Some(("anonymous", true)), Some("1.2.3.4:5678")),
            "ip:1.2.3.4"
        );
        assert_eq!(caller(None, Some("[::1]:8080")), "ip:::1");
        assert_eq!(caller(None, Some("unix-socket")), "ip:unix-socket");
        assert_eq!(caller(Some(("anonymous", true)), None), "anonymous");
    }

    #[test]
    fn config_validation() {
        for bad in [
            "{}",
            "",
            r#"{"requests_per_minute": 0}"#,
            r#"{"tokens_per_minute": 0, "requests_per_minute": 5}"#,
            r#"{"requests_per_minute": -1}"#,
            r#"{"rpm": 5}"#,
            "[",
        ] {
            let e = Config::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid ratelimit config"), "{bad}: {e}");
        }
        let c = Config::parse(
            r#"{"requests_per_minute": 60, "tokens_per_minute": 10000, "default_max_tokens": 0}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                requests_per_minute: Some(60),
                tokens_per_minute: Some(10000),
                default_max_tokens: 0
            }
        );
    }
}
