//! Route tests: the real router driven with `oneshot`, no socket.

mod found_by_schemathesis;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, app};
use crate::config::Config;
use crate::management::{CreateKeyRequest, create_key};
use crate::store::{Scope, SledStore, Store, StoredKey, generate_key, now_unix};

const CONFIG: &str = r#"
max_body_bytes = 4096
[[deployments]]
name = "chatty"
aliases = ["default"]
kind = "chat"
  [[deployments.targets]]
  source = "/nonexistent/model.gguf"
[[deployments]]
name = "embedder"
kind = "embedding"
  [[deployments.targets]]
  source = "/nonexistent/minilm"
[[deployments]]
name = "listener"
kind = "transcription"
  [[deployments.targets]]
  source = "/nonexistent/whisper"
"#;

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn harness(require_auth: bool) -> Harness {
    harness_with(CONFIG, require_auth)
}

fn harness_with(toml: &str, require_auth: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(toml).unwrap();
    config.require_auth = Some(require_auth);
    config.data_dir = dir.path().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let state = AppState::build(config, store, Some("admin-token".into())).unwrap();
    Harness { _dir: dir, state }
}

impl Harness {
    fn key(&self, scopes: &[Scope], models: Option<&[&str]>) -> String {
        let request = CreateKeyRequest {
            name: "t".into(),
            scopes: Some(scopes.to_vec()),
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            expires_in: None,
        };
        create_key(&*self.state.store, request).unwrap().key
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (status, headers, body)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut builder = Request::get(path);
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let (status, _, body) = self.send(builder.body(Body::empty()).unwrap()).await;
        (status, body)
    }

    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let (status, _, body) = self.send(builder.body(body.into()).unwrap()).await;
        (status, body)
    }
}

fn assert_envelope(body: &Value, code: &str) {
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some(),
        "param must be present (maybe null): {body}"
    );
    assert_eq!(error["code"], code, "{body}");
}

#[tokio::test]
async fn open_mode_lists_models_with_aliases() {
    let h = harness(false);
    let (status, body) = h.get("/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chatty", "embedder", "listener", "default"]);
    assert_eq!(body["data"][3]["alias_of"], "chatty");
    assert_eq!(body["data"][0]["object"], "model");
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let h = harness(true);
    let (status, body) = h.get("/v1/models", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&body, "missing_api_key");

    let (status, body) = h.get("/v1/models", Some("hth_aaaaaaaaaaaa_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&body, "invalid_api_key");

    let key = h.key(&[Scope::Inference], None);
    assert_eq!(h.get("/v1/models", Some(&key)).await.0, StatusCode::OK);

    let request = Request::get("/v1/models")
        .header("x-api-key", &key)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(request).await.0, StatusCode::OK);

    // A right id with a wrong secret is as unknown as a wrong id.
    let last = if key.ends_with('X') { 'Y' } else { 'X' };
    let forged = format!("{}{last}", &key[..key.len() - 1]);
    assert_ne!(forged, key);
    assert_eq!(
        h.get("/v1/models", Some(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused() {
    let h = harness(true);
    let key = h.key(&[Scope::Inference], None);
    let id = crate::store::parse_key(&key).unwrap().id.to_owned();
    h.state.store.revoke_key(&id, now_unix()).unwrap();
    let (status, body) = h.get("/v1/models", Some(&key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    let secret = generate_key();
    h.state
        .store
        .insert_key(&StoredKey {
            id: secret.id.clone(),
            name: "old".into(),
            salt: secret.salt,
            secret_hash: secret.secret_hash,
            scopes: vec![Scope::Inference],
            models: None,
            created_at: 1,
            expires_at: Some(now_unix() - 1),
            revoked_at: None,
        })
        .unwrap();
    let (status, body) = h.get("/v1/models", Some(&secret.full_key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn scopes_and_allow_lists_give_403() {
    let h = harness(true);
    let inference = h.key(&[Scope::Inference], Some(&["default"]));
    let (status, body) = h.get("/v1/keys", Some(&inference)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&body, "insufficient_scope");

    let management = h.key(&[Scope::Management], None);
    assert_eq!(h.get("/v1/keys", Some(&management)).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/v1/models", Some(&management)).await.0,
        StatusCode::FORBIDDEN
    );

    // The allow-list names an alias; it admits the deployment under any of its names.
    let (_, body) = h.get("/v1/models", Some(&inference)).await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chatty", "default"]);
    assert_eq!(
        h.get("/v1/models/chatty", Some(&inference)).await.0,
        StatusCode::OK
    );
    let (status, body) = h.get("/v1/models/embedder", Some(&inference)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&body, "model_not_allowed");
    let (status, body) = h
        .post(
            "/v1/embeddings",
            Some(&inference),
            r#"{"model":"embedder","input":"x"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn model_resolution_errors() {
    let h = harness(false);
    let (status, body) = h.get("/v1/models/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "model_not_found");
    assert_eq!(body["error"]["param"], "model");

    let (status, body) = h.get("/v1/models/default", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "default");
    assert_eq!(body["alias_of"], "chatty");

    let (status, body) = h
        .post(
            "/v1/chat/completions",
            None,
            r#"{"model":"nope","messages":[]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "model_not_found");

    let (status, body) = h
        .post("/v1/chat/completions", None, r#"{"messages":[]}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "model");

    let (status, body) = h.post("/v1/chat/completions", None, r#"{"model":7}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "model");

    let (status, body) = h
        .post("/v1/chat/completions", None, r#"{"model": "chatty""#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, "invalid_json");

    let (status, body) = h
        .post("/v1/embeddings", None, r#"{"model":"chatty","input":"x"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, "model_not_supported");

    // A model that failed to load says so: 503, never a fake answer.
    let (status, body) = h
        .post(
            "/v1/chat/completions",
            None,
            r#"{"model":"default","messages":[]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_envelope(&body, "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed to load"),
        "{body}"
    );
}

#[tokio::test]
async fn header_names_the_model_ahead_of_the_body() {
    let h = harness(false);
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-gpustack-model", "nope")
        .body(Body::from(r#"{"model":"chatty"}"#))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`nope`")
    );
}

#[tokio::test]
async fn multipart_model_field_is_read() {
    let h = harness(false);
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nmissing-model\r\n--{boundary}--\r\n"
    );
    let request = Request::post("/v1/audio/transcriptions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing-model")
    );
}

fn audio_upload(path: &str, model: &str, file: &[u8], extra: &[(&str, &str)]) -> Request<Body> {
    let boundary = "AuDiO";
    let mut body = Vec::new();
    for (name, value) in std::iter::once(&("model", model)).chain(extra) {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Request::post(path)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn audio_uploads_pass_the_json_body_limit_and_reach_the_model() {
    let h = harness(false);
    // 64 KiB is over this config's 4 KiB body limit but far under the 25 MB file limit: the
    // request reaches the deployment, whose model failed to load.
    let big = vec![0u8; 64 * 1024];
    let (status, _, body) = h
        .send(audio_upload(
            "/v1/audio/transcriptions",
            "listener",
            &big,
            &[],
        ))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed to load"),
        "{body}"
    );
    let (status, _, body) = h
        .send(audio_upload(
            "/v1/audio/translations",
            "embedder",
            b"RIFF",
            &[],
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "model_not_supported");
    let unknown = [("speaker", "me")];
    let (status, _, body) = h
        .send(audio_upload(
            "/v1/audio/transcriptions",
            "listener",
            b"RIFF",
            &unknown,
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "speaker");
    let language = [("language", "en")];
    let (status, _, body) = h
        .send(audio_upload(
            "/v1/audio/translations",
            "listener",
            b"RIFF",
            &language,
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "language");
}

#[tokio::test]
async fn transport_errors_use_the_envelope() {
    let h = harness(false);
    let (status, body) = h.get("/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "not_found");

    let (status, body) = h.get("/v1/chat/completions", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(&body, "method_not_allowed");

    let big = format!(r#"{{"model":"chatty","pad":"{}"}}"#, "x".repeat(10_000));
    let (status, body) = h.post("/v1/chat/completions", None, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_envelope(&body, "payload_too_large");
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let h = harness(false);
    let request = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = h.send(request).await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let (_, headers, _) = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(headers["x-request-id"].len(), 36, "a UUID is generated");
}

#[tokio::test]
async fn management_api_creates_lists_revokes() {
    let h = harness(false);
    let admin = Some("admin-token");
    assert_eq!(
        h.post("/v1/keys", None, r#"{"name":"x"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = h
        .post(
            "/v1/keys",
            admin,
            r#"{"name":"x","scopes":["inference"],"expires_in":"30d"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();

    // The first key ends open mode at once.
    assert_eq!(h.get("/v1/models", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.get("/v1/models", Some(&key)).await.0, StatusCode::OK);

    let (status, body) = h
        .post("/v1/keys", admin, r#"{"name":"x","scope":["inference"]}"#)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields matter here: {body}"
    );
    let (status, body) = h
        .post("/v1/keys", admin, r#"{"name":"x","scopes":["root"]}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "scopes[0]");

    let (_, list) = h.get("/v1/keys", admin).await;
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&key), "secrets never listed");

    let request =
        Request::delete(format!("/v1/keys/{id}")).header("authorization", "Bearer admin-token");
    let (status, _, _) = h.send(request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.get("/v1/models", Some(&key)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (_, usage) = h.get("/v1/usage", admin).await;
    let row = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == id.as_str())
        .unwrap();
    assert_eq!(row["subject_type"], "key");
    assert_eq!(row["requests"], 1);
}

#[tokio::test]
async fn metrics_and_openapi_describe_the_server() {
    let h = harness(false);
    h.get("/v1/models", None).await;
    let response = app(h.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("hearth_http_requests_total{"), "{text}");
    assert!(text.contains(r#"route="/v1/models""#), "{text}");
    assert!(
        text.contains("hearth_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("hearth_http_requests_in_flight"), "{text}");

    let (status, doc) = h.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/images/files/{name}",
        "/v1/audio/speech",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/usage",
        "/model/proxy/{path}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
}

#[tokio::test]
async fn readiness_reports_deployments() {
    let h = harness(false);
    let (status, body) = h.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["deployments"]["chatty"]["state"], "failed");
}

#[tokio::test]
async fn readiness_says_draining_from_the_shutdown_signal_on() {
    let h = harness(false);
    h.state.drain.begin();
    let (status, body) = h.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "draining");
}

/// The drain layer over three handlers that never finish on their own: one that never
/// answers, an event stream and a chunked byte stream.
fn never_ending(state: &AppState) -> axum::Router {
    use axum::routing::get;
    use futures_util::stream;
    let forever = || {
        stream::unfold(0u64, |n| async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Some((
                Ok::<_, std::convert::Infallible>(format!("data: {n}\n\n")),
                n + 1,
            ))
        })
    };
    axum::Router::new()
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/events",
            get(move || async move {
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(forever()),
                )
            }),
        )
        .route(
            "/bytes",
            get(move || async move { Body::from_stream(forever()) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::drain::guard,
        ))
        .with_state(state.clone())
}

#[tokio::test]
async fn the_drain_ends_what_is_still_open_when_its_time_is_up() {
    let h = harness(false);
    let router = never_ending(&h.state);
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let hang = tokio::spawn(router.clone().oneshot(get("/hang")));
    let mut events = router
        .clone()
        .oneshot(get("/events"))
        .await
        .unwrap()
        .into_body();
    let first = events.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: 0\n\n");
    let bytes = router.clone().oneshot(get("/bytes")).await.unwrap();
    // The spawned request counts once its task has run.
    let counted = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.state.drain.in_flight() < 3 {
        assert!(
            tokio::time::Instant::now() < counted,
            "{} in flight",
            h.state.drain.in_flight()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(h.state.drain.in_flight(), 3);
    h.state.drain.begin();
    // Draining alone ends nothing.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!hang.is_finished());
    h.state.drain.expire();

    let hang = hang.await.unwrap().unwrap();
    assert_eq!(hang.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hang.headers()["retry-after"], "1");
    let body = hang.into_body().collect().await.unwrap().to_bytes();
    assert_envelope(
        &serde_json::from_slice(&body).unwrap(),
        "server_shutting_down",
    );

    let text = events.collect().await.unwrap().to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_envelope(&last, "server_shutting_down");

    // A byte stream cannot carry an error event: it is cut, and the client sees an error.
    assert!(bytes.into_body().collect().await.is_err());
    assert_eq!(h.state.drain.in_flight(), 0);
}

#[test]
fn shutdown_drain_is_a_duration() {
    let config = Config::parse("shutdown_drain = \"5s\"").unwrap();
    assert_eq!(config.shutdown_drain(), std::time::Duration::from_secs(5));
    assert_eq!(
        Config::parse("").unwrap().shutdown_drain(),
        std::time::Duration::from_secs(30)
    );
    let error = Config::parse("shutdown_drain = \"soon\"").unwrap_err();
    assert!(error.starts_with("shutdown_drain:"), "{error}");
}

/// Random edits of a valid upload to the multipart routes: whatever the bytes, the answer is
/// an enveloped error of the client's (or the failed deployment's 503), never a 500 or a
/// panic. One harness and runtime for all the cases: building one per case would compile
/// the default plugins each time.
#[test]
fn mutated_multipart_forms_get_enveloped_errors() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as Cases, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = runtime.block_on(async { harness(false) });
    let fields = [
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("temperature", "0.2"),
        ("prompt", "Hello"),
    ];
    let valid = runtime.block_on(async {
        let request = audio_upload(
            "/v1/audio/transcriptions",
            "listener",
            b"RIFF....WAVE",
            &fields,
        );
        request
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    });
    let len = valid.len();
    let edits = (
        prop::collection::vec((0..len, any::<u8>()), 1..8),
        prop::option::weighted(0.3, 0..len),
        prop_oneof![
            Just("/v1/audio/transcriptions"),
            Just("/v1/audio/translations"),
            Just("/v1/images/edits"),
        ],
    );
    let mut runner = TestRunner::new(Cases {
        cases: 128,
        ..Cases::default()
    });
    runner
        .run(&edits, |(writes, cut, path)| {
            let mut body = valid.clone();
            for (at, value) in writes {
                body[at] = value;
            }
            if let Some(cut) = cut {
                body.truncate(cut);
            }
            let request = Request::post(path)
                .header("content-type", "multipart/form-data; boundary=AuDiO")
                .body(Body::from(body))
                .unwrap();
            let (status, _, answer) = runtime.block_on(h.send(request));
            prop_assert!(
                status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status}: {answer}"
            );
            prop_assert!(answer["error"]["message"].is_string(), "{answer}");
            prop_assert!(answer["error"]["type"].is_string(), "{answer}");
            Ok(())
        })
        .unwrap();
}
