//! The one worker mechanism every local engine runs on: a thread that loads and owns its
//! model (weights and device never cross threads), a bounded queue in front of it whose
//! overflow is a 503 with `Retry-After`, and the helpers a serving loop batches with.
//! Each engine supplies only its loop (how jobs are grouped and stepped); cancellation is the
//! job's reply channel closing, which the loops check between steps.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crate::error::{HearthError, Result};

/// The HTTP side's handle: queues jobs for the worker thread.
pub struct WorkQueue<J> {
    queue: SyncSender<J>,
    /// What the queue serves, for messages and metrics (`embedding`, `generation`).
    kind: &'static str,
}

impl<J> Clone for WorkQueue<J> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            kind: self.kind,
        }
    }
}

impl<J> std::fmt::Debug for WorkQueue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("kind", &self.kind)
            .finish()
    }
}

/// The worker's side of the queue.
pub struct Jobs<J> {
    jobs: Receiver<J>,
}

impl<J> Jobs<J> {
    /// The next job, waiting for one; `None` once every handle is gone (shut down).
    pub fn wait(&self) -> Option<J> {
        self.jobs.recv().ok()
    }

    /// The next job if one is already queued; never waits.
    pub fn ready(&self) -> Option<J> {
        self.jobs.try_recv().ok()
    }
}

impl<J: Send + 'static> WorkQueue<J> {
    /// Starts the worker thread `thread`: `load` builds the model on it (reporting `R` about
    /// it), then `serve` runs until the queue closes. Returns once the model is loaded, or
    /// with `load`'s error. `capacity` jobs may wait; more get 503.
    pub fn start<M, R: Send + 'static>(
        kind: &'static str,
        thread: String,
        capacity: usize,
        load: impl FnOnce() -> Result<(M, R)> + Send + 'static,
        serve: impl FnOnce(M, Jobs<J>) + Send + 'static,
    ) -> Result<(Self, R)> {
        let (queue, jobs) = sync_channel(capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(thread)
            .spawn(move || match load() {
                Ok((model, facts)) => {
                    crate::allocator::return_freed_memory_everywhere();
                    let _ = ready_tx.send(Ok(facts));
                    serve(model, Jobs { jobs });
                    tracing::info!(kind, "worker stopped");
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| HearthError::io(format!("cannot start the {kind} worker thread"), e))?;
        let facts = ready_rx.recv().map_err(|_| {
            HearthError::Internal(format!("the {kind} worker died while loading"))
        })??;
        Ok((Self { queue, kind }, facts))
    }

    /// Queues `job`: a full queue is [`HearthError::Unavailable`] (503, `Retry-After`).
    pub fn submit(&self, job: J) -> Result<()> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => {
                metrics::counter!(format!("hearth_{}_rejected_total", self.kind)).increment(1);
                HearthError::Unavailable(format!("the {} queue is full; retry shortly", self.kind))
            }
            TrySendError::Disconnected(_) => {
                HearthError::Internal(format!("the {} worker has stopped", self.kind))
            }
        })
    }
}
