//! A Piper voice's `.onnx.json`: sample rate, how text becomes phonemes (espeak-ng voice or
//! raw code points) and phoneme ids, speakers, and the default synthesis scales.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

/// How the voice turns text into phonemes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhonemeType {
    /// espeak-ng IPA in the voice's espeak language.
    Espeak,
    /// Unicode code points of the (NFD-normalised) text.
    Text,
    /// Anything else (Piper's pinyin, Japanese, …), which Hearth cannot phonemize.
    Other(String),
}

/// The default noise and length scales the voice was tuned with.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct SynthesisScales {
    /// The prior's noise (0.667 in Piper).
    #[serde(default = "default_noise_scale")]
    pub noise_scale: f32,
    /// Duration multiplier: above 1 is slower speech.
    #[serde(default = "default_length_scale")]
    pub length_scale: f32,
    /// The duration predictor's noise (0.8 in Piper).
    #[serde(default = "default_noise_w")]
    pub noise_w: f32,
}

fn default_noise_scale() -> f32 {
    0.667
}
fn default_length_scale() -> f32 {
    1.0
}
fn default_noise_w() -> f32 {
    0.8
}

impl Default for SynthesisScales {
    fn default() -> Self {
        Self {
            noise_scale: default_noise_scale(),
            length_scale: default_length_scale(),
            noise_w: default_noise_w(),
        }
    }
}

/// A parsed `.onnx.json`.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    pub sample_rate: u32,
    pub phoneme_type: PhonemeType,
    /// The espeak-ng voice (`en-us`), for [`PhonemeType::Espeak`].
    pub espeak_voice: Option<String>,
    /// Phoneme (one or more characters) → its ids.
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    pub num_speakers: usize,
    /// Speaker name → speaker id, for multi-speaker voices.
    pub speaker_id_map: BTreeMap<String, i64>,
    pub scales: SynthesisScales,
    /// The voice's language code (`en_US`), when stated.
    pub language: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    audio: RawAudio,
    #[serde(default)]
    espeak: Option<RawEspeak>,
    #[serde(default)]
    phoneme_type: Option<String>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    num_speakers: usize,
    #[serde(default)]
    speaker_id_map: BTreeMap<String, i64>,
    #[serde(default)]
    inference: SynthesisScales,
    #[serde(default)]
    language: Option<RawLanguage>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct RawAudio {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct RawEspeak {
    voice: String,
}

#[derive(Deserialize)]
struct RawLanguage {
    code: Option<String>,
}

impl VoiceConfig {
    /// Reads `path` (the voice's `.onnx.json`).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let raw: RawConfig = read_json(path)?;
        let field_error = |field: &str, reason: &str| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        };
        if raw.audio.sample_rate == 0 {
            return Err(field_error("audio.sample_rate", "must be positive"));
        }
        let phoneme_type = match raw.phoneme_type.as_deref().unwrap_or("espeak") {
            "espeak" => PhonemeType::Espeak,
            "text" => PhonemeType::Text,
            other => PhonemeType::Other(other.to_owned()),
        };
        let espeak_voice = raw.espeak.map(|e| e.voice);
        if phoneme_type == PhonemeType::Espeak && espeak_voice.is_none() {
            return Err(field_error("espeak.voice", "missing for an espeak voice"));
        }
        for marker in ["_", "^", "$"] {
            if raw.phoneme_id_map.get(marker).is_none_or(Vec::is_empty) {
                return Err(field_error(
                    &format!("phoneme_id_map.{marker}"),
                    "missing (padding, start and end markers are required)",
                ));
            }
        }
        let s = raw.inference;
        if !(s.length_scale > 0.0 && s.noise_scale >= 0.0 && s.noise_w >= 0.0) {
            return Err(field_error(
                "inference",
                "scales must be non-negative, length_scale positive",
            ));
        }
        Ok(Self {
            sample_rate: raw.audio.sample_rate,
            phoneme_type,
            espeak_voice,
            phoneme_id_map: raw.phoneme_id_map,
            num_speakers: raw.num_speakers.max(1),
            speaker_id_map: raw.speaker_id_map,
            scales: s,
            language: raw.language.and_then(|l| l.code),
        })
    }
}
