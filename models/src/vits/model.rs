//! A Piper voice as one VITS network: [`VitsModel::load`] reads the `.onnx` (weights only, see
//! [`super::loader`]) and its `.onnx.json`; [`VitsModel::synthesize`] turns one utterance's
//! phoneme ids into a waveform: encode, predict durations, expand the prior to frames, sample
//! it, run the flow backwards and decode. Each stage is public too, so the reference test can
//! compare them one by one and feed the reference's durations forward.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::Distribution;

use super::duration::DurationPredictor;
use super::flow::Flow;
use super::generator::Generator;
use super::layers::read_back;
use super::loader::Initializers;
use super::text_encoder::{Encoded, TextEncoder};
use super::voice_config::{SynthesisScales, VoiceConfig};
use crate::ModelError;
use crate::onnx::OnnxFile;

/// A loaded voice.
#[derive(Debug)]
pub struct VitsModel {
    config: VoiceConfig,
    encoder: TextEncoder,
    duration: DurationPredictor,
    flow: Flow,
    generator: Generator,
    /// `emb_g`, `[speakers, gin]`, for multi-speaker voices.
    speakers: Option<Tensor<2>>,
    device: Device,
}

/// The encoder's output for one utterance.
#[derive(Debug, Clone)]
pub struct Prior {
    encoded: Encoded,
}

impl Prior {
    /// Phonemes in the utterance.
    pub fn len(&self) -> usize {
        self.encoded.mean.dims()[2]
    }

    /// Whether there are none (never, from [`VitsModel::encode`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prior's mean, `[channels, phonemes]` row-major.
    pub fn mean(&self) -> Result<Vec<f32>, ModelError> {
        read_back(self.encoded.mean.clone(), "prior mean")
    }

    /// The prior's log-scale, `[channels, phonemes]` row-major.
    pub fn log_scale(&self) -> Result<Vec<f32>, ModelError> {
        read_back(self.encoded.log_scale.clone(), "prior log-scale")
    }
}

/// Durations per phoneme.
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    /// The predictor's log-durations (before the length scale).
    pub log_durations: Vec<f32>,
    /// Frames per phoneme: `ceil(exp(log_duration) · length_scale)`.
    pub frames: Vec<usize>,
}

/// The decoder's input, `[channels, frames]`.
#[derive(Debug, Clone)]
pub struct Latent {
    latent: Tensor<3>,
}

impl Latent {
    /// Frames.
    pub fn frames(&self) -> usize {
        self.latent.dims()[2]
    }

    /// `[channels, frames]` row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>, ModelError> {
        read_back(self.latent.clone(), "latent")
    }
}

/// What to vary per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthesisOptions {
    pub scales: SynthesisScales,
    /// The speaker id of a multi-speaker voice (0 when `None`).
    pub speaker: Option<usize>,
}

/// The `.onnx.json` beside a voice's `.onnx`.
pub fn config_path(onnx: &Path) -> PathBuf {
    let mut name = onnx.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

impl VitsModel {
    /// Loads `onnx` (a Piper voice) and the `.onnx.json` beside it.
    pub fn load(onnx: &Path, device: &Device) -> Result<Self, ModelError> {
        let started = std::time::Instant::now();
        let config = VoiceConfig::load(&config_path(onnx))?;
        let file = OnnxFile::open(onnx)?;
        let w = Initializers::new(&file, device);
        let encoder = TextEncoder::load(&w)?;
        let vocab = encoder.vocab();
        if let Some((phoneme, id)) = config
            .phoneme_id_map
            .iter()
            .flat_map(|(p, ids)| ids.iter().map(move |id| (p, *id)))
            .find(|&(_, id)| usize::try_from(id).map_or(true, |id| id >= vocab))
        {
            return Err(ModelError::Config {
                path: config_path(onnx),
                field: format!("phoneme_id_map.{phoneme}"),
                reason: format!("id {id} is outside the model's {vocab} symbols"),
            });
        }
        let speakers = if w.has_module("emb_g") {
            let table = w.embedding("emb_g")?;
            if table.dims()[0] < config.num_speakers {
                return Err(w.error(
                    "emb_g.weight",
                    format!(
                        "{} rows for {} speakers",
                        table.dims()[0],
                        config.num_speakers
                    ),
                ));
            }
            Some(table)
        } else {
            None
        };
        let model = Self {
            duration: DurationPredictor::load(&w)?,
            flow: Flow::load(&w)?,
            generator: Generator::load(&w)?,
            encoder,
            speakers,
            config,
            device: device.clone(),
        };
        tracing::info!(path = %onnx.display(), sample_rate = model.config.sample_rate,
            speakers = model.config.num_speakers, hidden = model.encoder.hidden,
            stochastic_durations = model.duration.is_stochastic(),
            elapsed_ms = started.elapsed().as_millis(), "loaded Piper voice");
        Ok(model)
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// Output samples per second.
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// Samples per latent frame.
    pub fn hop(&self) -> usize {
        self.generator.hop
    }

    fn speaker(&self, speaker: Option<usize>) -> Result<Option<Tensor<3>>, ModelError> {
        let Some(table) = &self.speakers else {
            return match speaker {
                None | Some(0) => Ok(None),
                Some(id) => Err(ModelError::InvalidInput(format!(
                    "speaker {id}: this voice has one speaker"
                ))),
            };
        };
        let id = speaker.unwrap_or(0);
        if id >= self.config.num_speakers {
            return Err(ModelError::InvalidInput(format!(
                "speaker {id}: this voice has {} speakers",
                self.config.num_speakers
            )));
        }
        let index =
            Tensor::<1, Int>::from_data(TensorData::new(vec![id as i64], [1]), &self.device);
        // [1, gin] → [1, gin, 1]
        Ok(Some(table.clone().select(0, index).unsqueeze_dim::<3>(2)))
    }

    /// Phoneme ids → the prior.
    pub fn encode(&self, ids: &[i64]) -> Result<Prior, ModelError> {
        Ok(Prior {
            encoded: self.encoder.forward(ids)?,
        })
    }

    /// Durations of every phoneme of `prior`.
    pub fn durations(
        &self,
        prior: &Prior,
        scales: SynthesisScales,
        speaker: Option<usize>,
    ) -> Result<Durations, ModelError> {
        let g = self.speaker(speaker)?;
        let log_durations =
            self.duration
                .log_durations(&prior.encoded.hidden, g.as_ref(), scales.noise_w)?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "ceil of a clamped, finite duration"
        )]
        let frames = log_durations
            .iter()
            .map(|&l| {
                let w = (l.exp() * scales.length_scale).ceil();
                if w.is_finite() {
                    w.clamp(0.0, 1e6) as usize
                } else {
                    0
                }
            })
            .collect();
        Ok(Durations {
            log_durations,
            frames,
        })
    }

    /// The prior expanded to `frames` per phoneme, sampled with `noise_scale`, through the
    /// flow: the decoder's input.
    pub fn latent(
        &self,
        prior: &Prior,
        frames: &[usize],
        noise_scale: f32,
        speaker: Option<usize>,
    ) -> Result<Latent, ModelError> {
        if frames.len() != prior.len() {
            return Err(ModelError::InvalidInput(format!(
                "{} durations for {} phonemes",
                frames.len(),
                prior.len()
            )));
        }
        let g = self.speaker(speaker)?;
        let index: Vec<i64> = frames
            .iter()
            .enumerate()
            .flat_map(|(phoneme, &n)| std::iter::repeat_n(phoneme as i64, n))
            .collect();
        if index.is_empty() {
            return Err(ModelError::InvalidInput(
                "every phoneme lasts zero frames".into(),
            ));
        }
        let total = index.len();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [total]), &self.device);
        let mean = prior.encoded.mean.clone().select(2, index.clone());
        let mut z = mean;
        if noise_scale != 0.0 {
            let log_scale = prior.encoded.log_scale.clone().select(2, index);
            let noise =
                Tensor::<3>::random(z.shape(), Distribution::Normal(0.0, 1.0), &self.device);
            z = z + noise * log_scale.exp() * f64::from(noise_scale);
        }
        Ok(Latent {
            latent: self.flow.reverse(z, g.as_ref()),
        })
    }

    /// A latent given as `[channels, frames]` values (the reference test feeds its own).
    pub fn latent_from(&self, values: Vec<f32>, channels: usize) -> Result<Latent, ModelError> {
        if channels == 0 || !values.len().is_multiple_of(channels) {
            return Err(ModelError::InvalidInput(format!(
                "{} values are not [{channels}, frames]",
                values.len()
            )));
        }
        let frames = values.len() / channels;
        Ok(Latent {
            latent: Tensor::from_data(TensorData::new(values, [1, channels, frames]), &self.device),
        })
    }

    /// The decoder: latent → waveform samples in `[-1, 1]` at [`VitsModel::sample_rate`].
    pub fn waveform(
        &self,
        latent: &Latent,
        speaker: Option<usize>,
    ) -> Result<Vec<f32>, ModelError> {
        let g = self.speaker(speaker)?;
        read_back(
            self.generator.forward(latent.latent.clone(), g.as_ref()),
            "waveform",
        )
    }

    /// One utterance (phoneme ids with start, end and padding markers) → its waveform.
    pub fn synthesize(
        &self,
        ids: &[i64],
        options: &SynthesisOptions,
    ) -> Result<Vec<f32>, ModelError> {
        let prior = self.encode(ids)?;
        let durations = self.durations(&prior, options.scales, options.speaker)?;
        if durations.frames.iter().all(|&n| n == 0) {
            return Ok(Vec::new());
        }
        let latent = self.latent(
            &prior,
            &durations.frames,
            options.scales.noise_scale,
            options.speaker,
        )?;
        self.waveform(&latent, options.speaker)
    }
}
