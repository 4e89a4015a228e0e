//! Hostile bytes: the readers of model files users download (GGUF, safetensors, ONNX,
//! CTranslate2) fed random bytes and mutations of valid files. Each must answer an error or a
//! model, never panic, hang or try to allocate what a header claims without the bytes to
//! back it.

use std::path::Path;

use hearth_models::gguf::GgufFile;
use hearth_models::llama::LlamaModel;
use hearth_models::onnx::OnnxFile;
use hearth_models::whisper::ct2::Ct2File;
use proptest::prelude::*;

use crate::common;
use crate::gguf::{Meta, gguf_bytes};

/// Edits of a valid file: bytes and little-endian integers (the counts, lengths, dimensions
/// and offsets that headers are made of) overwritten, most near the start, where the headers
/// are; then maybe a cut.
#[derive(Debug, Clone)]
struct Mutation {
    writes: Vec<(usize, Write)>,
    cut: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Byte(u8),
    /// An integer of this many bytes.
    Int(u64, usize),
}

/// Values that break length arithmetic: zero, one, sign and width boundaries, huge.
fn interesting_int() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(0x7f),
        Just(0xff),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0xffff_ffff),
        Just(1 << 32),
        Just(1 << 40),
        Just(u64::MAX / 2),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn mutation(len: usize, header: usize) -> impl Strategy<Value = Mutation> {
    let header = header.clamp(1, len);
    let position = prop_oneof![4 => 0..header, 1 => 0..len];
    let write = prop_oneof![
        any::<u8>().prop_map(Write::Byte),
        (
            interesting_int(),
            prop_oneof![Just(1usize), Just(2), Just(4), Just(8)]
        )
            .prop_map(|(v, width)| Write::Int(v, width)),
    ];
    (
        prop::collection::vec((position, write), 1..6),
        prop::option::weighted(0.2, 0..len),
    )
        .prop_map(|(writes, cut)| Mutation { writes, cut })
}

impl Mutation {
    fn apply(&self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        for &(at, write) in &self.writes {
            match write {
                Write::Byte(value) => bytes[at] = value,
                Write::Int(value, width) => {
                    let end = (at + width).min(bytes.len());
                    bytes[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
                }
            }
        }
        if let Some(cut) = self.cut {
            bytes.truncate(cut);
        }
        bytes
    }
}

/// Edits of the numbers in a safetensors file's JSON header (dtypes, shapes and offsets),
/// which keep it JSON, so the reader gets past the parse to the checks of what it says.
#[derive(Debug, Clone)]
struct HeaderNumberEdit {
    /// Which digit of the header, as a fraction of the digits.
    digit: prop::sample::Index,
    /// Digits that replace it.
    with: String,
}

fn header_number_edits() -> impl Strategy<Value = Vec<HeaderNumberEdit>> {
    let with = prop_oneof![
        "[0-9]",
        Just("0".to_owned()),
        Just("99999999999".to_owned()),
        Just("18446744073709551615".to_owned()),
    ];
    prop::collection::vec(
        (any::<prop::sample::Index>(), with)
            .prop_map(|(digit, with)| HeaderNumberEdit { digit, with }),
        1..4,
    )
}

/// `valid` with its header's digits edited, the length prefix kept true.
fn edit_header_numbers(valid: &[u8], edits: &[HeaderNumberEdit]) -> Vec<u8> {
    let header_end = safetensors_header_len(valid);
    let mut header = valid[8..header_end].to_vec();
    for edit in edits {
        let digits: Vec<usize> = (0..header.len())
            .filter(|&i| header[i].is_ascii_digit())
            .collect();
        if digits.is_empty() {
            break;
        }
        let at = digits[edit.digit.index(digits.len())];
        header.splice(at..=at, edit.with.bytes());
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(&valid[header_end..]);
    out
}

/// Reads everything a loader would read from a parsed GGUF file.
fn read_all_gguf(bytes: Vec<u8>) {
    let Ok(file) = GgufFile::parse(Path::new("fuzz.gguf"), bytes) else {
        return;
    };
    let names: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
    for name in &names {
        let _ = file.dequantize(name);
        let _ = file.raw_shared(name);
    }
    let keys: Vec<String> = file.metadata().keys().cloned().collect();
    for key in &keys {
        let _ = file.get_usize(key);
        let _ = file.get_f64(key);
        let _ = file.get_str(key);
        let _ = file.get_str_array(key);
    }
}

/// A valid GGUF file with a Q8_0 tensor of two blocks and three kinds of metadata.
fn valid_gguf() -> Vec<u8> {
    let mut data = Vec::new();
    for block in 0..2u8 {
        data.extend(half_one());
        data.extend((0..32).map(|i| i as u8 ^ block));
    }
    let metadata = [
        ("general.architecture", Meta::Str("llama")),
        ("llama.block_count", Meta::U32(1)),
        ("tokenizer.ggml.tokens", Meta::StrArray(&["a", "b", "c"])),
    ];
    gguf_bytes(&metadata, 8, &data, &[64])
}

/// 1.0 as little-endian f16.
fn half_one() -> [u8; 2] {
    0x3c00u16.to_le_bytes()
}

/// A valid CTranslate2 `model.bin`: one f32 matrix, one i32 scalar and an alias.
fn valid_ct2() -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    };
    let mut out = 6u32.to_le_bytes().to_vec();
    string(&mut out, "WhisperSpec");
    out.extend(3u32.to_le_bytes());
    out.extend(2u32.to_le_bytes());
    string(&mut out, "encoder/weight");
    out.push(2);
    out.extend(2u32.to_le_bytes());
    out.extend(3u32.to_le_bytes());
    out.push(0);
    out.extend(24u32.to_le_bytes());
    (0..6).for_each(|i| out.extend((i as f32).to_le_bytes()));
    string(&mut out, "decoder/start_id");
    out.push(0);
    out.push(3);
    out.extend(4u32.to_le_bytes());
    out.extend(50257i32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    string(&mut out, "decoder/embeddings/weight");
    string(&mut out, "encoder/weight");
    out
}

fn read_all_ct2(bytes: Vec<u8>) {
    let Ok(file) = Ct2File::parse(Path::new("model.bin"), bytes) else {
        return;
    };
    let _ = file.f32_tensor("encoder/weight", &[2, 3]);
    let _ = file.f32_tensor("decoder/embeddings/weight", &[2, 3]);
    let _ = file.int_scalar("decoder/start_id");
}

fn read_all_onnx(bytes: &[u8]) {
    let Ok(file) = OnnxFile::parse(Path::new("voice.onnx"), bytes) else {
        return;
    };
    let names: Vec<String> = file.initializer_names().map(str::to_owned).collect();
    for name in &names {
        let _ = file.shape(name);
        let _ = file.tensor(name);
    }
}

/// The safetensors header's length plus its 8-byte prefix.
fn safetensors_header_len(bytes: &[u8]) -> usize {
    let prefix: [u8; 8] = bytes[..8].try_into().unwrap();
    8 + u64::from_le_bytes(prefix) as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gguf_random_bytes_are_an_error_or_a_file(
        tail in prop::collection::vec(any::<u8>(), 0..512),
        magic in any::<bool>(),
    ) {
        // With the magic and a version, the reader gets past its first check.
        let mut bytes = if magic { b"GGUF\x03\0\0\0".to_vec() } else { Vec::new() };
        bytes.extend(tail);
        read_all_gguf(bytes);
    }

    #[test]
    fn gguf_mutations_of_a_valid_file_are_an_error_or_a_file(
        m in mutation(valid_gguf().len(), valid_gguf().len() - 64),
    ) {
        read_all_gguf(m.apply(&valid_gguf()));
    }

    #[test]
    fn ct2_random_bytes_are_an_error_or_a_file(
        tail in prop::collection::vec(any::<u8>(), 0..512),
        version in any::<bool>(),
    ) {
        let mut bytes = if version { 6u32.to_le_bytes().to_vec() } else { Vec::new() };
        bytes.extend(tail);
        read_all_ct2(bytes);
    }

    #[test]
    fn ct2_mutations_of_a_valid_file_are_an_error_or_a_file(
        m in mutation(valid_ct2().len(), valid_ct2().len()),
    ) {
        read_all_ct2(m.apply(&valid_ct2()));
    }

    #[test]
    fn onnx_random_bytes_are_an_error_or_a_file(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        read_all_onnx(&bytes);
    }
}

/// Loads the tiny Qwen2 checkpoint with `weights` as its `model.safetensors`.
fn load_tiny_qwen2_with(weights: &[u8]) {
    let source = common::fixture("tiny-qwen2");
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    let _ = LlamaModel::load_hf(dir.path(), &hearth_models::cpu_device());
}

fn tiny_qwen2_weights() -> Vec<u8> {
    std::fs::read(common::fixture("tiny-qwen2/model.safetensors")).unwrap()
}

proptest! {
    // Each case loads a whole (tiny) checkpoint.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn safetensors_byte_mutations_are_an_error_or_a_model(
        m in {
            let valid = tiny_qwen2_weights();
            let header = safetensors_header_len(&valid);
            mutation(valid.len(), header)
        },
    ) {
        load_tiny_qwen2_with(&m.apply(&tiny_qwen2_weights()));
    }

    #[test]
    fn safetensors_header_number_edits_are_an_error_or_a_model(edits in header_number_edits()) {
        load_tiny_qwen2_with(&edit_header_numbers(&tiny_qwen2_weights(), &edits));
    }
}

#[test]
fn the_valid_files_of_these_tests_parse() {
    let gguf = GgufFile::parse(Path::new("valid.gguf"), valid_gguf()).expect("valid GGUF");
    let (values, shape) = gguf.dequantize("weight").expect("Q8_0 dequantises");
    assert_eq!((values.len(), shape), (64, vec![64]));
    let ct2 = Ct2File::parse(Path::new("model.bin"), valid_ct2()).expect("valid CTranslate2");
    assert_eq!(
        ct2.f32_tensor("decoder/embeddings/weight", &[2, 3])
            .unwrap(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    assert_eq!(ct2.int_scalar("decoder/start_id").unwrap(), 50257);
    let safetensors = std::fs::read(common::fixture("tiny-qwen2/model.safetensors")).unwrap();
    assert!(safetensors_header_len(&safetensors) < safetensors.len());
}
