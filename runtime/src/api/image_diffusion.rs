//! Image generation and edits on a diffusion pipeline: the extension parameters (`steps`,
//! `guidance_scale`, `negative_prompt`, `sampler`, `strength`, `clip_skip`, with the
//! deployment's `[deployments.diffusion]` defaults), free sizes within the pipeline's range,
//! img2img or inpainting for edits, and `stream: true` with `partial_images` as OpenAI's
//! `image_generation.*` / `image_edit.*` server-sent events.

use image::RgbImage;
use image::imageops::FilterType;
use serde_json::{Value, json};

use super::image_inputs::Params;
use crate::config::DiffusionDefaults;
use crate::engine::{
    DiffusionEngine, DiffusionEvent, DiffusionFacts, DiffusionWork, ImageFacts, SAMPLERS,
};
use crate::error::{HearthError, Result};
use crate::images::Mask;
use hearth_models::diffusion::pipeline::{
    ImageRequest, Mask as PipelineMask, Noise, Picture, Start,
};
use hearth_models::diffusion::scheduler::SamplerKind;

/// The extension parameters a diffusion deployment accepts beside OpenAI's.
pub(super) const EXTENSIONS: [&str; 6] = [
    "steps",
    "guidance_scale",
    "negative_prompt",
    "sampler",
    "strength",
    "clip_skip",
];
/// OpenAI's limit on `partial_images`.
const MAX_PARTIAL_IMAGES: i128 = 3;
const MAX_STEPS: i128 = 150;
const DEFAULT_STEPS: usize = 25;
const DEFAULT_GUIDANCE: f64 = 7.5;
const DEFAULT_STRENGTH: f64 = 0.75;

/// A diffusion request's own settings, validated.
#[derive(Debug, Clone)]
pub(super) struct Diffusion {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance_scale: f64,
    pub sampler: SamplerKind,
    pub clip_skip: usize,
    /// The request's `strength`, when it gave one.
    pub strength: Option<f64>,
    /// `[deployments.diffusion] strength`: edits without a mask.
    pub default_strength: Option<f64>,
    pub width: usize,
    pub height: usize,
    pub stream: bool,
    pub partial_images: usize,
}

fn sampler(name: &str) -> Result<SamplerKind> {
    SamplerKind::parse(name).map_err(|_| {
        HearthError::invalid_param(
            "sampler",
            format!(
                "`{name}` is not a sampler; use one of {}",
                SAMPLERS.join(", ")
            ),
        )
    })
}

/// `WxH` within the pipeline's range; `None` for `auto` or no size.
fn parse_size(size: Option<&str>, facts: &ImageFacts) -> Result<Option<(usize, usize)>> {
    let Some(size) = size else { return Ok(None) };
    let range = facts
        .size_range
        .as_ref()
        .ok_or_else(|| HearthError::Internal("a diffusion deployment without sizes".into()))?;
    let bad = || {
        HearthError::invalid_param(
            "size",
            format!(
                "`{size}` is not a size this model makes; use auto or WIDTHxHEIGHT, both multiples of {} from {} to {}",
                range.multiple, range.min, range.max
            ),
        )
    };
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    let fits = |side: usize| {
        side.is_multiple_of(range.multiple) && (range.min..=range.max).contains(&side)
    };
    if fits(w) && fits(h) {
        Ok(Some((w, h)))
    } else {
        Err(bad())
    }
}

/// The size an edit of a `width`×`height` picture makes with `size: auto`: the picture's
/// own, scaled down to fit the range if needed and rounded to the size multiple.
fn fitted(width: u32, height: u32, facts: &ImageFacts) -> (usize, usize) {
    let Some(range) = &facts.size_range else {
        return (width as usize, height as usize);
    };
    let scale = (range.max as f64 / f64::from(width.max(height))).min(1.0);
    let side = |v: u32| {
        let scaled =
            (f64::from(v) * scale / range.multiple as f64).round() as usize * range.multiple;
        scaled.clamp(range.min, range.max)
    };
    (side(width), side(height))
}

/// Reads the diffusion settings of a request (`size` already known to be `size`).
pub(super) fn parse(
    params: &Params,
    facts: &ImageFacts,
    defaults: &DiffusionDefaults,
    size: Option<&str>,
    edit_of: Option<(u32, u32)>,
    pipeline: &DiffusionFacts,
) -> Result<Diffusion> {
    let steps = match params.integer("steps")? {
        None => defaults.steps.unwrap_or(DEFAULT_STEPS),
        Some(n @ 1..=MAX_STEPS) => n as usize,
        Some(n) => {
            return Err(HearthError::invalid_param(
                "steps",
                format!("steps must be between 1 and {MAX_STEPS}; got {n}"),
            ));
        }
    };
    let guidance_scale = match params.number("guidance_scale")? {
        None => defaults.guidance_scale.unwrap_or(DEFAULT_GUIDANCE),
        Some(g) if (0.0..=50.0).contains(&g) => g,
        Some(g) => {
            return Err(HearthError::invalid_param(
                "guidance_scale",
                format!("guidance_scale must be between 0 and 50; got {g}"),
            ));
        }
    };
    let strength = match params.number("strength")? {
        None => None,
        Some(_) if edit_of.is_none() => {
            return Err(HearthError::invalid_param(
                "strength",
                "strength applies to edits (how much of the picture is redrawn)",
            ));
        }
        Some(s) if s > 0.0 && s <= 1.0 => Some(s),
        Some(s) => {
            return Err(HearthError::invalid_param(
                "strength",
                format!("strength must be above 0 and at most 1; got {s}"),
            ));
        }
    };
    let sampler = match params.string("sampler")? {
        Some(name) => self::sampler(name.trim())?,
        None => match &defaults.sampler {
            Some(name) => self::sampler(name)?,
            None => pipeline.default_sampler,
        },
    };
    let clip_skip = match params.integer("clip_skip")? {
        None => defaults.clip_skip.unwrap_or(0),
        Some(n @ 0..=8) => n as usize,
        Some(n) => {
            return Err(HearthError::invalid_param(
                "clip_skip",
                format!("clip_skip must be between 0 and 8; got {n}"),
            ));
        }
    };
    if clip_skip >= pipeline.text_layers {
        return Err(HearthError::invalid_param(
            "clip_skip",
            format!(
                "clip_skip {clip_skip} leaves no layer of this model's {}-layer text encoder",
                pipeline.text_layers
            ),
        ));
    }
    // diffusers' get_timesteps: strength s runs int(steps · s) of the steps.
    let runs = |strength: f64| (steps as f64 * strength) as usize;
    if let Some(s) = strength.filter(|&s| runs(s) == 0) {
        return Err(HearthError::invalid_param(
            "strength",
            format!("strength {s} of {steps} steps runs no step; raise strength or steps"),
        ));
    }
    let stream = params.boolean("stream")?.unwrap_or(false);
    let partial_images = match params.integer("partial_images")? {
        None => 0,
        Some(0) => 0,
        Some(_) if !stream => {
            return Err(HearthError::invalid_param(
                "partial_images",
                "partial_images needs stream: true",
            ));
        }
        Some(n @ 1..=MAX_PARTIAL_IMAGES) => n as usize,
        Some(n) => {
            return Err(HearthError::invalid_param(
                "partial_images",
                format!("partial_images must be between 0 and {MAX_PARTIAL_IMAGES}; got {n}"),
            ));
        }
    };
    let (width, height) = match (parse_size(size, facts)?, edit_of) {
        (Some(size), _) => size,
        (None, Some((w, h))) => fitted(w, h, facts),
        (None, None) => {
            let side = facts.size_range.as_ref().map_or(512, |r| r.default);
            (side, side)
        }
    };
    Ok(Diffusion {
        prompt: params.string("prompt")?.unwrap_or_default(),
        negative_prompt: match params.string("negative_prompt")? {
            Some(text) => text,
            None => defaults.negative_prompt.clone().unwrap_or_default(),
        },
        steps,
        guidance_scale,
        sampler,
        clip_skip,
        strength,
        default_strength: defaults.strength,
        width,
        height,
        stream,
        partial_images,
    })
}

/// The work of `n` images from `seed`, `seed + 1`, …, each starting from `start`.
pub(super) fn work(settings: &Diffusion, seed: u64, n: usize, start: Start) -> DiffusionWork {
    let images = (0..n as u64)
        .map(|i| ImageRequest {
            prompt: settings.prompt.clone(),
            negative_prompt: settings.negative_prompt.clone(),
            width: settings.width,
            height: settings.height,
            steps: settings.steps,
            guidance_scale: settings.guidance_scale,
            sampler: settings.sampler,
            clip_skip: settings.clip_skip,
            noise: Noise::Seed(seed.wrapping_add(i)),
            start: start.clone(),
        })
        .collect();
    DiffusionWork {
        images,
        partial_images: settings.partial_images,
    }
}

/// An edit's start: the picture resized to the output size, and the mask (OpenAI's: fully
/// transparent pixels are redrawn) when there is one; without a mask, img2img.
pub(super) fn edit_start(
    settings: &Diffusion,
    picture: &RgbImage,
    mask: Option<&Mask>,
    inpainting_only: bool,
) -> Result<Start> {
    let (w, h) = (settings.width as u32, settings.height as u32);
    let resized = if picture.dimensions() == (w, h) {
        picture.clone()
    } else {
        image::imageops::resize(picture, w, h, FilterType::CatmullRom)
    };
    let picture = Picture {
        width: settings.width,
        height: settings.height,
        rgb: resized.into_raw(),
    };
    match mask {
        Some(mask) => Ok(Start::Inpaint {
            picture,
            mask: PipelineMask {
                width: settings.width,
                height: settings.height,
                grey: mask.editable_grey(w, h),
            },
            strength: settings.strength.unwrap_or(1.0),
        }),
        None if inpainting_only => Err(HearthError::invalid_param(
            "mask",
            "this is an inpainting model: send a mask whose fully transparent pixels mark the area to redraw",
        )),
        None => Ok(Start::Picture {
            picture,
            strength: settings
                .strength
                .or(settings.default_strength)
                .unwrap_or(DEFAULT_STRENGTH),
        }),
    }
}

/// Runs `work` to the end and returns its pictures in order.
pub(super) async fn collect(
    engine: &DiffusionEngine,
    work: DiffusionWork,
) -> Result<Vec<RgbImage>> {
    let count = work.images.len();
    let mut events = engine.submit(work)?;
    let mut images: Vec<Option<RgbImage>> = vec![None; count];
    while let Some(event) = events.recv().await {
        match event {
            DiffusionEvent::Finished { image, picture } => {
                if let Some(slot) = images.get_mut(image) {
                    *slot = Some(picture);
                }
            }
            DiffusionEvent::Partial { .. } => {}
            DiffusionEvent::Failed(e) => return Err(e),
        }
    }
    images
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| HearthError::Internal("the diffusion worker stopped".into()))
}

/// The fields every streamed image event carries.
pub(super) struct EventShape {
    /// `image_generation` or `image_edit`.
    pub prefix: &'static str,
    pub size: String,
    pub quality: String,
    pub output_format: &'static str,
}

impl EventShape {
    pub fn partial(&self, image: usize, index: usize, b64: String) -> Value {
        json!({
            "type": format!("{}.partial_image", self.prefix),
            "b64_json": b64,
            "created_at": crate::store::now_unix(),
            "size": self.size,
            "quality": self.quality,
            "background": "opaque",
            "output_format": self.output_format,
            "partial_image_index": index,
            "image_index": image,
        })
    }

    pub fn completed(&self, image: usize, b64: String) -> Value {
        json!({
            "type": format!("{}.completed", self.prefix),
            "b64_json": b64,
            "created_at": crate::store::now_unix(),
            "size": self.size,
            "quality": self.quality,
            "background": "opaque",
            "output_format": self.output_format,
            "image_index": image,
        })
    }
}
