//! Token usage of forwarded answers, read from a copy of the bytes as they stream by: the
//! top-level `usage` of a JSON answer, or of the SSE `data:` chunk that carries it
//! (`stream_options.include_usage`). Nothing is buffered: a small state machine follows the
//! JSON's nesting and keeps only the `usage` value's bytes (at most [`MAX_USAGE_BYTES`]), so a
//! 30 MB embeddings answer costs no more memory than a short chat answer. What the client
//! receives is the upstream's bytes, untouched.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;

/// A `usage` object is a few hundred bytes (OpenAI's with its `*_tokens_details` ~300); one
/// larger than this is not a usage object we can read, and is skipped.
const MAX_USAGE_BYTES: usize = 4096;

/// The tokens an upstream reported for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl TokenUsage {
    /// OpenAI's names (`prompt_tokens`, `completion_tokens`; embeddings have only the first),
    /// or the Responses API's (`input_tokens`, `output_tokens`). `null`, or an object with
    /// none of them, is no usage.
    fn from_json(value: &Value) -> Option<Self> {
        let count = |names: [&str; 2]| names.iter().find_map(|n| value.get(n)?.as_u64());
        let prompt = count(["prompt_tokens", "input_tokens"]);
        let completion = count(["completion_tokens", "output_tokens"]);
        (prompt.is_some() || completion.is_some()).then(|| Self {
            prompt_tokens: prompt.unwrap_or(0),
            completion_tokens: completion.unwrap_or(0),
        })
    }
}

/// Follows one JSON document byte by byte and captures its top-level `usage` value.
#[derive(Debug, Default)]
struct JsonScan {
    started: bool,
    /// Not a JSON object, or a usage value too large: nothing more to learn.
    dead: bool,
    depth: u32,
    in_string: bool,
    escape: bool,
    /// The last string read at depth 1 (a key, if a `:` follows), up to 8 bytes.
    key: Vec<u8>,
    key_is_usage: bool,
    /// The bytes of the `usage` value while it is being read.
    capture: Option<Vec<u8>>,
    found: Option<TokenUsage>,
}

impl JsonScan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.dead {
                return;
            }
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        if let Some(capture) = &mut self.capture {
            // The value ends at depth 1 with the `,` or `}` that follows it.
            let ends = !self.in_string && self.depth == 1 && (b == b',' || b == b'}');
            if ends {
                let bytes = self.capture.take().unwrap_or_default();
                if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                    // A later `usage` key (there should be none) would win, as in a parser.
                    self.found = TokenUsage::from_json(&value).or(self.found);
                }
            } else {
                capture.push(b);
                if capture.len() > MAX_USAGE_BYTES {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.in_string {
            let at_key = self.depth == 1 && self.capture.is_none();
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if at_key {
                    self.key_is_usage = self.key == b"usage";
                }
                return;
            }
            if at_key && self.key.len() <= 8 {
                self.key.push(b);
            }
            return;
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if !self.started => {
                // Only an object has a `usage` key.
                self.started = true;
                self.dead = b != b'{';
                self.depth = 1;
            }
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.capture.is_none() {
                    self.key.clear();
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.dead = true;
                }
            }
            b':' if self.depth == 1 && self.capture.is_none() => {
                if std::mem::take(&mut self.key_is_usage) {
                    self.capture = Some(Vec::new());
                }
            }
            _ => self.key_is_usage = false,
        }
    }
}

/// Follows an SSE stream: each `data:` line is scanned as a JSON document; the last usage
/// any of them carried is the request's (vLLM's `continuous_usage_stats` repeats a running
/// total on every chunk; OpenAI's `include_usage` sends it once, in the last chunk).
#[derive(Debug, Default)]
struct SseScan {
    /// The start of the current line, while it may still be `data:`.
    head: Vec<u8>,
    /// The current line is `data:` and its payload is being scanned.
    data: Option<JsonScan>,
    /// The current line is something else: skipped to its end.
    skip: bool,
    found: Option<TokenUsage>,
}

impl SseScan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
                continue;
            }
            if let Some(scan) = &mut self.data {
                scan.feed(&[b]);
            } else if !self.skip {
                self.head.push(b);
                if self.head.len() == 5 {
                    if self.head == b"data:" {
                        self.data = Some(JsonScan::default());
                    } else {
                        self.skip = true;
                    }
                    self.head.clear();
                }
            }
        }
    }

    fn end_line(&mut self) {
        if let Some(scan) = self.data.take() {
            self.found = scan.found.or(self.found);
        }
        self.head.clear();
        self.skip = false;
    }

    fn finish(mut self) -> Option<TokenUsage> {
        self.end_line();
        self.found
    }
}

#[derive(Debug)]
enum Scan {
    Json(JsonScan),
    Sse(SseScan),
}

impl Scan {
    /// How to read this answer's body, if it can carry usage: a successful, uncompressed
    /// JSON or SSE answer.
    fn of(response: &Response) -> Option<Self> {
        if !response.status().is_success() || response.status() == StatusCode::NO_CONTENT {
            return None;
        }
        let headers = response.headers();
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity");
        if encoded {
            return None;
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media == "text/event-stream" {
            Some(Self::Sse(SseScan::default()))
        } else if media == "application/json" || media.ends_with("+json") {
            Some(Self::Json(JsonScan::default()))
        } else {
            None
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Self::Json(scan) => scan.feed(bytes),
            Self::Sse(scan) => scan.feed(bytes),
        }
    }

    fn finish(self) -> Option<TokenUsage> {
        match self {
            Self::Json(scan) => scan.found,
            Self::Sse(scan) => scan.finish(),
        }
    }
}

/// Holds the scan while the body streams; when the body is done with (sent, or dropped by a
/// client that left), hands what was found to the recorder, once.
struct Tap<F: FnOnce(TokenUsage)> {
    scan: Option<Scan>,
    record: Option<F>,
}

impl<F: FnOnce(TokenUsage)> Drop for Tap<F> {
    fn drop(&mut self) {
        let usage = self.scan.take().and_then(Scan::finish);
        if let (Some(usage), Some(record)) = (usage, self.record.take()) {
            record(usage);
        }
    }
}

/// The same response, its body passed through chunk for chunk, with `record` called with the
/// usage the body reported, if it reported any. Answers that cannot carry usage (errors,
/// other media types, compressed bodies) are returned as they are.
pub fn tap<F>(response: Response, record: F) -> Response
where
    F: FnOnce(TokenUsage) + Send + 'static,
{
    let Some(scan) = Scan::of(&response) else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let mut tap = Tap {
        scan: Some(scan),
        record: Some(record),
    };
    let body = body.into_data_stream().map(move |chunk| {
        if let (Ok(bytes), Some(scan)) = (&chunk, &mut tap.scan) {
            scan.feed(bytes);
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(chunks: &[&[u8]]) -> Option<TokenUsage> {
        let mut scan = JsonScan::default();
        for chunk in chunks {
            scan.feed(chunk);
        }
        scan.found
    }

    fn sse(body: &[u8], chunk: usize) -> Option<TokenUsage> {
        let mut scan = SseScan::default();
        for part in body.chunks(chunk) {
            scan.feed(part);
        }
        scan.finish()
    }

    const USAGE: TokenUsage = TokenUsage {
        prompt_tokens: 12,
        completion_tokens: 7,
    };

    #[test]
    fn a_json_answer_gives_its_top_level_usage_however_it_is_cut() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"a \"usage\": {\"prompt_tokens\": 99}","usage":{"prompt_tokens":1}}}],"usage": {"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0}},"model":"m"}"#;
        assert_eq!(json(&[body]), Some(USAGE));
        for cut in 1..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(json(&[a, b]), Some(USAGE), "cut at {cut}");
        }
        // Last in the object, and embeddings' usage (no completion tokens).
        assert_eq!(
            json(&[br#"{"data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#]),
            Some(TokenUsage {
                prompt_tokens: 5,
                completion_tokens: 0
            })
        );
    }

    #[test]
    fn no_usage_null_usage_and_other_bodies_give_nothing() {
        assert_eq!(json(&[br#"{"id":"x","choices":[]}"#]), None);
        assert_eq!(json(&[br#"{"usage":null}"#]), None);
        assert_eq!(json(&[br#"{"id":"usage","x":1}"#]), None);
        assert_eq!(json(&[br#"[{"usage":{"prompt_tokens":1}}]"#]), None);
        assert_eq!(json(&[b"not json {\"usage\":{\"prompt_tokens\":1}}"]), None);
        assert_eq!(json(&[b"\xff\xfe{{{{\"\\"]), None);
        assert_eq!(
            json(&[br#"{"usage":{"prompt_tokens":1"#]),
            None,
            "cut short"
        );
        let huge = format!(
            r#"{{"usage":{{"prompt_tokens":1,"x":"{}"}}}}"#,
            "a".repeat(10_000)
        );
        assert_eq!(json(&[huge.as_bytes()]), None);
    }

    #[test]
    fn an_sse_stream_gives_the_usage_of_its_usage_chunk() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n\
            : keep-alive\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}\r\n\r\n\
            data: [DONE]\n\n";
        for chunk in [1, 3, 7, body.len()] {
            assert_eq!(sse(body, chunk), Some(USAGE), "chunks of {chunk}");
        }
        let without = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(sse(without, 4), None);
        // A usage chunk with no newline after it still counts.
        assert_eq!(
            sse(
                br#"data: {"usage":{"prompt_tokens":12,"completion_tokens":7}}"#,
                5
            ),
            Some(USAGE)
        );
    }
}
