//! The RDN ×2 upscaler (`scripts/fetch-models` installs @upscalerjs/default-model) against the
//! package's own sample: `assets/fixture.png` upscaled must match `assets/samples/2x/result.png`
//! (which UpscalerJS made with TF.js) to a mean absolute difference of at most 1 on 0–255.
//! Runs on `common::test_device()`, so `scripts/test-wgpu` checks the wgpu path too.

use hearth_models::rdn::Upscaler;

use crate::common;

/// The bound, on 0–255 bytes.
const MEAN_ABS_TOLERANCE: f64 = 1.0;

fn rgb(path: &std::path::Path) -> (Vec<u8>, usize, usize) {
    let image = image::open(path).expect("png").to_rgb8();
    let (w, h) = image.dimensions();
    (image.into_raw(), w as usize, h as usize)
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x.abs_diff(y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn the_packaged_fixture_upscales_to_the_packaged_result() {
    let model = Upscaler::load(&common::installed("rdn-x2"), &common::test_device()).expect("load");
    assert_eq!(model.scale(), 2);
    let (input, w, h) = rgb(&common::installed("rdn-x2/fixture.png"));
    let (want, want_w, want_h) = rgb(&common::installed("rdn-x2/fixture-x2.png"));
    assert_eq!((want_w, want_h), (2 * w, 2 * h));
    let got = model.upscale(&input, w, h, &mut || true).expect("upscale");
    let difference = mean_abs(&got, &want);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap();
    eprintln!("rdn: mean |difference| {difference:.4}, max {worst} (0-255)");
    assert!(
        difference <= MEAN_ABS_TOLERANCE,
        "mean difference {difference}"
    );
}

#[test]
fn small_overlapping_windows_give_the_whole_image_result() {
    let device = common::test_device();
    let whole = Upscaler::load(&common::installed("rdn-x2/model.json"), &device).expect("load");
    let overlap = whole.overlap();
    assert!((8..=16).contains(&overlap), "receptive radius {overlap}");
    let tiled = whole.clone().with_windows(2 * overlap + 9, 3);
    let (input, w, h) = rgb(&common::installed("rdn-x2/fixture.png"));
    // A crop that is not a multiple of anything, so edge windows are clamped.
    let (cw, ch) = (w - 13, h - 27);
    let crop: Vec<u8> = (0..ch)
        .flat_map(|y| input[y * w * 3..(y * w + cw) * 3].to_vec())
        .collect();
    let a = whole.upscale(&crop, cw, ch, &mut || true).expect("whole");
    let b = tiled.upscale(&crop, cw, ch, &mut || true).expect("tiled");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap();
    assert!(worst <= 1, "tiling changed a pixel by {worst}");
}

#[test]
fn cancelling_stops_between_windows_and_bad_input_is_an_error() {
    let model = Upscaler::load(&common::installed("rdn-x2"), &hearth_models::cpu_device())
        .expect("load")
        .with_windows(40, 1);
    let image = vec![128u8; 100 * 100 * 3];
    let mut calls = 0;
    let err = model
        .upscale(&image, 100, 100, &mut || {
            calls += 1;
            calls < 3
        })
        .unwrap_err();
    assert!(matches!(err, hearth_models::ModelError::Cancelled), "{err}");
    assert_eq!(calls, 3);
    assert!(model.upscale(&image, 99, 100, &mut || true).is_err());
}

#[test]
fn broken_model_files_are_errors_naming_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::installed("rdn-x2");
    let json = std::fs::read_to_string(source.join("model.json")).unwrap();
    std::fs::write(dir.path().join("model.json"), &json).unwrap();
    let shard = std::fs::read(source.join("group1-shard1of1.bin")).unwrap();
    std::fs::write(
        dir.path().join("group1-shard1of1.bin"),
        &shard[..shard.len() - 40],
    )
    .unwrap();
    let err = Upscaler::load(dir.path(), &hearth_models::cpu_device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("group1-shard1of1.bin") && err.contains("UPN3/"),
        "{err}"
    );

    std::fs::write(dir.path().join("group1-shard1of1.bin"), &shard).unwrap();
    let renamed = json.replace("\"F_0/kernel\"", "\"F_0/weights\"");
    std::fs::write(dir.path().join("model.json"), renamed).unwrap();
    let err = Upscaler::load(dir.path(), &hearth_models::cpu_device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("F_0/kernel") && err.contains("missing"),
        "{err}"
    );

    let unknown = json.replace("\"class_name\": \"Add\"", "\"class_name\": \"Multiply\"");
    std::fs::write(dir.path().join("model.json"), unknown).unwrap();
    let err = Upscaler::load(dir.path(), &hearth_models::cpu_device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("Multiply") && err.contains("LRL_1"), "{err}");

    let err = Upscaler::load(&dir.path().join("nothing"), &hearth_models::cpu_device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing"), "{err}");
}
