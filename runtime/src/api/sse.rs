//! Server-sent events as OpenAI streams them: `data: {json}\n\n` chunks, an
//! `error` chunk if something fails mid-stream, then `data: [DONE]`.
//!
//! The producer is a task writing into a bounded channel; when the client goes
//! away the response body is dropped, the channel closes, the producer's next
//! send fails and it drops its generation streams, which cancels them.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use crate::error::HearthError;

/// Chunks buffered ahead of a slow client before the producer waits.
const BUFFERED_CHUNKS: usize = 64;

/// The producer's end of a stream.
#[derive(Debug, Clone)]
pub struct SseSender {
    tx: Sender<Event>,
}

impl SseSender {
    /// Sends one JSON chunk; `false` once the client has gone.
    pub async fn json(&self, value: &impl Serialize) -> bool {
        match serde_json::to_string(value) {
            Ok(text) => self.tx.send(Event::default().data(text)).await.is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "unserialisable stream chunk");
                false
            }
        }
    }

    /// Sends the error chunk; the caller then ends the stream.
    pub async fn error(&self, error: &HearthError) {
        tracing::error!(error = %error, "stream failed");
        let _ = self.json(&error.to_body()).await;
    }

    /// Resolves once the client has gone (the response body was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends `[DONE]`.
    pub async fn done(&self) {
        let _ = self.tx.send(Event::default().data("[DONE]")).await;
    }
}

/// A stream and the response that carries it.
pub fn channel_response() -> (SseSender, Response) {
    let (tx, rx) = channel(BUFFERED_CHUNKS);
    (SseSender { tx }, sse(rx))
}

fn sse(rx: Receiver<Event>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
