//! A diffusers `scheduler/scheduler_config.json`, as written: every parameter optional, unknown
//! keys ignored. What an absent parameter means depends on the class (see [`super::resolve`]),
//! so the defaults are applied when a sampler is built, not here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::python_json::sanitize;
use crate::ModelError;
use crate::json::read_file;

/// The parameters of a diffusers scheduler that the samplers read. `None` means "absent from
/// the file": the diffusers default of the class in `_class_name` where that class has the
/// parameter (so picking another sampler behaves like diffusers'
/// `OtherScheduler.from_config(pipe.scheduler.config)`), else the default of the sampler being
/// built.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// The file this was read from, named in errors (`None` when built in memory).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// `_class_name`: the diffusers class that wrote the file (`EulerDiscreteScheduler`, …).
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Length of the training schedule (1000).
    pub num_train_timesteps: Option<usize>,
    /// First beta of the training schedule.
    #[serde(default, deserialize_with = "python_float")]
    pub beta_start: Option<f64>,
    /// Last beta of the training schedule.
    #[serde(default, deserialize_with = "python_float")]
    pub beta_end: Option<f64>,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: Option<String>,
    /// Explicit betas, overriding `beta_start`/`beta_end`/`beta_schedule`.
    pub trained_betas: Option<Vec<f64>>,
    /// What the network predicts: `epsilon`, `v_prediction` or `sample`.
    pub prediction_type: Option<String>,
    /// How inference timesteps are picked: `linspace`, `leading` or `trailing`.
    pub timestep_spacing: Option<String>,
    /// Added to `leading` timesteps (SD 1.x ships 1).
    pub steps_offset: Option<usize>,
    /// DDIM/LCM: whether the step past the last one has ᾱ = 1 (else ᾱ₀).
    pub set_alpha_to_one: Option<bool>,
    /// DDIM/LCM: clamp the predicted x₀ to ±`clip_sample_range`.
    pub clip_sample: Option<bool>,
    /// DDIM/LCM: the clamp bound.
    #[serde(default, deserialize_with = "python_float")]
    pub clip_sample_range: Option<f64>,
    /// Dynamic thresholding of x₀ (Imagen); not supported, so `true` is an error.
    pub thresholding: Option<bool>,
    /// Euler: `linear` or `log_linear` interpolation of the sigmas.
    pub interpolation_type: Option<String>,
    /// Euler/DPM-Solver: the Karras et al. (2022) sigma ramp.
    pub use_karras_sigmas: Option<bool>,
    /// Euler/DPM-Solver: sigmas evenly spaced in log σ.
    pub use_exponential_sigmas: Option<bool>,
    /// Euler/DPM-Solver: beta-distribution sigmas; not supported, so `true` is an error.
    pub use_beta_sigmas: Option<bool>,
    /// DPM-Solver: steps evenly spaced in λ = −log σ.
    pub use_lu_lambdas: Option<bool>,
    /// DPM-Solver: flow-matching sigmas; not supported, so `true` is an error.
    pub use_flow_sigmas: Option<bool>,
    /// Euler: the smallest sigma of a Karras/exponential ramp (default: the schedule's).
    #[serde(default, deserialize_with = "python_float")]
    pub sigma_min: Option<f64>,
    /// Euler: the largest sigma of a Karras/exponential ramp (default: the schedule's).
    #[serde(default, deserialize_with = "python_float")]
    pub sigma_max: Option<f64>,
    /// Euler: `discrete`, or `continuous` (timesteps 0.25·ln σ with v-prediction).
    pub timestep_type: Option<String>,
    /// Euler/DPM-Solver: the sigma after the last step, `zero` or `sigma_min`.
    pub final_sigmas_type: Option<String>,
    /// DPM-Solver: 1, 2 or 3.
    pub solver_order: Option<usize>,
    /// DPM-Solver: `dpmsolver++`, `sde-dpmsolver++` or `dpmsolver`.
    pub algorithm_type: Option<String>,
    /// DPM-Solver: `midpoint` or `heun`.
    pub solver_type: Option<String>,
    /// DPM-Solver: first-order steps at the end of short (< 15 step) runs.
    pub lower_order_final: Option<bool>,
    /// DPM-Solver: a first-order last step whatever the length.
    pub euler_at_final: Option<bool>,
    /// DPM-Solver: drop the timesteps whose λ is below this (−∞: none).
    #[serde(default, deserialize_with = "python_float")]
    pub lambda_min_clipped: Option<f64>,
    /// DPM-Solver: `learned`/`learned_range` outputs carry a variance; not supported.
    pub variance_type: Option<String>,
    /// LCM: the length of the distillation schedule the steps are picked from (50).
    pub original_inference_steps: Option<usize>,
    /// LCM: the timestep scale of its boundary-condition scalings (10).
    #[serde(default, deserialize_with = "python_float")]
    pub timestep_scaling: Option<f64>,
    /// Rescale the betas to zero terminal SNR (Lin et al. 2023).
    pub rescale_betas_zero_snr: Option<bool>,
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json`. Python's `json` module writes `-Infinity` (DPM-Solver's
    /// default `lambda_min_clipped`), `Infinity` and `NaN`, which are not JSON: they are read as
    /// the floats they stand for.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = String::from_utf8_lossy(&read_file(path)?).into_owned();
        let sanitized = sanitize(&text);
        let mut deserializer = serde_json::Deserializer::from_str(&sanitized);
        let mut config: Self =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                ModelError::Config {
                    path: path.to_path_buf(),
                    field: err.path().to_string(),
                    reason: err.inner().to_string(),
                }
            })?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// An error about `field` of this config.
    pub(crate) fn error(&self, field: &str, reason: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("scheduler_config.json")),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A float as Python writes it: a number, `null`, or (after [`sanitize`]) one of the strings
/// `"Infinity"`, `"-Infinity"`, `"NaN"`.
fn python_float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum PyFloat {
        Number(f64),
        Word(String),
    }
    match Option::<PyFloat>::deserialize(deserializer)? {
        None => Ok(None),
        Some(PyFloat::Number(x)) => Ok(Some(x)),
        Some(PyFloat::Word(word)) => match word.as_str() {
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            "NaN" => Ok(Some(f64::NAN)),
            other => Err(serde::de::Error::custom(format!(
                "expected a number, found the string {other:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_diffusers_file_with_python_infinities_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler_config.json");
        std::fs::write(
            &path,
            r#"{"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.21.0",
                "beta_start": 0.00085, "beta_end": 0.012, "lambda_min_clipped": -Infinity,
                "trained_betas": null, "skip_prk_steps": true, "solver_order": 2}"#,
        )
        .unwrap();
        let config = SchedulerConfig::load(&path).unwrap();
        assert_eq!(
            config.class_name.as_deref(),
            Some("DPMSolverMultistepScheduler")
        );
        assert_eq!(config.lambda_min_clipped, Some(f64::NEG_INFINITY));
        assert_eq!(config.beta_start, Some(0.00085));
        assert_eq!(config.solver_order, Some(2));
        assert!(config.trained_betas.is_none() && config.timestep_spacing.is_none());
        assert_eq!(config.path.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn a_wrong_type_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler_config.json");
        std::fs::write(&path, r#"{"num_train_timesteps": "many"}"#).unwrap();
        let err = SchedulerConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("scheduler_config.json") && err.contains("num_train_timesteps"),
            "{err}"
        );
        let missing = SchedulerConfig::load(&dir.path().join("absent.json")).unwrap_err();
        assert!(
            matches!(missing, ModelError::MissingFile { .. }),
            "{missing}"
        );
    }
}
