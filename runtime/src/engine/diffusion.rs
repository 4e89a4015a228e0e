//! The diffusion worker: one thread owns a Stable Diffusion pipeline and denoises every
//! active image together, one batched UNet call per round (images of one size share a call,
//! each at its own step, so a request arriving mid-way joins at once instead of waiting).
//! Between rounds it takes in new requests, drops those whose client went away, and sends
//! each request its partial images (decoded from the sampler's current prediction) and its
//! finished images as they come.

use std::collections::HashMap;
use std::path::PathBuf;

use hearth_models::ModelError;
use hearth_models::diffusion::pipeline::{
    Denoising, DiffusionPipeline, ImageRequest, LoadOptions, Picture, SizeLimits,
};
use hearth_models::diffusion::scheduler::SamplerKind;
use image::RgbImage;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::image::model_error;
use super::worker::{Jobs, WorkQueue};
use crate::error::{HearthError, Result};

/// What a diffusion deployment can do, for the HTTP side's checks.
#[derive(Debug, Clone)]
pub struct DiffusionFacts {
    pub limits: SizeLimits,
    pub default_sampler: SamplerKind,
    pub inpainting: bool,
    pub can_edit: bool,
    /// Layers of the text encoder (`clip_skip` must leave one).
    pub text_layers: usize,
}

/// What the worker sends back for one request.
#[derive(Debug)]
pub enum DiffusionEvent {
    /// Image `image`'s `index`-th partial picture.
    Partial {
        image: usize,
        index: usize,
        picture: RgbImage,
    },
    /// Image `image` is finished.
    Finished { image: usize, picture: RgbImage },
    /// The request failed; nothing more follows.
    Failed(HearthError),
}

/// One request: its images (each with its own seed) and how many partial pictures each
/// streams.
#[derive(Debug)]
pub struct DiffusionWork {
    pub images: Vec<ImageRequest>,
    pub partial_images: usize,
}

struct Job {
    work: DiffusionWork,
    events: UnboundedSender<DiffusionEvent>,
    span: tracing::Span,
}

/// The HTTP side's handle.
#[derive(Debug)]
pub struct DiffusionEngine {
    queue: WorkQueue<Job>,
    facts: DiffusionFacts,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiffusionJob")
    }
}

/// Limits of one diffusion deployment.
#[derive(Debug, Clone, Copy)]
pub struct DiffusionOptions {
    /// Images denoised in one UNet call (the guidance pair counts once).
    pub max_batch: usize,
    pub max_queued: usize,
}

impl DiffusionEngine {
    /// Loads the diffusers folder `source` on its own worker thread.
    pub fn start(
        name: &str,
        source: PathBuf,
        device: hearth_models::Device,
        options: DiffusionOptions,
    ) -> Result<Self> {
        let (queue, facts) = WorkQueue::start(
            "image",
            format!("diffusion-{name}"),
            options.max_queued,
            move || {
                let pipeline =
                    DiffusionPipeline::load(&source, &device, LoadOptions { encoder: true })
                        .map_err(|e| match e {
                            ModelError::InvalidInput(m) => HearthError::Config(m),
                            other => HearthError::Config(other.to_string()),
                        })?;
                let facts = DiffusionFacts {
                    limits: pipeline.size_limits(),
                    default_sampler: pipeline.default_sampler(),
                    inpainting: pipeline.is_inpainting(),
                    can_edit: pipeline.can_edit(),
                    text_layers: pipeline.text_encoder_layers(),
                };
                Ok((pipeline, facts))
            },
            move |pipeline, jobs| run_worker(&pipeline, &jobs, options.max_batch.max(1)),
        )?;
        Ok(Self { queue, facts })
    }

    pub fn facts(&self) -> &DiffusionFacts {
        &self.facts
    }

    /// Queues `work`; the events arrive on the receiver, which cancels the work when dropped.
    pub fn submit(&self, work: DiffusionWork) -> Result<UnboundedReceiver<DiffusionEvent>> {
        let (events, receiver) = unbounded_channel();
        self.queue.submit(Job {
            work,
            events,
            span: tracing::Span::current(),
        })?;
        Ok(receiver)
    }
}

/// One image being denoised, and where its results go.
struct Active {
    job: u64,
    image: usize,
    denoising: Denoising,
    /// The step counts after which a partial picture is sent, in order.
    partial_at: Vec<usize>,
    partials_sent: usize,
}

struct Request {
    events: UnboundedSender<DiffusionEvent>,
    span: tracing::Span,
    unfinished: usize,
}

/// After which steps `count` partial pictures of a `total`-step image are sent: evenly
/// spread, never after the last step (the finished image follows it anyway).
fn partial_steps(total: usize, count: usize) -> Vec<usize> {
    let mut steps: Vec<usize> = (1..=count)
        .map(|k| (total * k).div_ceil(count + 1).clamp(1, total))
        .filter(|&s| s < total)
        .collect();
    steps.dedup();
    steps
}

/// The requests being served, by id.
type Requests = HashMap<u64, Request>;

fn run_worker(pipeline: &DiffusionPipeline, jobs: &Jobs<Job>, max_batch: usize) {
    let mut requests = Requests::new();
    let mut active: Vec<Active> = Vec::new();
    let mut next_id = 0u64;
    loop {
        if active.is_empty() {
            let Some(job) = jobs.wait() else { return };
            next_id += 1;
            admit(pipeline, job, next_id, &mut requests, &mut active);
        }
        while let Some(job) = jobs.ready() {
            next_id += 1;
            admit(pipeline, job, next_id, &mut requests, &mut active);
        }
        drop_cancelled(&mut requests, &mut active);
        let Some(size) = active.first().map(|a| a.denoising.latent_size()) else {
            continue;
        };
        let started = std::time::Instant::now();
        let mut batch: Vec<&mut Active> = active
            .iter_mut()
            .filter(|a| a.denoising.latent_size() == size)
            .take(max_batch)
            .collect();
        let count = batch.len();
        let mut states: Vec<&mut Denoising> = batch.iter_mut().map(|a| &mut a.denoising).collect();
        if let Err(e) = pipeline.step(&mut states) {
            tracing::error!(error = %e, "diffusion step failed");
            let message = e.to_string();
            let failed: Vec<u64> = batch.iter().map(|a| a.job).collect();
            for job in failed {
                fail(
                    &mut requests,
                    &mut active,
                    job,
                    HearthError::Internal(message.clone()),
                );
            }
            continue;
        }
        metrics::histogram!("hearth_image_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("hearth_image_batch_size").record(count as f64);
        // The images just stepped go to the back, so the next round serves another size
        // first: a small request is not stuck behind a large one of another size.
        let (mut stepped, others): (Vec<Active>, Vec<Active>) = active
            .drain(..)
            .partition(|a| a.denoising.latent_size() == size);
        let unstepped = stepped.split_off(count);
        active = others;
        active.extend(unstepped);
        active.extend(stepped);
        send_partials(pipeline, &requests, &mut active);
        finish(pipeline, &mut requests, &mut active);
    }
}

/// Starts every image of `job` (text encoding, the picture's latent for an edit).
fn admit(
    pipeline: &DiffusionPipeline,
    job: Job,
    id: u64,
    requests: &mut Requests,
    active: &mut Vec<Active>,
) {
    let _entered = job.span.clone().entered();
    let mut started = Vec::with_capacity(job.work.images.len());
    for (image, request) in job.work.images.iter().enumerate() {
        match pipeline.start(request) {
            Ok(denoising) => {
                let partial_at = partial_steps(denoising.total_steps(), job.work.partial_images);
                started.push(Active {
                    job: id,
                    image,
                    denoising,
                    partial_at,
                    partials_sent: 0,
                });
            }
            Err(e) => {
                let _ = job.events.send(DiffusionEvent::Failed(model_error(e)));
                return;
            }
        }
    }
    requests.insert(
        id,
        Request {
            events: job.events,
            span: job.span,
            unfinished: started.len(),
        },
    );
    active.extend(started);
}

fn drop_cancelled(requests: &mut Requests, active: &mut Vec<Active>) {
    requests.retain(|_, r| {
        let gone = r.events.is_closed();
        if gone {
            metrics::counter!("hearth_image_cancelled_total").increment(1);
        }
        !gone
    });
    active.retain(|a| requests.contains_key(&a.job));
}

fn fail(requests: &mut Requests, active: &mut Vec<Active>, job: u64, error: HearthError) {
    if let Some(request) = requests.remove(&job) {
        let _ = request.events.send(DiffusionEvent::Failed(error));
    }
    active.retain(|a| a.job != job);
}

fn to_rgb(picture: Picture) -> RgbImage {
    RgbImage::from_raw(picture.width as u32, picture.height as u32, picture.rgb)
        .expect("the pipeline's own size")
}

fn send_partials(pipeline: &DiffusionPipeline, requests: &Requests, active: &mut [Active]) {
    for a in active.iter_mut() {
        let due = a.partial_at.get(a.partials_sent) == Some(&a.denoising.steps_done());
        let Some(request) = requests.get(&a.job).filter(|_| due) else {
            continue;
        };
        let Some(denoised) = a.denoising.denoised().cloned() else {
            continue;
        };
        let _entered = request.span.clone().entered();
        match pipeline.decode(&[denoised]) {
            Ok(mut pictures) if !pictures.is_empty() => {
                let _ = request.events.send(DiffusionEvent::Partial {
                    image: a.image,
                    index: a.partials_sent,
                    picture: to_rgb(pictures.remove(0)),
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "partial image not decoded"),
        }
        a.partials_sent += 1;
    }
}

/// Decodes the images that are done (together), answers them, and closes requests whose
/// every image is out.
fn finish(pipeline: &DiffusionPipeline, requests: &mut Requests, active: &mut Vec<Active>) {
    let (done, running): (Vec<Active>, Vec<Active>) =
        active.drain(..).partition(|a| a.denoising.is_done());
    *active = running;
    if done.is_empty() {
        return;
    }
    let latents: Vec<_> = done.iter().map(|a| a.denoising.latent().clone()).collect();
    let decoded = pipeline.decode(&latents);
    match decoded {
        Ok(pictures) => {
            for (a, picture) in done.iter().zip(pictures) {
                let Some(request) = requests.get_mut(&a.job) else {
                    continue;
                };
                let _ = request.events.send(DiffusionEvent::Finished {
                    image: a.image,
                    picture: to_rgb(picture),
                });
                request.unfinished -= 1;
                if request.unfinished == 0 {
                    requests.remove(&a.job);
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "decoding failed");
            for a in &done {
                if let Some(request) = requests.remove(&a.job) {
                    let _ = request
                        .events
                        .send(DiffusionEvent::Failed(HearthError::Internal(e.to_string())));
                }
            }
            active.retain(|a| requests.contains_key(&a.job));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::partial_steps;

    #[test]
    fn partial_pictures_are_spread_over_the_steps_and_never_after_the_last() {
        assert_eq!(partial_steps(20, 0), Vec::<usize>::new());
        assert_eq!(partial_steps(20, 1), vec![10]);
        assert_eq!(partial_steps(20, 3), vec![5, 10, 15]);
        assert_eq!(partial_steps(4, 3), vec![1, 2, 3]);
        assert_eq!(partial_steps(2, 3), vec![1]);
        assert_eq!(partial_steps(1, 2), Vec::<usize>::new());
    }
}
