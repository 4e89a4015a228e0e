//! The samplers through [`Scheduler`] on real tensors: with a network that knows the answer,
//! every deterministic sampler follows the noising trajectory exactly; plus the noise,
//! strength and ordering rules.

use burn::prelude::*;

use super::*;
use crate::read_back::read_back;

const SD: &str = r#""beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012"#;

fn config(extra: &str) -> SchedulerConfig {
    serde_json::from_str(&format!("{{{SD}{extra}}}")).unwrap()
}

fn tensor(values: [f32; 4]) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [1, 1, 2, 2]),
        &crate::cpu_device(),
    )
}

fn values(t: Tensor<4>) -> Vec<f32> {
    read_back(t, "test").unwrap()
}

fn assert_near(got: Tensor<4>, want: Tensor<4>, tolerance: f32, what: &str) {
    let (got, want) = (values(got), values(want));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= tolerance, "{what}: {got:?} vs {want:?}");
    }
}

/// What a perfect network predicts for a sample noised to (a, b) = `noise_levels` from `x0`
/// with `eps`: ε, v = α·ε − s·x₀ (α, s the variance-preserving scales), or x₀.
fn oracle(
    s: &Scheduler,
    prediction: &str,
    step: usize,
    x0: &Tensor<4>,
    eps: &Tensor<4>,
) -> Tensor<4> {
    let (a, b) = s.sampler.noise_levels(step);
    // Euler's (1, σ) is the variance-preserving (α, s) scaled by 1/α.
    let norm = (a * a + b * b).sqrt();
    let (alpha, sigma) = (a / norm, b / norm);
    match prediction {
        "epsilon" => eps.clone(),
        "v_prediction" => lincomb(eps.clone(), alpha, x0.clone(), -sigma),
        _ => x0.clone(),
    }
}

#[test]
fn deterministic_samplers_follow_the_trajectory_of_a_perfect_network() {
    let x0 = tensor([0.5, -1.0, 0.25, 2.0]);
    let eps = tensor([1.0, 0.3, -0.7, -1.5]);
    let cases = [
        (SamplerKind::Euler, ""),
        (SamplerKind::Euler, r#", "use_karras_sigmas": true"#),
        (
            SamplerKind::Ddim,
            r#", "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": false"#,
        ),
        (SamplerKind::DpmSolverMultistep, ""),
        (
            SamplerKind::DpmSolverMultistep,
            r#", "solver_order": 3, "use_karras_sigmas": true"#,
        ),
        (
            SamplerKind::DpmSolverMultistep,
            r#", "solver_type": "heun", "final_sigmas_type": "sigma_min", "algorithm_type": "dpmsolver""#,
        ),
    ];
    for (kind, extra) in cases {
        for prediction in ["epsilon", "v_prediction", "sample"] {
            let label = format!("{kind:?}{extra} {prediction}");
            let mut s = Scheduler::new(
                &config(&format!(r#"{extra}, "prediction_type": "{prediction}""#)),
                kind,
                12,
            )
            .unwrap();
            let mut x = s.add_noise(x0.clone(), eps.clone(), 0);
            for step in 0..s.len() {
                assert!(!s.needs_noise(step));
                let out = oracle(&s, prediction, step, &x0, &eps);
                let result = s.step(out, step, x, None).unwrap();
                assert_near(result.denoised, x0.clone(), 2e-4, &label);
                x = result.prev_sample;
                if step + 1 < s.len() {
                    let want = s.add_noise(x0.clone(), eps.clone(), step + 1);
                    assert_near(x.clone(), want, 2e-4, &format!("{label} step {step}"));
                }
            }
            // The last step lands on σ = 0 (DDIM: ᾱ = 1), except with a sigma_min final sigma.
            if !extra.contains("sigma_min") {
                assert_near(x, x0.clone(), 2e-4, &label);
            }
        }
    }
}

#[test]
fn noise_is_required_where_the_sampler_adds_it() {
    let zeros = || tensor([0.0; 4]);
    let mut a = Scheduler::new(&config(""), SamplerKind::EulerAncestral, 4).unwrap();
    assert_eq!(
        (0..4).map(|i| a.needs_noise(i)).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    let err = a.step(zeros(), 0, zeros(), None).unwrap_err();
    assert!(err.to_string().contains("needs noise"), "{err}");
    a.step(zeros(), 3, zeros(), None).unwrap();
    let lcm = Scheduler::new(&config(""), SamplerKind::Lcm, 4).unwrap();
    assert_eq!(
        (0..4).map(|i| lcm.needs_noise(i)).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    let mut ddim = Scheduler::new(&config(""), SamplerKind::Ddim, 4).unwrap();
    assert!(!ddim.needs_noise(0));
    ddim.set_eta(1.0).unwrap();
    assert!(ddim.needs_noise(0) && !ddim.needs_noise(3));
    assert!(ddim.set_eta(-0.5).is_err());
    let sde = Scheduler::new(
        &config(r#", "algorithm_type": "sde-dpmsolver++""#),
        SamplerKind::DpmSolverMultistep,
        4,
    )
    .unwrap();
    assert!(sde.needs_noise(0) && !sde.needs_noise(3));
}

#[test]
fn strength_starts_part_way_and_resets_the_history() {
    let mut s = Scheduler::new(&config(""), SamplerKind::DpmSolverMultistep, 50).unwrap();
    // ⌊50·0.3⌋ = 15 steps left: start at 35.
    assert_eq!(s.start_at(0.3).unwrap(), 35);
    assert_eq!(s.begin(), 35);
    assert_eq!(s.start_at(1.0).unwrap(), 0);
    assert!(s.start_at(0.01).is_err());
    assert!(s.start_at(1.5).is_err() && s.start_at(f64::NAN).is_err());
    let zeros = || tensor([0.0; 4]);
    s.start_at(0.5).unwrap();
    s.step(zeros(), 25, zeros(), None).unwrap();
    let skipped = s.step(zeros(), 27, zeros(), None).unwrap_err();
    assert!(skipped.to_string().contains("in order"), "{skipped}");
    s.start_at(0.5).unwrap();
    s.step(zeros(), 25, zeros(), None).unwrap();
    assert!(s.step(zeros(), 50, zeros(), None).is_err());
}

#[test]
fn euler_scales_the_input_and_the_others_do_not() {
    let euler = Scheduler::new(&config(""), SamplerKind::Euler, 10).unwrap();
    let sigma = euler.sigmas().unwrap()[0];
    let x = tensor([1.0, 2.0, 3.0, 4.0]);
    let scaled = values(euler.scale_model_input(x.clone(), 0));
    assert!((scaled[3] - (4.0 / (sigma * sigma + 1.0).sqrt()) as f32).abs() < 1e-6);
    assert_eq!(euler.init_noise_sigma(), sigma);
    let ddim = Scheduler::new(&config(""), SamplerKind::Ddim, 10).unwrap();
    assert_eq!(values(ddim.scale_model_input(x, 0)), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(ddim.init_noise_sigma(), 1.0);
    assert!(ddim.sigmas().is_none());
}

#[test]
fn sampler_names_and_classes() {
    for kind in SamplerKind::ALL {
        assert_eq!(SamplerKind::parse(kind.name()).unwrap(), kind);
        assert_eq!(SamplerKind::from_class_name(kind.class_name()), Some(kind));
    }
    assert_eq!(
        SamplerKind::parse("Euler-A").unwrap(),
        SamplerKind::EulerAncestral
    );
    assert_eq!(
        SamplerKind::parse("dpmpp_2m").unwrap(),
        SamplerKind::DpmSolverMultistep
    );
    assert!(
        SamplerKind::parse("plms")
            .unwrap_err()
            .to_string()
            .contains("dpm++_2m")
    );
    assert_eq!(
        SamplerKind::from_class_name("PNDMScheduler"),
        Some(SamplerKind::DpmSolverMultistep)
    );
    assert_eq!(
        SamplerKind::from_class_name("LMSDiscreteScheduler"),
        Some(SamplerKind::Euler)
    );
    assert_eq!(
        SamplerKind::from_class_name("FlowMatchEulerDiscreteScheduler"),
        None
    );
}

#[test]
fn step_counts_and_settings_are_checked() {
    assert!(Scheduler::new(&config(""), SamplerKind::Euler, 0).is_err());
    assert!(Scheduler::new(&config(""), SamplerKind::Ddim, 1001).is_err());
    let bad = Scheduler::new(&config(r#", "thresholding": true"#), SamplerKind::Ddim, 4)
        .unwrap_err()
        .to_string();
    assert!(bad.contains("thresholding"), "{bad}");
    let one = Scheduler::new(&config(""), SamplerKind::DpmSolverMultistep, 1).unwrap();
    assert_eq!(one.timesteps(), [999.0]);
}
