//! The text-generation worker: one thread owns a decoder model and advances
//! every active sequence by one token per round, streaming each token out as
//! soon as it is chosen.
//!
//! Continuous batching: a request that arrives joins the running set at the
//! next round (its prompt is prefilled in that round's pass), and a finished,
//! stopped or abandoned one leaves it at once, so a long generation never holds
//! a short one back. Each round is one batched forward pass over all active
//! sequences, each at its own cache position.
//!
//! Structured outputs: a sequence may carry a [`TokenConstraint`] (a grammar). Its mask of
//! allowed next tokens depends only on the tokens already chosen, so the masks of a round are
//! computed on a second thread while the forward pass runs, and applied before sampling.

use hearth_models::sampling::{Sampled, Sampler, SamplingParams};
use tokio::sync::mpsc::UnboundedSender;

use super::worker::{Jobs, WorkQueue};
use crate::error::Result;

/// What the worker needs from a decoder model.
pub trait Decoder: 'static {
    /// Per-sequence attention cache.
    type Cache;
    fn new_cache(&self) -> Self::Cache;
    /// Feeds `tokens` (a prompt, or the one token chosen last) and returns the
    /// logits of the last position.
    fn forward(
        &self,
        tokens: &[u32],
        cache: &mut Self::Cache,
    ) -> std::result::Result<Vec<f32>, String>;
    /// Several sequences in one pass, each with its own new tokens and cache.
    fn forward_batch(
        &self,
        batch: &mut [(&[u32], &mut Self::Cache)],
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        batch
            .iter_mut()
            .map(|(tokens, cache)| self.forward(tokens, cache))
            .collect()
    }
    /// Longest prompt plus completion, in tokens.
    fn context_length(&self) -> usize;
}

/// A grammar deciding which tokens a sequence may take next.
pub trait TokenConstraint: Send + std::fmt::Debug {
    /// The tokens allowed at the next position, as a bitset (bit `t % 32` of word `t / 32`),
    /// from the tokens committed so far. Only the end-of-sequence token once it is complete.
    fn allowed(&mut self) -> std::result::Result<Vec<u32>, String>;
    /// Records the token chosen.
    fn commit(&mut self, token: u32) -> std::result::Result<(), String>;
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token (not emitted).
    Stop,
    /// `max_tokens` or the context window.
    Length,
}

/// What the worker streams back for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Token(Sampled),
    Finished(FinishReason),
    Failed(String),
}

/// One sequence to generate.
#[derive(Debug)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Tokens that end the sequence (the model's end-of-sequence ids).
    pub stop_tokens: Vec<u32>,
    /// The grammar the output must follow, if any.
    pub constraint: Option<Box<dyn TokenConstraint>>,
    /// Dropping the receiver cancels the sequence at the next round.
    pub events: UnboundedSender<GenerationEvent>,
}

/// Limits of one generation worker.
#[derive(Debug, Clone, Copy)]
pub struct GenerationOptions {
    /// Sequences stepped together in one round.
    pub max_active: usize,
    /// Requests waiting to join; beyond it callers get 503.
    pub max_queued: usize,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_active: 8,
            max_queued: 256,
        }
    }
}

/// The handle callers hold.
#[derive(Debug, Clone)]
pub struct GenerationQueue {
    queue: WorkQueue<GenerationRequest>,
}

impl GenerationQueue {
    /// Starts a worker thread, loads the decoder on it with `load` (the thread owns
    /// the weights and the device), and returns once it is ready to take requests,
    /// with whatever else `load` reported about the model.
    pub fn start<D: Decoder, R: Send + 'static>(
        name: &str,
        options: GenerationOptions,
        load: impl FnOnce() -> Result<(D, R)> + Send + 'static,
    ) -> Result<(Self, R)> {
        let (queue, facts) = WorkQueue::start(
            "generation",
            format!("generate-{name}"),
            options.max_queued,
            load,
            move |decoder: D, requests| run_worker(&decoder, &requests, options),
        )?;
        Ok((Self { queue }, facts))
    }

    /// Queues a sequence; its events arrive on the request's channel.
    pub fn submit(&self, request: GenerationRequest) -> Result<()> {
        self.queue.submit(request)
    }
}

struct Active<C> {
    request: GenerationRequest,
    sampler: Sampler,
    constraint: Option<Box<dyn TokenConstraint>>,
    cache: C,
    next_input: Vec<u32>,
    generated: usize,
}

/// A round's masks, one per sequence (`None` for an unconstrained one).
type Masks = Vec<Option<std::result::Result<Vec<u32>, String>>>;

fn run_worker<D: Decoder>(
    decoder: &D,
    requests: &Jobs<GenerationRequest>,
    options: GenerationOptions,
) {
    let mut active: Vec<Active<D::Cache>> = Vec::new();
    loop {
        if active.is_empty() {
            match requests.wait() {
                Some(request) => active.push(admit(decoder, request)),
                None => break,
            }
        }
        while active.len() < options.max_active {
            let Some(request) = requests.ready() else {
                break;
            };
            active.push(admit(decoder, request));
        }
        metrics::gauge!("hearth_generation_active_sequences").set(active.len() as f64);
        round(decoder, &mut active);
    }
}

fn admit<D: Decoder>(decoder: &D, mut request: GenerationRequest) -> Active<D::Cache> {
    Active {
        sampler: Sampler::new(request.sampling.clone()),
        constraint: request.constraint.take(),
        cache: decoder.new_cache(),
        next_input: request.prompt.clone(),
        generated: 0,
        request,
    }
}

/// One round: drops abandoned sequences, runs one forward pass over the rest
/// (a new sequence's whole prompt, one token for the others), and samples each.
fn round<D: Decoder>(decoder: &D, active: &mut Vec<Active<D::Cache>>) {
    active.retain(|sequence| {
        let gone = sequence.request.events.is_closed();
        if gone {
            metrics::counter!("hearth_generation_cancelled_total").increment(1);
        }
        !gone
    });
    if active.is_empty() {
        return;
    }
    let mut batch: Vec<(&[u32], &mut D::Cache)> = Vec::with_capacity(active.len());
    let mut constraints = Vec::with_capacity(active.len());
    for sequence in active.iter_mut() {
        let Active {
            next_input,
            cache,
            constraint,
            ..
        } = sequence;
        batch.push((next_input.as_slice(), cache));
        constraints.push(constraint.as_deref_mut());
    }
    let started = std::time::Instant::now();
    let (all_logits, mut masks) = forward_with_masks(decoder, &mut batch, constraints);
    let all_logits = match all_logits {
        Ok(logits) => logits,
        Err(e) => {
            tracing::error!(error = %e, sequences = active.len(), "forward pass failed");
            for sequence in active.drain(..) {
                let _ = sequence
                    .request
                    .events
                    .send(GenerationEvent::Failed(e.clone()));
            }
            return;
        }
    };
    metrics::histogram!("hearth_generation_step_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("hearth_generation_batch_size").record(active.len() as f64);
    let mut index = 0;
    active.retain_mut(|sequence| {
        let keep = sample(decoder, sequence, &all_logits[index], masks[index].take());
        index += 1;
        keep
    });
}

/// The batch's forward pass and, on a second thread at the same time, the masks of its
/// constrained sequences.
fn forward_with_masks<D: Decoder>(
    decoder: &D,
    batch: &mut [(&[u32], &mut D::Cache)],
    mut constraints: Vec<Option<&mut (dyn TokenConstraint + 'static)>>,
) -> (std::result::Result<Vec<Vec<f32>>, String>, Masks) {
    if constraints.iter().all(Option::is_none) {
        return (
            decoder.forward_batch(batch),
            constraints.iter().map(|_| None).collect(),
        );
    }
    let count = constraints.len();
    std::thread::scope(|scope| {
        let masking = scope.spawn(move || {
            let started = std::time::Instant::now();
            let masks: Masks = constraints
                .iter_mut()
                .map(|c| c.as_mut().map(|c| c.allowed()))
                .collect();
            metrics::histogram!("hearth_generation_mask_seconds")
                .record(started.elapsed().as_secs_f64());
            masks
        });
        let logits = decoder.forward_batch(batch);
        let masks = masking.join().unwrap_or_else(|_| {
            (0..count)
                .map(|_| Some(Err("the grammar engine panicked".to_owned())))
                .collect()
        });
        (logits, masks)
    })
}

/// Picks one sequence's next token (among those its grammar allows) and streams it;
/// `false` when it is done.
fn sample<D: Decoder>(
    decoder: &D,
    sequence: &mut Active<D::Cache>,
    logits: &[f32],
    mask: Option<std::result::Result<Vec<u32>, String>>,
) -> bool {
    let events = &sequence.request.events;
    let sampled = match mask {
        None => sequence.sampler.sample(logits),
        Some(Err(e)) => {
            let _ = events.send(GenerationEvent::Failed(format!("grammar: {e}")));
            return false;
        }
        Some(Ok(words)) if words.iter().all(|&w| w == 0) => {
            // Nothing can follow: the grammar is complete.
            let _ = events.send(GenerationEvent::Finished(FinishReason::Stop));
            return false;
        }
        Some(Ok(words)) => sequence.sampler.sample_allowed(logits, Some(&words)),
    };
    metrics::counter!("hearth_generation_tokens_total").increment(1);
    if sequence.request.stop_tokens.contains(&sampled.token) {
        let _ = events.send(GenerationEvent::Finished(FinishReason::Stop));
        return false;
    }
    if let Some(constraint) = sequence.constraint.as_mut()
        && let Err(e) = constraint.commit(sampled.token)
    {
        let _ = events.send(GenerationEvent::Failed(format!("grammar: {e}")));
        return false;
    }
    sequence.generated += 1;
    let token = sampled.token;
    let _ = events.send(GenerationEvent::Token(sampled));
    let used = sequence.request.prompt.len() + sequence.generated;
    if sequence.generated >= sequence.request.max_tokens || used >= decoder.context_length() {
        let _ = events.send(GenerationEvent::Finished(FinishReason::Length));
        return false;
    }
    sequence.next_input = vec![token];
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    /// A decoder whose next token is always (last input + 1) mod 10, so every
    /// scheduling outcome is predictable.
    struct Counting;

    impl Decoder for Counting {
        type Cache = usize;
        fn new_cache(&self) -> usize {
            0
        }
        fn forward(
            &self,
            tokens: &[u32],
            cache: &mut usize,
        ) -> std::result::Result<Vec<f32>, String> {
            *cache += tokens.len();
            let next = (tokens.last().copied().unwrap_or(0) + 1) % 10;
            Ok((0..10)
                .map(|t| if t == next { 10.0 } else { 0.0 })
                .collect())
        }
        fn context_length(&self) -> usize {
            12
        }
    }

    fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    async fn run(
        queue: &GenerationQueue,
        prompt: Vec<u32>,
        max_tokens: usize,
        stop: Vec<u32>,
    ) -> (Vec<u32>, FinishReason) {
        let (events, mut received) = unbounded_channel();
        queue
            .submit(GenerationRequest {
                prompt,
                max_tokens,
                sampling: greedy(),
                stop_tokens: stop,
                constraint: None,
                events,
            })
            .unwrap();
        let mut tokens = Vec::new();
        while let Some(event) = received.recv().await {
            match event {
                GenerationEvent::Token(s) => tokens.push(s.token),
                GenerationEvent::Finished(reason) => return (tokens, reason),
                GenerationEvent::Failed(e) => panic!("{e}"),
            }
        }
        panic!("stream ended without a finish event");
    }

    #[tokio::test]
    async fn length_stop_and_context_limits() {
        let queue =
            GenerationQueue::start("t", GenerationOptions::default(), || Ok((Counting, ())))
                .unwrap()
                .0;
        assert_eq!(
            run(&queue, vec![1], 3, vec![]).await,
            (vec![2, 3, 4], FinishReason::Length)
        );
        assert_eq!(
            run(&queue, vec![1], 10, vec![5]).await,
            (vec![2, 3, 4], FinishReason::Stop)
        );
        // Context 12: a 10-token prompt leaves room for 2.
        assert_eq!(
            run(&queue, vec![0; 10], 100, vec![]).await,
            (vec![1, 2], FinishReason::Length)
        );
    }

    #[tokio::test]
    async fn concurrent_sequences_interleave() {
        let queue =
            GenerationQueue::start("t", GenerationOptions::default(), || Ok((Counting, ())))
                .unwrap()
                .0;
        let (a, b) = tokio::join!(
            run(&queue, vec![0], 5, vec![]),
            run(&queue, vec![4], 5, vec![])
        );
        assert_eq!(a.0, vec![1, 2, 3, 4, 5]);
        assert_eq!(b.0, vec![5, 6, 7, 8, 9]);
    }

    /// Allows only even tokens, and only token 9 (the stop token) after three of them.
    #[derive(Debug, Default)]
    struct EvenThenStop {
        committed: Vec<u32>,
    }

    impl TokenConstraint for EvenThenStop {
        fn allowed(&mut self) -> std::result::Result<Vec<u32>, String> {
            Ok(vec![if self.committed.len() < 3 {
                0b01_0101_0101
            } else {
                1 << 9
            }])
        }
        fn commit(&mut self, token: u32) -> std::result::Result<(), String> {
            if token % 2 == 1 {
                return Err(format!("{token} is odd"));
            }
            self.committed.push(token);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_constraint_masks_each_step_and_ends_the_sequence() {
        let queue =
            GenerationQueue::start("t", GenerationOptions::default(), || Ok((Counting, ())))
                .unwrap()
                .0;
        let (events, mut received) = unbounded_channel();
        queue
            .submit(GenerationRequest {
                prompt: vec![1],
                max_tokens: 100,
                sampling: greedy(),
                stop_tokens: vec![9],
                constraint: Some(Box::new(EvenThenStop::default())),
                events,
            })
            .unwrap();
        // Unconstrained, the model would count 2, 3, 4...; the constraint allows only the
        // even ones (all equally unlikely but 2) and then the stop token.
        let (unconstrained, _) = run(&queue, vec![1], 3, vec![]).await;
        assert_eq!(unconstrained, vec![2, 3, 4]);
        let mut tokens = Vec::new();
        while let Some(event) = received.recv().await {
            match event {
                GenerationEvent::Token(s) => tokens.push(s.token),
                GenerationEvent::Finished(reason) => {
                    assert_eq!(reason, FinishReason::Stop);
                    break;
                }
                GenerationEvent::Failed(e) => panic!("{e}"),
            }
        }
        assert_eq!(tokens.len(), 3);
        assert!(tokens.iter().all(|t| t % 2 == 0), "{tokens:?}");
    }

    #[tokio::test]
    async fn a_dropped_receiver_cancels() {
        let queue =
            GenerationQueue::start("t", GenerationOptions::default(), || Ok((Counting, ())))
                .unwrap()
                .0;
        let (events, received) = unbounded_channel();
        drop(received);
        queue
            .submit(GenerationRequest {
                prompt: vec![1],
                max_tokens: 1000,
                sampling: greedy(),
                stop_tokens: vec![],
                constraint: None,
                events,
            })
            .unwrap();
        // The worker moves on: a later request is served.
        assert_eq!(run(&queue, vec![1], 1, vec![]).await.0, vec![2]);
    }
}
