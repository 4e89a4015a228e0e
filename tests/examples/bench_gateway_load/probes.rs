//! What the load bench reads from outside the clients: Hearth's RSS and threads, the TCP
//! connections to the upstream, Hearth's in-flight count (`/readyz`) and its usage rows
//! (`/v1/usage`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hearth_e2e::Server;
use serde_json::Value;

use crate::DEPLOYMENT;
use crate::upstream::Stats;

/// A number field of `/proc/<pid>/status` (`VmRSS:` in KiB, `Threads:`); 0 once it is gone.
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_field(pid, "VmRSS:") as f64 / 1024.0
}

/// The threads of `pid`: a growing count is a leak or a hand-off to new threads (before
/// 2026-12-04 each plugin call went through `block_in_place`, which added threads under load).
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

/// Established TCP connections whose local port is `port` (the upstream's side of Hearth's
/// connections to it).
pub fn established_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "01"
        })
        .count()
}

pub async fn readyz_in_flight(http: &reqwest::Client, server: &Server) -> Result<u64> {
    let ready: Value = http.get(server.url("/readyz")).send().await?.json().await?;
    ready["deployments"][DEPLOYMENT]["targets"][0]["in_flight"]
        .as_u64()
        .with_context(|| format!("no in_flight in /readyz: {ready}"))
}

/// Hearth's `/v1/usage` row for `subject`: (requests, prompt tokens, completion tokens).
pub async fn usage_row(
    http: &reqwest::Client,
    server: &Server,
    kind: &str,
    subject: &str,
) -> Result<[u64; 3]> {
    let rows: Value = http
        .get(server.url("/v1/usage"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let row = rows["data"]
        .as_array()
        .context("usage rows")?
        .iter()
        .find(|r| r["subject_type"] == kind && r["subject"] == subject);
    let n = |f: &str| row.and_then(|r| r[f].as_u64()).unwrap_or(0);
    Ok([n("requests"), n("prompt_tokens"), n("completion_tokens")])
}

/// Waits until no stream is open upstream nor counted in flight by Hearth; how long it took,
/// or `None` when `within` passed first.
pub async fn wait_released(
    http: &reqwest::Client,
    server: &Server,
    stats: &Stats,
    within: Duration,
) -> Result<Option<Duration>> {
    let start = Instant::now();
    loop {
        if stats.in_flight.load(Ordering::Acquire) == 0
            && readyz_in_flight(http, server).await? == 0
        {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > within {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
