//! Key and usage management, shared by the `/v1/keys` API and the offline CLI.
//!
//! Both paths speak the same request and response types, so `hearth keys …`
//! prints the same thing whether it opened the store itself or asked the running
//! server.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{HearthError, Result};
use crate::store::{Scope, Store, StoredKey, UsageCounters, UsageSubject, generate_key, now_unix};

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A label for people; need not be unique.
    pub name: String,
    /// Defaults to `["inference"]`.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
    /// Deployments (names or aliases) the key may use; omitted means all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Lifetime such as `30d` or `12h`; omitted means no expiry.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A key as listed: never the secret.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub object: String,
    pub name: String,
    /// The key with its secret masked, e.g. `hth_abc123def456_****`.
    pub masked_key: String,
    pub scopes: Vec<Scope>,
    pub models: Option<Vec<String>>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
    pub last_used_at: Option<u64>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// Answer to `POST /v1/keys`: the only time the full key is shown.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The full key. Store it now: it cannot be shown again.
    pub key: String,
}

/// Answer to `DELETE /v1/keys/{id}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RevokedKey {
    pub id: String,
    pub object: String,
    pub revoked: bool,
}

/// One row of `GET /v1/usage`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UsageRow {
    #[serde(flatten)]
    pub subject: UsageSubject,
    #[serde(flatten)]
    pub counters: UsageCounters,
}

/// An OpenAI-style list.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>) -> Self {
        Self {
            object: "list".to_owned(),
            data,
        }
    }
}

/// Parses `30d`, `12h`, `90m` (humantime syntax).
pub fn parse_lifetime(text: &str) -> Result<Duration> {
    let lifetime = humantime::parse_duration(text.trim()).map_err(|e| {
        HearthError::invalid_param(
            "expires_in",
            format!("`{text}` is not a duration like 30d or 12h: {e}"),
        )
    })?;
    if lifetime.is_zero() {
        return Err(HearthError::invalid_param(
            "expires_in",
            "the lifetime must be longer than zero",
        ));
    }
    Ok(lifetime)
}

/// Creates and stores a key; durable when it returns.
pub fn create_key(store: &dyn Store, request: CreateKeyRequest) -> Result<CreatedKey> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(HearthError::invalid_param(
            "name",
            "a key needs a non-empty name",
        ));
    }
    let mut scopes = request.scopes.unwrap_or_else(|| vec![Scope::Inference]);
    scopes.dedup();
    if scopes.is_empty() {
        return Err(HearthError::invalid_param(
            "scopes",
            "a key needs at least one scope",
        ));
    }
    if let Some(models) = &request.models
        && (models.is_empty() || models.iter().any(|m| m.trim().is_empty()))
    {
        return Err(HearthError::invalid_param(
            "models",
            "the allow-list must name at least one model, and no empty names",
        ));
    }
    let now = now_unix();
    let expires_at = request
        .expires_in
        .as_deref()
        .map(parse_lifetime)
        .transpose()?
        .map(|d| now.saturating_add(d.as_secs().max(1)));
    let secret = generate_key();
    let stored = StoredKey {
        id: secret.id,
        name: name.to_owned(),
        salt: secret.salt,
        secret_hash: secret.secret_hash,
        scopes,
        models: request.models,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    store.insert_key(&stored)?;
    tracing::info!(id = %stored.id, name = %stored.name, "key created");
    Ok(CreatedKey {
        info: key_info(&stored, None),
        key: secret.full_key,
    })
}

/// Every key, masked.
pub fn list_keys(store: &dyn Store) -> Result<List<KeyInfo>> {
    let keys = store.list_keys()?;
    let infos = keys
        .iter()
        .map(|k| Ok(key_info(k, store.key_last_used(&k.id)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(List::new(infos))
}

/// Revokes a key; effective for the next request, durable when it returns.
pub fn revoke_key(store: &dyn Store, id: &str) -> Result<RevokedKey> {
    if !store.revoke_key(id, now_unix())? {
        return Err(HearthError::NotFound(format!("no key with id `{id}`")));
    }
    tracing::info!(id = %id, "key revoked");
    Ok(RevokedKey {
        id: id.to_owned(),
        object: "key".to_owned(),
        revoked: true,
    })
}

/// Usage per key and per deployment, keys first.
pub fn usage(store: &dyn Store) -> Result<List<UsageRow>> {
    let mut rows: Vec<UsageRow> = store
        .usage()?
        .into_iter()
        .map(|(subject, counters)| UsageRow { subject, counters })
        .collect();
    rows.sort_by_key(|r| match &r.subject {
        UsageSubject::Key(id) => (0, id.clone()),
        UsageSubject::Deployment(name) => (1, name.clone()),
    });
    Ok(List::new(rows))
}

/// Whether any usable (not revoked) key exists.
pub fn any_active_key(store: &dyn Store) -> Result<bool> {
    Ok(store.list_keys()?.iter().any(|k| k.revoked_at.is_none()))
}

fn key_info(key: &StoredKey, last_used_at: Option<u64>) -> KeyInfo {
    let now = now_unix();
    let status = if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    };
    KeyInfo {
        id: key.id.clone(),
        object: "key".to_owned(),
        name: key.name.clone(),
        masked_key: format!("hth_{}_****", key.id),
        scopes: key.scopes.clone(),
        models: key.models.clone(),
        created_at: key.created_at,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at,
        status: status.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(
            parse_lifetime("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_lifetime("soon").is_err());
        assert!(parse_lifetime("0s").is_err());
    }

    #[test]
    fn create_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let created = create_key(
            &store,
            CreateKeyRequest {
                name: "ci".into(),
                expires_in: Some("1h".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            created
                .key
                .starts_with(&format!("hth_{}_", created.info.id))
        );
        assert!(created.info.expires_at.is_some());
        let listed = list_keys(&store).unwrap();
        assert_eq!(listed.data.len(), 1);
        assert!(
            !serde_json::to_string(&listed)
                .unwrap()
                .contains(&created.key)
        );
        assert!(any_active_key(&store).unwrap());
        revoke_key(&store, &created.info.id).unwrap();
        assert_eq!(list_keys(&store).unwrap().data[0].status, "revoked");
        assert!(!any_active_key(&store).unwrap());
        assert!(matches!(
            revoke_key(&store, "nope"),
            Err(HearthError::NotFound(_))
        ));
    }

    #[test]
    fn empty_name_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let err = create_key(
            &store,
            CreateKeyRequest {
                name: " ".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, HearthError::InvalidRequest { param: Some(ref p), .. } if p == "name")
        );
    }
}
