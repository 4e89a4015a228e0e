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
fn close(got: f32, want: f32) -> bool {
    (got - want).abs() <= 1e-6 + 1e-6 * want.abs()
}

#[derive(Deserialize)]
struct Fixture {
    blocks: Vec<Block>,
    tensors: Vec<TensorCase>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    name: String,
    type_id: u32,
    hex: String,
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct TensorCase {
    name: String,
    first: Vec<f32>,
    sum: f64,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
        .expect("fixture parses")
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn synthetic_blocks_match_gguf_package() {
    let fixture = fixture();
    let mut seen = Vec::new();
    for block in &fixture.blocks {
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
        seen.push(block.name.clone());
    }
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
}

/// A minimal GGUF v3 file: one u32 and one string-array metadata entry, one tensor.
fn tiny_gguf(type_id: u32, data: &[u8], dims: &[u64]) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend(2u64.to_le_bytes()); // metadata
    string(&mut out, "test.count");
    out.extend(4u32.to_le_bytes());
    out.extend(7u32.to_le_bytes());
    string(&mut out, "test.names");
    out.extend(9u32.to_le_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    string(&mut out, "a");
    string(&mut out, "bé");
    string(&mut out, "weight");
    out.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
    out.extend(type_id.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend(data);
    out
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
