//! Turns a [`SchedulerConfig`] into the typed settings one sampler reads, applying diffusers'
//! defaults. A parameter absent from the file takes the default of the class that wrote it
//! (`_class_name`) where that class has the parameter — diffusers'
//! `OtherScheduler.from_config(pipe.scheduler.config)` carries the writer's filled-in config
//! over — and otherwise the default of the sampler being built. So SD 1.5's `PNDMScheduler`
//! file run with Euler spaces its timesteps `leading`, as diffusers does.
//!
//! Each sampler resolves only the parameters its diffusers class has; the others are ignored
//! as diffusers ignores them, so a bad value only fails where it is used.

use super::SamplerKind;
use super::config::SchedulerConfig;
use crate::ModelError;

/// How the betas of the training schedule are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredCosCapV2,
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prediction {
    Epsilon,
    Velocity,
    Sample,
}

/// How the inference timesteps are picked from the training range (Lin et al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

/// Defaults of one diffusers class for the parameters whose defaults differ between classes;
/// `None` where the class has no such parameter.
#[derive(Debug, Clone, Copy)]
struct ClassDefaults {
    beta_start: f64,
    beta_end: f64,
    beta_schedule: &'static str,
    timestep_spacing: Option<&'static str>,
    set_alpha_to_one: Option<bool>,
    clip_sample: Option<bool>,
    lower_order_final: Option<bool>,
}

/// The common case: `linear` betas from 1e-4 to 0.02, `linspace` spacing.
const BASE: ClassDefaults = ClassDefaults {
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    timestep_spacing: Some("linspace"),
    set_alpha_to_one: None,
    clip_sample: None,
    lower_order_final: None,
};

/// The defaults of diffusers' `name` class, for the classes we know.
fn class_defaults(name: &str) -> Option<ClassDefaults> {
    let leading = Some("leading");
    let sd_betas = |schedule| ClassDefaults {
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: schedule,
        ..BASE
    };
    Some(match name {
        "EulerDiscreteScheduler" | "EulerAncestralDiscreteScheduler" | "LMSDiscreteScheduler" => {
            BASE
        }
        "DDIMScheduler" => ClassDefaults {
            timestep_spacing: leading,
            set_alpha_to_one: Some(true),
            clip_sample: Some(true),
            ..BASE
        },
        "DDPMScheduler" => ClassDefaults {
            timestep_spacing: leading,
            clip_sample: Some(true),
            ..BASE
        },
        "PNDMScheduler" => ClassDefaults {
            timestep_spacing: leading,
            set_alpha_to_one: Some(false),
            ..BASE
        },
        "DPMSolverMultistepScheduler" | "UniPCMultistepScheduler" | "DEISMultistepScheduler" => {
            ClassDefaults {
                lower_order_final: Some(true),
                ..BASE
            }
        }
        "DPMSolverSinglestepScheduler" => ClassDefaults {
            timestep_spacing: None,
            lower_order_final: Some(false),
            ..BASE
        },
        "HeunDiscreteScheduler" => ClassDefaults {
            clip_sample: Some(false),
            ..sd_betas("linear")
        },
        "KDPM2DiscreteScheduler" | "KDPM2AncestralDiscreteScheduler" => sd_betas("linear"),
        "LCMScheduler" | "TCDScheduler" => ClassDefaults {
            timestep_spacing: leading,
            set_alpha_to_one: Some(true),
            clip_sample: Some(false),
            ..sd_betas("scaled_linear")
        },
        _ => return None,
    })
}

/// The settings of `config` as the `kind` sampler reads them.
#[derive(Debug)]
pub(crate) struct Resolve<'a> {
    pub config: &'a SchedulerConfig,
    source: Option<ClassDefaults>,
    target: ClassDefaults,
}

impl<'a> Resolve<'a> {
    pub fn new(config: &'a SchedulerConfig, kind: SamplerKind) -> Self {
        let target = class_defaults(kind.class_name()).unwrap_or(BASE);
        let source = config.class_name.as_deref().and_then(class_defaults);
        Self {
            config,
            source,
            target,
        }
    }

    /// An error about `field`.
    pub fn error(&self, field: &str, reason: impl Into<String>) -> ModelError {
        self.config.error(field, reason)
    }

    /// `pick(source)` where the writing class has the parameter, else `pick(target)`.
    fn class_default<T>(&self, pick: impl Fn(&ClassDefaults) -> Option<T>) -> Option<T> {
        self.source
            .as_ref()
            .and_then(&pick)
            .or_else(|| pick(&self.target))
    }

    pub fn num_train_timesteps(&self) -> Result<usize, ModelError> {
        let n = self.config.num_train_timesteps.unwrap_or(1000);
        if n < 2 {
            return Err(self.error("num_train_timesteps", format!("{n} is below 2")));
        }
        Ok(n)
    }

    pub fn beta_start(&self) -> f64 {
        self.config.beta_start.unwrap_or_else(|| {
            self.class_default(|d| Some(d.beta_start))
                .unwrap_or(BASE.beta_start)
        })
    }

    pub fn beta_end(&self) -> f64 {
        self.config.beta_end.unwrap_or_else(|| {
            self.class_default(|d| Some(d.beta_end))
                .unwrap_or(BASE.beta_end)
        })
    }

    pub fn beta_schedule(&self) -> Result<BetaSchedule, ModelError> {
        let default = self
            .class_default(|d| Some(d.beta_schedule))
            .unwrap_or("linear");
        match self.config.beta_schedule.as_deref().unwrap_or(default) {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "squaredcos_cap_v2" => Ok(BetaSchedule::SquaredCosCapV2),
            other => Err(self.unknown(
                "beta_schedule",
                other,
                "linear, scaled_linear or squaredcos_cap_v2",
            )),
        }
    }

    pub fn prediction(&self) -> Result<Prediction, ModelError> {
        match self.config.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::Velocity),
            // diffusers still accepts the old name in places.
            "sample" | "original_sample" => Ok(Prediction::Sample),
            other => Err(self.unknown("prediction_type", other, "epsilon, v_prediction or sample")),
        }
    }

    pub fn spacing(&self) -> Result<Spacing, ModelError> {
        let default = self
            .class_default(|d| d.timestep_spacing)
            .unwrap_or("linspace");
        match self.config.timestep_spacing.as_deref().unwrap_or(default) {
            "linspace" => Ok(Spacing::Linspace),
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            other => Err(self.unknown("timestep_spacing", other, "linspace, leading or trailing")),
        }
    }

    pub fn steps_offset(&self) -> usize {
        self.config.steps_offset.unwrap_or(0)
    }

    pub fn set_alpha_to_one(&self) -> bool {
        self.config
            .set_alpha_to_one
            .unwrap_or_else(|| self.class_default(|d| d.set_alpha_to_one).unwrap_or(true))
    }

    /// The clamp bound of x₀ when `clip_sample` is on.
    pub fn clip_range(&self) -> Result<Option<f64>, ModelError> {
        let on = self
            .config
            .clip_sample
            .unwrap_or_else(|| self.class_default(|d| d.clip_sample).unwrap_or(false));
        if !on {
            return Ok(None);
        }
        let range = self.config.clip_sample_range.unwrap_or(1.0);
        if range.is_nan() || range <= 0.0 {
            return Err(self.error("clip_sample_range", format!("{range} is not positive")));
        }
        Ok(Some(range))
    }

    pub fn lower_order_final(&self) -> bool {
        self.config
            .lower_order_final
            .unwrap_or_else(|| self.class_default(|d| d.lower_order_final).unwrap_or(true))
    }

    pub fn rescale_zero_snr(&self) -> bool {
        self.config.rescale_betas_zero_snr.unwrap_or(false)
    }

    /// `final_sigmas_type`: whether the last step lands on σ = 0 (`zero`, the default) rather
    /// than the schedule's smallest sigma (`sigma_min`).
    pub fn final_sigma_zero(&self) -> Result<bool, ModelError> {
        match self.config.final_sigmas_type.as_deref().unwrap_or("zero") {
            "zero" => Ok(true),
            "sigma_min" => Ok(false),
            other => Err(self.unknown("final_sigmas_type", other, "zero or sigma_min")),
        }
    }

    /// An error unless the boolean `field` is off: an option we do not implement.
    pub fn reject(&self, field: &str, value: Option<bool>, why: &str) -> Result<(), ModelError> {
        if value == Some(true) {
            return Err(self.error(field, format!("true is not supported: {why}")));
        }
        Ok(())
    }

    /// The error for a string parameter with a value we do not know.
    pub fn unknown(&self, field: &str, value: &str, expected: &str) -> ModelError {
        self.error(
            field,
            format!("unknown value {value:?} (expected {expected})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> SchedulerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn absent_parameters_take_the_writing_class_defaults() {
        // SD 1.5 ships PNDM without timestep_spacing: diffusers' from_config carries PNDM's
        // "leading" over to Euler, and PNDM's set_alpha_to_one=false to DDIM.
        let sd15 = config(r#"{"_class_name": "PNDMScheduler", "steps_offset": 1}"#);
        let euler = Resolve::new(&sd15, SamplerKind::Euler);
        assert_eq!(euler.spacing().unwrap(), Spacing::Leading);
        assert_eq!(euler.steps_offset(), 1);
        let ddim = Resolve::new(&sd15, SamplerKind::Ddim);
        assert!(!ddim.set_alpha_to_one());
        // PNDM has no clip_sample: DDIM's own default (true) applies.
        assert_eq!(ddim.clip_range().unwrap(), Some(1.0));
        // A file without a class: the sampler's defaults.
        let bare = config("{}");
        assert_eq!(
            Resolve::new(&bare, SamplerKind::Euler).spacing().unwrap(),
            Spacing::Linspace
        );
        assert_eq!(
            Resolve::new(&bare, SamplerKind::Ddim).spacing().unwrap(),
            Spacing::Leading
        );
        let lcm = Resolve::new(&bare, SamplerKind::Lcm);
        assert_eq!(lcm.beta_schedule().unwrap(), BetaSchedule::ScaledLinear);
        assert_eq!((lcm.beta_start(), lcm.beta_end()), (0.00085, 0.012));
        assert_eq!(lcm.clip_range().unwrap(), None);
    }

    #[test]
    fn unknown_values_name_the_field() {
        let bad = config(r#"{"timestep_spacing": "sideways", "prediction_type": "flow"}"#);
        let r = Resolve::new(&bad, SamplerKind::Euler);
        let err = r.spacing().unwrap_err().to_string();
        assert!(
            err.contains("timestep_spacing") && err.contains("sideways"),
            "{err}"
        );
        assert!(r.prediction().unwrap_err().to_string().contains("flow"));
    }
}
