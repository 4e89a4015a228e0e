//! Keys through the CLI, with and without a running server, durability across
//! `kill -9`, and what each key may do once it exists.

use hearth_e2e::{Server, create_key, hearth};
use reqwest::StatusCode;
use reqwest::blocking::Client;

use crate::config;

fn models_status(server: &Server, key: &str) -> StatusCode {
    Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .unwrap()
        .status()
}

#[test]
fn key_created_offline_works_once_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, &["--name", "offline", "--models", "default"]).unwrap();
    assert!(key.starts_with("hth_"), "{key}");

    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    assert_eq!(models_status(&server, &key), StatusCode::OK);
    assert_eq!(
        models_status(&server, "hth_aaaaaaaaaaaa_nope"),
        StatusCode::UNAUTHORIZED
    );
    let anonymous = Client::new().get(server.url("/v1/models")).send().unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "a key exists, so the server is not open"
    );

    // The allow-list names an alias: only that deployment is listed.
    let list: serde_json::Value = Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["smollm2", "default"]);
}

#[test]
fn keys_commands_work_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let output = hearth(
        &server.dir,
        &[
            "keys",
            "create",
            "--name",
            "live",
            "--scope",
            "inference,management",
        ],
    )
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("via the running server"));
    let key = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(models_status(&server, &key), StatusCode::OK);

    let list = hearth(&server.dir, &["keys", "list"]).unwrap();
    let table = String::from_utf8(list.stdout).unwrap();
    let id = key.split('_').nth(1).unwrap();
    assert!(
        table.contains(id) && table.contains("live") && table.contains("active"),
        "{table}"
    );
    assert!(!table.contains(&key), "the secret is never listed");

    let revoke = hearth(&server.dir, &["keys", "revoke", id]).unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    assert_eq!(
        models_status(&server, &key),
        StatusCode::UNAUTHORIZED,
        "revocation is immediate"
    );

    let usage = hearth(&server.dir, &["usage"]).unwrap();
    let usage = String::from_utf8(usage.stdout).unwrap();
    assert!(
        usage
            .lines()
            .any(|l| l.starts_with("key") && l.contains(id)),
        "{usage}"
    );

    let models = hearth(
        &server.dir,
        &["--config", server.config_path.to_str().unwrap(), "models"],
    )
    .unwrap();
    let models = String::from_utf8(models.stdout).unwrap();
    assert!(
        models.contains("smollm2") && models.contains("all-minilm"),
        "{models}"
    );
    drop(server);

    // With the server gone, the same commands open the store themselves.
    let offline = hearth(&dir.path().join("data"), &["keys", "list"]).unwrap();
    assert!(String::from_utf8_lossy(&offline.stderr).contains("store in"));
    assert!(
        String::from_utf8(offline.stdout)
            .unwrap()
            .contains("revoked")
    );
}

#[test]
fn a_key_created_right_before_kill_9_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let created: serde_json::Value = Client::new()
        .post(server.url("/v1/keys"))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({"name": "durable"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    server.kill9().unwrap();

    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    assert_eq!(models_status(&server, &key), StatusCode::OK);
}

#[test]
fn expired_and_malformed_cli_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad = hearth(
        &data,
        &["keys", "create", "--name", "x", "--expires-in", "soon"],
    )
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("soon"));
    let bad = hearth(&data, &["keys", "create", "--name", "x", "--scope", "root"]).unwrap();
    assert!(!bad.status.success());
    let missing = hearth(&data, &["keys", "revoke", "nosuchkey123"]).unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nosuchkey123"));
}
