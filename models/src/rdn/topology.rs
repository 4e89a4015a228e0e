//! `model.json` of a TF.js layers model: the Keras functional topology (layers in order, the
//! layers each one reads) and the weights manifest (which shard holds which tensor, in order).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::ModelError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelJson {
    pub model_topology: Value,
    pub weights_manifest: Vec<WeightGroup>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WeightGroup {
    pub paths: Vec<String>,
    pub weights: Vec<WeightEntry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WeightEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    #[serde(default)]
    pub quantization: Option<Value>,
}

/// One Keras layer: its class, name, configuration and the layers it reads.
#[derive(Debug, Clone)]
pub(super) struct LayerSpec {
    pub class: String,
    pub name: String,
    pub config: Value,
    pub inputs: Vec<String>,
}

/// The model file of `source`: `source` itself, or `model.json` in it.
pub(super) fn model_file(source: &Path) -> PathBuf {
    if source.is_dir() {
        source.join("model.json")
    } else {
        source.to_path_buf()
    }
}

pub(super) fn read(path: &Path) -> Result<ModelJson, ModelError> {
    crate::json::read_json(path)
}

fn config_error(path: &Path, field: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The layers of the topology, in the file's order (Keras writes them topologically).
pub(super) fn layers(path: &Path, topology: &Value) -> Result<Vec<LayerSpec>, ModelError> {
    // Keras 2 exports wrap the model in `model_config`; older TF.js files do not.
    let model = topology.get("model_config").unwrap_or(topology);
    let class = model
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if class != "Functional" && class != "Model" {
        return Err(config_error(
            path,
            "modelTopology.model_config.class_name",
            format!("`{class}`: only functional (graph) models are read"),
        ));
    }
    let layers = model
        .pointer("/config/layers")
        .and_then(Value::as_array)
        .ok_or_else(|| config_error(path, "modelTopology.model_config.config.layers", "missing"))?;
    layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let field = format!("modelTopology.model_config.config.layers[{index}]");
            let text = |key: &str| {
                layer
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| config_error(path, &format!("{field}.{key}"), "missing"))
            };
            let inputs = match layer.pointer("/inbound_nodes/0") {
                None => Vec::new(),
                Some(Value::Array(nodes)) => nodes
                    .iter()
                    .map(|node| {
                        node.get(0)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                config_error(
                                    path,
                                    &format!("{field}.inbound_nodes"),
                                    "each inbound node starts with a layer name",
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(config_error(
                        path,
                        &format!("{field}.inbound_nodes"),
                        "not a list",
                    ));
                }
            };
            if layer
                .get("inbound_nodes")
                .and_then(Value::as_array)
                .is_some_and(|n| n.len() > 1)
            {
                return Err(config_error(
                    path,
                    &format!("{field}.inbound_nodes"),
                    "a layer called more than once (shared weights) is not supported",
                ));
            }
            Ok(LayerSpec {
                class: text("class_name")?,
                name: text("name")?,
                config: layer.get("config").cloned().unwrap_or(Value::Null),
                inputs,
            })
        })
        .collect()
}

/// The names of the model's output layers (`output_layers`).
pub(super) fn outputs(path: &Path, topology: &Value) -> Result<Vec<String>, ModelError> {
    let model = topology.get("model_config").unwrap_or(topology);
    let outputs = model
        .pointer("/config/output_layers")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            config_error(
                path,
                "modelTopology.model_config.config.output_layers",
                "missing",
            )
        })?;
    outputs
        .iter()
        .map(|o| {
            o.get(0)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    config_error(
                        path,
                        "modelTopology.model_config.config.output_layers",
                        "malformed",
                    )
                })
        })
        .collect()
}
