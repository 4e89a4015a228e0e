//! Turning hidden states into one sentence vector: the sentence-transformers pooling
//! (`1_Pooling/config.json`) and the optional `Normalize` module listed in `modules.json`.

use std::path::Path;

use burn::prelude::*;
use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

/// `type` of the sentence-transformers modules this crate understands.
const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// `F.normalize`'s epsilon: a zero vector stays zero instead of becoming NaN.
pub(crate) const NORM_EPS: f32 = 1e-12;

/// How token vectors are combined into a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the non-padding tokens.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

/// The pooling and normalisation that follow the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolingHead {
    /// How tokens are pooled.
    pub pooling: Pooling,
    /// Whether the pooled vector is scaled to unit L2 norm.
    pub normalize: bool,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `1_Pooling/config.json`. Modes other than CLS and mean are refused, not ignored.
#[derive(Debug, Default, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl PoolingHead {
    /// Reads `modules.json` and the pooling config it points to.
    ///
    /// A folder without `modules.json` (a plain BERT/BGE/E5 checkpoint) gets mean pooling and
    /// normalisation, the usual choice for embedding models.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(Self {
                pooling: Pooling::Mean,
                normalize: true,
            });
        }
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for (index, module) in modules.iter().enumerate() {
            match module.kind.as_str() {
                TRANSFORMER => {}
                POOLING => {
                    let path = dir.join(&module.path).join("config.json");
                    pooling = Some(parse_pooling(&read_json(&path)?, &path)?);
                }
                NORMALIZE => normalize = true,
                other => {
                    return Err(ModelError::Config {
                        path: modules_path,
                        field: format!("[{index}].type"),
                        reason: format!("module `{other}` is not supported"),
                    });
                }
            }
        }
        let pooling = pooling.ok_or_else(|| ModelError::Config {
            path: modules_path.clone(),
            field: ".".to_owned(),
            reason: format!("no `{POOLING}` module"),
        })?;
        Ok(Self { pooling, normalize })
    }

    /// `[batch, seq, hidden]` hidden states and a `[batch, seq]` mask (1 for tokens, 0 for
    /// padding) to `[batch, hidden]` sentence vectors.
    pub fn forward(&self, hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let pooled = match self.pooling {
            Pooling::Mean => mean_pool(hidden, mask),
            Pooling::Cls => cls_pool(hidden),
        };
        if self.normalize {
            l2_normalize(pooled)
        } else {
            pooled
        }
    }
}

fn parse_pooling(config: &PoolingConfig, path: &Path) -> Result<Pooling, ModelError> {
    let unsupported = [
        ("pooling_mode_max_tokens", config.pooling_mode_max_tokens),
        (
            "pooling_mode_mean_sqrt_len_tokens",
            config.pooling_mode_mean_sqrt_len_tokens,
        ),
        (
            "pooling_mode_weightedmean_tokens",
            config.pooling_mode_weightedmean_tokens,
        ),
        ("pooling_mode_lasttoken", config.pooling_mode_lasttoken),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, on)| *on) {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            field: (*field).to_owned(),
            reason: "this pooling mode is not supported (only CLS or mean)".to_owned(),
        });
    }
    match (
        config.pooling_mode_cls_token,
        config.pooling_mode_mean_tokens,
    ) {
        (false, true) => Ok(Pooling::Mean),
        (true, false) => Ok(Pooling::Cls),
        (cls, _) => Err(ModelError::Config {
            path: path.to_path_buf(),
            field: "pooling_mode_mean_tokens".to_owned(),
            reason: if cls {
                "CLS and mean pooling together are not supported".to_owned()
            } else {
                "no pooling mode is enabled".to_owned()
            },
        }),
    }
}

/// Average over the positions where `mask` is 1.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [batch, _, hidden_size] = hidden.dims();
    let mask = mask.unsqueeze_dim::<3>(2); // [batch, seq, 1]
    let sum = (hidden * mask.clone())
        .sum_dim(1)
        .reshape([batch, hidden_size]);
    // sentence-transformers clamps the token count at 1e-9; real inputs always have >= 1 token.
    let count = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    sum / count
}

/// The first token of every sequence.
pub fn cls_pool(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, hidden_size] = hidden.dims();
    hidden.slice(s![.., 0..1]).reshape([batch, hidden_size])
}

/// Scales every row to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(NORM_EPS);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
        let [_, cols] = t.dims();
        let data: Vec<f32> = t.into_data().try_into_vec_as().unwrap_or_default();
        data.chunks(cols).map(<[f32]>::to_vec).collect()
    }

    fn hidden() -> Tensor<3> {
        // batch 2, seq 3, hidden 2; the last position of row 1 is padding (huge values).
        Tensor::from_data(
            TensorData::new(
                vec![
                    1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 1e6, -1e6,
                ],
                [2, 3, 2],
            ),
            &device(),
        )
    }

    fn mask() -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(vec![1.0f32, 1.0, 1.0, 1.0, 1.0, 0.0], [2, 3]),
            &device(),
        )
    }

    #[test]
    fn mean_ignores_padding() {
        assert_eq!(
            rows(mean_pool(hidden(), mask())),
            vec![vec![3.0, 4.0], vec![20.0, 30.0]]
        );
    }

    #[test]
    fn cls_takes_first_token() {
        assert_eq!(
            rows(cls_pool(hidden())),
            vec![vec![1.0, 2.0], vec![10.0, 20.0]]
        );
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero() {
        let x = Tensor::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]),
            &device(),
        );
        assert_eq!(rows(l2_normalize(x)), vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }

    #[test]
    fn pooling_modes_parse() {
        let path = Path::new("1_Pooling/config.json");
        let mean = PoolingConfig {
            pooling_mode_mean_tokens: true,
            ..PoolingConfig::default()
        };
        assert_eq!(parse_pooling(&mean, path).ok(), Some(Pooling::Mean));
        let cls = PoolingConfig {
            pooling_mode_cls_token: true,
            ..PoolingConfig::default()
        };
        assert_eq!(parse_pooling(&cls, path).ok(), Some(Pooling::Cls));
        let max = PoolingConfig {
            pooling_mode_max_tokens: true,
            ..PoolingConfig::default()
        };
        let err = parse_pooling(&max, path).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("pooling_mode_max_tokens")));
        let none = PoolingConfig::default();
        assert!(parse_pooling(&none, path).is_err());
    }
}
