//! Graceful shutdown through the real binary: after SIGTERM the listener closes, a stream
//! in flight that ends within the drain time ends as it would have, one that outlasts it
//! gets a `server_shutting_down` error event as its last, and the process exits cleanly.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hearth_e2e::Server;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

use crate::echo::{echo_service, slow_stream_was_cut};

/// A `/slow` event stream through the generic proxy, its first bytes read.
fn open_stream(server: &Server, tag: &str, chunks: usize) -> Response {
    let mut response = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(server.url(&format!("/model/proxy/slow?tag={tag}&chunks={chunks}")))
        .header("x-gpustack-model", "echo")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut first = [0u8; 9];
    response.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"data: 0\n\n");
    response
}

fn rest(mut response: Response) -> String {
    let mut text = String::new();
    response
        .read_to_string(&mut text)
        .expect("the stream ends cleanly");
    text
}

#[test]
fn sigterm_lets_streams_in_flight_finish_and_ends_the_rest_at_the_drain_time() {
    let port = echo_service();
    let config = format!(
        "shutdown_drain = \"2s\"\n[[deployments]]\nname = \"echo\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config, &[]).unwrap();
    // 20 events of 50 ms end inside the drain; 200 (10 s) outlast it.
    let short = open_stream(&server, "drain-short", 20);
    let long = open_stream(&server, "drain-long", 200);

    server.send_sigterm().unwrap();
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(5);
    while TcpStream::connect(server.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let short = std::thread::spawn(move || rest(short));
    let long = rest(long);
    let long_ended = signalled.elapsed();
    let short = short.join().unwrap();

    assert!(
        short.ends_with("data: 19\n\ndata: [DONE]\n\n"),
        "the short stream was not let finish: {short:?}"
    );
    assert!(!short.contains("error"), "{short}");

    let last = long.trim_end().rsplit("\n\n").next().unwrap();
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap())
        .unwrap_or_else(|e| panic!("{e}: the long stream did not end with an event: {long:?}"));
    assert_eq!(last["error"]["code"], "server_shutting_down", "{last}");
    assert_eq!(last["error"]["type"], "server_error", "{last}");
    assert!(!long.contains("[DONE]"), "{long}");
    assert!(
        long_ended >= Duration::from_millis(1900) && long_ended < Duration::from_secs(8),
        "the long stream ended {long_ended:?} after the signal, not at the 2 s drain"
    );

    let status = server.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}");
    // Ending the stream released its upstream request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !slow_stream_was_cut("drain-long") {
        assert!(
            Instant::now() < deadline,
            "the upstream kept streaming to nobody"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
