#!/usr/bin/env python3
"""Cross-checks models/tests/fixtures/diffusion_reference.json (written by
generate_diffusion_reference.py's numpy code) against diffusers and transformers themselves.

Optional tooling, not run in CI: it needs torch, diffusers and transformers (checked with
torch 2.15, diffusers 0.42.1, transformers 5.25):

    python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install numpy safetensors torch diffusers transformers
    /tmp/dvenv/bin/python models/scripts/check_diffusion_reference_with_diffusers.py

It loads the two fixture folders the ordinary way (CLIPTokenizer / CLIPTextModel /
UNet2DConditionModel / AutoencoderKL `from_pretrained`, the inpainting folder with
variant="fp16" upcast to float32, the whole pipelines with `from_pretrained` from
model_index.json), checks that every stored tensor name is one the model expects and none is
missing, then recomputes every section of the reference and prints the max abs difference:
models in float64 and float32, schedulers (their arithmetic is float32 inside diffusers) with
the synthetic model and the stored noises injected in place of diffusers' randn_tensor,
pipelines through StableDiffusionPipeline / StableDiffusionImg2ImgPipeline /
StableDiffusionInpaintPipeline in float32 with output_type="latent", retrieve_latents switched to
sample_mode="argmax" (the posterior mean the reference uses) and the stored initial noise
passed as `latents` (text2img, inpaint) or returned by the patched randn_tensor (img2img).
Exits non-zero when a difference exceeds the reference's own tolerance.
"""

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

import diffusers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as img2img_module
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_inpaint as inpaint_module
from diffusers.schedulers import scheduling_euler_ancestral_discrete, scheduling_lcm
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as hf_logging

warnings.filterwarnings("ignore")
hf_logging.set_verbosity_error()
diffusers.utils.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "models" / "tests" / "fixtures"
REF = json.loads((FIXTURES / "diffusion_reference.json").read_text())
TOL = REF["tolerances"]
VARIANT = {"tiny-sd": None, "tiny-sd-inpaint": "fp16"}
SCHEDULERS = {
    "EulerDiscreteScheduler": EulerDiscreteScheduler,
    "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
    "DDIMScheduler": DDIMScheduler,
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
    "LCMScheduler": LCMScheduler,
}
FAILURES = []


def report(section, label, got, want, tol):
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    if got.shape != want.shape:
        FAILURES.append(f"{section} {label}: shape {got.shape} vs {want.shape}")
        print(f"  {section:12s} {label:48s} SHAPE MISMATCH {got.shape} vs {want.shape}")
        return math.inf
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    flag = "" if diff <= tol else "   <-- over tolerance"
    if flag:
        FAILURES.append(f"{section} {label}: {diff:.3g} > {tol}")
    print(f"  {section:12s} {label:48s} max|diff| {diff:.3g}  (max|ref| {np.abs(want).max():.3g}){flag}")
    return diff


def tensor(values, shape, dtype=torch.float32):
    return torch.tensor(np.asarray(values, dtype=np.float64).reshape(shape), dtype=dtype)


def folder(name):
    return FIXTURES / name


def load_components(name, dtype):
    kw = {"variant": VARIANT[name]} if VARIANT[name] else {}
    tok = CLIPTokenizer.from_pretrained(folder(name) / "tokenizer")
    te = CLIPTextModel.from_pretrained(folder(name) / "text_encoder", dtype=torch.float32, **kw).to(dtype).eval()
    unet = UNet2DConditionModel.from_pretrained(folder(name) / "unet", torch_dtype=torch.float32, **kw).to(dtype).eval()
    vae = AutoencoderKL.from_pretrained(folder(name) / "vae", torch_dtype=torch.float32, **kw).to(dtype).eval()
    return tok, te, unet, vae


def check_weight_names(name):
    tok, te, unet, vae = load_components(name, torch.float32)
    suffix = ".fp16" if VARIANT[name] else ""
    files = {
        "text_encoder": (te, folder(name) / "text_encoder" / f"model{suffix}.safetensors"),
        "unet": (unet, folder(name) / "unet" / f"diffusion_pytorch_model{suffix}.safetensors"),
        "vae": (vae, folder(name) / "vae" / f"diffusion_pytorch_model{suffix}.safetensors"),
    }
    for comp, (model, path) in files.items():
        stored = load_file(str(path))
        keys = {k for k in stored if not k.endswith("position_ids")}
        expected = set(model.state_dict().keys())
        if comp == "text_encoder":  # transformers 5 drops the `text_model.` prefix when loading
            expected = {k if k.startswith("text_model.") else f"text_model.{k}" for k in expected}
            expected = {k for k in expected if not k.endswith("position_ids")}
        missing, unexpected = sorted(expected - keys), sorted(keys - expected)
        status = "ok" if not missing and not unexpected else f"MISSING {missing[:5]} UNEXPECTED {unexpected[:5]}"
        if missing or unexpected:
            FAILURES.append(f"weights {name}/{comp}: {status}")
        dtypes = sorted({str(v.dtype) for v in stored.values()})
        # the loaded values are exactly the stored ones (fp16 upcast to f32)
        sd = model.state_dict()
        worst = 0.0
        for k, v in stored.items():
            if k.endswith("position_ids"):
                continue
            mk = k if k in sd else k[len("text_model."):]
            worst = max(worst, float(np.abs(sd[mk].double().numpy() - v.astype(np.float64)).max()))
        print(f"  weights      {name}/{comp:12s} {len(keys):4d} tensors {dtypes} names {status}; loaded-vs-file max|diff| {worst:.3g}")
        if worst != 0.0:
            FAILURES.append(f"weights {name}/{comp}: loaded values differ from the file")


def check_tokenizer():
    for name in VARIANT:
        tok = CLIPTokenizer.from_pretrained(folder(name) / "tokenizer")
        bad = 0
        for e in [e for e in REF["tokenizer"] if e["pipeline"] == name]:
            ids = tok(e["text"], padding="max_length", max_length=77, truncation=True).input_ids
            if ids != e["ids"]:
                bad += 1
                FAILURES.append(f"tokenizer {name} {e['text']!r}")
                print(f"  tokenizer    {name} {e['text']!r}: diffusers {ids[:12]} vs ref {e['ids'][:12]}")
        n = len([e for e in REF["tokenizer"] if e["pipeline"] == name])
        print(f"  tokenizer    {name:48s} {n - bad}/{n} texts identical (pad id {tok.pad_token_id}, vocab {len(tok)})")


def check_models(dtype):
    label = str(dtype).replace("torch.", "")
    for name in VARIANT:
        tok, te, unet, vae = load_components(name, dtype)
        # diffusers 0.42's encode_prompt(clip_skip=...) reaches for text_encoder.text_model,
        # which transformers 5's CLIPTextModel no longer has: alias it (outside the module tree)
        if not hasattr(te, "text_model"):
            object.__setattr__(te, "text_model", te)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=EulerDiscreteScheduler(),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        with torch.no_grad():
            for e in [e for e in REF["text_encoder"] if e["pipeline"] == name]:
                emb, _ = pipe.encode_prompt(e["text"], "cpu", 1, False, clip_skip=e["clip_skip"] or None)
                report("text_encoder", f"{name} {label} {e['text']!r} clip_skip={e['clip_skip']}", emb.numpy(), e["hidden"], TOL["text_encoder"])
            for e in [e for e in REF["unet"] if e["pipeline"] == name]:
                out = unet(tensor(e["sample"], e["sample_shape"], dtype), torch.tensor(e["timesteps"], dtype=dtype),
                           encoder_hidden_states=tensor(e["context"], e["context_shape"], dtype)).sample
                report("unet", f"{name} {label} t={e['timesteps']}", out.numpy(), e["output"], TOL["unet"])
            for e in [e for e in REF["vae_decode"] if e["pipeline"] == name]:
                out = vae.decode(tensor(e["latent"], e["latent_shape"], dtype)).sample
                report("vae_decode", f"{name} {label}", out.numpy(), e["image"], TOL["vae"])
            for e in [e for e in REF["vae_encode"] if e["pipeline"] == name]:
                dist = vae.encode(tensor(e["image"], e["image_shape"], dtype)).latent_dist
                report("vae_encode", f"{name} {label} mean", dist.mean.numpy(), e["mean"], TOL["vae"])
                report("vae_encode", f"{name} {label} logvar", dist.logvar.numpy(), e["logvar"], TOL["vae"])


class NoiseFeed:
    """Stands in for diffusers' randn_tensor, handing out the stored noises in order."""

    def __init__(self, noises, shape):
        self.noises = [tensor(n, shape) for n in noises] if noises else []
        self.calls = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        noise = self.noises[self.calls]
        self.calls += 1
        return noise.to(dtype=dtype or torch.float32)


def check_schedulers():
    for e in REF["schedulers"]:
        cfg = dict(e["config"])
        sched = SCHEDULERS[cfg["_class_name"]].from_config(cfg)
        sched.set_timesteps(e["steps"])
        feed = NoiseFeed(e["noises"], e["shape"])
        scheduling_euler_ancestral_discrete.randn_tensor = feed
        scheduling_lcm.randn_tensor = feed
        x = tensor(e["initial"], e["shape"]) * sched.init_noise_sigma
        for t in sched.timesteps:
            xin = sched.scale_model_input(x, t)
            tf = float(t)
            out = 0.3 * xin * math.cos(tf / 300.0) + 0.05 * math.sin(tf / 100.0)
            x = sched.step(out, t, x).prev_sample
        report("scheduler", f"{e['name']} timesteps", sched.timesteps.double().numpy(), e["timesteps"], 0.0)
        if e["sigmas"] is not None:
            report("scheduler", f"{e['name']} sigmas", sched.sigmas.double().numpy(), e["sigmas"], TOL["scheduler"])
        report("scheduler", f"{e['name']} init_noise_sigma", [float(sched.init_noise_sigma)], [e["init_noise_sigma"]], TOL["scheduler"])
        report("scheduler", f"{e['name']} final", x.numpy(), e["final"], TOL["scheduler"])


def argmax_latents(encoder_output, generator=None, sample_mode="sample"):
    return encoder_output.latent_dist.mode()


def check_pipelines():
    img2img_module.retrieve_latents = argmax_latents
    inpaint_module.retrieve_latents = argmax_latents
    loaded = {
        "tiny-sd": StableDiffusionPipeline.from_pretrained(folder("tiny-sd"), torch_dtype=torch.float32),
        "tiny-sd-inpaint": StableDiffusionInpaintPipeline.from_pretrained(folder("tiny-sd-inpaint"), variant="fp16", torch_dtype=torch.float32),
    }
    for p in loaded.values():
        p.set_progress_bar_config(disable=True)
    for e in REF["pipelines"]:
        base = loaded[e["pipeline"]]
        cls = {"text2img": StableDiffusionPipeline, "img2img": StableDiffusionImg2ImgPipeline, "inpaint": StableDiffusionInpaintPipeline}[e["mode"]]
        components = dict(base.components)
        components["scheduler"] = SCHEDULERS[e["scheduler"]["_class_name"]].from_config(e["scheduler"])
        pipe = cls(**components)
        pipe.set_progress_bar_config(disable=True)
        noise = tensor(e["initial_noise"], e["initial_noise_shape"])
        kw = dict(prompt=e["prompt"], negative_prompt=e["negative_prompt"], guidance_scale=e["guidance_scale"],
                  num_inference_steps=e["steps"], output_type="latent", return_dict=False)
        if e["mode"] == "text2img":
            kw.update(height=e["height"], width=e["width"], latents=noise)
        elif e["mode"] == "img2img":
            img2img_module.randn_tensor = NoiseFeed([e["initial_noise"]], e["initial_noise_shape"])
            kw.update(image=tensor(e["image"], [1, 3, e["height"], e["width"]]), strength=e["strength"])
        else:
            kw.update(image=tensor(e["image"], [1, 3, e["height"], e["width"]]), mask_image=tensor(e["mask"], [1, 1, e["height"], e["width"]]),
                      strength=e["strength"], height=e["height"], width=e["width"], latents=noise)
        with torch.no_grad():
            latents = pipe(**kw)[0]
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        report("pipeline", f"{e['name']} final_latents", latents.numpy(), e["final_latents"], TOL["pipeline"])
        report("pipeline", f"{e['name']} decoded", decoded.numpy(), e["decoded"], TOL["pipeline"])


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, tolerances {TOL}")
    for name in VARIANT:
        check_weight_names(name)
    check_tokenizer()
    check_models(torch.float64)
    check_models(torch.float32)
    check_schedulers()
    check_pipelines()
    if FAILURES:
        print(f"{len(FAILURES)} FAILURES:")
        for f in FAILURES:
            print("  ", f)
        sys.exit(1)
    print("all sections agree with diffusers within the reference tolerances")


if __name__ == "__main__":
    main()
