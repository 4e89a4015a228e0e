//! The GGUF reader: dequantisation of every supported ggml type against the Python `gguf`
//! package (`fixtures/dequant_reference.json`, written by
//! `models/scripts/generate_llama_reference.py`), and the errors a broken file must produce.
//!
//! The synthetic blocks need no model; the real-tensor check needs SmolLM2 (`scripts/fetch-models`).

use crate::common;

use std::path::{Path, PathBuf};

use hearth_models::ModelError;
use hearth_models::gguf::{GgmlType, GgufFile, GgufValue, dequantize};
use serde::Deserialize;

/// Both sides compute `d·q + m` in f32 from the same half-precision scales; numpy may fuse or
/// order the two operations differently, so allow a few ulps relative to the value.
pub(crate) fn close(got: f32, want: f32) -> bool {
    (got - want).abs() <= 1e-6 + 1e-6 * want.abs()
}

#[derive(Deserialize)]
struct Fixture {
    blocks: Vec<Block>,
    tensors: Vec<TensorCase>,
}

/// A hand-built block of one ggml type and the values the gguf package dequantised it to.
#[derive(Debug, Deserialize)]
pub(crate) struct Block {
    #[serde(rename = "type")]
    pub name: String,
    pub type_id: u32,
    pub hex: String,
    pub values: Vec<f32>,
}

/// A real file's tensor: its first dequantised values and the sum of all of them.
#[derive(Debug, Deserialize)]
pub(crate) struct TensorCase {
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_name: Option<String>,
    pub first: Vec<f32>,
    pub sum: f64,
}

/// Dequantises every block and compares it with the package's values; returns the type names.
pub(crate) fn check_blocks(blocks: &[Block]) -> Vec<String> {
    blocks
        .iter()
        .map(|block| {
            let ty = GgmlType::from_id(block.type_id)
                .unwrap_or_else(|| panic!("{} unsupported", block.name));
            assert_eq!(ty.to_string(), block.name);
            let bytes = unhex(&block.hex);
            assert_eq!(
                ty.bytes_for(block.values.len()),
                Some(bytes.len()),
                "{}",
                block.name
            );
            let got = dequantize(ty, &bytes, block.values.len());
            for (i, (&g, &w)) in got.iter().zip(&block.values).enumerate() {
                assert!(close(g, w), "{} element {i}: {g} vs {w}", block.name);
            }
            block.name.clone()
        })
        .collect()
}

/// Dequantises `case`'s tensor of `file` and compares its first values and its sum.
pub(crate) fn check_tensor(file: &GgufFile, case: &TensorCase) {
    let (values, _) = file.dequantize(&case.name).expect("dequantises");
    for (i, (&g, &w)) in values.iter().zip(&case.first).enumerate() {
        assert!(close(g, w), "{} element {i}: {g} vs {w}", case.name);
    }
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    assert!(
        (sum - case.sum).abs() <= 1e-6 * values.len() as f64,
        "{} sum {sum} vs {}",
        case.name,
        case.sum
    );
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
        .expect("fixture parses")
}

pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn synthetic_blocks_match_gguf_package() {
    let seen = check_blocks(&fixture().blocks);
    for name in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"] {
        assert!(
            seen.iter().any(|s| s == name),
            "no {name} case in the fixture"
        );
    }
}

fn model_path() -> PathBuf {
    common::installed("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn real_file_header_and_tensors() {
    let file = GgufFile::open(&model_path()).expect("SmolLM2 GGUF parses");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.tensors().len(), 272);
    assert_eq!(file.get_str("general.architecture").ok(), Some("llama"));
    assert_eq!(file.get_usize("llama.block_count").ok(), Some(30));
    assert_eq!(
        file.get_str_array("tokenizer.ggml.merges")
            .map(|m| m.len())
            .ok(),
        Some(48_900)
    );
    for case in fixture().tensors {
        check_tensor(&file, &case);
    }
}

/// A metadata value of a hand-built GGUF file.
pub(crate) enum Meta<'a> {
    U32(u32),
    Str(&'a str),
    StrArray(&'a [&'a str]),
}

/// A minimal GGUF v3 file: the `metadata` entries and one tensor `weight` of ggml type
/// `type_id` holding `data` (`dims` innermost first).
pub(crate) fn gguf_bytes(
    metadata: &[(&str, Meta<'_>)],
    type_id: u32,
    data: &[u8],
    dims: &[u64],
) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Meta::U32(v) => {
                out.extend(4u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            Meta::Str(v) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, v);
            }
            Meta::StrArray(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|item| string(&mut out, item));
            }
        }
    }
    string(&mut out, "weight");
    out.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
    out.extend(type_id.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend(data);
    out
}

/// One u32 and one string-array metadata entry, one tensor.
fn tiny_gguf(type_id: u32, data: &[u8], dims: &[u64]) -> Vec<u8> {
    let metadata = [
        ("test.count", Meta::U32(7)),
        ("test.names", Meta::StrArray(&["a", "bé"])),
    ];
    gguf_bytes(&metadata, type_id, data, dims)
}

#[test]
fn tiny_file_parses() {
    let data: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let file = GgufFile::parse(Path::new("tiny.gguf"), tiny_gguf(0, &data, &[2])).expect("parses");
    assert_eq!(file.get("test.count").ok(), Some(&GgufValue::U32(7)));
    assert_eq!(file.get_str_array("test.names").ok(), Some(vec!["a", "bé"]));
    assert_eq!(file.data_offset() % 32, 0);
    assert_eq!(
        file.dequantize("weight").ok(),
        Some((vec![1.5, -2.0], vec![2]))
    );
}

#[test]
fn broken_files_name_what_is_wrong() {
    let path = Path::new("broken.gguf");
    let err = |bytes: Vec<u8>| {
        GgufFile::parse(path, bytes)
            .expect_err("must fail")
            .to_string()
    };

    assert!(err(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file"));
    // Truncated inside the metadata: the key is named.
    let full = tiny_gguf(0, &[0; 8], &[2]);
    assert!(
        err(full[..90].to_vec()).contains("test.names"),
        "{}",
        err(full[..90].to_vec())
    );
    // Data past the end of the file, an unsupported type, a partial block: the tensor is named.
    let message = err(tiny_gguf(0, &[0; 4], &[2]));
    assert!(
        message.contains("`weight`") && message.contains("past the end"),
        "{message}"
    );
    let message = err(tiny_gguf(16, &[0; 66], &[256]));
    assert!(
        message.contains("`weight`") && message.contains("IQ2_XXS"),
        "{message}"
    );
    let message = err(tiny_gguf(2, &[0; 18], &[31]));
    assert!(
        message.contains("`weight`") && message.contains("Q4_0 blocks"),
        "{message}"
    );

    let file = GgufFile::parse(path, tiny_gguf(0, &[0; 8], &[2])).expect("parses");
    assert!(
        matches!(file.get_usize("test.names"), Err(ModelError::Metadata { key, .. }) if key == "test.names")
    );
    assert!(
        file.get("llama.block_count")
            .expect_err("missing")
            .to_string()
            .contains("llama.block_count")
    );
}
