//! The speech worker: one thread owns a Piper voice and, round by round, synthesises the next
//! sentence of every active request, so a long text streams sentence by sentence and several
//! requests share the voice fairly. Text is phonemized (espeak-ng) on the HTTP side's
//! blocking threads; a request whose client went away leaves before its next sentence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_models::ModelError;
use hearth_models::vits::{
    Phonemizer, Sentence, SynthesisOptions, SynthesisScales, VitsModel, VoiceConfig, config_path,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::worker::{Jobs, WorkQueue};
use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// Limits of one speech deployment.
#[derive(Debug, Clone, Copy)]
pub struct SpeechOptions {
    /// Requests advanced in turn, one sentence each per round.
    pub max_active: usize,
    /// Requests waiting to start; beyond it callers get 503.
    pub max_queued: usize,
}

impl Default for SpeechOptions {
    fn default() -> Self {
        Self {
            max_active: 4,
            max_queued: 64,
        }
    }
}

/// What the worker streams back for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechEvent {
    /// One sentence's samples in `[-1, 1]` at the voice's rate, in order.
    Audio(Vec<f32>),
    /// Every sentence is done.
    Done,
    /// The model failed; nothing more follows.
    Failed(String),
}

struct Job {
    sentences: Vec<Vec<i64>>,
    next: usize,
    options: SynthesisOptions,
    events: UnboundedSender<SpeechEvent>,
    span: tracing::Span,
}

/// The HTTP side's handle.
#[derive(Debug)]
pub struct SpeechEngine {
    queue: WorkQueue<Job>,
    phonemizer: Phonemizer,
    config: VoiceConfig,
    device_name: String,
}

/// The voice file of a deployment's `source`: the `.onnx` itself, or a folder holding one.
fn voice_file(source: &Path) -> Result<PathBuf> {
    if !source.is_dir() {
        return Ok(source.to_path_buf());
    }
    let entries = std::fs::read_dir(source)
        .map_err(|e| HearthError::io(format!("cannot read {}", source.display()), e))?;
    let mut voices: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    voices.sort();
    match voices.len() {
        1 => Ok(voices.remove(0)),
        0 => Err(HearthError::Config(format!(
            "{}: no Piper voice (.onnx with its .onnx.json) in the folder",
            source.display()
        ))),
        _ => Err(HearthError::Config(format!(
            "{}: several .onnx voices; name one file as the source",
            source.display()
        ))),
    }
}

impl SpeechEngine {
    /// Loads the Piper voice at `source` (its `.onnx.json` beside it) on its own worker
    /// thread, after checking that its phonemizer (espeak-ng) works.
    pub fn start(
        name: &str,
        source: &Path,
        device: DeviceChoice,
        options: SpeechOptions,
    ) -> Result<Self> {
        let onnx = voice_file(source)?;
        let config = VoiceConfig::load(&config_path(&onnx)).map_err(model_error)?;
        let phonemizer = Phonemizer::new(&config).map_err(model_error)?;
        let (device, device_name) = super::select_device(device)?;
        let (queue, ()) = WorkQueue::start(
            "speech",
            format!("speech-{name}"),
            options.max_queued,
            move || {
                let model = VitsModel::load(&onnx, &device).map_err(model_error)?;
                Ok((model, ()))
            },
            move |model, jobs| run_worker(&model, &jobs, options),
        )?;
        Ok(Self {
            queue,
            phonemizer,
            config,
            device_name,
        })
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Samples per second of the audio this voice makes.
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The scales the voice was tuned with.
    pub fn default_scales(&self) -> SynthesisScales {
        self.config.scales
    }

    /// Speakers: name → id (one, `""` → 0, for a single-speaker voice).
    pub fn speakers(&self) -> BTreeMap<String, usize> {
        if self.config.speaker_id_map.is_empty() {
            return BTreeMap::from([(String::new(), 0)]);
        }
        self.config
            .speaker_id_map
            .iter()
            .filter_map(|(name, &id)| usize::try_from(id).ok().map(|id| (name.clone(), id)))
            .collect()
    }

    /// The speaker a name or id string names, if the voice has it.
    pub fn speaker(&self, name: &str) -> Option<usize> {
        self.speakers().get(name).copied().or_else(|| {
            name.parse::<usize>()
                .ok()
                .filter(|&id| id < self.config.num_speakers)
        })
    }

    /// How many speakers the voice has.
    pub fn speaker_count(&self) -> usize {
        self.config.num_speakers
    }

    /// `text` as sentences of phoneme ids: runs espeak-ng, so call it on a blocking thread.
    pub fn phonemize(&self, text: &str) -> Result<Vec<Sentence>> {
        self.phonemizer.sentences(text).map_err(model_error)
    }

    /// Queues the sentences; their audio arrives on the returned channel, sentence by
    /// sentence. Dropping the receiver cancels the rest.
    pub fn submit(
        &self,
        sentences: Vec<Vec<i64>>,
        options: SynthesisOptions,
    ) -> Result<UnboundedReceiver<SpeechEvent>> {
        let (events, received) = unbounded_channel();
        self.queue.submit(Job {
            sentences,
            next: 0,
            options,
            events,
            span: tracing::Span::current(),
        })?;
        Ok(received)
    }
}

fn model_error(e: ModelError) -> HearthError {
    match e {
        ModelError::InvalidInput(message) => HearthError::invalid(message),
        other => HearthError::Internal(other.to_string()),
    }
}

fn run_worker(model: &VitsModel, jobs: &Jobs<Job>, options: SpeechOptions) {
    let mut active: Vec<Job> = Vec::new();
    loop {
        if active.is_empty() {
            match jobs.wait() {
                Some(job) => active.push(job),
                None => break,
            }
        }
        while active.len() < options.max_active {
            let Some(job) = jobs.ready() else { break };
            active.push(job);
        }
        active.retain(|job| {
            let gone = job.events.is_closed();
            if gone {
                metrics::counter!("hearth_speech_cancelled_total").increment(1);
            }
            !gone
        });
        metrics::gauge!("hearth_speech_active").set(active.len() as f64);
        let mut finished = Vec::new();
        for (index, job) in active.iter_mut().enumerate() {
            let _entered = job.span.enter();
            let Some(ids) = job.sentences.get(job.next) else {
                let _ = job.events.send(SpeechEvent::Done);
                finished.push(index);
                continue;
            };
            let started = std::time::Instant::now();
            match model.synthesize(ids, &job.options) {
                Ok(samples) => {
                    metrics::histogram!("hearth_speech_sentence_seconds")
                        .record(started.elapsed().as_secs_f64());
                    job.next += 1;
                    let _ = job.events.send(SpeechEvent::Audio(samples));
                    if job.next == job.sentences.len() {
                        let _ = job.events.send(SpeechEvent::Done);
                        finished.push(index);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "synthesis failed");
                    let _ = job.events.send(SpeechEvent::Failed(e.to_string()));
                    finished.push(index);
                }
            }
        }
        for index in finished.into_iter().rev() {
            active.swap_remove(index);
        }
    }
}
