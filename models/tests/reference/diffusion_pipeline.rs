//! Whole pipelines of the two tiny diffusers folders against the numpy reference
//! (`models/scripts/generate_diffusion_reference.py`): text to image with Euler, DDIM and a
//! single SD-Turbo-style step without guidance, img2img, inpainting with a 9-channel UNet
//! and by latent blending, each from the reference's own initial noise; and batching, where
//! images at different steps share UNet calls and come out as they do alone.

use burn::prelude::*;
use hearth_models::diffusion::pipeline::{
    DiffusionPipeline, ImageRequest, LoadOptions, Mask, Noise, Picture, Start,
};
use hearth_models::diffusion::scheduler::{SamplerKind, SchedulerConfig};
use serde::Deserialize;

use crate::common::{self, max_abs_diff};
use crate::diffusion_models::Tolerances;

#[derive(Deserialize)]
struct Run {
    name: String,
    pipeline: String,
    mode: String,
    scheduler: serde_json::Value,
    prompt: String,
    negative_prompt: String,
    guidance_scale: f64,
    steps: usize,
    #[serde(default)]
    strength: Option<f64>,
    height: usize,
    width: usize,
    initial_noise: Vec<f32>,
    image: Option<Vec<f32>>,
    mask: Option<Vec<f32>>,
    final_latents: Vec<f32>,
    decoded: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture {
    tolerances: Tolerances,
    pipelines: Vec<Run>,
}

fn fixture() -> Fixture {
    let path = common::fixture("diffusion_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// The reference's `[1, 3, h, w]` picture in −1..1, back to the bytes it was made from.
fn picture(values: &[f32], width: usize, height: usize) -> Picture {
    let plane = width * height;
    let mut rgb = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        for c in 0..3 {
            let byte = ((values[c * plane + i] + 1.0) * 127.5).round();
            assert!(
                ((byte / 127.5 - 1.0) - values[c * plane + i]).abs() < 1e-6,
                "the reference picture is not 8-bit"
            );
            rgb.push(byte as u8);
        }
    }
    Picture { width, height, rgb }
}

fn mask(values: &[f32], width: usize, height: usize) -> Mask {
    Mask {
        width,
        height,
        grey: values
            .iter()
            .map(|&v| if v >= 0.5 { 255 } else { 0 })
            .collect(),
    }
}

fn prepare(run: &Run) -> (DiffusionPipeline, ImageRequest) {
    let device = common::test_device();
    let editing = run.mode != "text2img";
    let mut pipeline = DiffusionPipeline::load(
        &common::fixture(&run.pipeline),
        &device,
        LoadOptions { encoder: editing },
    )
    .expect("pipeline");
    let config: SchedulerConfig =
        serde_json::from_value(run.scheduler.clone()).expect("scheduler config");
    let sampler = SamplerKind::from_class_name(config.class_name.as_deref().expect("_class_name"))
        .expect("sampler");
    pipeline.set_scheduler(config);
    let strength = run.strength.unwrap_or(1.0);
    let start = match run.mode.as_str() {
        "text2img" => Start::Noise,
        "img2img" => Start::Picture {
            picture: picture(run.image.as_ref().expect("image"), run.width, run.height),
            strength,
        },
        "inpaint" => Start::Inpaint {
            picture: picture(run.image.as_ref().expect("image"), run.width, run.height),
            mask: mask(run.mask.as_ref().expect("mask"), run.width, run.height),
            strength,
        },
        other => panic!("mode {other}"),
    };
    let request = ImageRequest {
        prompt: run.prompt.clone(),
        negative_prompt: run.negative_prompt.clone(),
        width: run.width,
        height: run.height,
        steps: run.steps,
        guidance_scale: run.guidance_scale,
        sampler,
        clip_skip: 0,
        noise: Noise::Given(run.initial_noise.clone()),
        start,
    };
    (pipeline, request)
}

fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().expect("f32 values")
}

#[test]
fn every_reference_run_ends_where_numpy_does() {
    let fixture = fixture();
    assert!(fixture.pipelines.len() >= 6);
    for run in &fixture.pipelines {
        let (pipeline, request) = prepare(run);
        let mut job = pipeline.start(&request).expect("start");
        while !job.is_done() {
            pipeline.step(&mut [&mut job]).expect("step");
        }
        let latent = values(job.latent().clone());
        let error = max_abs_diff(&latent, &run.final_latents);
        let decoded = values(pipeline.decode_raw(job.latent().clone()));
        let image_error = max_abs_diff(&decoded, &run.decoded);
        eprintln!(
            "{}: {} steps, latent max |error| {error:e}, decoded {image_error:e}",
            run.name,
            job.total_steps()
        );
        let tolerance = fixture.tolerances.pipeline;
        assert!(error <= tolerance, "{}: latent {error}", run.name);
        assert!(
            image_error <= tolerance,
            "{}: decoded {image_error}",
            run.name
        );
        let pictures = pipeline.decode(&[job.latent().clone()]).expect("pictures");
        assert_eq!(
            (pictures[0].width, pictures[0].height),
            (run.width, run.height)
        );
    }
}

#[test]
fn images_batched_at_different_steps_come_out_as_they_do_alone() {
    let fixture = fixture();
    let runs: Vec<&Run> = fixture
        .pipelines
        .iter()
        .filter(|r| r.pipeline == "tiny-sd" && r.mode == "text2img" && r.steps > 1)
        .collect();
    assert!(runs.len() >= 2, "two multi-step text-to-image runs");
    let (pipeline, first) = prepare(runs[0]);
    let mut second = first.clone();
    second.prompt = runs[1].prompt.clone();
    second.negative_prompt = runs[1].negative_prompt.clone();
    second.guidance_scale = runs[1].guidance_scale;
    second.noise = Noise::Given(runs[1].initial_noise.clone());
    let alone: Vec<Vec<f32>> = [&first, &second]
        .iter()
        .map(|request| {
            let mut job = pipeline.start(request).expect("start");
            while !job.is_done() {
                pipeline.step(&mut [&mut job]).expect("step");
            }
            values(job.latent().clone())
        })
        .collect();
    let mut a = pipeline.start(&first).expect("start");
    let mut b = pipeline.start(&second).expect("start");
    pipeline.step(&mut [&mut a]).expect("a's first step alone");
    while !a.is_done() {
        pipeline.step(&mut [&mut a, &mut b]).expect("batched step");
    }
    while !b.is_done() {
        pipeline.step(&mut [&mut b]).expect("b's last step");
    }
    let tolerance = fixture.tolerances.pipeline;
    for (job, want) in [(&a, &alone[0]), (&b, &alone[1])] {
        let error = max_abs_diff(&values(job.latent().clone()), want);
        assert!(error <= tolerance, "batched vs alone: {error}");
    }
}

#[test]
fn sizes_outside_the_limits_are_refused_with_the_limits() {
    let fixture = fixture();
    let (pipeline, mut request) = prepare(&fixture.pipelines[0]);
    let limits = pipeline.size_limits();
    for (width, height) in [
        (limits.multiple + 3, 16),
        (limits.max + limits.multiple, 16),
        (0, 16),
    ] {
        request.width = width;
        request.height = height;
        let error = pipeline.start(&request).expect_err("bad size").to_string();
        assert!(
            error.contains("width") && error.contains(&limits.max.to_string()),
            "{error}"
        );
    }
}
