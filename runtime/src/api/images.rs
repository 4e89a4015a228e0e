//! `POST /v1/images/generations`, `POST /v1/images/edits` and `GET /v1/images/files/{name}`:
//! OpenAI's image API on the deployment's image worker. Every parameter is checked before
//! any work is queued; results are encoded off the async threads and returned as base64 or
//! as links to expiring files. An image model says what it can do (`generate`, `edit`) and
//! whether it reads the prompt; a request it cannot serve is a 400 saying what it does.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use image::RgbImage;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::image_diffusion::{self, Diffusion, EventShape};
use super::image_inputs::{ImageInputs, Params, read_json, read_multipart};
use super::inference::{ModelHeader, admit, header_model, unserved};
use super::openapi_schemas::{ImageEditForm, ImageEditJson, ImageGenerationRequest};
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::deployments::Deployment;
use crate::engine::{
    Backend, DiffusionEngine, DiffusionEvent, DiffusionWork, ImageEngine, ImageFacts,
};
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::images::{Mask, OutputFormat, blend, decode_upload, encode};
use hearth_models::diffusion::pipeline::Start;

const GENERATIONS: &str = "/v1/images/generations";
const EDITS: &str = "/v1/images/edits";
/// OpenAI's prompt limit for GPT image models.
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// OpenAI's limit on `n`.
pub const MAX_N: i128 = 10;

pub(super) const COMMON: [&str; 12] = [
    "model",
    "prompt",
    "n",
    "size",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "quality",
    "user",
    "seed",
    "stream",
];
pub(super) const GENERATION_ONLY: [&str; 3] = ["style", "moderation", "partial_images"];
pub(super) const EDIT_ONLY: [&str; 2] = ["input_fidelity", "partial_images"];

/// The parameters a deployment accepts beyond OpenAI's: a diffusion pipeline's extensions.
fn extensions(facts: &ImageFacts) -> &'static [&'static str] {
    if facts.is_diffusion() {
        &image_diffusion::EXTENSIONS
    } else {
        &[]
    }
}

/// How results are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Base64,
    Url,
}

/// The options both endpoints share, validated.
#[derive(Debug)]
struct Options {
    n: usize,
    size: Option<String>,
    delivery: Delivery,
    format: OutputFormat,
    quality: Option<u8>,
    quality_label: String,
    seed: u64,
}

fn one_of(params: &Params, key: &str, allowed: &[&str]) -> Result<Option<String>> {
    match params.string(key)? {
        None => Ok(None),
        Some(value) if allowed.contains(&value.trim()) => Ok(Some(value.trim().to_owned())),
        Some(value) => Err(HearthError::invalid_param(
            key,
            format!(
                "`{value}` is not a valid {key}; use one of {}",
                allowed.join(", ")
            ),
        )),
    }
}

fn parse_options(params: &Params, facts: &ImageFacts) -> Result<Options> {
    let n = params.integer("n")?.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(HearthError::invalid_param(
            "n",
            format!("n must be between 1 and {MAX_N}; got {n}"),
        ));
    }
    let delivery = match one_of(params, "response_format", &["b64_json", "url"])?.as_deref() {
        Some("url") => Delivery::Url,
        _ => Delivery::Base64,
    };
    let format = match params.string("output_format")? {
        None => OutputFormat::Png,
        Some(value) => OutputFormat::parse(&value).ok_or_else(|| {
            HearthError::invalid_param(
                "output_format",
                format!("`{value}` is not an output format; use png, jpeg or webp"),
            )
        })?,
    };
    let quality = match params.integer("output_compression")? {
        None => None,
        Some(_) if format == OutputFormat::Png => {
            return Err(HearthError::invalid_param(
                "output_compression",
                "output_compression applies to jpeg and webp output; png is lossless",
            ));
        }
        Some(value @ 0..=100) => Some(value.clamp(1, 100) as u8),
        Some(value) => {
            return Err(HearthError::invalid_param(
                "output_compression",
                format!("output_compression must be between 0 and 100; got {value}"),
            ));
        }
    };
    if one_of(params, "background", &["auto", "opaque", "transparent"])?.as_deref()
        == Some("transparent")
    {
        return Err(HearthError::invalid_param(
            "background",
            format!(
                "this {} model makes opaque images; use background auto or opaque",
                facts.family
            ),
        ));
    }
    let quality_label = one_of(
        params,
        "quality",
        &["auto", "low", "medium", "high", "standard", "hd"],
    )?
    .unwrap_or_else(|| "auto".into());
    one_of(params, "style", &["vivid", "natural"])?;
    one_of(params, "moderation", &["auto", "low"])?;
    one_of(params, "input_fidelity", &["high", "low"])?;
    params.string("user")?;
    // A diffusion pipeline streams partial images (its own checks); the others make each
    // image in one step.
    if !facts.is_diffusion() {
        if params.boolean("stream")? == Some(true) {
            return Err(HearthError::invalid_param(
                "stream",
                format!(
                    "this {} model makes each image in one step, so there is nothing to stream; omit stream",
                    facts.family
                ),
            ));
        }
        match params.integer("partial_images")? {
            None | Some(0) => {}
            Some(_) => {
                return Err(HearthError::invalid_param(
                    "partial_images",
                    "partial images need stream, which this model does not offer",
                ));
            }
        }
    }
    let seed = match params.integer("seed")? {
        // 53 bits: a seed a JavaScript client can hold as a number and send back exactly.
        None => rand::random::<u64>() >> 11,
        Some(seed) => u64::try_from(seed).map_err(|_| {
            HearthError::invalid_param("seed", "seed must be a non-negative integer below 2^64")
        })?,
    };
    let size = params
        .string("size")?
        .map(|s| s.trim().to_owned())
        .filter(|s| s != "auto");
    Ok(Options {
        n: n as usize,
        size,
        delivery,
        format,
        quality,
        quality_label,
        seed,
    })
}

fn prompt(params: &Params, required: bool) -> Result<Option<String>> {
    let prompt = params.string("prompt")?;
    match &prompt {
        None if required => Err(HearthError::invalid_param(
            "prompt",
            "you must provide a prompt",
        )),
        Some(p) if required && p.trim().is_empty() => Err(HearthError::invalid_param(
            "prompt",
            "the prompt must not be empty",
        )),
        Some(p) if p.chars().count() > MAX_PROMPT_CHARS => Err(HearthError::invalid_param(
            "prompt",
            format!("the prompt is longer than {MAX_PROMPT_CHARS} characters"),
        )),
        _ => Ok(prompt),
    }
}

/// What the deployment does, for the 400 when it is asked for the other thing.
fn describe(facts: &ImageFacts) -> String {
    match (facts.generates(), facts.edits(), facts.scale) {
        (true, _, _) => format!(
            "generates {} images{}",
            facts.sizes.join(", "),
            if facts.uses_prompt {
                ""
            } else {
                " unconditionally (it ignores the prompt)"
            }
        ),
        (false, true, Some(scale)) => format!("edits images by upscaling them {scale}×"),
        _ => "edits images".into(),
    }
}

fn image_engine<'a>(deployment: &'a Deployment, endpoint: &str) -> Result<&'a Arc<ImageEngine>> {
    match &deployment.backend {
        Some(Backend::Image(engine)) => Ok(engine),
        _ => Err(unserved(deployment, endpoint)),
    }
}

fn not_supported(model: &str, facts: &ImageFacts, endpoint: &str, instead: &str) -> HearthError {
    HearthError::InvalidRequest {
        message: format!(
            "the model `{model}` {} and does not serve {endpoint}; use {instead}",
            describe(facts)
        ),
        param: Some("model".to_owned()),
        code: Some("model_not_supported"),
    }
}

/// OpenAI's images response, with Hearth's `seed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesResponse {
    created: u64,
    data: Vec<ImageData>,
    background: &'static str,
    output_format: &'static str,
    quality: String,
    size: String,
    /// The seed of the first image (image i used seed + i): send it back to reproduce them.
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The server's address as the client reached it.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.config.public_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.config.bind.to_string(), str::to_owned);
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Encodes the results and answers in OpenAI's shape.
async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    images: Vec<RgbImage>,
    options: &Options,
    seed: Option<u64>,
) -> Result<Response> {
    let size = images
        .first()
        .map(|i| format!("{}x{}", i.width(), i.height()))
        .unwrap_or_default();
    let (format, quality) = (options.format, options.quality);
    let encoded = tokio::task::spawn_blocking(move || {
        images
            .iter()
            .map(|image| encode(image, format, quality))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| HearthError::Internal(format!("encoding task failed: {e}")))??;
    let data = match options.delivery {
        Delivery::Base64 => encoded
            .iter()
            .map(|bytes| ImageData {
                b64_json: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                url: None,
            })
            .collect(),
        Delivery::Url => {
            let files = state.images.clone();
            let keys = tokio::task::spawn_blocking(move || {
                encoded
                    .iter()
                    .map(|bytes| files.save(bytes, format))
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .map_err(|e| HearthError::Internal(format!("saving task failed: {e}")))??;
            let base = public_base(state, headers);
            keys.into_iter()
                .map(|key| ImageData {
                    b64_json: None,
                    url: Some(format!("{base}/v1/images/files/{key}")),
                })
                .collect()
        }
    };
    Ok(Json(ImagesResponse {
        created: crate::store::now_unix(),
        data,
        background: "opaque",
        output_format: options.format.as_str(),
        quality: options.quality_label.clone(),
        size,
        seed,
    })
    .into_response())
}

/// A diffusion request on its way to the worker.
struct DiffusionRun<'a> {
    engine: &'a DiffusionEngine,
    work: DiffusionWork,
    settings: &'a Diffusion,
    /// The streamed events' type prefix: `image_generation` or `image_edit`.
    events: &'static str,
}

/// Runs a diffusion request: the whole answer at the end, or (`stream`) each partial and
/// finished picture as a server-sent event as soon as it exists.
async fn run_diffusion(
    state: &AppState,
    identity: &Identity,
    deployment: &Deployment,
    headers: &HeaderMap,
    run: DiffusionRun<'_>,
    options: &Options,
) -> Result<Response> {
    let usage = UsageSink::new(state, identity, deployment.name());
    if !run.settings.stream {
        let images = image_diffusion::collect(run.engine, run.work).await?;
        usage.record_images(images.len() as u64);
        return respond(state, headers, images, options, Some(options.seed)).await;
    }
    if options.delivery == Delivery::Url {
        return Err(HearthError::invalid_param(
            "response_format",
            "a streamed image arrives as b64_json; omit response_format or set it to b64_json",
        ));
    }
    let mut events = run.engine.submit(run.work)?;
    let shape = EventShape {
        prefix: run.events,
        size: format!("{}x{}", run.settings.width, run.settings.height),
        quality: options.quality_label.clone(),
        output_format: options.format.as_str(),
    };
    let (format, quality) = (options.format, options.quality);
    let (sse, response) = super::sse::channel_response();
    tokio::spawn(async move {
        let mut finished = 0u64;
        loop {
            // A client that went away drops `events` at once, which cancels the rest of the
            // work at the worker's next step, not at the next picture.
            let event = tokio::select! {
                event = events.recv() => event,
                () = sse.closed() => None,
            };
            let Some(event) = event else { break };
            let (image, partial, picture) = match event {
                DiffusionEvent::Partial {
                    image,
                    index,
                    picture,
                } => (image, Some(index), picture),
                DiffusionEvent::Finished { image, picture } => (image, None, picture),
                DiffusionEvent::Failed(e) => {
                    sse.error(&e).await;
                    break;
                }
            };
            let encoded = tokio::task::spawn_blocking(move || encode(&picture, format, quality))
                .await
                .map_err(|e| HearthError::Internal(format!("encoding task failed: {e}")))
                .and_then(|r| r);
            let b64 = match encoded {
                Ok(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
                Err(e) => {
                    sse.error(&e).await;
                    break;
                }
            };
            let chunk = match partial {
                Some(index) => shape.partial(image, index, b64),
                None => {
                    finished += 1;
                    shape.completed(image, b64)
                }
            };
            // A client that went away drops `events`, which cancels the rest of the work.
            if !sse.json(&chunk).await {
                break;
            }
        }
        if finished > 0 {
            usage.record_images(finished);
        }
    });
    Ok(response)
}

#[utoipa::path(post, path = "/v1/images/generations", tag = "inference", security(("bearer" = [])),
    request_body = ImageGenerationRequest, params(ModelHeader),
    responses(
        (status = 200, body = ImagesResponse),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
/// Image generation. Extension: `seed` (integer) makes the images reproducible.
pub async fn generations(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    let headers = request.headers().clone();
    let resolved = super::inference::resolve_json(
        &state,
        &identity,
        request,
        &[ModelKind::Image],
        GENERATIONS,
    )
    .await?;
    let deployment = resolved.deployment;
    let engine = image_engine(deployment, GENERATIONS)?;
    let facts = engine.facts();
    if !facts.generates() {
        return Err(not_supported(&resolved.model, facts, GENERATIONS, EDITS));
    }
    let Value::Object(body) = resolved.body else {
        return Err(HearthError::invalid(
            "the request body must be a JSON object",
        ));
    };
    let params = Params(&body);
    let known: Vec<&str> = COMMON
        .iter()
        .chain(&GENERATION_ONLY)
        .chain(extensions(facts))
        .copied()
        .collect();
    params.only(&known, GENERATIONS)?;
    prompt(&params, true)?;
    let options = parse_options(&params, facts)?;
    if let Some(diffusion) = engine.diffusion() {
        let settings = image_diffusion::parse(
            &params,
            facts,
            &deployment.config.diffusion,
            options.size.as_deref(),
            None,
            diffusion.facts(),
        )?;
        let work = image_diffusion::work(&settings, options.seed, options.n, Start::Noise);
        let run = DiffusionRun {
            engine: diffusion,
            work,
            settings: &settings,
            events: "image_generation",
        };
        return run_diffusion(&state, &identity, deployment, &headers, run, &options).await;
    }
    if let Some(size) = &options.size
        && !facts.sizes.contains(size)
    {
        return Err(HearthError::invalid_param(
            "size",
            format!(
                "`{size}` is not a size this model makes; use auto or {}",
                facts.sizes.join(", ")
            ),
        ));
    }
    let seeds: Vec<u64> = (0..options.n as u64)
        .map(|i| options.seed.wrapping_add(i))
        .collect();
    let images = engine.generate(seeds).await?;
    UsageSink::new(&state, &identity, deployment.name()).record_images(images.len() as u64);
    respond(&state, &headers, images, &options, Some(options.seed)).await
}

#[utoipa::path(post, path = "/v1/images/edits", tag = "inference", security(("bearer" = [])),
    request_body(content((ImageEditForm = "multipart/form-data"), (ImageEditJson = "application/json"))),
    params(ModelHeader),
    responses(
        (status = 200, body = ImagesResponse),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
/// Image edit: a multipart form (`image` or `image[]`, optional `mask`), or a JSON body
/// with base64 or data-URL images.
pub async fn edits(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    let headers = request.headers().clone();
    let from_header = header_model(&headers)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let inputs = if is_json {
        read_json(request, &state).await?
    } else {
        read_multipart(request, &state).await?
    };
    let model = match from_header {
        Some(model) => model,
        None => Params(&inputs.params)
            .string("model")?
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                HearthError::invalid_param("model", "you must provide a model parameter")
            })?,
    };
    let deployment = admit(&state, &identity, &model, &[ModelKind::Image], EDITS)?;
    let engine = image_engine(deployment, EDITS)?;
    let facts = engine.facts();
    if !facts.edits() {
        return Err(not_supported(&model, facts, EDITS, GENERATIONS));
    }
    let ImageInputs {
        params,
        images,
        mask,
    } = inputs;
    let (options, originals, mask) = parse_edit(&params, facts, images, mask).await?;
    if let Some(diffusion) = engine.diffusion() {
        let params = Params(&params);
        let settings = image_diffusion::parse(
            &params,
            facts,
            &deployment.config.diffusion,
            options.size.as_deref(),
            Some(originals[0].dimensions()),
            diffusion.facts(),
        )?;
        let start = image_diffusion::edit_start(
            &settings,
            &originals[0],
            mask.as_ref(),
            diffusion.facts().inpainting,
        )?;
        let work = image_diffusion::work(&settings, options.seed, options.n, start);
        let run = DiffusionRun {
            engine: diffusion,
            work,
            settings: &settings,
            events: "image_edit",
        };
        return run_diffusion(&state, &identity, deployment, &headers, run, &options).await;
    }
    // The originals are needed again only to blend with a mask.
    let kept = mask.as_ref().map(|_| originals.clone());
    let upscaled = engine.upscale(originals).await?;
    let outputs: Vec<RgbImage> = match (mask, kept) {
        (Some(mask), Some(originals)) => tokio::task::spawn_blocking(move || {
            upscaled
                .iter()
                .zip(&originals)
                .map(|(edited, original)| blend(edited, original, &mask))
                .collect()
        })
        .await
        .map_err(|e| HearthError::Internal(format!("blending task failed: {e}")))?,
        _ => upscaled,
    };
    // The upscaler is deterministic: n > 1 repeats each result.
    let results: Vec<RgbImage> = outputs
        .into_iter()
        .flat_map(|image| std::iter::repeat_n(image, options.n))
        .collect();
    UsageSink::new(&state, &identity, deployment.name()).record_images(results.len() as u64);
    respond(&state, &headers, results, &options, None).await
}

/// Checks an edit's parameters and decodes its uploads (off the async threads).
async fn parse_edit(
    params: &Map<String, Value>,
    facts: &ImageFacts,
    images: Vec<(String, Vec<u8>)>,
    mask: Option<Vec<u8>>,
) -> Result<(Options, Vec<RgbImage>, Option<Mask>)> {
    let params = Params(params);
    let known: Vec<&str> = COMMON
        .iter()
        .chain(&EDIT_ONLY)
        .chain(extensions(facts))
        .copied()
        .collect();
    params.only(&known, EDITS)?;
    prompt(&params, facts.uses_prompt)?;
    let options = parse_options(&params, facts)?;
    if images.is_empty() {
        return Err(HearthError::invalid_param(
            "image",
            "you must provide an image (`image` or `image[]`)",
        ));
    }
    let max = facts.max_input_images.unwrap_or(1);
    if images.len() > max {
        return Err(HearthError::invalid_param(
            "image",
            format!(
                "{} images sent; this model takes at most {max}",
                images.len()
            ),
        ));
    }
    if images.len() * options.n > MAX_N as usize {
        return Err(HearthError::invalid_param(
            "n",
            format!(
                "{} images × n = {} results; at most {MAX_N} per request",
                images.len(),
                images.len() * options.n
            ),
        ));
    }
    let (originals, mask) = tokio::task::spawn_blocking(move || -> Result<_> {
        let originals = images
            .iter()
            .map(|(param, bytes)| decode_upload(bytes, param).map(|i| i.to_rgb8()))
            .collect::<Result<Vec<_>>>()?;
        let mask = mask
            .map(|bytes| decode_upload(&bytes, "mask").and_then(|m| Mask::from_image(&m)))
            .transpose()?;
        Ok((originals, mask))
    })
    .await
    .map_err(|e| HearthError::Internal(format!("decoding task failed: {e}")))??;
    if let Some(mask) = &mask {
        for (index, original) in originals.iter().enumerate() {
            if mask.dimensions() != original.dimensions() {
                let (mw, mh) = mask.dimensions();
                return Err(HearthError::invalid_param(
                    "mask",
                    format!(
                        "the mask is {mw}x{mh} but image {index} is {}x{}; they must be the same size",
                        original.width(),
                        original.height()
                    ),
                ));
            }
        }
    }
    let scale = facts.scale.unwrap_or(1);
    // A diffusion pipeline makes any size in its range from any picture (checked with its
    // other settings).
    if let Some(size) = options.size.as_ref().filter(|_| !facts.is_diffusion()) {
        for original in &originals {
            let makes = format!("{}x{}", original.width() * scale, original.height() * scale);
            if size != &makes {
                return Err(HearthError::invalid_param(
                    "size",
                    format!(
                        "`{size}` is not a size this model makes from a {}x{} image; use auto or {makes} (it upscales {scale}×)",
                        original.width(),
                        original.height()
                    ),
                ));
            }
        }
    }
    Ok((options, originals, mask))
}

#[utoipa::path(get, path = "/v1/images/files/{name}", tag = "inference",
    params(("name" = String, Path, description = "the file name from an image URL")),
    responses((status = 200, description = "The image"), (status = 404, body = ErrorEnvelope)))]
/// An image returned as a URL; needs no key (the name is the secret) and expires.
pub async fn file(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    let files = state.images.clone();
    let key = name.clone();
    let served = tokio::task::spawn_blocking(move || files.get(&key))
        .await
        .map_err(|e| HearthError::Internal(format!("file task failed: {e}")))?
        .ok_or_else(|| {
            HearthError::NotFound(format!(
                "no image `{name}`: it never existed or has expired"
            ))
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, served.format.mime().to_owned()),
            (
                header::CACHE_CONTROL,
                format!("private, max-age={}", served.remaining.as_secs()),
            ),
        ],
        served.bytes,
    )
        .into_response())
}
