//! A whole Stable Diffusion pipeline from a diffusers folder: load every component, turn an
//! [`ImageRequest`] into a [`Denoising`] (text embeddings, initial latent, the img2img or
//! inpainting inputs), advance any number of them one step with a single batched UNet call,
//! and decode latents into pictures.

mod denoising;
mod pixels;
mod request;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::Deserialize;

pub use denoising::Denoising;
use denoising::Inpainting;
pub use pixels::{Mask, Picture};
pub use request::{ImageRequest, Noise, Start};

use super::clip::{ClipTextEncoder, ClipTokenizer};
use super::scheduler::{SamplerKind, Scheduler, SchedulerConfig};
use super::unet::{UNet, guidance_scale_embedding};
use super::vae::Vae;
use crate::ModelError;
use crate::dcgan::latents;
use crate::json::read_json;

/// `model_index.json`: the pipeline class and its components.
#[derive(Debug, Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
}

/// Pipeline classes whose components this module runs.
const KNOWN_PIPELINES: [&str; 4] = [
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "LatentConsistencyModelPipeline",
];

/// How to load a pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Load the VAE's encoder too (img2img and inpainting need it; text to image does not).
    pub encoder: bool,
}

/// Sizes a pipeline accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Both sides a multiple of this.
    pub multiple: usize,
    pub min: usize,
    pub max: usize,
    /// The side it was trained at.
    pub native: usize,
}

/// A loaded pipeline.
#[derive(Debug)]
pub struct DiffusionPipeline {
    dir: PathBuf,
    class_name: String,
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextEncoder,
    unet: UNet,
    vae: Vae,
    scheduler: SchedulerConfig,
    default_sampler: SamplerKind,
    device: Device,
}

/// What diffusers' Stable Diffusion pipelines change in a scheduler config when they load it:
/// `steps_offset` becomes 1 (also when absent: every scheduler class defaults it to 0), and
/// outside inpainting `clip_sample` becomes false (x₀ of a latent is not bounded by ±1; DDIM
/// defaults it to true).
fn patch_scheduler(config: &mut SchedulerConfig, pipeline: &str) {
    config.steps_offset = Some(1);
    if pipeline != "StableDiffusionInpaintPipeline" {
        config.clip_sample = Some(false);
    }
}

/// The sampler a scheduler config's class stands for; Euler for a class nobody maps.
fn default_sampler(config: &SchedulerConfig) -> SamplerKind {
    config
        .class_name
        .as_deref()
        .and_then(SamplerKind::from_class_name)
        .unwrap_or(SamplerKind::Euler)
}

/// Splits `x` `[n, …]` into its `n` samples.
fn samples(x: Tensor<4>) -> Vec<Tensor<4>> {
    let n = x.dims()[0];
    x.chunk(n, 0)
}

impl DiffusionPipeline {
    /// Loads the diffusers folder `dir` onto `device`, logging each component as it loads.
    pub fn load(dir: &Path, device: &Device, options: LoadOptions) -> Result<Self, ModelError> {
        let start = Instant::now();
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        if !KNOWN_PIPELINES.contains(&index.class_name.as_str()) {
            return Err(ModelError::Config {
                path: dir.join("model_index.json"),
                field: "_class_name".into(),
                reason: format!(
                    "`{}` is not supported (Stable Diffusion 1.x/2.x pipelines: {KNOWN_PIPELINES:?})",
                    index.class_name
                ),
            });
        }
        let timed = |component: &str, since: Instant| {
            tracing::info!(path = %dir.display(), component, elapsed_ms = since.elapsed().as_millis(), "loaded diffusion component");
        };
        let t = Instant::now();
        let tokenizer = ClipTokenizer::load(&dir.join("tokenizer"))?;
        let text_encoder = ClipTextEncoder::load(dir, device)?;
        timed("text_encoder", t);
        let t = Instant::now();
        let unet = UNet::load(dir, device)?;
        timed("unet", t);
        let t = Instant::now();
        let vae = Vae::load(dir, device, options.encoder)?;
        timed("vae", t);
        let mut scheduler = SchedulerConfig::load(&dir.join("scheduler/scheduler_config.json"))?;
        patch_scheduler(&mut scheduler, &index.class_name);
        let default_sampler = default_sampler(&scheduler);
        if text_encoder.hidden_size() != unet.context_width() {
            return Err(ModelError::Config {
                path: dir.join("unet/config.json"),
                field: "cross_attention_dim".into(),
                reason: format!(
                    "{} but the text encoder's hidden_size is {}",
                    unet.context_width(),
                    text_encoder.hidden_size()
                ),
            });
        }
        let unet_inputs = unet.in_channels();
        let latent = vae.latent_channels();
        if unet_inputs != latent && unet_inputs != 2 * latent + 1 {
            return Err(ModelError::Config {
                path: dir.join("unet/config.json"),
                field: "in_channels".into(),
                reason: format!(
                    "{unet_inputs}: expected the VAE's {latent} latent channels, or {} for inpainting",
                    2 * latent + 1
                ),
            });
        }
        tracing::info!(path = %dir.display(), pipeline = %index.class_name, inpainting = unet_inputs != latent,
            sampler = ?default_sampler, elapsed_ms = start.elapsed().as_millis(), "loaded diffusion pipeline");
        Ok(Self {
            dir: dir.to_path_buf(),
            class_name: index.class_name,
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler,
            default_sampler,
            device: device.clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `model_index.json`'s `_class_name`.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The sampler `scheduler_config.json` names (or the closest one implemented).
    pub fn default_sampler(&self) -> SamplerKind {
        self.default_sampler
    }

    /// Replaces the folder's `scheduler_config.json` (betas, spacing, prediction type) and the
    /// default sampler with `config`'s.
    pub fn set_scheduler(&mut self, config: SchedulerConfig) {
        self.default_sampler = default_sampler(&config);
        self.scheduler = config;
    }

    /// Layers of the text encoder (`clip_skip` must leave at least one).
    pub fn text_encoder_layers(&self) -> usize {
        self.text_encoder.config().num_hidden_layers
    }

    /// Whether the UNet is an inpainting one (9 input channels).
    pub fn is_inpainting(&self) -> bool {
        self.unet.in_channels() != self.vae.latent_channels()
    }

    /// Whether img2img and inpainting are available (the VAE's encoder was loaded).
    pub fn can_edit(&self) -> bool {
        self.vae.can_encode()
    }

    /// Whether the UNet is guidance-distilled (LCM): guidance is an input, not a second pass.
    pub fn embeds_guidance(&self) -> bool {
        self.unet.guidance_embedding_width().is_some()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The sizes requests may ask for: multiples of 8 (and of what the VAE and UNet need),
    /// from the smallest the UNet can halve to twice the trained size.
    pub fn size_limits(&self) -> SizeLimits {
        let vae = self.vae.scale_factor();
        let multiple = 8usize.max(vae);
        let native = self.unet.sample_size() * vae;
        let smallest = vae << self.unet.downsamplings();
        SizeLimits {
            multiple,
            min: smallest.div_ceil(multiple) * multiple,
            max: 2 * native,
            native,
        }
    }

    fn check_size(&self, width: usize, height: usize) -> Result<(), ModelError> {
        let limits = self.size_limits();
        for (name, side) in [("width", width), ("height", height)] {
            if !side.is_multiple_of(limits.multiple) || side < limits.min || side > limits.max {
                return Err(ModelError::InvalidInput(format!(
                    "{name} {side}: must be a multiple of {} from {} to {}",
                    limits.multiple, limits.min, limits.max
                )));
            }
        }
        Ok(())
    }

    /// The text embeddings of `request`: `[2, tokens, width]` (negative, then prompt) when
    /// guidance runs, else `[1, tokens, width]`. `clip_skip` applies to the prompt only; the
    /// negative prompt always comes from the last layer, as in diffusers' `encode_prompt`.
    fn embed_text(&self, request: &ImageRequest, guided: bool) -> Result<Tensor<3>, ModelError> {
        let prompt = self.tokenizer.encode(&request.prompt)?;
        if !guided {
            return self.text_encoder.encode(&[prompt], request.clip_skip);
        }
        let negative = self.tokenizer.encode(&request.negative_prompt)?;
        if request.clip_skip == 0 {
            return self.text_encoder.encode(&[negative, prompt], 0);
        }
        Ok(Tensor::cat(
            vec![
                self.text_encoder.encode(&[negative], 0)?,
                self.text_encoder.encode(&[prompt], request.clip_skip)?,
            ],
            0,
        ))
    }

    fn latent_noise(&self, noise: &Noise, shape: [usize; 4]) -> Result<Tensor<4>, ModelError> {
        let count = shape.iter().product();
        let values = match noise {
            Noise::Seed(seed) => latents(*seed, count),
            Noise::Given(values) if values.len() == count => values.clone(),
            Noise::Given(values) => {
                return Err(ModelError::InvalidInput(format!(
                    "{} initial noise values for a {shape:?} latent",
                    values.len()
                )));
            }
        };
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// The UNet-scale latent of `picture`: the mean of the VAE's latent distribution (not a
    /// sample: the same picture always starts from the same latent).
    fn encode_picture(&self, picture: Tensor<4>) -> Result<Tensor<4>, ModelError> {
        let (mean, _) = self.vae.encode(picture)?;
        Ok(self.vae.to_unet_latent(mean))
    }

    /// Everything `request` needs before its first step.
    pub fn start(&self, request: &ImageRequest) -> Result<Denoising, ModelError> {
        self.check_size(request.width, request.height)?;
        if request.steps == 0 {
            return Err(ModelError::InvalidInput("steps must be at least 1".into()));
        }
        let f = self.vae.scale_factor();
        let shape = [
            1,
            self.vae.latent_channels(),
            request.height / f,
            request.width / f,
        ];
        let guided = request.guidance_scale > 1.0 && !self.embeds_guidance();
        let text = self.embed_text(request, guided)?;
        let mut scheduler = Scheduler::new(&self.scheduler, request.sampler, request.steps)?;
        let noise = self.latent_noise(&request.noise, shape)?;
        let init_sigma = scheduler.init_noise_sigma();
        let fresh = || noise.clone().mul_scalar(init_sigma);
        let (first, latent, inpainting) = match &request.start {
            Start::Noise => {
                if self.is_inpainting() {
                    return Err(ModelError::InvalidInput(
                        "an inpainting pipeline needs a picture and a mask".into(),
                    ));
                }
                (0, fresh(), None)
            }
            Start::Picture { picture, strength } => {
                self.check_picture(picture.width, picture.height, request)?;
                if self.is_inpainting() {
                    return Err(ModelError::InvalidInput(
                        "an inpainting pipeline needs a mask".into(),
                    ));
                }
                let first = scheduler.start_at(*strength)?;
                let picture_latent = self.encode_picture(picture.to_tensor(&self.device)?)?;
                let latent = scheduler.add_noise(picture_latent, noise.clone(), first);
                (first, latent, None)
            }
            Start::Inpaint {
                picture,
                mask,
                strength,
            } => {
                self.check_picture(picture.width, picture.height, request)?;
                self.check_picture(mask.width, mask.height, request)?;
                let first = scheduler.start_at(*strength)?;
                let pixels = picture.to_tensor(&self.device)?;
                let mask = mask.to_tensor(&self.device)?;
                let latent_mask = interpolate(
                    mask.clone(),
                    InterpolateOptions::new(InterpolateMode::Nearest)
                        .with_output_size([shape[2], shape[3]]),
                );
                // Full strength starts from pure noise, as diffusers' inpainting does; less
                // starts from the picture noised to the first step's level. A 9-channel UNet at
                // full strength never needs the whole picture's latent, so it is not encoded.
                let picture_latent = (!self.is_inpainting() || *strength < 1.0)
                    .then(|| self.encode_picture(pixels.clone()))
                    .transpose()?;
                let latent = match &picture_latent {
                    Some(picture) if *strength < 1.0 => {
                        scheduler.add_noise(picture.clone(), noise.clone(), first)
                    }
                    _ => fresh(),
                };
                let inpainting = match picture_latent {
                    Some(picture_latent) if !self.is_inpainting() => Inpainting::Blend {
                        mask: latent_mask,
                        picture_latent,
                    },
                    _ => {
                        let keep = mask.clone().lower_elem(0.5).float();
                        Inpainting::Channels {
                            mask: latent_mask,
                            masked_latent: self.encode_picture(pixels * keep)?,
                        }
                    }
                };
                (first, latent, Some(inpainting))
            }
        };
        let step_seed = match request.noise {
            Noise::Seed(seed) => seed ^ 0x5354_4550_5345_4544,
            Noise::Given(_) => 0x5354_4550_5345_4544,
        };
        Ok(Denoising {
            latent,
            scheduler,
            next: first,
            first,
            text,
            guidance_scale: request.guidance_scale,
            guided,
            inpainting,
            noise,
            step_seed,
            denoised: None,
        })
    }

    fn check_picture(
        &self,
        width: usize,
        height: usize,
        request: &ImageRequest,
    ) -> Result<(), ModelError> {
        if !self.vae.can_encode() {
            return Err(ModelError::InvalidInput(
                "this pipeline was loaded without the VAE encoder, so it cannot edit".into(),
            ));
        }
        if (width, height) != (request.width, request.height) {
            return Err(ModelError::InvalidInput(format!(
                "the picture is {width}×{height}, the request {}×{}: resize it first",
                request.width, request.height
            )));
        }
        Ok(())
    }

    /// Runs one step of every image in `batch` (all of one latent size, none done) through a
    /// single UNet call, each at its own timestep.
    pub fn step(&self, batch: &mut [&mut Denoising]) -> Result<(), ModelError> {
        let Some(size) = batch.first().map(|d| d.latent_size()) else {
            return Ok(());
        };
        if let Some(bad) = batch
            .iter()
            .find(|d| d.latent_size() != size || d.is_done())
        {
            return Err(ModelError::InvalidInput(format!(
                "cannot step a {:?} latent (done: {}) with {size:?} ones",
                bad.latent_size(),
                bad.is_done()
            )));
        }
        let mut inputs = Vec::new();
        let mut timesteps = Vec::new();
        let mut texts = Vec::new();
        let mut scales = Vec::new();
        for job in batch.iter() {
            let t = job.scheduler.timesteps()[job.next];
            let scaled = job
                .scheduler
                .scale_model_input(job.latent.clone(), job.next);
            let input = match &job.inpainting {
                Some(Inpainting::Channels {
                    mask,
                    masked_latent,
                }) => Tensor::cat(vec![scaled, mask.clone(), masked_latent.clone()], 1),
                _ => scaled,
            };
            let copies = if job.guided { 2 } else { 1 };
            for _ in 0..copies {
                inputs.push(input.clone());
                timesteps.push(t);
                scales.push(job.guidance_scale - 1.0);
            }
            texts.push(job.text.clone());
        }
        let guidance = self
            .unet
            .guidance_embedding_width()
            .map(|width| guidance_scale_embedding(&scales, width, &self.device));
        let predicted = self.unet.forward(
            Tensor::cat(inputs, 0),
            &timesteps,
            &Tensor::cat(texts, 0),
            guidance,
        )?;
        let mut outputs = samples(predicted).into_iter();
        for job in batch.iter_mut() {
            let first = outputs.next();
            let output = if job.guided {
                match (first, outputs.next()) {
                    (Some(uncond), Some(cond)) => {
                        uncond.clone() + (cond - uncond).mul_scalar(job.guidance_scale)
                    }
                    _ => return Err(ModelError::Backend("UNet batch came back short".into())),
                }
            } else {
                first.ok_or_else(|| ModelError::Backend("UNet batch came back short".into()))?
            };
            Self::advance(job, output)?;
        }
        Ok(())
    }

    /// The sampler's step for one image, then the inpainting blend.
    fn advance(job: &mut Denoising, output: Tensor<4>) -> Result<(), ModelError> {
        let step = job.next;
        let noise = job.scheduler.needs_noise(step).then(|| {
            let shape = job.latent.dims();
            let values = latents(
                job.step_seed.wrapping_add(step as u64),
                shape.iter().product(),
            );
            Tensor::from_data(TensorData::new(values, shape), &job.latent.device())
        });
        let out = job
            .scheduler
            .step(output, step, job.latent.clone(), noise)?;
        job.latent = out.prev_sample;
        job.denoised = Some(out.denoised);
        job.next += 1;
        if let Some(Inpainting::Blend {
            mask,
            picture_latent,
        }) = &job.inpainting
        {
            let kept = if job.next < job.scheduler.len() {
                job.scheduler
                    .add_noise(picture_latent.clone(), job.noise.clone(), job.next)
            } else {
                picture_latent.clone()
            };
            let keep = mask.clone().neg().add_scalar(1.0);
            job.latent = kept * keep + job.latent.clone() * mask.clone();
        }
        Ok(())
    }

    /// The pictures of UNet-scale latents `[1, channels, h, w]` each (finished latents, or a
    /// step's denoised prediction for a partial image).
    pub fn decode(&self, latents: &[Tensor<4>]) -> Result<Vec<Picture>, ModelError> {
        if latents.is_empty() {
            return Ok(Vec::new());
        }
        let images = self
            .vae
            .decode_unet_latent(Tensor::cat(latents.to_vec(), 0));
        pixels::to_pictures(images)
    }

    /// The raw decoder output for UNet-scale `latent` (reference tests).
    pub fn decode_raw(&self, latent: Tensor<4>) -> Tensor<4> {
        self.vae.decode_unet_latent(latent)
    }
}
