//! The transcription worker: one thread owns a Whisper model and advances every active
//! recording by one 30-second window per round. The round's windows (one per recording)
//! go through the encoder as one batch; then each recording's window is decoded and its
//! new segments are streamed out at once. A recording whose client went away leaves the
//! round before its next window (and stops mid-window between tokens).

use std::path::Path;
use std::sync::Arc;

use hearth_models::ModelError;
use hearth_models::whisper::mel::{MelFilters, MelSpectrogram};
use hearth_models::whisper::{
    Segment, TranscribeOptions, Transcript, Transcription, WhisperDims, WhisperModel,
    WhisperTokenizer,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::worker::{Jobs, WorkQueue};
use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// Whisper reads 16 kHz audio; 30 s of silence go after it so the last window is whole.
const PADDING_SAMPLES: usize = 30 * 16_000;

/// Limits of one transcription deployment.
#[derive(Debug, Clone, Copy)]
pub struct TranscriptionOptions {
    /// Recordings whose windows share one encoder batch.
    pub max_active: usize,
    /// Recordings waiting to start; beyond it callers get 503.
    pub max_queued: usize,
    /// Longest audio accepted, in seconds.
    pub max_audio_seconds: f64,
}

impl Default for TranscriptionOptions {
    fn default() -> Self {
        Self {
            max_active: 4,
            max_queued: 64,
            max_audio_seconds: 3600.0,
        }
    }
}

/// What the worker streams back for one recording.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptionEvent {
    /// A finished segment, in order.
    Segment(Segment),
    /// Everything, once the last window is decoded.
    Done(Transcript),
    /// The model failed; nothing more follows.
    Failed(String),
}

struct Job {
    transcription: Transcription,
    events: UnboundedSender<TranscriptionEvent>,
    span: tracing::Span,
}

/// The HTTP side's handle.
#[derive(Debug)]
pub struct TranscriptionEngine {
    queue: WorkQueue<Job>,
    tokenizer: Arc<WhisperTokenizer>,
    dims: WhisperDims,
    options: TranscriptionOptions,
    device_name: String,
}

impl TranscriptionEngine {
    /// Loads the model in `dir` (CTranslate2 or Hugging Face layout, `tokenizer.json`
    /// beside it) on its own worker thread and waits until it is ready.
    pub fn start(
        name: &str,
        dir: &Path,
        device: DeviceChoice,
        options: TranscriptionOptions,
    ) -> Result<Self> {
        let (device, device_name) = super::select_device(device)?;
        let tokenizer =
            Arc::new(WhisperTokenizer::load(&dir.join("tokenizer.json")).map_err(model_error)?);
        let dir = dir.to_path_buf();
        let worker_tokenizer = tokenizer.clone();
        let (queue, dims) = WorkQueue::start(
            "transcription",
            format!("transcribe-{name}"),
            options.max_queued,
            move || {
                let model = WhisperModel::load(&dir, &device).map_err(model_error)?;
                let dims = model.dims().clone();
                Ok((model, dims))
            },
            move |model, jobs| run_worker(&model, &worker_tokenizer, &jobs, options),
        )?;
        Ok(Self {
            queue,
            tokenizer,
            dims,
            options,
            device_name,
        })
    }

    /// Whether the model knows languages other than English (and so can translate).
    pub fn is_multilingual(&self) -> bool {
        self.dims.is_multilingual()
    }

    /// The longest audio accepted, in seconds.
    pub fn max_audio_seconds(&self) -> f64 {
        self.options.max_audio_seconds
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Checks `options` against the model and computes the spectrogram of `samples` (16 kHz
    /// mono): CPU work for a blocking thread, not the worker. A language or task the model
    /// cannot do is a 400.
    pub fn prepare(&self, samples: &[f32], options: TranscribeOptions) -> Result<Transcription> {
        let mel = MelSpectrogram::new(MelFilters::slaney(self.dims.n_mels))
            .compute(samples, PADDING_SAMPLES);
        Transcription::new(&self.dims, &self.tokenizer, mel, options).map_err(|e| match e {
            ModelError::InvalidInput(message) => HearthError::invalid(message),
            other => model_error(other),
        })
    }

    /// Queues a prepared recording; its segments and transcript arrive on the returned
    /// channel. Dropping the receiver cancels it.
    pub fn submit(
        &self,
        transcription: Transcription,
    ) -> Result<UnboundedReceiver<TranscriptionEvent>> {
        let (events, received) = unbounded_channel();
        self.queue.submit(Job {
            transcription,
            events,
            span: tracing::Span::current(),
        })?;
        Ok(received)
    }
}

fn model_error(e: ModelError) -> HearthError {
    HearthError::Internal(e.to_string())
}

fn run_worker(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    jobs: &Jobs<Job>,
    options: TranscriptionOptions,
) {
    let mut active: Vec<Job> = Vec::new();
    let mut rng = rand::rng();
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
                metrics::counter!("hearth_transcription_cancelled_total").increment(1);
            }
            !gone
        });
        metrics::gauge!("hearth_transcription_active").set(active.len() as f64);
        if !active.is_empty() {
            round(model, tokenizer, &mut active, &mut rng);
        }
    }
}

/// One window of every active recording: one encoder batch, then each decoded.
fn round(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    active: &mut Vec<Job>,
    rng: &mut impl rand::Rng,
) {
    let windows: Vec<Vec<f32>> = active
        .iter()
        .map(|job| job.transcription.window(model).unwrap_or_default())
        .collect();
    let batch: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
    let started = std::time::Instant::now();
    let features = match model.encode(&batch) {
        Ok(features) => features,
        Err(e) => {
            tracing::error!(error = %e, windows = batch.len(), "encoder pass failed");
            for job in active.drain(..) {
                let _ = job.events.send(TranscriptionEvent::Failed(e.to_string()));
            }
            return;
        }
    };
    metrics::histogram!("hearth_transcription_encoder_batch_size").record(batch.len() as f64);
    metrics::histogram!("hearth_transcription_encoder_seconds")
        .record(started.elapsed().as_secs_f64());
    let mut finished = Vec::new();
    for (index, job) in active.iter_mut().enumerate() {
        let _entered = job.span.enter();
        let cross = model.cross_cache(&features, index);
        let events = job.events.clone();
        let decoded = job
            .transcription
            .advance(model, tokenizer, &cross, rng, &|| events.is_closed());
        match decoded {
            Ok(segments) => {
                for segment in segments {
                    let _ = job.events.send(TranscriptionEvent::Segment(segment));
                }
                if job.transcription.is_done() {
                    finished.push((index, None));
                }
            }
            Err(ModelError::Cancelled) => finished.push((index, Some(None))),
            Err(e) => {
                tracing::error!(error = %e, "decoding a window failed");
                finished.push((index, Some(Some(e.to_string()))));
            }
        }
    }
    for (index, failure) in finished.into_iter().rev() {
        let job = active.swap_remove(index);
        let event = match failure {
            None => match job.transcription.finish(tokenizer) {
                Ok(transcript) => {
                    metrics::counter!("hearth_transcription_audio_seconds_total")
                        .increment(transcript.duration.ceil() as u64);
                    TranscriptionEvent::Done(transcript)
                }
                Err(e) => TranscriptionEvent::Failed(e.to_string()),
            },
            Some(None) => continue,
            Some(Some(message)) => TranscriptionEvent::Failed(message),
        };
        let _ = job.events.send(event);
    }
}
