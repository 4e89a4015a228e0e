//! The CLIP tokenizer and text encoder of the tiny diffusers pipelines against the numpy reference.
//!
//! `fixtures/diffusion_reference.json` holds transformers' ids for a few prompts and a numpy
//! run of each pipeline's random-weight text encoder on them (`tokenizer` and `text_encoder`
//! sections); the encoder runs on `common::test_device()`, so `scripts/test-wgpu` checks the
//! wgpu path too. The rest builds tokenizers and broken folders of its own in a tempdir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_models::ModelError;
use hearth_models::diffusion::clip::{ClipTextEncoder, ClipTokenizer};
use serde::Deserialize;

use crate::common;

#[derive(Deserialize)]
struct Fixture {
    tolerances: Tolerances,
    tokenizer: Vec<TokenizerCase>,
    text_encoder: Vec<EncoderCase>,
}

#[derive(Deserialize)]
struct Tolerances {
    text_encoder: f32,
}

#[derive(Deserialize)]
struct TokenizerCase {
    pipeline: String,
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct EncoderCase {
    pipeline: String,
    text: String,
    clip_skip: usize,
    shape: Vec<usize>,
    hidden: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = common::fixture("diffusion_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("diffusion_reference.json")
}

fn pipeline(name: &str) -> PathBuf {
    common::fixture(name)
}

fn read_back(tensor: burn::prelude::Tensor<3>) -> Vec<f32> {
    tensor
        .try_into_data()
        .expect("read back")
        .try_into_vec::<f32>()
        .expect("f32 hidden states")
}

#[test]
fn tokenizer_matches_transformers() {
    let fixture = fixture();
    let mut tokenizers = HashMap::new();
    for case in &fixture.tokenizer {
        let tokenizer = tokenizers.entry(case.pipeline.clone()).or_insert_with(|| {
            ClipTokenizer::load(&pipeline(&case.pipeline).join("tokenizer")).expect("tokenizer")
        });
        let ids = tokenizer.encode(&case.text).expect("encode");
        assert_eq!(ids, case.ids, "{} {:?}", case.pipeline, case.text);
        assert_eq!(ids.len(), tokenizer.max_length());
        assert_eq!(ids[0], tokenizer.bos_id());
    }
    assert!(!fixture.tokenizer.is_empty());
}

#[test]
fn text_encoder_matches_numpy() {
    let fixture = fixture();
    let device = common::test_device();
    let mut models = HashMap::new();
    for case in &fixture.text_encoder {
        let (tokenizer, encoder) = models.entry(case.pipeline.clone()).or_insert_with(|| {
            let dir = pipeline(&case.pipeline);
            (
                ClipTokenizer::load(&dir.join("tokenizer")).expect("tokenizer"),
                ClipTextEncoder::load(&dir, &device).expect("text encoder"),
            )
        });
        let ids = tokenizer.encode(&case.text).expect("encode");
        let hidden = encoder.encode(&[ids], case.clip_skip).expect("encode");
        assert_eq!(hidden.dims().to_vec(), case.shape);
        assert_eq!(case.shape[2], encoder.hidden_size());
        let got = read_back(hidden);
        let worst = common::max_abs_diff(&got, &case.hidden);
        eprintln!(
            "clip {} clip_skip {} {:?}: max |error| {worst:e}",
            case.pipeline, case.clip_skip, case.text
        );
        assert!(
            worst <= fixture.tolerances.text_encoder,
            "{} clip_skip {} {:?}: max error {worst}",
            case.pipeline,
            case.clip_skip,
            case.text
        );
    }
    assert!(!fixture.text_encoder.is_empty());
}

#[test]
fn a_batch_encodes_each_row_as_alone_and_bad_inputs_are_refused() {
    let dir = pipeline("tiny-sd");
    let device = common::test_device();
    let tokenizer = ClipTokenizer::load(&dir.join("tokenizer")).expect("tokenizer");
    let encoder = ClipTextEncoder::load(&dir, &device).expect("text encoder");
    let a = tokenizer.encode("a photo of an astronaut").expect("encode");
    let b = tokenizer.encode("").expect("encode");
    let batch = read_back(encoder.encode(&[a.clone(), b.clone()], 1).expect("batch"));
    let alone = read_back(encoder.encode(&[b], 1).expect("alone"));
    let worst = common::max_abs_diff(&batch[batch.len() / 2..], &alone);
    assert!(worst <= 1e-4, "batched vs alone: {worst}");

    let layers = encoder.config().num_hidden_layers;
    let vocab = encoder.config().vocab_size as u32;
    let refused = |ids: &[Vec<u32>], clip_skip: usize| {
        let err = encoder.encode(ids, clip_skip).unwrap_err();
        assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
        err.to_string()
    };
    assert!(refused(std::slice::from_ref(&a), layers).contains("clip_skip"));
    let mut unknown = a.clone();
    unknown[3] = vocab;
    assert!(refused(&[unknown], 0).contains(&vocab.to_string()));
    assert!(refused(&[a.clone(), a[..10].to_vec()], 0).contains("row 1"));
    assert!(refused(&[], 0).contains("no token ids"));
}

/// Writes a `tokenizer/` folder from `vocab` (ids by position) and `merges`.
fn write_tokenizer(dir: &Path, vocab: &[&str], merges: &[&str], config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let vocab: HashMap<&str, usize> = vocab.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&vocab).unwrap(),
    )
    .unwrap();
    let mut text = String::from("#version: 0.2\n");
    for merge in merges {
        text.push_str(merge);
        text.push('\n');
    }
    std::fs::write(dir.join("merges.txt"), text).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config).unwrap();
}

#[test]
fn words_end_in_an_end_of_word_token_and_rows_are_cut_and_padded() {
    // transformers' own CLIP tokenizer test vocabulary: "lower newer" is
    // lo w er</w> n e w er</w>, ids [10, 2, 16, 9, 3, 2, 16].
    let vocab: Vec<&str> = "l o w e r s t i d n lo l</w> w</w> r</w> t</w> low</w> er</w> \
        lowest</w> newer</w> wider <unk> <|startoftext|> <|endoftext|>"
        .split_whitespace()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(
        dir.path(),
        &vocab,
        &["l o", "lo w</w>", "e r</w>"],
        r#"{"model_max_length": 10, "unk_token": {"content": "<unk>", "lstrip": false}}"#,
    );
    let tokenizer = ClipTokenizer::load(dir.path()).expect("load");
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id()), (21, 22));
    assert_eq!(tokenizer.max_length(), 10);
    let row = tokenizer.encode("lower newer").unwrap();
    assert_eq!(row, [21, 10, 2, 16, 9, 3, 2, 16, 22, 22]);
    // Case and whitespace runs are normalised away; unknown bytes are `<unk>`.
    assert_eq!(tokenizer.encode("  LOWER\n\t newer ").unwrap(), row);
    assert_eq!(
        tokenizer.encode("lower z").unwrap()[..6],
        [21, 10, 2, 16, 20, 22]
    );
    // The special tokens typed in a prompt are the special ids.
    assert_eq!(
        tokenizer.encode("low<|endoftext|>").unwrap()[..4],
        [21, 15, 22, 22]
    );
    // Longer prompts keep max_length - 2 tokens, then eos.
    let long = tokenizer.encode("lower lower lower lower").unwrap();
    assert_eq!(long, [21, 10, 2, 16, 10, 2, 16, 10, 2, 22]);
    assert_eq!(
        tokenizer.encode("").unwrap(),
        [21, 22, 22, 22, 22, 22, 22, 22, 22, 22]
    );
}

#[test]
fn a_full_size_vocabulary_loads_in_well_under_a_second() {
    // CLIP's shape: 256 byte characters, each with `</w>`, 48894 merges, two special tokens.
    let bytes: Vec<char> = (0u32..=255).map(byte_char).collect();
    let mut vocab: Vec<String> = bytes.iter().map(char::to_string).collect();
    vocab.extend(bytes.iter().map(|c| format!("{c}</w>")));
    let mut merges = Vec::new();
    for i in 0..48894 {
        let (a, b) = (bytes[i % 256], bytes[i / 256]);
        merges.push(format!("{a} {b}"));
        vocab.push(format!("{a}{b}"));
    }
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    assert_eq!(vocab.len(), 49408);
    let dir = tempfile::tempdir().unwrap();
    let vocab: Vec<&str> = vocab.iter().map(String::as_str).collect();
    let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
    write_tokenizer(dir.path(), &vocab, &merges, r#"{"model_max_length": 77}"#);
    let start = Instant::now();
    let tokenizer = ClipTokenizer::load(dir.path()).expect("load");
    let elapsed = start.elapsed();
    eprintln!("clip tokenizer: 49408 tokens loaded in {elapsed:?}");
    assert!(elapsed.as_secs_f32() < 1.0, "{elapsed:?}");
    // "abc" is a, b, c</w>: merge ('a', 'b') (rank 97 + 256 * 98, token 512 + that) applies;
    // nothing merges "ab" with "c</w>".
    let ids = tokenizer.encode("abc").unwrap();
    assert_eq!(ids[..4], [49406, 512 + 97 + 256 * 98, 256 + 99, 49407]);
}

/// GPT-2's printable stand-in for byte `b` (transformers' `bytes_to_unicode`): itself when
/// printable, else the next code point from 256 on.
fn byte_char(b: u32) -> char {
    let printable = |x: &u32| matches!(x, 33..=126 | 161..=172 | 174..=255);
    let code = if printable(&b) {
        b
    } else {
        256 + (0..b).filter(|x| !printable(x)).count() as u32
    };
    char::from_u32(code).expect("a code point below 512")
}

#[test]
fn a_missing_tokenizer_file_and_a_misshapen_tensor_are_errors_naming_them() {
    let source = pipeline("tiny-sd");
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer");
    std::fs::create_dir_all(&tokenizer).unwrap();
    for name in [
        "vocab.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let from = source.join("tokenizer").join(name);
        if from.is_file() {
            std::fs::copy(from, tokenizer.join(name)).unwrap();
        }
    }
    let err = ClipTokenizer::load(&tokenizer).unwrap_err();
    eprintln!("clip: {err}");
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("merges.txt"), "{err}");

    // The text encoder with its final LayerNorm one wider than the config says.
    let encoder = dir.path().join("text_encoder");
    std::fs::create_dir_all(&encoder).unwrap();
    std::fs::copy(
        source.join("text_encoder/config.json"),
        encoder.join("config.json"),
    )
    .unwrap();
    let weights = weights_file(&source.join("text_encoder"));
    let bytes = std::fs::read(&weights).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let name = "text_model.final_layer_norm.weight";
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(n, view)| (n, view.dtype(), view.shape().to_vec(), view.data().to_vec()))
        .collect();
    let bad = owned.iter_mut().find(|t| t.0 == name).expect(name);
    let element = bad.3.len() / bad.2[0];
    bad.2[0] += 1;
    bad.3.extend(std::iter::repeat_n(0u8, element));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, dtype, shape, data)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &encoder.join("model.safetensors")).unwrap();
    let err = ClipTextEncoder::load(dir.path(), &hearth_models::cpu_device()).unwrap_err();
    let message = err.to_string();
    eprintln!("clip: {message}");
    assert!(message.contains(name), "{message}");
    assert!(message.contains("text_encoder"), "{message}");
}

/// The text encoder's one weights file (the fixture may hold the `fp16` variant).
fn weights_file(dir: &Path) -> PathBuf {
    ["model.safetensors", "model.fp16.safetensors"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no weights in {}", dir.display()))
}
