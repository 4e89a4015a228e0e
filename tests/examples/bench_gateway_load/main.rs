//! Issue #16's load check of upstream deployments: the real `hearth` binary in front of a
//! streaming OpenAI-compatible upstream on loopback, N concurrent streaming chat clients with
//! `include_usage` for S seconds (a few leave mid-stream), then a storm of N clients that all
//! leave at once. Prints the figures and exits non-zero when an invariant breaks: a failed or
//! truncated stream, usage Hearth recorded that differs from what the upstream sent, upstream
//! streams still open after their clients left, RSS that keeps growing.
//!
//! A bench, not part of `scripts/test` (it runs a minute): after `cargo build --workspace
//! --all-targets`, `$CARGO_TARGET_DIR/debug/examples/bench_gateway_load [CLIENTS=200]
//! [SECONDS=60] [no-plugins]` (it runs `$HEARTH_BIN`, else the `hearth` built beside it).

#![allow(clippy::print_stdout, reason = "a bench prints its table")]

mod client;
mod probes;
mod upstream;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::{Tally, Target};
use hearth_e2e::Server;
use probes::{established_on, readyz_in_flight, rss_mib, threads, usage_row, wait_released};
use serde_json::Value;
use tokio::sync::{Barrier, Semaphore};
use upstream::Stats;

/// The share of requests that leave after a few tokens.
const LEAVE_PERCENT: u64 = 5;

/// How long after its clients left an upstream stream may still be open.
const RELEASE_WITHIN: Duration = Duration::from_secs(5);

/// RSS at the end may exceed RSS at the first checkpoint by this factor: allocator pools and
/// the connection pool are warm by then, so more is a per-request leak, not warm-up.
const RSS_GROWTH_LIMIT: f64 = 1.2;

/// How many of the storm's streams are being opened at once: like the load's staggered
/// starts, it keeps admission bursts (the auth plugin's concurrency bound) out of a check of
/// disconnects.
const STORM_OPENING: usize = 25;

const DEPLOYMENT: &str = "load-chat";

/// One sample of the run, each second.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss: f64,
    threads: u64,
    upstream_connections: usize,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at] as f64 / 1000.0
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: u64 = args
        .next()
        .map_or(Ok(200), |a| a.parse())
        .context("CLIENTS")?;
    let seconds: u64 = args
        .next()
        .map_or(Ok(60), |a| a.parse())
        .context("SECONDS")?;
    // `no-plugins`: the built-in key check instead of the default plugins, to tell their cost
    // from the proxy's.
    let plugins = match args.next().as_deref() {
        None => true,
        Some("no-plugins") => false,
        Some(other) => anyhow::bail!("unknown argument {other:?} (expected no-plugins)"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stats = Arc::new(Stats::default());
    let port = runtime.block_on(upstream::start(stats.clone()))?;

    let config = format!(
        "default_plugins = {plugins}\n[[deployments]]\nname = \"{DEPLOYMENT}\"\nkind = \"chat\"\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n"
    );
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &config, &[])?;
    let key = hearth_e2e::create_key(&server.dir, &["--name", "load"])?;
    let key_id = key.split('_').nth(1).context("key id")?.to_owned();
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(server.dir.join("server.json"))?)?;
    let pid = u32::try_from(info["pid"].as_u64().context("pid")?)?;
    let target = Arc::new(Target {
        client: reqwest::Client::builder()
            .read_timeout(Duration::from_secs(10))
            .build()?,
        url: server.url("/v1/chat/completions"),
        key,
        model: DEPLOYMENT.to_owned(),
    });
    let report = runtime.block_on(drive(
        &server, pid, port, &stats, target, clients, seconds, &key_id,
    ))?;
    println!("default plugins: {plugins}\n\n{}", report.table);
    if report.failures.is_empty() {
        println!("all invariants hold");
        Ok(())
    } else {
        for f in &report.failures {
            println!("FAILED: {f}");
        }
        println!("\nlast lines of the server log:");
        let log = server.log();
        for line in log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("  {line}");
        }
        // The server (a child process) and its data dir go before the exit, which runs no
        // destructors; a returned error would print a backtrace under RUST_BACKTRACE.
        drop(server);
        drop(dir);
        std::process::exit(1);
    }
}

struct Report {
    table: String,
    failures: Vec<String>,
}

#[allow(
    clippy::too_many_arguments,
    reason = "the bench's one driver, called once"
)]
async fn drive(
    server: &Server,
    pid: u32,
    port: u16,
    stats: &Arc<Stats>,
    target: Arc<Target>,
    clients: u64,
    seconds: u64,
    key_id: &str,
) -> Result<Report> {
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    let rss_start = rss_mib(pid);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let started = Instant::now();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let sample = Sample {
                    at: started.elapsed(),
                    rss: rss_mib(pid),
                    threads: threads(pid),
                    upstream_connections: established_on(port),
                };
                samples.lock().expect("samples").push(sample);
            }
        })
    };

    // The load: every client loops until the deadline, then reads its last stream to the end.
    // Their starts are spread over the first second: the bench measures streams held, not
    // one burst of simultaneous arrivals.
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let start = started + Duration::from_millis(i * 1000 / clients);
            tokio::spawn(client::run(
                target.clone(),
                i,
                start,
                deadline,
                LEAVE_PERCENT,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    let elapsed = started.elapsed();
    let rss_end = rss_mib(pid);
    sampler.abort();
    let samples = samples.lock().expect("samples").clone();
    let checkpoint = Duration::from_secs(10_u64.min(seconds / 3).max(1));
    let at_checkpoint = samples.iter().find(|s| s.at >= checkpoint);
    let rss_checkpoint = at_checkpoint.map_or(rss_start, |s| s.rss);
    let threads_checkpoint = at_checkpoint.map_or(0, |s| s.threads);
    let threads_peak = samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let threads_end = threads(pid);
    let rss_peak = samples.iter().map(|s| s.rss).fold(rss_end, f64::max);
    let connections_peak = samples
        .iter()
        .map(|s| s.upstream_connections)
        .max()
        .unwrap_or(0);
    let in_flight_peak = stats.peak_in_flight.load(Ordering::Acquire);

    // Every stream is over on the client side: none may stay open upstream or in Hearth's count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let upstream_after_load = stats.in_flight.load(Ordering::Acquire);
    let hearth_after_load = readyz_in_flight(&http, server).await?;
    let finished_load = stats.finished.load(Ordering::Acquire);
    let cut_load = stats.cut.load(Ordering::Acquire);
    let mut release_us = stats.release_us.lock().expect("release_us").clone();
    release_us.sort_unstable();
    let holds_expired = stats.holds_expired.load(Ordering::Acquire);
    check(
        holds_expired == 0,
        format!(
            "{holds_expired} left streams were not let go of upstream within {} s",
            upstream::HOLD.as_secs()
        ),
    );
    check(
        tally.failed == 0,
        format!("{} streams failed", tally.failed),
    );
    check(
        tally.truncated == 0,
        format!("{} streams truncated", tally.truncated),
    );
    check(tally.completed > 0, "no stream completed".into());
    check(
        finished_load == tally.completed,
        format!(
            "the upstream finished {finished_load} streams, clients completed {}",
            tally.completed
        ),
    );
    check(
        cut_load == tally.left,
        format!(
            "the upstream saw {cut_load} streams cut, clients left {}",
            tally.left
        ),
    );
    check(
        upstream_after_load == 0,
        format!("{upstream_after_load} upstream streams open 2 s after the load"),
    );
    check(
        hearth_after_load == 0,
        format!("Hearth counts {hearth_after_load} requests in flight 2 s after the load"),
    );

    // The storm: `clients` streams opened (at most STORM_OPENING at a time), held at their
    // first token, all left at once.
    let opening = Arc::new(Semaphore::new(STORM_OPENING));
    let reached = Arc::new(Barrier::new(usize::try_from(clients)? + 1));
    let leave = Arc::new(Barrier::new(usize::try_from(clients)? + 1));
    let storm: Vec<_> = (0..clients)
        .map(|i| {
            let seed = (1 << 48) | i;
            tokio::spawn(client::storm(
                target.clone(),
                seed,
                opening.clone(),
                reached.clone(),
                leave.clone(),
            ))
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), reached.wait())
        .await
        .context("the storm's streams did not all start")?;
    let storm_open_upstream = stats.in_flight.load(Ordering::Acquire);
    let storm_open_hearth = readyz_in_flight(&http, server).await?;
    leave.wait().await;
    let mut storm_failed = 0;
    for s in storm {
        if let Err(e) = s.await? {
            storm_failed += 1;
            tally.problem(e);
        }
    }
    let released = wait_released(&http, server, stats, RELEASE_WITHIN).await?;
    let upstream_after_storm = stats.in_flight.load(Ordering::Acquire);
    let hearth_after_storm = readyz_in_flight(&http, server).await?;
    let cut_storm = stats.cut.load(Ordering::Acquire) - cut_load;
    let connections_after = established_on(port);
    let rss_after_storm = rss_mib(pid);
    let threads_after_storm = threads(pid);
    check(
        storm_failed == 0,
        format!("{storm_failed} storm streams failed"),
    );
    check(
        storm_open_upstream == i64::try_from(clients)? && storm_open_hearth == clients,
        format!(
            "while the storm held: {storm_open_upstream} upstream streams and {storm_open_hearth} in Hearth, expected {clients}"
        ),
    );
    check(
        released.is_some(),
        format!(
            "{upstream_after_storm} upstream streams ({hearth_after_storm} in Hearth) still open {} s after the storm left",
            RELEASE_WITHIN.as_secs()
        ),
    );
    check(
        cut_storm == clients,
        format!("the upstream saw {cut_storm} of the storm's {clients} streams cut"),
    );
    check(
        connections_after <= usize::try_from(clients)?,
        format!(
            "{connections_after} connections to the upstream remain after the storm (more than the {clients} clients)"
        ),
    );

    // Usage: what Hearth recorded for the key and the deployment, against what the upstream
    // sent in the streams it finished and what the clients received in them.
    let sent = [
        stats.usage_chunks.load(Ordering::Acquire),
        stats.prompt_tokens.load(Ordering::Acquire),
        stats.completion_tokens.load(Ordering::Acquire),
    ];
    let requests_sent = tally.requests + clients;
    // Usage is recorded when Hearth drops a finished stream's body, just after the client
    // read its end: a moment is allowed for the last ones.
    let usage_deadline = Instant::now() + Duration::from_secs(5);
    let (key_row, deployment_row) = loop {
        let key_row = usage_row(&http, server, "key", key_id).await?;
        let deployment_row = usage_row(&http, server, "deployment", DEPLOYMENT).await?;
        let settled = deployment_row == sent && key_row == [requests_sent, sent[1], sent[2]];
        if settled || Instant::now() > usage_deadline {
            break (key_row, deployment_row);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    check(
        deployment_row == sent,
        format!(
            "Hearth's deployment usage {deployment_row:?} (requests, prompt, completion), the upstream sent {sent:?}"
        ),
    );
    check(
        key_row == [requests_sent, sent[1], sent[2]],
        format!(
            "Hearth's key usage {key_row:?}, expected [{requests_sent}, {}, {}]",
            sent[1], sent[2]
        ),
    );
    check(
        [
            tally.completed,
            tally.prompt_tokens,
            tally.completion_tokens,
        ] == sent,
        format!(
            "clients received usage of {} streams ({}, {}), the upstream sent {sent:?}",
            tally.completed, tally.prompt_tokens, tally.completion_tokens
        ),
    );
    check(
        rss_end <= rss_checkpoint * RSS_GROWTH_LIMIT,
        format!(
            "RSS grew from {rss_checkpoint:.1} MiB at {} s to {rss_end:.1} MiB",
            checkpoint.as_secs()
        ),
    );

    // tokio lets a thread it added for a blocked worker go after 10 s idle: what is left
    // then is what the server keeps.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let rss_settled = rss_mib(pid);
    let threads_settled = threads(pid);

    tally.ttfb_us.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let mut table = String::new();
    let mut row = |name: &str, value: String| table.push_str(&format!("| {name} | {value} |\n"));
    row(
        "clients, seconds",
        format!("{clients}, {seconds} (load ran {secs:.1} s)"),
    );
    row(
        "requests",
        format!(
            "{} ({:.0}/s): {} completed, {} left mid-stream on purpose",
            tally.requests,
            tally.requests as f64 / secs,
            tally.completed,
            tally.left
        ),
    );
    row(
        "streams failed / truncated",
        format!("{} / {}", tally.failed, tally.truncated),
    );
    row(
        "tokens through the gateway",
        format!(
            "{:.0} tok/s ({} tokens)",
            tally.tokens as f64 / secs,
            tally.tokens
        ),
    );
    row(
        "time to first byte p50 / p99",
        format!(
            "{:.2} ms / {:.2} ms",
            percentile(&tally.ttfb_us, 0.5),
            percentile(&tally.ttfb_us, 0.99)
        ),
    );
    row(
        &format!(
            "Hearth RSS: start / {} s / end of the load / peak / after the storm / 11 s later",
            checkpoint.as_secs()
        ),
        format!(
            "{rss_start:.1} / {rss_checkpoint:.1} / {rss_end:.1} / {rss_peak:.1} / {rss_after_storm:.1} / {rss_settled:.1} MiB"
        ),
    );
    row(
        &format!(
            "Hearth threads: {} s / peak (1 s samples) / end of the load / after the storm / 11 s later",
            checkpoint.as_secs()
        ),
        format!(
            "{threads_checkpoint} / {threads_peak} / {threads_end} / {threads_after_storm} / {threads_settled}"
        ),
    );
    row(
        "a client leaves → its upstream stream dropped: p50 / p99 / max",
        format!(
            "{:.2} / {:.2} / {:.2} ms ({} streams)",
            percentile(&release_us, 0.5),
            percentile(&release_us, 0.99),
            percentile(&release_us, 1.0),
            release_us.len()
        ),
    );
    row(
        "upstream streams in flight: peak / 2 s after the load",
        format!("{in_flight_peak} / {upstream_after_load} (Hearth's count: {hearth_after_load})"),
    );
    row(
        "storm: streams held, then left at once / upstream streams open after",
        format!(
            "{storm_open_upstream} (Hearth {storm_open_hearth}) / {upstream_after_storm} ({})",
            released.map_or_else(
                || "not released".to_owned(),
                |d| format!("all released in {} ms", d.as_millis())
            )
        ),
    );
    row(
        "connections to the upstream: peak / after the storm",
        format!("{connections_peak} / {connections_after}"),
    );
    row(
        "usage, streams / prompt / completion tokens: upstream sent",
        format!("{} / {} / {}", sent[0], sent[1], sent[2]),
    );
    row(
        "... Hearth recorded (deployment; key)",
        format!(
            "{} / {} / {}; key {} requests / {} / {}",
            deployment_row[0],
            deployment_row[1],
            deployment_row[2],
            key_row[0],
            key_row[1],
            key_row[2]
        ),
    );
    let mut out = String::from("| figure | value |\n|---|---|\n");
    out.push_str(&table);
    for p in &tally.problems {
        out.push_str(&format!("\n{p}"));
    }
    Ok(Report {
        table: out,
        failures,
    })
}
