//! Server-level embeddings throughput: the real `hearth` binary with
//! all-MiniLM-L6-v2, N concurrent clients each sending one short sentence per
//! request, for a fixed time. Shows what the engine's shared batches buy.
//!
//! Run: `cargo build -p hearth-runtime --bins && cargo run -q -p hearth-e2e --example bench_embeddings_http`

#![allow(clippy::print_stdout, reason = "a bench prints its table")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hearth_e2e::Server;

const SECONDS_PER_ROW: u64 = 5;

fn main() -> Result<()> {
    let config = hearth_e2e::config();
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &config, &[])?;
    let url = server.url("/v1/embeddings");
    let body = serde_json::json!({"model": "all-minilm", "input": "A man is eating a piece of bread.", "encoding_format": "float"});

    let mut table =
        String::from("| clients | requests/s | p50 ms | p99 ms |\n|---:|---:|---:|---:|\n");
    for clients in [1usize, 4, 16, 32] {
        let done = AtomicU64::new(0);
        let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_ROW);
        let started = Instant::now();
        let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    let (url, body, done) = (&url, &body, &done);
                    scope.spawn(move || -> Result<Vec<Duration>> {
                        let client = reqwest::blocking::Client::new();
                        let mut mine = Vec::new();
                        while Instant::now() < deadline {
                            let t = Instant::now();
                            let response = client.post(url).json(body).send()?;
                            anyhow::ensure!(
                                response.status().is_success(),
                                "status {}",
                                response.status()
                            );
                            response.bytes()?;
                            mine.push(t.elapsed());
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(mine)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker panicked"))
                .collect::<Result<Vec<_>>>()
                .map(|all| all.concat())
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        let pick =
            |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
        table.push_str(&format!(
            "| {clients} | {rate:.1} | {:.2} | {:.2} |\n",
            pick(0.5),
            pick(0.99)
        ));
    }
    let metrics = reqwest::blocking::get(server.url("/metrics"))?.text()?;
    let field = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .context(name.to_owned())
    };
    let mean_batch =
        field("hearth_embedding_batch_size_sum")? / field("hearth_embedding_batch_size_count")?;
    println!("{table}\nmean batch size over the run: {mean_batch:.2}");
    Ok(())
}
