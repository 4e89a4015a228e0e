//! The sampling parameters chat and text completions share, checked against
//! OpenAI's ranges; each bad value is a 400 naming its parameter.

use std::collections::HashMap;

use hearth_models::sampling::SamplingParams;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi_schemas::{LogitBias, Stop};

use crate::error::{HearthError, Result};

/// OpenAI's limit on `top_logprobs`.
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Choices per request: each is a full generation on a small CPU, so the cap is low.
pub const MAX_CHOICES: usize = 8;
/// OpenAI's limit on stop sequences.
const MAX_STOPS: usize = 4;

/// The fields both endpoints accept. The document's bounds are literals (utoipa takes no
/// constants); a route test checks them against the constants here.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CommonParams {
    /// Choices to make (each a full generation).
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<i64>,
    #[schema(value_type = Option<Stop>)]
    pub stop: Option<Value>,
    /// Capped by the model's context left after the prompt.
    #[schema(minimum = 1)]
    pub max_tokens: Option<i64>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Not OpenAI's, but vLLM's and llama.cpp's; accepted for them. 0 or -1: off.
    #[schema(minimum = -1)]
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    #[schema(value_type = Option<LogitBias>)]
    pub logit_bias: Option<HashMap<String, f64>>,
}

/// Validated settings for one request.
#[derive(Debug, Clone)]
pub struct Checked {
    pub n: usize,
    pub stops: Vec<String>,
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
}

fn range(name: &str, value: Option<f64>, low: f64, high: f64, default: f64) -> Result<f32> {
    let v = value.unwrap_or(default);
    if !(low..=high).contains(&v) {
        return Err(HearthError::invalid_param(
            name,
            format!("`{name}` must be between {low} and {high}; got {v}"),
        ));
    }
    Ok(v as f32)
}

impl CommonParams {
    /// Checks every field; `max_tokens` is whichever of the two names the client used.
    pub fn check(
        &self,
        max_tokens: Option<i64>,
        logprobs: Option<usize>,
        vocab_size: usize,
    ) -> Result<Checked> {
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_CHOICES as i64).contains(&n) {
            return Err(HearthError::invalid_param(
                "n",
                format!("`n` must be between 1 and {MAX_CHOICES}; got {n}"),
            ));
        }
        let max_tokens = match max_tokens {
            Some(m) if m < 1 => {
                return Err(HearthError::invalid_param(
                    "max_tokens",
                    format!("`max_tokens` must be at least 1; got {m}"),
                ));
            }
            other => other.map(|m| m as usize),
        };
        let stops = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items))
                if items.iter().all(Value::is_string) && items.len() <= MAX_STOPS =>
            {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                return Err(HearthError::invalid_param(
                    "stop",
                    format!("`stop` must be a string or a list of at most {MAX_STOPS} strings"),
                ));
            }
        };
        let top_p = range("top_p", self.top_p, 0.0, 1.0, 1.0)?;
        if top_p <= 0.0 {
            return Err(HearthError::invalid_param(
                "top_p",
                "`top_p` must be greater than 0",
            ));
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => None,
            Some(k) if k > 0 => Some(k as usize),
            Some(k) => {
                return Err(HearthError::invalid_param(
                    "top_k",
                    format!("`top_k` must be positive; got {k}"),
                ));
            }
        };
        let mut logit_bias = HashMap::new();
        for (token, bias) in self.logit_bias.iter().flatten() {
            let id = token
                .parse::<u32>()
                .ok()
                .filter(|&id| (id as usize) < vocab_size)
                .ok_or_else(|| {
                    HearthError::invalid_param(
                        "logit_bias",
                        format!("`{token}` is not a token id of this model"),
                    )
                })?;
            if !(-100.0..=100.0).contains(bias) {
                return Err(HearthError::invalid_param(
                    "logit_bias",
                    format!("bias {bias} for {token} is outside -100..100"),
                ));
            }
            logit_bias.insert(id, *bias as f32);
        }
        let sampling = SamplingParams {
            temperature: range("temperature", self.temperature, 0.0, 2.0, 1.0)?,
            top_p,
            top_k,
            seed: self.seed.map(|s| s as u64),
            presence_penalty: range("presence_penalty", self.presence_penalty, -2.0, 2.0, 0.0)?,
            frequency_penalty: range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, 0.0)?,
            logit_bias,
            logprobs,
        };
        Ok(Checked {
            n: n as usize,
            stops,
            max_tokens,
            sampling,
        })
    }
}

/// Seeds for `n` choices: the same seed must not give `n` identical choices.
pub fn choice_sampling(base: &SamplingParams, index: usize) -> SamplingParams {
    let mut params = base.clone();
    params.seed = base.seed.map(|s| s.wrapping_add(index as u64));
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(params: CommonParams) -> String {
        match params.check(None, None, 100).unwrap_err() {
            HearthError::InvalidRequest { param: Some(p), .. } => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn out_of_range_values_name_their_param() {
        assert_eq!(
            param_of(CommonParams {
                temperature: Some(2.5),
                ..Default::default()
            }),
            "temperature"
        );
        assert_eq!(
            param_of(CommonParams {
                top_p: Some(0.0),
                ..Default::default()
            }),
            "top_p"
        );
        assert_eq!(
            param_of(CommonParams {
                n: Some(0),
                ..Default::default()
            }),
            "n"
        );
        assert_eq!(
            param_of(CommonParams {
                stop: Some(json!([1])),
                ..Default::default()
            }),
            "stop"
        );
        let bias = HashMap::from([("100".to_owned(), 1.0)]);
        assert_eq!(
            param_of(CommonParams {
                logit_bias: Some(bias),
                ..Default::default()
            }),
            "logit_bias"
        );
        assert_eq!(
            param_of(CommonParams {
                presence_penalty: Some(-3.0),
                ..Default::default()
            }),
            "presence_penalty"
        );
    }

    #[test]
    fn defaults_are_openais() {
        let checked = CommonParams::default().check(Some(5), None, 100).unwrap();
        assert_eq!(checked.n, 1);
        assert_eq!(checked.max_tokens, Some(5));
        assert_eq!(checked.sampling.temperature, 1.0);
        assert_eq!(checked.sampling.top_p, 1.0);
        assert!(checked.stops.is_empty());
    }
}
