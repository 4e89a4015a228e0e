//! The auth step: who is calling, and may they do this?
//!
//! Handlers never verify credentials themselves: the router's auth layer calls an
//! [`Authenticator`] and stores the resulting [`Identity`] in the request. The
//! built-in [`KeyAuthenticator`] checks Hearth keys against the store; the Wasm
//! plugin host implements the same trait to replace it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, Method, Uri, header};
use futures_util::future::BoxFuture;
use subtle::ConstantTimeEq;

use crate::deployments::{Deployment, Registry};
use crate::error::{HearthError, Result};
use crate::store::{Scope, Store, StoredKey, keys_secret_matches, now_unix, parse_key};

/// The request head an authenticator may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub scopes: Vec<Scope>,
    /// Deployments (names or aliases) this caller may use; `None` means all.
    pub models: Option<Vec<String>>,
}

/// The kind of caller behind an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A Hearth key, by access id and name.
    Key { id: String, name: String },
    /// The local administrator credential the server writes to its data dir.
    LocalAdmin,
    /// Nobody: the server runs open on loopback with no keys yet.
    Anonymous,
}

impl Identity {
    /// The key's access id, if the caller used a key.
    pub fn key_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::Key { id, .. } => Some(id),
            _ => None,
        }
    }

    /// 403 unless the identity holds `scope`.
    pub fn require_scope(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(HearthError::Forbidden {
                message: format!("this API key does not have the `{scope}` scope"),
                code: "insufficient_scope",
            })
        }
    }

    /// Whether the allow-list admits `deployment` (entries may be names or aliases).
    pub fn may_use(&self, deployment: &Deployment, registry: &Registry) -> bool {
        match &self.models {
            None => true,
            Some(allowed) => allowed.iter().any(|entry| {
                registry
                    .resolve(entry)
                    .is_some_and(|d| d.name() == deployment.name())
            }),
        }
    }

    /// 403 unless the allow-list admits `deployment`.
    pub fn require_model(
        &self,
        requested: &str,
        deployment: &Deployment,
        registry: &Registry,
    ) -> Result<()> {
        if self.may_use(deployment, registry) {
            Ok(())
        } else {
            Err(HearthError::Forbidden {
                message: format!("this API key is not allowed to use the model `{requested}`"),
                code: "model_not_allowed",
            })
        }
    }
}

/// Decides who is calling from the request head. A future, because an auth plugin's call is
/// awaited on the request's task.
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    fn authenticate<'a>(&'a self, head: RequestHead<'a>) -> BoxFuture<'a, Result<Identity>>;
}

/// The credential a client sent: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|v| !v.is_empty())
}

/// Verifies Hearth keys against the store.
#[derive(Debug)]
pub struct KeyAuthenticator {
    store: Arc<dyn Store>,
    admin_token: Option<String>,
    /// Open mode: no key is needed while this is true. It starts true only when
    /// auth is not required and no key exists, and turns false when one is created.
    open: Arc<AtomicBool>,
}

impl KeyAuthenticator {
    pub fn new(store: Arc<dyn Store>, admin_token: Option<String>, open: Arc<AtomicBool>) -> Self {
        Self {
            store,
            admin_token,
            open,
        }
    }

    /// Whether the server runs open (no key needed) right now.
    pub fn open_mode(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Looks `presented` up and checks its secret, revocation and expiry; records its use.
    pub fn check_key(&self, presented: &str) -> std::result::Result<StoredKey, KeyProblem> {
        let parsed = parse_key(presented).ok_or(KeyProblem::Malformed)?;
        let key = match self.store.get_key(parsed.id) {
            Ok(Some(key)) => key,
            Ok(None) => return Err(KeyProblem::Unknown),
            Err(e) => return Err(KeyProblem::Store(e.to_string())),
        };
        if !keys_secret_matches(&key.salt, parsed.secret, &key.secret_hash) {
            return Err(KeyProblem::Unknown);
        }
        let now = now_unix();
        if key.revoked_at.is_some() {
            return Err(KeyProblem::Revoked);
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyProblem::Expired);
        }
        if let Err(e) = self.store.touch_key(&key.id, now) {
            tracing::warn!(error = %e, key = %key.id, "could not record key use");
        }
        Ok(key)
    }

    fn verify_key(&self, presented: &str) -> Result<Identity> {
        let key = self.check_key(presented).map_err(|problem| match problem {
            KeyProblem::Store(e) => HearthError::Internal(e),
            KeyProblem::Revoked => {
                HearthError::InvalidKey("This API key has been revoked.".to_owned())
            }
            KeyProblem::Expired => HearthError::InvalidKey("This API key has expired.".to_owned()),
            KeyProblem::Malformed | KeyProblem::Unknown => {
                HearthError::InvalidKey("Incorrect API key provided.".to_owned())
            }
        })?;
        Ok(Identity {
            principal: Principal::Key {
                id: key.id,
                name: key.name,
            },
            scopes: key.scopes,
            models: key.models,
        })
    }

    /// The local administrator identity when `presented` is the admin token.
    pub fn local_admin(&self, presented: Option<&str>) -> Option<Identity> {
        match (presented, &self.admin_token) {
            (Some(presented), Some(admin))
                if bool::from(presented.as_bytes().ct_eq(admin.as_bytes())) =>
            {
                Some(Identity {
                    principal: Principal::LocalAdmin,
                    scopes: vec![Scope::Inference, Scope::Management],
                    models: None,
                })
            }
            _ => None,
        }
    }
}

/// Why a presented key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    Malformed,
    Unknown,
    Revoked,
    Expired,
    /// The store could not be read.
    Store(String),
}

impl Authenticator for KeyAuthenticator {
    fn authenticate<'a>(&'a self, head: RequestHead<'a>) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(std::future::ready(self.identify(head)))
    }
}

impl KeyAuthenticator {
    /// Who is calling, by the built-in rules: the local admin token, open mode, else a key.
    pub fn identify(&self, head: RequestHead<'_>) -> Result<Identity> {
        let presented = credential(head.headers);
        if let Some(admin) = self.local_admin(presented) {
            return Ok(admin);
        }
        if self.open_mode() {
            return Ok(Identity {
                principal: Principal::Anonymous,
                scopes: vec![Scope::Inference],
                models: None,
            });
        }
        match presented {
            None => Err(HearthError::MissingKey),
            Some(presented) => self.verify_key(presented),
        }
    }
}
