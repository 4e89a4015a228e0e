//! Next-token selection from logits: greedy, temperature, top-k, top-p, seeds,
//! presence/frequency penalties, `logit_bias`, and log-probabilities.
//!
//! Order of operations (as vLLM and OpenAI document them): `logit_bias` is added,
//! then the penalties subtract `presence_penalty` once for every token already
//! generated and `frequency_penalty` per occurrence; the reported
//! log-probabilities are those of the model's own distribution (before bias,
//! penalties and temperature), so they mean the same whatever the sampling
//! settings. A grammar's mask of allowed tokens (structured outputs) comes before all of that:
//! a token it forbids has probability zero, and the log-probabilities reported are those of
//! the masked distribution, renormalised over what the grammar allows. Temperature 0 is greedy; otherwise the distribution at the given
//! temperature is cut to the `top_k` most likely tokens, then to the smallest set
//! whose probability reaches `top_p`, and one token is drawn from what is left.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Below this a temperature means greedy decoding.
const GREEDY_TEMPERATURE: f32 = 1e-5;

/// What a request asks of the sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy; OpenAI's default is 1.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 keeps everything.
    pub top_p: f32,
    /// Keep only the k most likely tokens; `None` keeps all.
    pub top_k: Option<usize>,
    /// Same seed and settings, same tokens.
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Added to a token's logit before sampling (-100 bans, +100 forces).
    pub logit_bias: HashMap<u32, f32>,
    /// How many alternatives to report with each token (`top_logprobs`); `None`
    /// reports no log-probabilities.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: HashMap::new(),
            logprobs: None,
        }
    }
}

/// One chosen token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Log-probability of `token` under the model (when log-probabilities were asked for).
    pub logprob: Option<f32>,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// A sampler for one sequence: it remembers what it generated (for the penalties)
/// and owns its random stream (for seeds).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    generated: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Self {
            params,
            rng,
            generated: HashMap::new(),
        }
    }

    /// Chooses the next token from the last position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        self.sample_allowed(logits, None)
    }

    /// Chooses the next token among those `allowed` marks (bit `t % 32` of word `t / 32`;
    /// tokens past its end are forbidden), or among all when `None`. The caller makes sure
    /// the mask allows at least one token.
    pub fn sample_allowed(&mut self, logits: &[f32], allowed: Option<&[u32]>) -> Sampled {
        let masked;
        let logits = match allowed {
            Some(words) => {
                masked = mask_logits(logits, words);
                masked.as_slice()
            }
            None => logits,
        };
        let (logprob, top_logprobs) = match self.params.logprobs {
            Some(top) => {
                let logprobs = log_softmax(logits);
                let mut best = top_indices(&logprobs, top);
                best.retain(|&i| logprobs[i].is_finite());
                best.sort_by(|a, b| logprobs[*b].total_cmp(&logprobs[*a]));
                let top = best.into_iter().map(|i| (i as u32, logprobs[i])).collect();
                (Some(logprobs), top)
            }
            None => (None, Vec::new()),
        };
        let adjusted = self.adjust(logits);
        let token = if self.params.temperature < GREEDY_TEMPERATURE {
            argmax(&adjusted)
        } else {
            self.draw(&adjusted)
        };
        *self.generated.entry(token).or_default() += 1;
        Sampled {
            token,
            logprob: logprob.map(|l| l[token as usize]),
            top_logprobs,
        }
    }

    fn adjust(&self, logits: &[f32]) -> Vec<f32> {
        let mut adjusted = logits.to_vec();
        for (&token, &bias) in &self.params.logit_bias {
            if let Some(l) = adjusted.get_mut(token as usize) {
                *l += bias;
            }
        }
        for (&token, &count) in &self.generated {
            if let Some(l) = adjusted.get_mut(token as usize) {
                *l -= self.params.presence_penalty + self.params.frequency_penalty * count as f32;
            }
        }
        adjusted
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let t = self.params.temperature;
        let mut candidates: Vec<usize> = match self.params.top_k {
            Some(k) if k > 0 && k < logits.len() => top_indices(logits, k),
            _ => (0..logits.len()).collect(),
        };
        candidates.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        let max = logits[candidates[0]];
        let mut weights: Vec<f64> = candidates
            .iter()
            .map(|&i| f64::from((logits[i] - max) / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        if self.params.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = weights
                .iter()
                .position(|w| {
                    mass += w / total;
                    mass >= f64::from(self.params.top_p)
                })
                .map_or(weights.len(), |i| i + 1);
            weights.truncate(keep);
            candidates.truncate(keep);
        }
        let total: f64 = weights.iter().sum();
        let mut point = self.rng.random::<f64>() * total;
        for (&i, w) in candidates.iter().zip(&weights) {
            point -= w;
            if point <= 0.0 {
                return i as u32;
            }
        }
        // Rounding left a sliver: the most likely candidate (never a masked one).
        candidates[0] as u32
    }
}

/// Whether `allowed` (a bitset, bit `t % 32` of word `t / 32`) lets token `t` through.
pub fn is_allowed(allowed: &[u32], token: usize) -> bool {
    allowed
        .get(token / 32)
        .is_some_and(|word| word >> (token % 32) & 1 == 1)
}

/// `logits` with every token `allowed` forbids at minus infinity.
fn mask_logits(logits: &[f32], allowed: &[u32]) -> Vec<f32> {
    logits
        .iter()
        .enumerate()
        .map(|(t, &l)| {
            if is_allowed(allowed, t) {
                l
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect()
}

/// Index of the largest value (the first of equals).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Natural-log probabilities of `logits`, computed stably.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    logits.iter().map(|l| l - max - log_sum).collect()
}

/// Indices of the `k` largest values, in no particular order.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    indices.select_nth_unstable_by(k - 1, |a, b| values[*b].total_cmp(&values[*a]));
    indices.truncate(k);
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.5, -1.0, 0.0];

    fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(Sampler::new(greedy()).sample(&LOGITS).token, 1);
    }

    #[test]
    fn logit_bias_bans_and_forces() {
        let mut params = greedy();
        params.logit_bias.insert(1, -100.0);
        assert_eq!(Sampler::new(params.clone()).sample(&LOGITS).token, 2);
        params.logit_bias.insert(3, 100.0);
        assert_eq!(Sampler::new(params).sample(&LOGITS).token, 3);
    }

    #[test]
    fn penalties_discourage_repeats() {
        let mut sampler = Sampler::new(SamplingParams {
            frequency_penalty: 1.0,
            ..greedy()
        });
        assert_eq!(sampler.sample(&LOGITS).token, 1);
        // 3.0 - 1.0 < 2.5: the second pick moves on.
        assert_eq!(sampler.sample(&LOGITS).token, 2);
        let mut presence = Sampler::new(SamplingParams {
            presence_penalty: 0.4,
            ..greedy()
        });
        assert_eq!(presence.sample(&LOGITS).token, 1);
        assert_eq!(presence.sample(&LOGITS).token, 1, "2.6 still beats 2.5");
    }

    #[test]
    fn same_seed_same_tokens_different_seed_different_stream() {
        let params = |seed| SamplingParams {
            temperature: 1.5,
            seed: Some(seed),
            ..Default::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(params(seed));
            (0..64).map(|_| s.sample(&LOGITS).token).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let distinct: std::collections::HashSet<_> = run(7).into_iter().collect();
        assert!(
            distinct.len() >= 3,
            "temperature 1.5 explores: {distinct:?}"
        );
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        for params in [
            SamplingParams {
                top_k: Some(1),
                seed: Some(1),
                ..Default::default()
            },
            SamplingParams {
                top_p: 1e-6,
                seed: Some(1),
                ..Default::default()
            },
        ] {
            let mut s = Sampler::new(params);
            assert!((0..32).all(|_| s.sample(&LOGITS).token == 1));
        }
    }

    #[test]
    fn top_k_two_stays_within_the_two_best() {
        let mut s = Sampler::new(SamplingParams {
            top_k: Some(2),
            temperature: 5.0,
            seed: Some(3),
            ..Default::default()
        });
        let seen: std::collections::HashSet<_> =
            (0..200).map(|_| s.sample(&LOGITS).token).collect();
        assert_eq!(seen, [1, 2].into_iter().collect());
    }

    #[test]
    fn a_mask_limits_every_sampler_and_renormalises_logprobs() {
        // Tokens 0 and 4 only (bits 0 and 4).
        let allowed = [0b1_0001u32];
        let mut params = greedy();
        params.logprobs = Some(5);
        let sampled = Sampler::new(params).sample_allowed(&LOGITS, Some(&allowed));
        assert_eq!(sampled.token, 0, "1.0 beats 0.0 once 1, 2 and 3 are masked");
        let tokens: Vec<u32> = sampled.top_logprobs.iter().map(|(t, _)| *t).collect();
        assert_eq!(tokens, [0, 4], "forbidden tokens are not reported");
        let mass: f32 = sampled.top_logprobs.iter().map(|(_, l)| l.exp()).sum();
        assert!((mass - 1.0).abs() < 1e-6, "renormalised: {mass}");
        let mut hot = Sampler::new(SamplingParams {
            temperature: 2.0,
            top_k: Some(3),
            logit_bias: HashMap::from([(2, 100.0)]),
            seed: Some(5),
            ..Default::default()
        });
        assert!((0..100).all(|_| {
            let t = hot.sample_allowed(&LOGITS, Some(&allowed)).token;
            t == 0 || t == 4
        }));
        assert!(
            !is_allowed(&allowed, 40),
            "past the mask's end is forbidden"
        );
    }

    #[test]
    fn logprobs_are_the_models_and_sorted() {
        let mut params = greedy();
        params.logprobs = Some(3);
        params.logit_bias.insert(1, -100.0);
        let sampled = Sampler::new(params).sample(&LOGITS);
        assert_eq!(sampled.token, 2);
        let expected = log_softmax(&LOGITS);
        assert_eq!(sampled.logprob, Some(expected[2]));
        let tokens: Vec<u32> = sampled.top_logprobs.iter().map(|(t, _)| *t).collect();
        assert_eq!(tokens, [1, 2, 0]);
        let total: f32 = expected.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
