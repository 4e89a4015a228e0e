//! A text-generation deployment as the HTTP layer sees it: the worker's queue,
//! the tokenizer, the chat template, and one running choice's text stream.

use std::sync::Arc;

use hearth_models::chat_template::ChatTemplate;
use hearth_models::sampling::{Sampled, SamplingParams};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::generation::{
    FinishReason, GenerationEvent, GenerationQueue, GenerationRequest, TokenConstraint,
};
use super::grammar::LazyGrammar;
use super::text_stream::{Detokenizer, StopMatcher};
use crate::error::{HearthError, Result};

/// Text to token ids and back.
pub trait TextCodec: Send + Sync + std::fmt::Debug {
    fn encode(&self, text: &str, add_special_tokens: bool)
    -> std::result::Result<Vec<u32>, String>;
    fn decode(&self, ids: &[u32]) -> std::result::Result<String, String>;
    fn vocab_size(&self) -> usize;
    /// The bytes each token id stands for (special tokens as `0xFF` and their text), for the
    /// grammar engine's token trie.
    fn token_bytes(&self) -> Vec<Vec<u8>>;
}

/// A local chat/completion model, ready to take requests.
#[derive(Debug)]
pub struct TextEngine {
    pub queue: GenerationQueue,
    pub codec: Arc<dyn TextCodec>,
    pub template: Option<ChatTemplate>,
    pub stop_tokens: Vec<u32>,
    pub context_length: usize,
    /// Structured outputs and tool grammars, built on first use (a vocabulary that does not
    /// make a token trie makes those requests a 400).
    pub grammar: Arc<LazyGrammar>,
}

/// One piece of a choice's output.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceEvent {
    /// New text (empty when a token completed no character yet), and the sampled
    /// token behind it (`None` for text held back for a stop string and released
    /// at the end).
    Text {
        text: String,
        token: Option<Sampled>,
    },
    /// `stop` or `length`.
    Finished(&'static str),
}

impl TextEngine {
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.codec
            .encode(text, add_special_tokens)
            .map_err(HearthError::Internal)
    }

    /// Checks the prompt fits and returns the completion budget.
    pub fn budget(&self, prompt_tokens: usize, max_tokens: Option<usize>) -> Result<usize> {
        let room = self.context_length.saturating_sub(prompt_tokens);
        if room == 0 {
            return Err(HearthError::InvalidRequest {
                message: format!(
                    "This model's maximum context length is {} tokens. However, your prompt has {prompt_tokens} tokens.",
                    self.context_length
                ),
                param: Some("messages".to_owned()),
                code: Some("context_length_exceeded"),
            });
        }
        match max_tokens {
            Some(n) if n > room => Err(HearthError::InvalidRequest {
                message: format!(
                    "This model's maximum context length is {} tokens. However, you requested {} tokens \
                     ({prompt_tokens} in the prompt, {n} for the completion).",
                    self.context_length,
                    prompt_tokens + n
                ),
                param: Some("max_tokens".to_owned()),
                code: Some("context_length_exceeded"),
            }),
            Some(n) => Ok(n),
            None => Ok(room),
        }
    }

    /// Starts one choice; its text arrives on the returned stream. Dropping the
    /// stream cancels the generation.
    pub fn start(
        &self,
        prompt: Vec<u32>,
        max_tokens: usize,
        sampling: SamplingParams,
        stops: Vec<String>,
        constraint: Option<Box<dyn TokenConstraint>>,
    ) -> Result<ChoiceStream> {
        // The worker batches sequences: one with no tokens would fail the whole forward
        // pass, every other request in the batch with it. The handlers name the parameter.
        if prompt.is_empty() {
            return Err(HearthError::invalid("the prompt has no tokens"));
        }
        let (events, received) = unbounded_channel();
        self.queue.submit(GenerationRequest {
            prompt,
            max_tokens,
            sampling,
            stop_tokens: self.stop_tokens.clone(),
            constraint,
            events,
        })?;
        Ok(ChoiceStream {
            events: received,
            codec: self.codec.clone(),
            detokenizer: Detokenizer::default(),
            stops: StopMatcher::new(stops),
            pending_finish: None,
            done: false,
        })
    }
}

/// The text of one running choice.
#[derive(Debug)]
pub struct ChoiceStream {
    events: UnboundedReceiver<GenerationEvent>,
    codec: Arc<dyn TextCodec>,
    detokenizer: Detokenizer,
    stops: StopMatcher,
    pending_finish: Option<&'static str>,
    done: bool,
}

impl ChoiceStream {
    /// The next event; `None` after `Finished`.
    pub async fn next(&mut self) -> Option<Result<ChoiceEvent>> {
        if self.done {
            return None;
        }
        if let Some(reason) = self.pending_finish.take() {
            self.done = true;
            return Some(Ok(ChoiceEvent::Finished(reason)));
        }
        let event = self.events.recv().await;
        Some(self.translate(event))
    }

    fn translate(&mut self, event: Option<GenerationEvent>) -> Result<ChoiceEvent> {
        match event {
            None => {
                self.done = true;
                Err(HearthError::Internal(
                    "the generation worker went away".to_owned(),
                ))
            }
            Some(GenerationEvent::Failed(e)) => {
                self.done = true;
                Err(HearthError::Internal(e))
            }
            Some(GenerationEvent::Finished(reason)) => {
                let rest = self.stops.finish();
                if rest.is_empty() {
                    self.done = true;
                    return Ok(ChoiceEvent::Finished(finish_reason(reason)));
                }
                // Held-back text that never became a stop string belongs to the answer.
                self.pending_finish = Some(finish_reason(reason));
                Ok(ChoiceEvent::Text {
                    text: rest,
                    token: None,
                })
            }
            Some(GenerationEvent::Token(sampled)) => {
                let codec = self.codec.clone();
                let delta = self
                    .detokenizer
                    .push(sampled.token, |ids| codec.decode(ids))
                    .map_err(HearthError::Internal)?
                    .unwrap_or_default();
                let check = self.stops.push(&delta);
                if check.stopped {
                    // Dropping our end cancels the rest of the generation.
                    self.events.close();
                    self.pending_finish = Some("stop");
                }
                Ok(ChoiceEvent::Text {
                    text: check.emit,
                    token: Some(sampled),
                })
            }
        }
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}
