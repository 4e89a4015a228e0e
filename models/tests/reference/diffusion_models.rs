//! The UNet and the VAE of the two tiny random-weight diffusers pipelines
//! (`models/scripts/generate_diffusion_reference.py`) against the script's numpy reference:
//! one UNet call per pipeline (two samples at different timesteps, one 9-channel), the VAE
//! decoder and encoder. Runs on `common::test_device()`, so `scripts/test-wgpu` checks the
//! wgpu path too.

use burn::prelude::*;
use hearth_models::diffusion::unet::UNet;
use hearth_models::diffusion::vae::Vae;
use serde::Deserialize;

use crate::common::{self, max_abs_diff};

#[derive(Deserialize)]
pub struct Tolerances {
    pub unet: f32,
    pub vae: f32,
    pub pipeline: f32,
}

#[derive(Deserialize)]
struct UNetCase {
    pipeline: String,
    sample_shape: [usize; 4],
    sample: Vec<f32>,
    timesteps: Vec<f64>,
    context_shape: [usize; 3],
    context: Vec<f32>,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct DecodeCase {
    pipeline: String,
    latent_shape: [usize; 4],
    latent: Vec<f32>,
    image: Vec<f32>,
}

#[derive(Deserialize)]
struct EncodeCase {
    pipeline: String,
    image_shape: [usize; 4],
    image: Vec<f32>,
    mean: Vec<f32>,
    logvar: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture {
    tolerances: Tolerances,
    unet: Vec<UNetCase>,
    vae_decode: Vec<DecodeCase>,
    vae_encode: Vec<EncodeCase>,
}

fn fixture() -> Fixture {
    let path = common::fixture("diffusion_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().expect("f32 values")
}

#[test]
fn unet_predictions_match_numpy_per_sample_timestep() {
    let fixture = fixture();
    let device = common::test_device();
    assert!(fixture.unet.len() >= 2);
    for case in &fixture.unet {
        let unet = UNet::load(&common::fixture(&case.pipeline), &device).expect("unet");
        let out = unet
            .forward(
                tensor(&case.sample, case.sample_shape, &device),
                &case.timesteps,
                &tensor(&case.context, case.context_shape, &device),
                None,
            )
            .expect("forward");
        let got = values(out);
        let error = max_abs_diff(&got, &case.output);
        let scale = case.output.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{} unet: max |error| {error:e} (outputs up to {scale})",
            case.pipeline
        );
        assert!(
            error <= fixture.tolerances.unet,
            "{}: {error}",
            case.pipeline
        );
        // The two samples differ in timestep and text: a UNet that ignored either would
        // give the reference's answer for one of them at most.
        let half = got.len() / 2;
        assert!(max_abs_diff(&got[..half], &got[half..]) > 10.0 * fixture.tolerances.unet);
    }
}

#[test]
fn vae_decoder_and_encoder_match_numpy() {
    let fixture = fixture();
    let device = common::test_device();
    for case in &fixture.vae_decode {
        let vae = Vae::load(&common::fixture(&case.pipeline), &device, false).expect("vae");
        let image = values(vae.decode(tensor(&case.latent, case.latent_shape, &device)));
        let error = max_abs_diff(&image, &case.image);
        eprintln!("{} vae decode: max |error| {error:e}", case.pipeline);
        assert!(
            error <= fixture.tolerances.vae,
            "{}: {error}",
            case.pipeline
        );
    }
    for case in &fixture.vae_encode {
        let vae = Vae::load(&common::fixture(&case.pipeline), &device, true).expect("vae");
        let (mean, logvar) = vae
            .encode(tensor(&case.image, case.image_shape, &device))
            .expect("encode");
        let (mean, logvar) = (values(mean), values(logvar));
        let error = max_abs_diff(&mean, &case.mean).max(max_abs_diff(&logvar, &case.logvar));
        eprintln!("{} vae encode: max |error| {error:e}", case.pipeline);
        assert!(
            error <= fixture.tolerances.vae,
            "{}: {error}",
            case.pipeline
        );
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = common::fixture("tiny-sd");
    copy_dir(&source, dir.path());
    // The tiny VAE's last decoder convolution, swapped for one with another channel count.
    let weights = dir.path().join("vae/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).expect("vae weights");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    let conv = owned
        .iter_mut()
        .find(|(name, _, _)| name == "decoder.conv_out.bias")
        .expect("conv_out bias");
    conv.1 = vec![4];
    conv.2.extend_from_slice(&[0; 4]);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &weights).expect("write");
    let error = Vae::load(dir.path(), &common::test_device(), false)
        .expect_err("a wrong shape must fail")
        .to_string();
    assert!(
        error.contains("vae: decoder.conv_out.bias")
            && error.contains("[4]")
            && error.contains("[3]"),
        "{error}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
