//! Graceful shutdown's drain: after SIGTERM the listener closes, requests in flight get up to
//! the drain time (`shutdown_drain`, default 30 s) to finish, and whatever is still open then
//! is ended: a handler still working answers 503 `server_shutting_down`, an event stream gets
//! that error as its last event, any other streamed body is cut (an incomplete chunked body,
//! so the client sees an error rather than a short answer that looks whole).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use super::AppState;
use crate::error::HearthError;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// SIGTERM came: no new connections; what is in flight may finish.
    Draining,
    /// The drain time is up: what is still open is ended.
    Expired,
}

/// The shared drain state: the phase, the drain time and the requests still in flight.
#[derive(Debug, Clone)]
pub struct Drain {
    phase: Arc<watch::Sender<Phase>>,
    in_flight: Arc<AtomicUsize>,
    time: Duration,
}

impl Drain {
    pub fn new(time: Duration) -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Serving)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            time,
        }
    }

    /// How long requests in flight may take after the signal.
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Requests whose response has not been sent in full yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// True from the signal on.
    pub fn is_draining(&self) -> bool {
        *self.phase.borrow() != Phase::Serving
    }

    /// The signal came: start draining.
    pub fn begin(&self) {
        self.phase.send_if_modified(|phase| {
            let starts = *phase == Phase::Serving;
            if starts {
                *phase = Phase::Draining;
            }
            starts
        });
    }

    /// The drain time is up: end what is still open.
    pub fn expire(&self) {
        self.phase.send_replace(Phase::Expired);
    }

    /// Resolves when the drain time is up (never, while serving normally).
    pub fn expired(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut phase = self.phase.subscribe();
        async move {
            if phase.wait_for(|p| *p == Phase::Expired).await.is_err() {
                // The sender lives as long as the state: no drain is coming.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The hard stop after the signal: waits the drain time, ends what is still open, then
    /// gives those ends `grace` to reach their clients. The server stops when this resolves,
    /// whatever is still connected; normally it has stopped before, once its last connection
    /// closed.
    pub async fn run_out(&self, grace: Duration) {
        let mut phase = self.phase.subscribe();
        if phase.wait_for(|p| *p != Phase::Serving).await.is_err() {
            return std::future::pending().await;
        }
        tokio::time::sleep(self.time).await;
        let open = self.in_flight();
        if open > 0 {
            tracing::warn!(
                open,
                drain_s = self.time.as_secs_f64(),
                "drain time is up: ending the requests still in flight"
            );
        }
        self.expire();
        tokio::time::sleep(grace).await;
        let open = self.in_flight();
        if open > 0 {
            tracing::warn!(open, "closing connections that did not finish");
        }
    }
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The layer: every request is counted while in flight, and ended when the drain time is up.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let drain = &state.drain;
    let in_flight = InFlight::new(&drain.in_flight);
    let response = tokio::select! {
        biased;
        response = next.run(request) => response,
        () = drain.expired() => return HearthError::ShuttingDown.into_response(),
    };
    let (parts, body) = response.into_parts();
    // A body of known length is already in memory and goes out at once.
    if body.size_hint().exact().is_some() {
        return Response::from_parts(parts, body);
    }
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = Body::from_stream(Drained {
        inner: body.into_data_stream(),
        expired: Box::pin(drain.expired()),
        event_stream,
        done: false,
        _in_flight: in_flight,
    });
    Response::from_parts(parts, body)
}

/// A streamed body that ends when the drain time is up.
struct Drained {
    inner: BodyDataStream,
    expired: Pin<Box<dyn Future<Output = ()> + Send>>,
    event_stream: bool,
    done: bool,
    _in_flight: InFlight,
}

/// The last event of a stream ended by shutdown.
fn shutdown_event() -> Bytes {
    let body = serde_json::to_string(&HearthError::ShuttingDown.to_body())
        .unwrap_or_else(|_| String::from("{}"));
    Bytes::from(format!("data: {body}\n\n"))
}

/// The error that cuts a body which cannot carry an error event.
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down")]
struct Cut;

impl Stream for Drained {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.expired.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(if self.event_stream {
                Ok(shutdown_event())
            } else {
                Err(axum::Error::new(Cut))
            }));
        }
        let next = self.inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            self.done = true;
        }
        next
    }
}
