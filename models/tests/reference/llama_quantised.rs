//! The quantised CPU path (GGUF blocks kept, 8-bit activations, the host pass of
//! `llama/host.rs`) against llama.cpp and against burn's tensor path on the same weights.
//!
//! `fixtures/llamacpp_greedy.json` holds llama.cpp's greedy continuations of chat prompts on
//! the default SmolLM2 (Q4_1) and Qwen2.5-Coder (Q4_K_M, mixed with Q6_K) files, written by
//! `models/scripts/llamacpp/greedy_reference.mjs`. Both sides quantise the activations the
//! same way, so their logits differ only in f32 summation order, and greedy tokens agree —
//! including where they differ from the f32 path's (SmolLM2 answers the first prompt with
//! "L'Étoile…" here and in llama.cpp, "Paris" with f32 activations).

use crate::common;
use crate::common::max_abs_diff;

use std::sync::OnceLock;

use hearth_models::cpu_device;
use hearth_models::gguf::GgufFile;
use hearth_models::llama::{LlamaModel, argmax};
use serde::Deserialize;

/// The host pass on f32 rows against burn's tensor path on the same f32 weights: only the
/// summation order differs (as `llama.rs`'s `LOGIT_ABS_DIFF`).
const HOST_ABS_DIFF: f32 = 1e-3;
/// The host pass in chunks or batched against one pass: attention sums in another order.
const PATH_ABS_DIFF: f32 = 1e-4;
/// Teacher-forced on llama.cpp's greedy tokens, each must be Hearth's argmax or within this
/// many logits of it. Both quantise the activations, but a last-bit f32 difference can move a
/// value across a rounding step, which moves logits (magnitude ~20) by up to a few tenths; a
/// wrong kernel, scale or offset moves them by whole units and picks other tokens.
const TIE_MARGIN: f32 = 0.5;

#[derive(Debug, Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    model: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/llamacpp_greedy.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
            .expect("fixture parses")
    })
}

fn quantised(relative: &str) -> LlamaModel {
    let file = GgufFile::open(&common::installed(relative)).expect("opens the GGUF file");
    let model = LlamaModel::from_gguf_with(&file, &cpu_device(), true).expect("loads");
    assert!(
        model.uses_host_path(),
        "{relative}: every matrix stays quantised"
    );
    model
}

fn f32_models(relative: &str) -> (LlamaModel, LlamaModel) {
    let file = GgufFile::open(&common::installed(relative)).expect("opens the GGUF file");
    let host = LlamaModel::from_gguf_f32_rows(&file, &cpu_device()).expect("loads");
    assert!(host.uses_host_path());
    let tensors = LlamaModel::from_gguf(&file, &cpu_device()).expect("loads");
    assert!(!tensors.uses_host_path());
    (host, tensors)
}

#[test]
fn quantised_greedy_follows_llama_cpp() {
    let mut loaded: Vec<(String, LlamaModel)> = Vec::new();
    for case in &fixture().cases {
        if !loaded.iter().any(|(name, _)| *name == case.model) {
            loaded.push((case.model.clone(), quantised(&case.model)));
        }
        let model = &loaded
            .iter()
            .find(|(name, _)| *name == case.model)
            .expect("loaded")
            .1;
        let mut cache = model.new_cache();
        let mut logits = model
            .forward(&case.prompt_ids, &mut cache)
            .expect("prefill");
        let mut same = 0;
        for (step, &want) in case.greedy_ids.iter().enumerate() {
            let best = argmax(&logits);
            let gap = logits[best as usize] - logits[want as usize];
            assert!(
                gap <= TIE_MARGIN,
                "{} step {step}: llama.cpp's token {want} is {gap} below Hearth's {best} \
                 (llama.cpp continues with {:?})",
                case.model,
                case.greedy_text
            );
            same += usize::from(best == want);
            logits = model.forward(&[want], &mut cache).expect("decode step");
        }
        // Near-ties aside, the greedy choices are the same ones.
        assert!(
            same + 2 >= case.greedy_ids.len(),
            "{}: {same} of {} greedy tokens agree",
            case.model,
            case.greedy_ids.len()
        );
        assert_eq!(argmax_first(model, &case.prompt_ids), case.greedy_ids[0]);
    }
}

fn argmax_first(model: &LlamaModel, prompt: &[u32]) -> u32 {
    argmax(
        &model
            .forward(prompt, &mut model.new_cache())
            .expect("prefill"),
    )
}

#[test]
fn host_pass_matches_the_tensor_path_on_f32_weights() {
    let case = &fixture().cases[0];
    let (host, tensors) = f32_models(&case.model);
    let (mut cache_a, mut cache_b) = (host.new_cache(), tensors.new_cache());
    let mut a = host
        .forward(&case.prompt_ids, &mut cache_a)
        .expect("prefill");
    let mut b = tensors
        .forward(&case.prompt_ids, &mut cache_b)
        .expect("prefill");
    for &next in &case.greedy_ids[..4] {
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff <= HOST_ABS_DIFF,
            "host and tensor logits differ by {diff}"
        );
        a = host.forward(&[next], &mut cache_a).expect("step");
        b = tensors.forward(&[next], &mut cache_b).expect("step");
    }
}

#[test]
fn host_pass_batches_and_chunks_like_one_pass() {
    let cases = &fixture().cases;
    let (model, _) = f32_models(&cases[1].model);
    let (a, b) = (&cases[0].prompt_ids, &cases[1].prompt_ids);
    let whole_b = common::assert_chunked_and_batched_agree(&model, a, b, PATH_ABS_DIFF);

    // A cleared cache is reused.
    let mut cache_a = model.new_cache();
    model.forward(a, &mut cache_a).expect("forward");
    cache_a.clear();
    let again = model.forward(b, &mut cache_a).expect("reused cache");
    assert!(max_abs_diff(&again, &whole_b) <= PATH_ABS_DIFF);
}
