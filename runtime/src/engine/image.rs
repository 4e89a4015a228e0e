//! The image worker: one thread owns an image model (a DCGAN generator or an RDN upscaler)
//! and serves the queue. Generation requests waiting together run as one batch of latents,
//! `max_batch` images per forward pass; upscales run one image at a time in batched windows,
//! asking between windows whether the client is still there.

use std::path::{Path, PathBuf};

use hearth_models::ModelError;
use hearth_models::dcgan::{DcganGenerator, latents};
use hearth_models::rdn::Upscaler;
use image::RgbImage;
use tokio::sync::oneshot;

use super::diffusion::{DiffusionEngine, DiffusionFacts, DiffusionOptions};
use super::worker::{Jobs, WorkQueue};
use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// Limits of one image deployment.
#[derive(Debug, Clone, Copy)]
pub struct ImageOptions {
    /// Images generated in one forward pass (across requests).
    pub max_batch: usize,
    /// Requests waiting; beyond it callers get 503.
    pub max_queued: usize,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            max_batch: 16,
            max_queued: 32,
        }
    }
}

/// The model families an image deployment's `source` can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFamily {
    /// A PyTorch checkpoint of a DCGAN generator: generates, unconditionally.
    Dcgan(PathBuf),
    /// A TF.js layers super-resolution model: edits (upscales).
    Upscaler(PathBuf),
    /// A diffusers pipeline folder (`model_index.json`): Stable Diffusion 1.x/2.x, SD-Turbo
    /// and their inpainting variants.
    Diffusers(PathBuf),
}

impl ImageFamily {
    /// What `source` holds, from its layout alone.
    pub fn detect(source: &Path) -> Self {
        if source.is_dir() {
            if source.join("model_index.json").exists() {
                return Self::Diffusers(source.to_path_buf());
            }
            if source.join("model.json").exists() {
                return Self::Upscaler(source.join("model.json"));
            }
            let checkpoint = [
                "weights.tar",
                "generator.pth",
                "netG.pth",
                "model.pt",
                "model.pth",
            ]
            .iter()
            .map(|f| source.join(f))
            .find(|p| p.exists());
            return Self::Dcgan(checkpoint.unwrap_or_else(|| source.join("weights.tar")));
        }
        if source.extension().is_some_and(|e| e == "json") {
            Self::Upscaler(source.to_path_buf())
        } else {
            Self::Dcgan(source.to_path_buf())
        }
    }
}

/// What an image deployment can do, for requests and `/v1/models`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ImageFacts {
    /// `generate`, `edit` or both.
    pub capabilities: Vec<String>,
    /// The architecture: `dcgan` or `rdn`.
    pub family: String,
    /// Whether the prompt changes the picture (false: it is accepted and ignored).
    pub uses_prompt: bool,
    /// The sizes `size` may name for generation (`WxH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<String>,
    /// For an upscaler: how many times wider and taller an edit's result is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Most images an edit request may upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_input_images: Option<usize>,
    /// A diffusion pipeline: the sizes `size` may name (any `WxH` within these).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_range: Option<SizeRange>,
    /// A diffusion pipeline: the samplers a request's `sampler` may name, and its default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samplers: Vec<String>,
}

/// The sizes a diffusion pipeline makes: both sides multiples of `multiple` from `min` to
/// `max`; `auto` is `default`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SizeRange {
    pub multiple: usize,
    pub min: usize,
    pub max: usize,
    pub default: usize,
}

impl ImageFacts {
    pub fn generates(&self) -> bool {
        self.capabilities.iter().any(|c| c == "generate")
    }

    pub fn edits(&self) -> bool {
        self.capabilities.iter().any(|c| c == "edit")
    }

    /// Whether a diffusion pipeline serves it (free sizes, extensions, streaming).
    pub fn is_diffusion(&self) -> bool {
        self.size_range.is_some()
    }
}

/// The samplers a request may name.
pub const SAMPLERS: [&str; 5] = ["euler", "euler_a", "ddim", "dpm++_2m", "lcm"];

fn diffusion_facts(facts: &DiffusionFacts) -> ImageFacts {
    let native = facts.limits.native;
    let mut capabilities = Vec::new();
    if !facts.inpainting {
        capabilities.push("generate".to_owned());
    }
    if facts.can_edit {
        capabilities.push("edit".to_owned());
    }
    ImageFacts {
        capabilities,
        family: "diffusion".into(),
        uses_prompt: true,
        sizes: vec![format!("{native}x{native}")],
        scale: None,
        max_input_images: Some(1),
        size_range: Some(SizeRange {
            multiple: facts.limits.multiple,
            min: facts.limits.min,
            max: facts.limits.max,
            default: native,
        }),
        samplers: SAMPLERS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Images one edit request may upload to an upscaler (each is upscaled).
pub const MAX_EDIT_IMAGES: usize = 10;

enum Model {
    Generator(DcganGenerator),
    Upscaler(Upscaler),
}

enum Work {
    /// One image per seed.
    Generate(Vec<u64>),
    /// Each image upscaled.
    Upscale(Vec<RgbImage>),
}

type Reply = oneshot::Sender<std::result::Result<Vec<RgbImage>, ModelError>>;

struct Job {
    work: Work,
    reply: Reply,
    span: tracing::Span,
}

/// What runs an image deployment.
#[derive(Debug)]
enum Runner {
    /// A generator or upscaler on the batching worker below.
    Single(WorkQueue<Job>),
    /// A diffusion pipeline on its stepping worker.
    Diffusion(DiffusionEngine),
}

/// The HTTP side's handle.
#[derive(Debug)]
pub struct ImageEngine {
    runner: Runner,
    facts: ImageFacts,
    device_name: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageJob")
    }
}

impl ImageEngine {
    /// Loads the model `family` names on its own worker thread and waits until it is ready.
    pub fn start(
        name: &str,
        family: ImageFamily,
        device: DeviceChoice,
        options: ImageOptions,
    ) -> Result<Self> {
        let (device, device_name) = super::select_device(device)?;
        let max_batch = options.max_batch.max(1);
        if let ImageFamily::Diffusers(folder) = family {
            let engine = DiffusionEngine::start(
                name,
                folder,
                device,
                DiffusionOptions {
                    max_batch,
                    max_queued: options.max_queued,
                },
            )?;
            let facts = diffusion_facts(engine.facts());
            return Ok(Self {
                runner: Runner::Diffusion(engine),
                facts,
                device_name,
            });
        }
        let (queue, facts) = WorkQueue::start(
            "image",
            format!("image-{name}"),
            options.max_queued,
            move || {
                let (model, facts) = match family {
                    ImageFamily::Dcgan(path) => {
                        let model = DcganGenerator::load(&path, &device).map_err(model_error)?;
                        if !matches!(model.channels(), 1 | 3) {
                            return Err(HearthError::Config(format!(
                                "{}: a generator of {}-channel images; Hearth serves RGB or grey",
                                path.display(),
                                model.channels()
                            )));
                        }
                        let side = model.image_size();
                        let facts = ImageFacts {
                            capabilities: vec!["generate".into()],
                            family: "dcgan".into(),
                            uses_prompt: false,
                            sizes: vec![format!("{side}x{side}")],
                            scale: None,
                            max_input_images: None,
                            size_range: None,
                            samplers: Vec::new(),
                        };
                        (Model::Generator(model), facts)
                    }
                    ImageFamily::Upscaler(path) => {
                        let model = Upscaler::load(&path, &device).map_err(model_error)?;
                        let facts = ImageFacts {
                            capabilities: vec!["edit".into()],
                            family: "rdn".into(),
                            uses_prompt: false,
                            sizes: Vec::new(),
                            scale: Some(model.scale() as u32),
                            max_input_images: Some(MAX_EDIT_IMAGES),
                            size_range: None,
                            samplers: Vec::new(),
                        };
                        (Model::Upscaler(model), facts)
                    }
                    ImageFamily::Diffusers(_) => unreachable!("started above"),
                };
                Ok((model, facts))
            },
            move |model, jobs| run_worker(&model, &jobs, max_batch),
        )?;
        Ok(Self {
            runner: Runner::Single(queue),
            facts,
            device_name,
        })
    }

    /// The diffusion pipeline, when this deployment is one.
    pub fn diffusion(&self) -> Option<&DiffusionEngine> {
        match &self.runner {
            Runner::Diffusion(engine) => Some(engine),
            Runner::Single(_) => None,
        }
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    pub fn facts(&self) -> &ImageFacts {
        &self.facts
    }

    fn submit(
        &self,
        work: Work,
    ) -> Result<oneshot::Receiver<std::result::Result<Vec<RgbImage>, ModelError>>> {
        let Runner::Single(queue) = &self.runner else {
            return Err(HearthError::invalid(
                "this is a diffusion pipeline: it takes a prompt, not a seed list",
            ));
        };
        let (reply, answer) = oneshot::channel();
        queue.submit(Job {
            work,
            reply,
            span: tracing::Span::current(),
        })?;
        Ok(answer)
    }

    /// One image per seed; dropping the future cancels what has not run.
    pub async fn generate(&self, seeds: Vec<u64>) -> Result<Vec<RgbImage>> {
        let answer = self.submit(Work::Generate(seeds))?;
        receive(answer).await
    }

    /// Each image upscaled; dropping the future stops the work between windows.
    pub async fn upscale(&self, images: Vec<RgbImage>) -> Result<Vec<RgbImage>> {
        let answer = self.submit(Work::Upscale(images))?;
        receive(answer).await
    }
}

async fn receive(
    answer: oneshot::Receiver<std::result::Result<Vec<RgbImage>, ModelError>>,
) -> Result<Vec<RgbImage>> {
    answer
        .await
        .map_err(|_| HearthError::Internal("the image worker stopped".into()))?
        .map_err(model_error)
}

pub(super) fn model_error(e: ModelError) -> HearthError {
    match e {
        ModelError::InvalidInput(message) => HearthError::invalid(message),
        ModelError::MissingFile { .. } | ModelError::Io { .. } => {
            HearthError::Config(e.to_string())
        }
        other => HearthError::Internal(other.to_string()),
    }
}

fn run_worker(model: &Model, jobs: &Jobs<Job>, max_batch: usize) {
    while let Some(first) = jobs.wait() {
        let mut round = vec![first];
        // Generation batches what is waiting; an upscale is already a batch of windows, and
        // the others stay in the bounded queue (so a full queue turns callers away).
        while matches!(model, Model::Generator(_)) && round.len() < max_batch {
            let Some(job) = jobs.ready() else { break };
            round.push(job);
        }
        round.retain(|job| {
            let gone = job.reply.is_closed();
            if gone {
                metrics::counter!("hearth_image_cancelled_total").increment(1);
            }
            !gone
        });
        match model {
            Model::Generator(generator) => generate_round(generator, round, max_batch),
            Model::Upscaler(upscaler) => {
                for job in round {
                    let _entered = job.span.clone().entered();
                    let result = match job.work {
                        Work::Upscale(images) => upscale_all(upscaler, images, &job.reply),
                        Work::Generate(_) => Err(ModelError::InvalidInput(
                            "this model edits images; it does not generate them".into(),
                        )),
                    };
                    if matches!(result, Err(ModelError::Cancelled)) {
                        metrics::counter!("hearth_image_cancelled_total").increment(1);
                    }
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Every seed of the round through the generator, `max_batch` latents per pass, each job
/// answered with its own images.
fn generate_round(generator: &DcganGenerator, round: Vec<Job>, max_batch: usize) {
    let mut wanted: Vec<(Reply, tracing::Span, Vec<u64>)> = Vec::new();
    for Job { work, reply, span } in round {
        match work {
            Work::Generate(seeds) => wanted.push((reply, span, seeds)),
            Work::Upscale(_) => {
                let _ = reply.send(Err(ModelError::InvalidInput(
                    "this model generates images; it does not edit them".into(),
                )));
            }
        }
    }
    let seeds: Vec<u64> = wanted
        .iter()
        .flat_map(|(_, _, s)| s.iter().copied())
        .collect();
    let started = std::time::Instant::now();
    let mut images = Vec::with_capacity(seeds.len());
    let mut failure = None;
    for chunk in seeds.chunks(max_batch) {
        let z: Vec<f32> = chunk
            .iter()
            .flat_map(|&seed| latents(seed, generator.latent_dim()))
            .collect();
        match generator.generate_pixels(&z) {
            Ok(pixels) => images.extend(pixels.into_iter().map(|p| to_rgb(generator, p))),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    metrics::histogram!("hearth_image_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("hearth_image_batch_size").record(seeds.len() as f64);
    let mut images = images.into_iter();
    for (reply, span, seeds) in wanted {
        let _entered = span.entered();
        let result = match &failure {
            Some(message) => {
                tracing::error!(error = %message, "generation failed");
                Err(ModelError::Backend(message.clone()))
            }
            None => Ok(images.by_ref().take(seeds.len()).collect()),
        };
        let _ = reply.send(result);
    }
}

fn to_rgb(generator: &DcganGenerator, pixels: Vec<u8>) -> RgbImage {
    let side = generator.image_size() as u32;
    let rgb = if generator.channels() == 1 {
        pixels.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        pixels
    };
    RgbImage::from_raw(side, side, rgb).expect("the generator's own size")
}

fn upscale_all(
    upscaler: &Upscaler,
    images: Vec<RgbImage>,
    reply: &Reply,
) -> std::result::Result<Vec<RgbImage>, ModelError> {
    let scale = upscaler.scale() as u32;
    images
        .into_iter()
        .map(|image| {
            let started = std::time::Instant::now();
            let (w, h) = image.dimensions();
            let out = upscaler.upscale(image.as_raw(), w as usize, h as usize, &mut || {
                !reply.is_closed()
            })?;
            metrics::histogram!("hearth_image_upscale_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(RgbImage::from_raw(w * scale, h * scale, out).expect("the upscaler's own size"))
        })
        .collect()
}
