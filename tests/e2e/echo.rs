//! The small non-OpenAI service the gateway tests put behind Hearth: it echoes what it
//! received, streams SSE, fails or hangs on request, and answers chat with usage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// The SSE body the echo service sends on `/sse`, in these chunks (a multi-byte character is
/// split across two of them).
pub const SSE_CHUNKS: [&[u8]; 4] = [
    b"data: {\"n\": 1}\n\n",
    b"data: caf\xc3",
    b"\xa9 \xe2\x98\x95\n\n",
    b"data: [DONE]\n\n",
];

/// What the service's `/v1/chat/completions` reports as usage.
const UPSTREAM_USAGE: &str = r#"{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}"#;

/// The service's chat answer: JSON with usage, or SSE chunks (cut in the middle of the usage
/// chunk), with a usage chunk only when `include_usage` asked for it.
pub fn chat_answer(stream: bool, include_usage: bool) -> Vec<Vec<u8>> {
    if !stream {
        return vec![
            format!(
                r#"{{"id":"c1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"the \"usage\": {{}} of it"}},"finish_reason":"stop"}}],"usage":{UPSTREAM_USAGE}}}"#
            )
            .into_bytes(),
        ];
    }
    let null = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let mut chunks = vec![
        format!(r#"data: {{"id":"c1","choices":[{{"index":0,"delta":{{"role":"assistant","content":"Hi"}},"finish_reason":null}}]{null}}}"#).into_bytes(),
        format!("\n\ndata: {{\"id\":\"c1\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]{null}}}\n\n").into_bytes(),
    ];
    if include_usage {
        let usage = format!(r#"data: {{"id":"c1","choices":[],"usage":{UPSTREAM_USAGE}}}"#);
        let (a, b) = usage.split_at(usage.len() - 20);
        chunks.push(a.as_bytes().to_vec());
        chunks.push(format!("{b}\n\n").into_bytes());
    }
    chunks.push(b"data: [DONE]\n\n".to_vec());
    chunks
}

/// The service's `/v1/completions` body, labelled `application/json`.
pub const NOT_JSON: &[u8] =
    b"upstream says: {\"usage\": {\"prompt_tokens\": 1000, \"completion_tokens\": 1000}} \xff";

/// The `tag`s of the `/slow` streams that found their client gone (the proxy dropped the
/// upstream request).
static CUT_SLOW_STREAMS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether the `/slow?tag=<tag>` stream found its client gone.
pub fn slow_stream_was_cut(tag: &str) -> bool {
    CUT_SLOW_STREAMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|t| t == tag)
}

/// A tiny HTTP/1.1 service: echoes method, path, query, headers and a checksum of the body as
/// JSON; `/sse` streams [`SSE_CHUNKS`]; `/slow?tag=T&chunks=N` streams `data: <i>` every 50 ms,
/// N times (default 200: 10 s) then ends with `data: [DONE]`; `/cut`
/// closes the connection in the middle of its body; `/fail` answers 500; `/hang` never
/// answers.
pub fn echo_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_one(stream);
            });
        }
    });
    port
}

pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn serve_one(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = serde_json::Map::new();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.insert(name, Value::String(value.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    match path {
        "/v1/chat/completions" => {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let streaming = request["stream"] == true;
            let chunks = chat_answer(streaming, request["stream_options"]["include_usage"] == true);
            if streaming {
                stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")?;
                for chunk in chunks {
                    write!(stream, "{:x}\r\n", chunk.len())?;
                    stream.write_all(&chunk)?;
                    stream.write_all(b"\r\n")?;
                    stream.flush()?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                stream.write_all(b"0\r\n\r\n")?;
            } else {
                let answer = chunks.concat();
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", answer.len())?;
                stream.write_all(&answer)?;
            }
        }
        // Says it is JSON and is not; the usage-looking text must not count.
        "/v1/completions" => {
            let answer = NOT_JSON;
            write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", answer.len())?;
            stream.write_all(answer)?;
        }
        "/sse" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-echo: sse\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")?;
            for chunk in SSE_CHUNKS {
                write!(stream, "{:x}\r\n", chunk.len())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")?;
                stream.flush()?;
                std::thread::sleep(Duration::from_millis(30));
            }
            stream.write_all(b"0\r\n\r\n")?;
        }
        "/slow" => {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_owned()
            };
            let tag = param("tag");
            let chunks: usize = param("chunks").parse().unwrap_or(200);
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")?;
            let events = (0..chunks).map(|i| format!("data: {i}\n\n")).chain(["data: [DONE]\n\n".to_owned()]);
            for chunk in events {
                let written = write!(stream, "{:x}\r\n{chunk}\r\n", chunk.len()).and_then(|()| stream.flush());
                if written.is_err() {
                    CUT_SLOW_STREAMS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(tag);
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stream.write_all(b"0\r\n\r\n")?;
        }
        "/cut" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n6\r\ndata: \r\n")?;
            stream.flush()?;
            return stream.shutdown(std::net::Shutdown::Both);
        }
        "/fail" => stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfail")?,
        "/hang" => std::thread::sleep(Duration::from_secs(5)),
        _ => {
            let echo = json!({
                "method": method, "path": path, "query": query, "headers": headers,
                "body_len": body.len(), "body_checksum": checksum(&body),
            })
            .to_string();
            write!(
                stream,
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nx-echo: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{echo}",
                echo.len()
            )?;
        }
    }
    stream.flush()
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
