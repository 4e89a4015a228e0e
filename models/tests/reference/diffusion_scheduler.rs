//! The diffusion samplers against `fixtures/diffusion_reference.json`'s `schedulers`: a numpy
//! reimplementation of diffusers' schedulers (`models/scripts/generate_diffusion_reference.py`,
//! checked against diffusers itself by `check_diffusion_reference_with_diffusers.py`) driven by
//! a synthetic model, `out = 0.3·x_in·cos(t/300) + 0.05·sin(t/100)`, from a fixed start. Each
//! case's config is the diffusers `scheduler_config.json` object, so the sampler is picked by
//! its `_class_name` and every default is resolved as from a file. Runs on
//! `common::test_device()`.

use std::path::Path;

use hearth_models::Device;
use hearth_models::diffusion::scheduler::{SamplerKind, Scheduler, SchedulerConfig};

use burn::prelude::*;
use serde::Deserialize;

use crate::common;

#[derive(Deserialize)]
struct Fixture {
    tolerances: Tolerances,
    schedulers: Vec<Case>,
}

#[derive(Deserialize)]
struct Tolerances {
    scheduler: f32,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    config: serde_json::Value,
    steps: usize,
    timesteps: Vec<f64>,
    /// Empty or absent for the samplers without sigmas (DDIM, LCM).
    sigmas: Option<Vec<f64>>,
    init_noise_sigma: f64,
    shape: Vec<usize>,
    initial: Vec<f32>,
    noises: Option<Vec<Vec<f32>>>,
    #[serde(rename = "final")]
    last: Vec<f32>,
}

fn fixture() -> Fixture {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusion_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn tensor(values: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// The fixture's synthetic network.
fn synthetic_model(x_in: Tensor<4>, t: f64) -> Tensor<4> {
    x_in.mul_scalar(0.3 * (t / 300.0).cos())
        .add_scalar(0.05 * (t / 100.0).sin())
}

/// Runs `case` from its initial sample; returns the final sample.
fn run(case: &Case, scheduler: &mut Scheduler, device: &Device) -> Vec<f32> {
    let shape: [usize; 4] = case.shape.clone().try_into().expect("4-d shape");
    let mut x = tensor(&case.initial, shape, device).mul_scalar(scheduler.init_noise_sigma());
    for step in 0..scheduler.len() {
        let t = scheduler.timesteps()[step];
        let out = synthetic_model(scheduler.scale_model_input(x.clone(), step), t);
        let noise = scheduler.needs_noise(step).then(|| {
            let noises = case.noises.as_ref().expect("the fixture has noises");
            tensor(&noises[step], shape, device)
        });
        x = scheduler
            .step(out, step, x, noise)
            .unwrap_or_else(|e| panic!("{}: step {step}: {e}", case.name))
            .prev_sample;
    }
    x.into_data().try_to_vec::<f32>().expect("f32 sample")
}

#[test]
fn samplers_match_the_reference_trajectories() {
    let fixture = fixture();
    let device = common::test_device();
    assert!(fixture.schedulers.len() >= 5, "too few scheduler cases");
    let mut kinds = Vec::new();
    for case in &fixture.schedulers {
        let name = &case.name;
        let config: SchedulerConfig =
            serde_json::from_value(case.config.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let class = config.class_name.as_deref().expect("_class_name");
        let kind = SamplerKind::from_class_name(class).expect("a class we implement");
        assert_eq!(kind.class_name(), class, "{name}: a class we reproduce");
        kinds.push(kind);
        let mut scheduler =
            Scheduler::new(&config, kind, case.steps).unwrap_or_else(|e| panic!("{name}: {e}"));

        assert_eq!(scheduler.len(), case.timesteps.len(), "{name}: steps");
        for (got, want) in scheduler.timesteps().iter().zip(&case.timesteps) {
            assert!(
                (got - want).abs() <= 1e-3,
                "{name}: timesteps {:?} vs {:?}",
                scheduler.timesteps(),
                case.timesteps
            );
        }
        match case.sigmas.as_deref().filter(|s| !s.is_empty()) {
            Some(want) => {
                let got = scheduler
                    .sigmas()
                    .unwrap_or_else(|| panic!("{name}: no sigmas"));
                assert_eq!(got.len(), want.len(), "{name}: sigmas");
                for (g, w) in got.iter().zip(want) {
                    // The fixture's sigmas are f32 (diffusers keeps them so).
                    assert!(
                        (g - w).abs() <= 1e-5 * w.max(1.0),
                        "{name}: sigmas {got:?} vs {want:?}"
                    );
                }
            }
            None => assert!(scheduler.sigmas().is_none(), "{name}: unexpected sigmas"),
        }
        let init = scheduler.init_noise_sigma();
        assert!(
            (init - case.init_noise_sigma).abs() <= 1e-6 * case.init_noise_sigma,
            "{name}: init_noise_sigma {init} vs {}",
            case.init_noise_sigma
        );

        let last = run(case, &mut scheduler, &device);
        let worst = common::max_abs_diff(&last, &case.last);
        eprintln!("scheduler {name}: max |error| {worst:e}");
        assert!(
            worst <= fixture.tolerances.scheduler,
            "{name}: final sample off by {worst}"
        );
    }
    for kind in SamplerKind::ALL {
        assert!(kinds.contains(&kind), "no reference case for {kind:?}");
    }
}

#[test]
fn img2img_strength_starts_at_diffusers_step() {
    // diffusers' get_timesteps: 4 steps at strength 0.5 run timesteps[2..]; 0.3 of 50 runs 15.
    let config: SchedulerConfig =
        serde_json::from_value(fixture().schedulers[0].config.clone()).expect("config");
    let mut euler = Scheduler::new(&config, SamplerKind::Euler, 4).expect("scheduler");
    assert_eq!(euler.start_at(0.5).expect("strength"), 2);
    let mut fifty = Scheduler::new(&config, SamplerKind::Euler, 50).expect("scheduler");
    assert_eq!(fifty.start_at(0.3).expect("strength"), 35);
    assert!(fifty.start_at(0.0).is_err());
}
