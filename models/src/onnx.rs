//! A reader for the parts of an ONNX file a native model needs: the initializers (weights and
//! folded constants, widened to f32) and the graph's nodes (name, operator, inputs and integer
//! attributes), so a loader can find an anonymous initializer (`onnx::Conv_8168`) through the
//! node that consumes it (`/flow/flows.6/enc/in_layers.0/Conv`) and read a convolution's
//! stride, padding, dilation and groups from that node. Nothing is executed.
//!
//! The protobuf fields read are the subset of `onnx.proto3` in [`tag`], decoded with `prost`'s
//! wire-format functions (no generated code); unknown fields are skipped, so newer IR versions
//! read fine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::DecodeError;
use prost::bytes::Buf;
use prost::encoding::{
    DecodeContext, WireType, bytes, decode_key, decode_varint, double, float, int32, int64,
    skip_field, string,
};

use crate::ModelError;
use crate::float_bytes::{StoredFloat, widen_to_f32};

/// The fields of `onnx.proto3` read here, by message.
mod tag {
    pub const MODEL_IR_VERSION: u32 = 1;
    pub const MODEL_GRAPH: u32 = 7;
    pub const MODEL_OPSET_IMPORT: u32 = 8;
    pub const OPSET_DOMAIN: u32 = 1;
    pub const OPSET_VERSION: u32 = 2;
    pub const GRAPH_NODE: u32 = 1;
    pub const GRAPH_INITIALIZER: u32 = 5;
    pub const NODE_INPUT: u32 = 1;
    pub const NODE_OUTPUT: u32 = 2;
    pub const NODE_NAME: u32 = 3;
    pub const NODE_OP_TYPE: u32 = 4;
    pub const NODE_ATTRIBUTE: u32 = 5;
    pub const ATTRIBUTE_NAME: u32 = 1;
    pub const ATTRIBUTE_I: u32 = 3;
    pub const ATTRIBUTE_INTS: u32 = 8;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_FLOAT_DATA: u32 = 4;
    pub const TENSOR_INT32_DATA: u32 = 5;
    pub const TENSOR_INT64_DATA: u32 = 7;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const TENSOR_DOUBLE_DATA: u32 = 10;
    pub const TENSOR_DATA_LOCATION: u32 = 14;
}

/// A malformed protobuf, in words.
#[derive(Debug)]
struct WireError(String);

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        Self(e.to_string())
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Calls `field` for every field of the message in `buf`; fields it does not take (returns
/// `false` for) are skipped, so unknown fields and newer IR versions read fine.
fn for_each_field(
    mut buf: &[u8],
    mut field: impl FnMut(u32, WireType, &mut &[u8]) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    while buf.has_remaining() {
        let (number, wire_type) = decode_key(&mut buf)?;
        if !field(number, wire_type, &mut buf)? {
            skip_field(wire_type, number, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(())
}

/// The bytes of an embedded message.
fn embedded<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    if wire_type != WireType::LengthDelimited {
        return Err(WireError(
            "an embedded message is not length-delimited".into(),
        ));
    }
    let len = usize::try_from(decode_varint(buf)?)
        .map_err(|_| WireError("message length overflows".into()))?;
    if len > buf.len() {
        return Err(WireError("message runs past the end of the file".into()));
    }
    let (message, rest) = buf.split_at(len);
    *buf = rest;
    Ok(message)
}

#[derive(Debug, Default)]
struct TensorProto {
    dims: Vec<i64>,
    data_type: i32,
    float_data: Vec<f32>,
    int32_data: Vec<i32>,
    int64_data: Vec<i64>,
    name: String,
    raw_data: Vec<u8>,
    double_data: Vec<f64>,
    data_location: i32,
}

impl TensorProto {
    fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut t = Self::default();
        let ctx = DecodeContext::default;
        for_each_field(buf, |number, wire, buf| {
            match number {
                tag::TENSOR_DIMS => int64::merge_repeated(wire, &mut t.dims, buf, ctx())?,
                tag::TENSOR_DATA_TYPE => int32::merge(wire, &mut t.data_type, buf, ctx())?,
                tag::TENSOR_FLOAT_DATA => {
                    float::merge_repeated(wire, &mut t.float_data, buf, ctx())?
                }
                tag::TENSOR_INT32_DATA => {
                    int32::merge_repeated(wire, &mut t.int32_data, buf, ctx())?
                }
                tag::TENSOR_INT64_DATA => {
                    int64::merge_repeated(wire, &mut t.int64_data, buf, ctx())?
                }
                tag::TENSOR_NAME => string::merge(wire, &mut t.name, buf, ctx())?,
                tag::TENSOR_RAW_DATA => bytes::merge(wire, &mut t.raw_data, buf, ctx())?,
                tag::TENSOR_DOUBLE_DATA => {
                    double::merge_repeated(wire, &mut t.double_data, buf, ctx())?
                }
                tag::TENSOR_DATA_LOCATION => int32::merge(wire, &mut t.data_location, buf, ctx())?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(t)
    }
}

fn decode_node(buf: &[u8]) -> Result<OnnxNode, WireError> {
    let mut node = OnnxNode {
        name: String::new(),
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        ints: HashMap::new(),
    };
    let ctx = DecodeContext::default;
    for_each_field(buf, |number, wire, buf| {
        match number {
            tag::NODE_INPUT => string::merge_repeated(wire, &mut node.inputs, buf, ctx())?,
            tag::NODE_OUTPUT => string::merge_repeated(wire, &mut node.outputs, buf, ctx())?,
            tag::NODE_NAME => string::merge(wire, &mut node.name, buf, ctx())?,
            tag::NODE_OP_TYPE => string::merge(wire, &mut node.op_type, buf, ctx())?,
            tag::NODE_ATTRIBUTE => {
                let (mut name, mut i, mut ints) = (String::new(), 0i64, Vec::new());
                for_each_field(embedded(wire, buf)?, |number, wire, buf| {
                    match number {
                        tag::ATTRIBUTE_NAME => string::merge(wire, &mut name, buf, ctx())?,
                        tag::ATTRIBUTE_I => int64::merge(wire, &mut i, buf, ctx())?,
                        tag::ATTRIBUTE_INTS => int64::merge_repeated(wire, &mut ints, buf, ctx())?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                node.ints
                    .insert(name, if ints.is_empty() { vec![i] } else { ints });
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(node)
}

/// `ModelProto`: IR version, default-domain opset, nodes, initializers.
fn decode_model(buf: &[u8]) -> Result<(i64, i64, Vec<OnnxNode>, Vec<TensorProto>), WireError> {
    let (mut ir_version, mut opset) = (0i64, 0i64);
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut has_graph = false;
    let ctx = DecodeContext::default;
    for_each_field(buf, |number, wire, buf| {
        match number {
            tag::MODEL_IR_VERSION => int64::merge(wire, &mut ir_version, buf, ctx())?,
            tag::MODEL_OPSET_IMPORT => {
                let (mut domain, mut version) = (String::new(), 0i64);
                for_each_field(embedded(wire, buf)?, |number, wire, buf| {
                    match number {
                        tag::OPSET_DOMAIN => string::merge(wire, &mut domain, buf, ctx())?,
                        tag::OPSET_VERSION => int64::merge(wire, &mut version, buf, ctx())?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                if domain.is_empty() || domain == "ai.onnx" {
                    opset = version;
                }
            }
            tag::MODEL_GRAPH => {
                has_graph = true;
                for_each_field(embedded(wire, buf)?, |number, wire, buf| {
                    match number {
                        tag::GRAPH_NODE => nodes.push(decode_node(embedded(wire, buf)?)?),
                        tag::GRAPH_INITIALIZER => {
                            initializers.push(TensorProto::decode(embedded(wire, buf)?)?);
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !has_graph {
        return Err(WireError("the ONNX model has no graph".into()));
    }
    Ok((ir_version, opset, nodes, initializers))
}

/// ONNX `TensorProto.DataType` codes this reader widens to f32.
const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const BFLOAT16: i32 = 16;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// One graph node: what a loader needs to tie initializers to modules.
#[derive(Debug, Clone)]
pub struct OnnxNode {
    /// The exporter's scoped name (`/dec/ups.0/ConvTranspose`).
    pub name: String,
    /// The operator (`Conv`, `ConvTranspose`, `Gather`, …).
    pub op_type: String,
    /// Input value names, in order (an empty string is an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    ints: HashMap<String, Vec<i64>>,
}

impl OnnxNode {
    /// An integer or integer-list attribute (`strides`, `pads`, `dilations`, `group`), if set.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        self.ints.get(name).map(Vec::as_slice)
    }
}

/// An ONNX file's initializers and nodes.
#[derive(Debug)]
pub struct OnnxFile {
    path: PathBuf,
    /// The default-domain operator set version.
    pub opset: i64,
    pub nodes: Vec<OnnxNode>,
    initializers: HashMap<String, TensorProto>,
}

impl OnnxFile {
    /// Reads and decodes `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = crate::json::read_file(path)?;
        Self::parse(path, &bytes)
    }

    /// Decodes an ONNX model held in memory; `path` only names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ModelError> {
        let weights_error = |reason: String| ModelError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let (ir_version, opset, nodes, initializers) =
            decode_model(bytes).map_err(|e| weights_error(format!("not an ONNX model: {e}")))?;
        let initializers = initializers
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        tracing::debug!(path = %path.display(), ir_version, opset, "read ONNX file");
        Ok(Self {
            path: path.to_path_buf(),
            opset,
            nodes,
            initializers,
        })
    }

    /// The file, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an initializer of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.initializers.contains_key(name)
    }

    /// The initializers' names (unordered).
    pub fn initializer_names(&self) -> impl Iterator<Item = &str> {
        self.initializers.keys().map(String::as_str)
    }

    /// An initializer's shape.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.initializers.get(name).map(|t| {
            t.dims
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .collect()
        })
    }

    /// An initializer as f32 values with its shape, whatever numeric type it is stored in.
    pub fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let error = |reason: String| ModelError::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason,
        };
        let t = self
            .initializers
            .get(name)
            .ok_or_else(|| error("not in the file".into()))?;
        if t.data_location == EXTERNAL {
            return Err(error(
                "stored in an external data file, which is not supported".into(),
            ));
        }
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| error(format!("negative dimension {d}"))))
            .collect::<Result<_, _>>()?;
        let count: usize = shape.iter().product();
        let raw = |width: usize| -> Result<&[u8], ModelError> {
            if t.raw_data.len() == count * width {
                Ok(&t.raw_data)
            } else {
                Err(error(format!(
                    "{} bytes of data for {count} elements of {width} bytes",
                    t.raw_data.len()
                )))
            }
        };
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            reason = "integer constants here are small shapes and indices"
        )]
        let values: Vec<f32> = match t.data_type {
            FLOAT if t.raw_data.is_empty() => t.float_data.clone(),
            FLOAT => widen_to_f32(StoredFloat::F32, raw(4)?),
            FLOAT16 if t.raw_data.is_empty() => t
                .int32_data
                .iter()
                .map(|&bits| half::f16::from_bits(bits as u16).to_f32())
                .collect(),
            FLOAT16 => widen_to_f32(StoredFloat::F16, raw(2)?),
            BFLOAT16 if t.raw_data.is_empty() => t
                .int32_data
                .iter()
                .map(|&bits| half::bf16::from_bits(bits as u16).to_f32())
                .collect(),
            BFLOAT16 => widen_to_f32(StoredFloat::Bf16, raw(2)?),
            DOUBLE if t.raw_data.is_empty() => t.double_data.iter().map(|&v| v as f32).collect(),
            DOUBLE => raw(8)?
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            INT64 if t.raw_data.is_empty() => t.int64_data.iter().map(|&v| v as f32).collect(),
            INT64 => raw(8)?
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            INT32 if t.raw_data.is_empty() => t.int32_data.iter().map(|&v| v as f32).collect(),
            INT32 => raw(4)?
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as f32)
                .collect(),
            other => return Err(error(format!("unsupported ONNX data type {other}"))),
        };
        if values.len() != count {
            return Err(error(format!(
                "{} values for shape {shape:?}",
                values.len()
            )));
        }
        Ok((values, shape))
    }

    /// The first node that reads `value` as an input.
    pub fn consumer(&self, value: &str) -> Option<&OnnxNode> {
        self.nodes
            .iter()
            .find(|n| n.inputs.iter().any(|i| i == value))
    }

    /// The node of this exact name.
    pub fn node(&self, name: &str) -> Option<&OnnxNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The module path a PyTorch exporter's node name encodes: `/flow/flows.6/enc/in_layers.0/Conv`
/// is the `Conv` of `flow.flows.6.enc.in_layers.0`.
pub fn module_of(node_name: &str) -> Option<String> {
    let trimmed = node_name.strip_prefix('/')?;
    let (module, _op) = trimmed.rsplit_once('/')?;
    Some(module.replace('/', "."))
}

#[cfg(test)]
mod tests {
    use prost::encoding::{encode_key, encode_varint};

    use super::*;

    /// A field holding an embedded message (or string, or bytes).
    fn delimited(number: u32, body: &[u8], out: &mut Vec<u8>) {
        encode_key(number, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn varint(number: u32, value: u64, out: &mut Vec<u8>) {
        encode_key(number, WireType::Varint, out);
        encode_varint(value, out);
    }

    fn tensor(name: &str, dims: &[u64], data_type: i32, raw: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            varint(tag::TENSOR_DIMS, d, &mut t);
        }
        varint(tag::TENSOR_DATA_TYPE, data_type as u64, &mut t);
        delimited(tag::TENSOR_NAME, name.as_bytes(), &mut t);
        if !raw.is_empty() {
            delimited(tag::TENSOR_RAW_DATA, raw, &mut t);
        }
        t
    }

    fn attribute(name: &str, i: Option<u64>, ints: &[u64]) -> Vec<u8> {
        let mut a = Vec::new();
        delimited(tag::ATTRIBUTE_NAME, name.as_bytes(), &mut a);
        if let Some(i) = i {
            varint(tag::ATTRIBUTE_I, i, &mut a);
        }
        for &v in ints {
            varint(tag::ATTRIBUTE_INTS, v, &mut a);
        }
        a
    }

    fn file() -> Vec<u8> {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let f16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let mut node = Vec::new();
        for input in ["x", "onnx::Conv_1", "b"] {
            delimited(tag::NODE_INPUT, input.as_bytes(), &mut node);
        }
        delimited(tag::NODE_OUTPUT, b"y", &mut node);
        delimited(tag::NODE_NAME, b"/dec/ups.0/Conv", &mut node);
        delimited(tag::NODE_OP_TYPE, b"Conv", &mut node);
        delimited(
            tag::NODE_ATTRIBUTE,
            &attribute("dilations", None, &[3]),
            &mut node,
        );
        delimited(
            tag::NODE_ATTRIBUTE,
            &attribute("group", Some(2), &[]),
            &mut node,
        );
        let mut listed = tensor("listed", &[2], FLOAT, &[]);
        // float_data, packed.
        delimited(tag::TENSOR_FLOAT_DATA, &f32s(&[7.0, 8.0]), &mut listed);
        let mut graph = Vec::new();
        delimited(tag::GRAPH_NODE, &node, &mut graph);
        for t in [
            tensor("onnx::Conv_1", &[2, 1], FLOAT, &f32s(&[0.25, 4.0])),
            tensor("b", &[2], FLOAT16, &f16),
            listed,
            tensor("short", &[3], FLOAT, &[0; 8]),
        ] {
            delimited(tag::GRAPH_INITIALIZER, &t, &mut graph);
        }
        let mut opset = Vec::new();
        varint(tag::OPSET_VERSION, 15, &mut opset);
        let mut model = Vec::new();
        varint(tag::MODEL_IR_VERSION, 8, &mut model);
        // A field this reader does not know (producer_name) is skipped.
        delimited(2, b"pytorch", &mut model);
        delimited(tag::MODEL_OPSET_IMPORT, &opset, &mut model);
        delimited(tag::MODEL_GRAPH, &graph, &mut model);
        model
    }

    #[test]
    fn initializers_and_nodes_round_trip() {
        let onnx = OnnxFile::parse(Path::new("t.onnx"), &file()).unwrap();
        assert_eq!(onnx.opset, 15);
        assert_eq!(
            onnx.tensor("onnx::Conv_1").unwrap(),
            (vec![0.25, 4.0], vec![2, 1])
        );
        assert_eq!(onnx.tensor("b").unwrap().0, vec![1.5, -2.0]);
        assert_eq!(onnx.tensor("listed").unwrap().0, vec![7.0, 8.0]);
        let node = onnx.consumer("onnx::Conv_1").unwrap();
        assert_eq!(module_of(&node.name).as_deref(), Some("dec.ups.0"));
        assert_eq!(node.ints("dilations"), Some(&[3][..]));
        assert_eq!(node.ints("group"), Some(&[2][..]));
        assert!(node.ints("strides").is_none());
    }

    #[test]
    fn broken_files_and_tensors_are_named_errors() {
        let onnx = OnnxFile::parse(Path::new("t.onnx"), &file()).unwrap();
        let short = onnx.tensor("short").unwrap_err().to_string();
        assert!(
            short.contains("`short`") && short.contains("8 bytes"),
            "{short}"
        );
        let missing = onnx.tensor("nope").unwrap_err().to_string();
        assert!(missing.contains("`nope`"), "{missing}");
        let truncated = file();
        let garbage = OnnxFile::parse(Path::new("g.onnx"), &truncated[..truncated.len() - 5])
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("g.onnx"), "{garbage}");
        let no_graph = OnnxFile::parse(Path::new("e.onnx"), &[])
            .unwrap_err()
            .to_string();
        assert!(no_graph.contains("no graph"), "{no_graph}");
    }
}
