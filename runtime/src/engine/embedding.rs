//! The embedding worker: one thread owns an [`EmbeddingModel`] and serves every
//! request for its deployment in shared, padding-aware batches.
//!
//! Batching adds no waiting: the worker takes the first queued job, then
//! whatever else is already queued (up to the batch limits). While a batch
//! runs, new jobs pile up and go together into the next one, so batches grow
//! with load by themselves. Sequences are sorted by length before they are cut
//! into batches, so short inputs are not padded to the length of long ones.

use std::path::Path;
use std::time::Instant;

use hearth_models::{EmbeddingModel, TextTokenizer};
use tokio::sync::oneshot;

use super::worker::{Jobs, WorkQueue};
use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// Batch and queue limits of one embedding deployment.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingOptions {
    /// Most sequences in one forward pass.
    pub max_batch_size: usize,
    /// Most padded tokens (rows × longest row) in one forward pass: bounds memory
    /// and keeps one long batch from stalling short requests behind it. Flex's
    /// throughput per token peaks at a few thousand tokens per pass.
    pub max_batch_tokens: usize,
    /// Requests waiting beyond this get 503 with `Retry-After`.
    pub max_queued_requests: usize,
}

impl Default for EmbeddingOptions {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_batch_tokens: 16_384,
            max_queued_requests: 1024,
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, String>>;

struct Job {
    sequences: Vec<Vec<u32>>,
    reply: Reply,
    span: tracing::Span,
}

/// The handle the HTTP layer holds: tokenizes, validates, and queues work.
#[derive(Debug)]
pub struct EmbeddingEngine {
    queue: WorkQueue<Job>,
    tokenizer: TextTokenizer,
    dimensions: usize,
    max_input_tokens: usize,
    vocab_size: usize,
    device_name: String,
}

impl EmbeddingEngine {
    /// Loads the model on its own worker thread and waits until it is ready.
    pub fn start(
        name: &str,
        dir: &Path,
        device: DeviceChoice,
        options: EmbeddingOptions,
    ) -> Result<Self> {
        let (device, device_name) = super::select_device(device)?;
        let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json")).map_err(model_error)?;
        let dir = dir.to_path_buf();
        let (queue, (dimensions, max_input_tokens, vocab_size)) = WorkQueue::start(
            "embedding",
            format!("embed-{name}"),
            options.max_queued_requests,
            move || {
                let model = EmbeddingModel::load(&dir, &device).map_err(model_error)?;
                let facts = (
                    model.dimensions(),
                    model.max_input_tokens(),
                    model.config().vocab_size,
                );
                Ok((model, facts))
            },
            move |model, jobs| run_worker(&model, &jobs, options),
        )?;
        Ok(Self {
            queue,
            tokenizer,
            dimensions,
            max_input_tokens,
            vocab_size,
            device_name,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Token ids of `text`, special tokens included, neither padded nor cut.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text).map_err(model_error)
    }

    /// Queues sequences for the worker and waits for their vectors. Dropping the
    /// future (a client that went away) lets the worker skip the job.
    pub async fn embed(&self, sequences: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            sequences,
            reply,
            span: tracing::Span::current(),
        };
        self.queue.submit(job)?;
        answer
            .await
            .map_err(|_| {
                HearthError::Internal("the embedding worker dropped a request".to_owned())
            })?
            .map_err(HearthError::Internal)
    }
}

fn model_error(e: hearth_models::ModelError) -> HearthError {
    HearthError::Internal(e.to_string())
}

/// Where one sequence of one job goes back to.
struct Slot {
    job: usize,
    index: usize,
}

fn run_worker(model: &EmbeddingModel, jobs: &Jobs<Job>, options: EmbeddingOptions) {
    while let Some(first) = jobs.wait() {
        let mut pending = vec![first];
        let mut queued: usize = pending[0].sequences.len();
        while queued < options.max_batch_size {
            let Some(job) = jobs.ready() else { break };
            queued += job.sequences.len();
            pending.push(job);
        }
        pending.retain(|job| !job.reply.is_closed());
        if !pending.is_empty() {
            serve_jobs(model, pending, options);
        }
    }
}

fn serve_jobs(model: &EmbeddingModel, jobs: Vec<Job>, options: EmbeddingOptions) {
    let mut slots: Vec<(Slot, &[u32])> = jobs
        .iter()
        .enumerate()
        .flat_map(|(job, j)| {
            j.sequences
                .iter()
                .enumerate()
                .map(move |(index, s)| (Slot { job, index }, s.as_slice()))
        })
        .collect();
    slots.sort_by_key(|(_, s)| s.len());

    let mut results: Vec<Vec<Option<Vec<f32>>>> =
        jobs.iter().map(|j| vec![None; j.sequences.len()]).collect();
    let mut failure: Option<String> = None;
    let mut start = 0;
    while start < slots.len() {
        let mut end = start + 1;
        while end < slots.len()
            && end - start < options.max_batch_size
            && (end - start + 1) * slots[end].1.len() <= options.max_batch_tokens
        {
            end += 1;
        }
        let batch: Vec<Vec<u32>> = slots[start..end].iter().map(|(_, s)| s.to_vec()).collect();
        let started = Instant::now();
        match model.embed(&batch) {
            Ok(vectors) => {
                metrics::histogram!("hearth_embedding_batch_size").record(batch.len() as f64);
                metrics::histogram!("hearth_embedding_batch_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("hearth_embedding_sequences_total").increment(batch.len() as u64);
                for ((slot, _), vector) in slots[start..end].iter().zip(vectors) {
                    results[slot.job][slot.index] = Some(vector);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "embedding batch failed");
                failure = Some(e.to_string());
            }
        }
        start = end;
    }

    for (job, vectors) in jobs.into_iter().zip(results) {
        let _entered = job.span.enter();
        let answer = match (&failure, vectors.into_iter().collect::<Option<Vec<_>>>()) {
            (_, Some(all)) => Ok(all),
            (Some(e), None) => Err(e.clone()),
            (None, None) => Err("a sequence got no vector".to_owned()),
        };
        let _ = job.reply.send(answer);
    }
}
