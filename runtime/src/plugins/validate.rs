//! The host checks every plugin output before acting on it: a plugin is untrusted code, so a
//! wrong status, a header that would corrupt the response framing, an oversized body or a
//! route target that is not a candidate is treated as the plugin failing.

use axum::http::{HeaderName, HeaderValue};

use super::bindings::types::{Denial, Pick, Rewrite};

/// Headers a plugin may neither add to a response nor set on a request: framing and
/// hop-by-hop headers, and Hearth's internal ones.
fn forbidden(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
    ) || name.starts_with("x-hearth-")
}

const MAX_HEADERS: usize = 32;
const MAX_MESSAGE_BYTES: usize = 4096;

/// A header list a plugin returned, checked and parsed.
pub fn headers(list: &[(String, String)]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    if list.len() > MAX_HEADERS {
        return Err(format!("{} headers (at most {MAX_HEADERS})", list.len()));
    }
    list.iter()
        .map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            if forbidden(&lower) {
                return Err(format!("header `{lower}` may not be set by a plugin"));
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
            Ok((name, value))
        })
        .collect()
}

/// A denial, checked: status 400–599, a short code, a bounded message, valid headers.
pub fn denial(d: &Denial) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    if !(400..=599).contains(&d.status) {
        return Err(format!("status {} is outside 400-599", d.status));
    }
    let code_ok = !d.code.is_empty()
        && d.code.len() <= 64
        && d.code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !code_ok {
        return Err(format!("code `{}` is not a short identifier", d.code));
    }
    if d.message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "message of {} bytes (at most {MAX_MESSAGE_BYTES})",
            d.message.len()
        ));
    }
    headers(&d.headers)
}

/// A rewrite, checked against the body limit and the header rules.
pub fn rewrite(r: &Rewrite, max_body_bytes: usize) -> Result<(), String> {
    if let Some(body) = &r.body
        && body.len() > max_body_bytes
    {
        return Err(format!(
            "rewritten body of {} bytes exceeds max_body_bytes ({max_body_bytes})",
            body.len()
        ));
    }
    headers(&r.set_headers)?;
    for name in &r.remove_headers {
        let lower = name.to_ascii_lowercase();
        if forbidden(&lower) {
            return Err(format!("header `{lower}` may not be removed by a plugin"));
        }
    }
    Ok(())
}

/// A pick, checked: the target and fallbacks must be candidates; duplicates and the target
/// itself are dropped from the fallbacks.
pub fn pick(p: &Pick, candidates: &[String]) -> Result<(String, Vec<String>), String> {
    if !candidates.contains(&p.target) {
        return Err(format!(
            "target `{}` is not one of the candidates",
            p.target
        ));
    }
    let mut fallbacks: Vec<String> = Vec::new();
    for f in &p.fallbacks {
        if f != &p.target && candidates.contains(f) && !fallbacks.contains(f) {
            fallbacks.push(f.clone());
        }
    }
    Ok((p.target.clone(), fallbacks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(status: u16, code: &str, headers: &[(&str, &str)]) -> Denial {
        Denial {
            status,
            code: code.into(),
            message: "no".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn denials_need_an_error_status_a_code_and_safe_headers() {
        assert!(denial(&deny(429, "rate_limit_exceeded", &[("Retry-After", "3")])).is_ok());
        assert!(denial(&deny(200, "ok", &[])).is_err());
        assert!(denial(&deny(600, "x", &[])).is_err());
        assert!(denial(&deny(403, "", &[])).is_err());
        assert!(denial(&deny(403, "has space", &[])).is_err());
        assert!(denial(&deny(403, "x", &[("content-length", "1")])).is_err());
        assert!(denial(&deny(403, "x", &[("x-hearth-internal", "1")])).is_err());
        assert!(denial(&deny(403, "x", &[("bad name", "1")])).is_err());
        assert!(denial(&deny(403, "x", &[("x-ok", "line\nbreak")])).is_err());
    }

    #[test]
    fn picks_must_name_candidates() {
        let candidates = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let p = Pick {
            target: "b".into(),
            fallbacks: vec!["b".into(), "z".into(), "a".into(), "a".into()],
        };
        assert_eq!(pick(&p, &candidates), Ok(("b".into(), vec!["a".into()])));
        let p = Pick {
            target: "z".into(),
            fallbacks: vec![],
        };
        assert!(pick(&p, &candidates).is_err());
    }

    #[test]
    fn rewrites_respect_the_body_limit_and_header_rules() {
        let r = Rewrite {
            body: Some(vec![0; 11]),
            set_headers: vec![],
            remove_headers: vec![],
        };
        assert!(rewrite(&r, 10).is_err());
        let r = Rewrite {
            body: None,
            set_headers: vec![("x-tenant".into(), "a".into())],
            remove_headers: vec!["Transfer-Encoding".into()],
        };
        assert!(rewrite(&r, 10).is_err());
    }

    /// Names a plugin might send: the forbidden ones in any case, ordinary ones, and junk.
    fn header_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("Content-Length".to_owned()),
            Just("TRANSFER-ENCODING".to_owned()),
            Just("x-hearth-identity".to_owned()),
            Just("Host".to_owned()),
            "[a-zA-Z][a-zA-Z0-9-]{0,20}",
            any::<String>(),
        ]
    }

    fn header_list() -> impl proptest::strategy::Strategy<Value = Vec<(String, String)>> {
        use proptest::prelude::*;
        prop::collection::vec((header_name(), any::<String>()), 0..40)
    }

    proptest::proptest! {
        #[test]
        fn accepted_headers_are_never_framing_or_internal(list in header_list()) {
            if let Ok(parsed) = headers(&list) {
                proptest::prop_assert!(parsed.len() <= MAX_HEADERS);
                for (name, _) in parsed {
                    proptest::prop_assert!(!forbidden(name.as_str()), "{name} was accepted");
                }
            }
        }

        #[test]
        fn accepted_denials_have_an_error_status_and_a_short_code(
            status in proptest::prelude::any::<u16>(),
            code in proptest::prelude::any::<String>(),
            message in proptest::collection::vec(proptest::prelude::any::<char>(), 0..5000),
            list in header_list(),
        ) {
            let d = Denial { status, code, message: message.into_iter().collect(), headers: list };
            if denial(&d).is_ok() {
                proptest::prop_assert!((400..=599).contains(&d.status));
                proptest::prop_assert!(!d.code.is_empty() && d.code.len() <= 64 && d.code.is_ascii());
                proptest::prop_assert!(d.message.len() <= MAX_MESSAGE_BYTES);
            }
        }

        #[test]
        fn accepted_rewrites_fit_the_limit_and_touch_no_framing_header(
            body in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)),
            set in header_list(),
            remove in proptest::collection::vec(header_name(), 0..6),
        ) {
            let r = Rewrite { body, set_headers: set, remove_headers: remove };
            if rewrite(&r, 200).is_ok() {
                proptest::prop_assert!(r.body.as_ref().is_none_or(|b| b.len() <= 200));
                proptest::prop_assert!(r.remove_headers.iter().all(|n| !forbidden(&n.to_ascii_lowercase())));
            }
        }

        #[test]
        fn picks_are_candidates_without_duplicates(
            target in "[a-d]{1,2}",
            fallbacks in proptest::collection::vec("[a-d]{1,2}", 0..8),
            candidates in proptest::collection::vec("[a-d]{1,2}", 0..5),
        ) {
            let p = Pick { target, fallbacks };
            match pick(&p, &candidates) {
                Ok((chosen, rest)) => {
                    proptest::prop_assert!(candidates.contains(&chosen));
                    proptest::prop_assert!(rest.iter().all(|f| candidates.contains(f) && *f != chosen));
                    let mut unique = rest.clone();
                    unique.sort();
                    unique.dedup();
                    proptest::prop_assert_eq!(unique.len(), rest.len());
                }
                Err(_) => proptest::prop_assert!(!candidates.contains(&p.target)),
            }
        }
    }
}
