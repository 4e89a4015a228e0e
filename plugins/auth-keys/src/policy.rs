//! The auth decision, free of bindings so that it can be unit-tested natively.

use serde::Deserialize;

/// The scope that the management API needs.
pub const MANAGEMENT: &str = "management";
/// The scope that every other path needs.
pub const INFERENCE: &str = "inference";
/// The key id (and name) of the anonymous identity used in open mode.
pub const ANONYMOUS: &str = "anonymous";

/// Path prefixes of the management API.
const MANAGEMENT_PREFIXES: &[&str] = &["/v1/keys", "/v1/usage"];

/// The plugin's configuration (`[plugins.config]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One more header to read the key from, after `authorization` and `x-api-key`.
    #[serde(default)]
    pub header: Option<String>,
}

impl Config {
    /// Parses and validates the config JSON the host hands over (`{}`, `null`
    /// or empty text mean the defaults). The header name is lower-cased.
    pub fn parse(json: &str) -> Result<Config, String> {
        let json = json.trim();
        if json.is_empty() || json == "null" {
            return Ok(Config::default());
        }
        let mut config: Config =
            serde_json::from_str(json).map_err(|e| format!("invalid auth-keys config: {e}"))?;
        if let Some(header) = &mut config.header {
            let valid = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                return Err(format!(
                    "invalid auth-keys config: `header` {header:?} is not a valid header name"
                ));
            }
            header.make_ascii_lowercase();
        }
        Ok(config)
    }
}

/// What the host's key store said about a key (mirrors `keys.key-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's access id.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
    /// The models it may use; empty means all.
    pub allowed_models: Vec<String>,
    /// Expiry in Unix seconds.
    pub expires_at: Option<u64>,
}

/// Why the host's key store refused a key (mirrors `keys.key-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No such key, or wrong secret.
    Unknown,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Not shaped like a key.
    Malformed,
}

/// The host services the decision needs, so that tests can stand in for them.
pub trait Keys {
    /// `keys.verify`.
    fn verify(&self, secret: &str) -> Result<KeyInfo, KeyError>;
    /// `keys.open-mode`.
    fn open_mode(&self) -> bool;
}

/// Who the caller is (mirrors `types.identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Key id, or [`ANONYMOUS`].
    pub key_id: String,
    /// Key name, or [`ANONYMOUS`].
    pub key_name: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Models allowed; empty means all.
    pub allowed_models: Vec<String>,
    /// Expiry in Unix seconds.
    pub expires_at: Option<u64>,
    /// True for the open-mode identity.
    pub anonymous: bool,
}

impl Identity {
    /// The identity of a request without a verified key in open mode.
    pub fn anonymous() -> Identity {
        Identity {
            key_id: ANONYMOUS.to_owned(),
            key_name: ANONYMOUS.to_owned(),
            // Open mode covers the model API only: managing keys always needs a key (or
            // the server's local admin token, which the host checks before any plugin).
            scopes: vec![INFERENCE.to_owned()],
            allowed_models: Vec::new(),
            expires_at: None,
            anonymous: true,
        }
    }

    fn from_key(info: KeyInfo) -> Identity {
        Identity {
            key_id: info.key_id,
            key_name: info.name,
            scopes: info.scopes,
            allowed_models: info.allowed_models,
            expires_at: info.expires_at,
            anonymous: false,
        }
    }
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
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Denial {
    fn unauthorized(code: &'static str, message: String) -> Denial {
        Denial {
            status: 401,
            code,
            message,
            headers: vec![(
                "www-authenticate".to_owned(),
                "Bearer realm=\"hearth\"".to_owned(),
            )],
        }
    }
}

/// The decision (mirrors `types.auth-decision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request in.
    Allow(Identity),
    /// Refuse it.
    Deny(Denial),
}

/// What the request carries in the way of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No key at all.
    Missing,
    /// A key, still to be verified.
    Key(&'a str),
    /// An `Authorization` header with a scheme other than Bearer.
    WrongScheme,
}

/// Finds the key in `headers` (lower-case names): `authorization: Bearer`,
/// then `x-api-key`, then the configured extra header.
pub fn credential<'a>(headers: &'a [(String, String)], config: &Config) -> Credential<'a> {
    let find = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    };
    if let Some(value) = find("authorization") {
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Credential::WrongScheme;
        }
        let key = rest.trim();
        if !key.is_empty() {
            return Credential::Key(key);
        }
    }
    if let Some(key) = find("x-api-key") {
        return Credential::Key(key);
    }
    if let Some(key) = config.header.as_deref().and_then(find) {
        return Credential::Key(key);
    }
    Credential::Missing
}

/// Masks a key for an error message: its first 8 characters, then `***`,
/// then the last 4 when the key is long enough (24+) for them to reveal little.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let head: String = chars.iter().take(8).collect();
    if chars.len() >= 24 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}***{tail}")
    } else {
        format!("{head}***")
    }
}

/// True when `path` belongs to the management API.
pub fn is_management_path(path: &str) -> bool {
    MANAGEMENT_PREFIXES.iter().any(|prefix| {
        path.len() >= prefix.len()
            && path.is_char_boundary(prefix.len())
            && path[..prefix.len()].eq_ignore_ascii_case(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
    })
}

/// The scope that `path` needs.
pub fn required_scope(path: &str) -> &'static str {
    if is_management_path(path) {
        MANAGEMENT
    } else {
        INFERENCE
    }
}

/// Decides one request from its path and headers.
pub fn authenticate(
    path: &str,
    headers: &[(String, String)],
    config: &Config,
    keys: &impl Keys,
) -> Decision {
    let identity = match credential(headers, config) {
        Credential::Missing if keys.open_mode() => Identity::anonymous(),
        Credential::Missing => {
            return Decision::Deny(Denial::unauthorized(
                "missing_api_key",
                "You didn't provide an API key. You need to provide your API key in an Authorization header \
                 using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an X-API-Key header."
                    .to_owned(),
            ));
        }
        Credential::WrongScheme if keys.open_mode() => Identity::anonymous(),
        Credential::WrongScheme => {
            return Decision::Deny(Denial::unauthorized(
                "invalid_api_key",
                "The Authorization header must use Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_owned(),
            ));
        }
        Credential::Key(key) => match keys.verify(key) {
            Ok(info) => Identity::from_key(info),
            Err(_) if keys.open_mode() => Identity::anonymous(),
            Err(error) => return Decision::Deny(invalid_key(key, error)),
        },
    };
    let scope = required_scope(path);
    if identity.anonymous && scope == MANAGEMENT {
        return Decision::Deny(Denial::unauthorized(
            "missing_api_key",
            format!(
                "{path} needs an API key with the 'management' scope, even while the server runs open."
            ),
        ));
    }
    if !identity.scopes.iter().any(|s| s == scope) {
        return Decision::Deny(Denial {
            status: 403,
            code: "insufficient_scope",
            message: format!(
                "The API key '{}' does not have the '{scope}' scope, which {path} requires.",
                identity.key_name
            ),
            headers: Vec::new(),
        });
    }
    Decision::Allow(identity)
}

fn invalid_key(key: &str, error: KeyError) -> Denial {
    let masked = mask(key);
    let message = match error {
        KeyError::Unknown | KeyError::Malformed => format!("Incorrect API key provided: {masked}."),
        KeyError::Revoked => format!("The API key {masked} has been revoked."),
        KeyError::Expired => format!("The API key {masked} has expired."),
    };
    Denial::unauthorized("invalid_api_key", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "hth_abcd1234_s3cr3tS3cr3tS3cr3tS3cr3t";
    const MGMT: &str = "hth_mgmt0001_s3cr3tS3cr3tS3cr3tS3cr3t";

    struct FakeKeys {
        open: bool,
    }

    impl Keys for FakeKeys {
        fn verify(&self, secret: &str) -> Result<KeyInfo, KeyError> {
            let info = |id: &str, scopes: &[&str]| KeyInfo {
                key_id: id.to_owned(),
                name: format!("{id}-name"),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                allowed_models: vec!["smollm2".to_owned()],
                expires_at: Some(2_000_000_000),
            };
            match secret {
                GOOD => Ok(info("abcd1234", &[INFERENCE])),
                MGMT => Ok(info("mgmt0001", &[MANAGEMENT])),
                "hth_revoked_xxxxxxxxxxxxxxxxxxxxxxxx" => Err(KeyError::Revoked),
                "hth_expired_xxxxxxxxxxxxxxxxxxxxxxxx" => Err(KeyError::Expired),
                s if s.starts_with("hth_") => Err(KeyError::Unknown),
                _ => Err(KeyError::Malformed),
            }
        }
        fn open_mode(&self) -> bool {
            self.open
        }
    }

    const CLOSED: FakeKeys = FakeKeys { open: false };
    const OPEN: FakeKeys = FakeKeys { open: true };

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn deny(d: Decision) -> Denial {
        match d {
            Decision::Deny(d) => d,
            Decision::Allow(i) => panic!("expected a denial, got {i:?}"),
        }
    }

    fn allow(d: Decision) -> Identity {
        match d {
            Decision::Allow(i) => i,
            Decision::Deny(d) => panic!("expected allow, got {d:?}"),
        }
    }

    #[test]
    fn bearer_key_is_verified_and_becomes_the_identity() {
        let bearer = format!("Bearer {GOOD}");
        let id = allow(authenticate(
            "/v1/chat/completions",
            &h(&[("authorization", &bearer)]),
            &Config::default(),
            &CLOSED,
        ));
        assert_eq!(id.key_id, "abcd1234");
        assert_eq!(id.key_name, "abcd1234-name");
        assert_eq!(id.scopes, ["inference"]);
        assert_eq!(id.allowed_models, ["smollm2"]);
        assert_eq!(id.expires_at, Some(2_000_000_000));
        assert!(!id.anonymous);
    }

    #[test]
    fn x_api_key_works_and_bearer_scheme_is_case_insensitive() {
        let id = allow(authenticate(
            "/v1/models",
            &h(&[("x-api-key", GOOD)]),
            &Config::default(),
            &CLOSED,
        ));
        assert_eq!(id.key_id, "abcd1234");
        let bearer = format!("bearer   {GOOD}  ");
        let id = allow(authenticate(
            "/v1/models",
            &h(&[("authorization", &bearer)]),
            &Config::default(),
            &CLOSED,
        ));
        assert_eq!(id.key_id, "abcd1234");
    }

    #[test]
    fn configured_header_is_read_last() {
        let config = Config::parse(r#"{"header": "X-Goog-Api-Key"}"#).unwrap();
        assert_eq!(config.header.as_deref(), Some("x-goog-api-key"));
        let id = allow(authenticate(
            "/v1/models",
            &h(&[("x-goog-api-key", GOOD)]),
            &config,
            &CLOSED,
        ));
        assert_eq!(id.key_id, "abcd1234");
        // Authorization wins over the others.
        let headers = h(&[
            ("x-goog-api-key", "hth_nope_nope"),
            ("authorization", &format!("Bearer {GOOD}")),
        ]);
        assert_eq!(credential(&headers, &config), Credential::Key(GOOD));
    }

    #[test]
    fn missing_key_is_401_unless_open_mode() {
        let d = deny(authenticate("/v1/models", &[], &Config::default(), &CLOSED));
        assert_eq!((d.status, d.code), (401, "missing_api_key"));
        assert!(d.headers.iter().any(|(n, _)| n == "www-authenticate"));
        // An empty bearer is no key either.
        let d = deny(authenticate(
            "/v1/models",
            &h(&[("authorization", "Bearer ")]),
            &Config::default(),
            &CLOSED,
        ));
        assert_eq!(d.code, "missing_api_key");

        let id = allow(authenticate("/v1/models", &[], &Config::default(), &OPEN));
        assert!(id.anonymous);
        assert_eq!(id.key_id, ANONYMOUS);
        assert!(id.allowed_models.is_empty());
        // Open mode covers the model API only: the management API still needs a key.
        match authenticate("/v1/keys", &[], &Config::default(), &OPEN) {
            Decision::Deny(d) => assert_eq!((d.status, d.code), (401, "missing_api_key")),
            other => panic!("management allowed anonymously: {other:?}"),
        }
    }

    #[test]
    fn bad_keys_are_401_invalid_api_key() {
        for (key, needle) in [
            (
                "hth_zzzz_unknownunknownunknown",
                "Incorrect API key provided: hth_zzzz***nown.",
            ),
            ("sk-short", "Incorrect API key provided: sk-short***."),
            ("hth_revoked_xxxxxxxxxxxxxxxxxxxxxxxx", "has been revoked"),
            ("hth_expired_xxxxxxxxxxxxxxxxxxxxxxxx", "has expired"),
        ] {
            let d = deny(authenticate(
                "/v1/models",
                &h(&[("x-api-key", key)]),
                &Config::default(),
                &CLOSED,
            ));
            assert_eq!((d.status, d.code), (401, "invalid_api_key"), "{key}");
            assert!(d.message.contains(needle), "{key}: {}", d.message);
            assert!(
                !d.message.contains("xxxxxxxxxxxxxxxx"),
                "the secret must be masked"
            );
        }
    }

    #[test]
    fn wrong_auth_scheme_is_invalid() {
        let d = deny(authenticate(
            "/v1/models",
            &h(&[("authorization", "Basic dXNlcjpwdw==")]),
            &Config::default(),
            &CLOSED,
        ));
        assert_eq!((d.status, d.code), (401, "invalid_api_key"));
        assert!(d.message.contains("Bearer"));
    }

    #[test]
    fn open_mode_ignores_keys_that_do_not_verify_but_uses_good_ones() {
        let id = allow(authenticate(
            "/v1/models",
            &h(&[("authorization", "Bearer sk-dummy")]),
            &Config::default(),
            &OPEN,
        ));
        assert!(id.anonymous);
        let id = allow(authenticate(
            "/v1/models",
            &h(&[("x-api-key", GOOD)]),
            &Config::default(),
            &OPEN,
        ));
        assert_eq!(id.key_id, "abcd1234");
        // ...and then its scopes apply.
        let d = deny(authenticate(
            "/v1/keys",
            &h(&[("x-api-key", GOOD)]),
            &Config::default(),
            &OPEN,
        ));
        assert_eq!(d.status, 403);
    }

    #[test]
    fn scopes_are_checked_per_path() {
        let inference = h(&[("x-api-key", GOOD)]);
        let management = h(&[("x-api-key", MGMT)]);
        for path in [
            "/v1/keys",
            "/v1/keys/abc",
            "/v1/usage",
            "/v1/usage/",
            "/V1/KEYS",
        ] {
            let d = deny(authenticate(path, &inference, &Config::default(), &CLOSED));
            assert_eq!((d.status, d.code), (403, "insufficient_scope"), "{path}");
            assert!(d.message.contains("'management'"), "{}", d.message);
            allow(authenticate(path, &management, &Config::default(), &CLOSED));
        }
        for path in [
            "/v1/chat/completions",
            "/v1/keysmith",
            "/model/proxy/v1/keys",
            "/v1/models",
        ] {
            allow(authenticate(path, &inference, &Config::default(), &CLOSED));
            let d = deny(authenticate(path, &management, &Config::default(), &CLOSED));
            assert_eq!((d.status, d.code), (403, "insufficient_scope"), "{path}");
        }
    }

    #[test]
    fn management_path_matching() {
        assert!(is_management_path("/v1/keys"));
        assert!(is_management_path("/v1/usage/by-key"));
        assert!(!is_management_path("/v1/key"));
        assert!(!is_management_path("/v1/usages"));
        assert!(!is_management_path("/v1/ké"));
        assert_eq!(required_scope("/healthz"), INFERENCE);
    }

    #[test]
    fn mask_handles_short_and_unicode_keys() {
        assert_eq!(mask(""), "***");
        assert_eq!(mask("ééééééééééééééééééééééééé"), "éééééééé***éééé");
    }

    #[test]
    fn config_parsing() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("null").unwrap(), Config::default());
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        assert!(
            Config::parse(r#"{"headr": "x"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(Config::parse(r#"{"header": "bad header"}"#).is_err());
        assert!(Config::parse(r#"{"header": ""}"#).is_err());
        assert!(Config::parse("[").is_err());
    }
}
