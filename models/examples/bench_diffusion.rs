//! Seconds per denoising step of a Stable Diffusion 1.5–shaped UNet, as the pipeline runs it:
//! one UNet call on the classifier-free-guidance pair (batch 2: the negative and the positive
//! prompt, 77 text tokens of width 768) at latent 32×32 (256×256 pictures) and 64×64
//! (512×512); then the VAE decode of one latent (batch 1) at both sizes. Medians after one
//! warm-up, the cores the process kept busy (CPU time / wall time: below ~1.6 on 2 cores,
//! something else was running), and the RSS now and at its peak (`VmRSS` / `VmHWM`: the peak
//! is the load, the f16 file's bytes beside the f32 weights).
//!
//! ```sh
//! .venv/bin/python models/scripts/make_sd15_shaped_unet.py /tmp/sd15-shaped   # random weights, SD 1.5's shapes
//! cargo build --workspace --all-targets
//! RAYON_NUM_THREADS=2 $CARGO_TARGET_DIR/debug/examples/bench_diffusion [/tmp/sd15-shaped [cpu|wgpu]]
//! HEARTH_BENCH_PARTS=1 RAYON_NUM_THREADS=2 $CARGO_TARGET_DIR/debug/examples/bench_diffusion   # + where a step goes
//! ```
//!
//! The folder is a diffusers pipeline folder with `unet/` and `vae/` (`HEARTH_SD_DIR` when no
//! argument is given, else `/tmp/sd15-shaped`); any SD 1.x/2.x folder works for the main
//! table, and speed does not depend on the weights' values. The device is the CPU backend
//! unless `wgpu` is given (needs the `wgpu` feature). `HEARTH_BENCH_SIDES=256` limits the
//! picture sizes (default `256,512`); `HEARTH_BENCH_RUNS=3,2` sets the timed UNet calls per
//! size (the VAE decode runs once per size after its warm-up). CPU threads: rayon's global
//! pool (`RAYON_NUM_THREADS`).
//!
//! What bounds it: `HEARTH_BENCH_PARTS=1` also times, at each size, the UNet's operations on
//! their own, group by group, at the shapes SD 1.5's UNet gives them (random inputs, burn's
//! functional ops called as `hearth_models::diffusion` calls them; only meaningful for an SD
//! 1.5–shaped folder): the 66 convolutions (3×3, the strided downsamplers and the 1×1
//! shortcuts), the 16 self-attention and 16 cross-attention cores (softmax(QKᵀ)V, 8 heads),
//! the 192 linear projections of the transformers (q/k/v/out, proj_in/proj_out, the GEGLU
//! feed-forward), the GroupNorms, LayerNorms and GEGLU gates; the rest of the step is the
//! residual adds, concatenations, layout copies and upsampling. burn's CPU backend runs
//! eagerly, one operation at a time, so the parts add up to the step (within a few per cent
//! on an idle machine). On 2 AMD EPYC cores (BENCHMARKS.md, "Diffusion") the products bound
//! it: at 256×256 the convolutions take ~50% of the CPU time and the projections ~35–40%; at
//! 512×512 self-attention over the 4096 tokens of the first level (quadratic in the tokens,
//! and burn-flex's flash attention runs at a third of the convolutions' GFLOP/s) catches up
//! with the convolutions (~36% each, projections 21–24%). The norms and the GELU run on one
//! core but are ~5% together.
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, conv2d, layer_norm, linear};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use hearth_models::bert::gelu::gelu_exact;
use hearth_models::cpu_device;
use hearth_models::diffusion::unet::UNet;
use hearth_models::diffusion::vae::Vae;

/// See `bench_embeddings.rs`: glibc's malloc page-faults every large activation back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tokens of a CLIP text embedding (SD 1.x/2.x pad every prompt to 77).
const TEXT_TOKENS: usize = 77;
/// The classifier-free-guidance pair.
const BATCH: usize = 2;

fn pipeline_dir() -> PathBuf {
    std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HEARTH_SD_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/tmp/sd15-shaped"))
}

fn device(name: Option<&str>) -> Device {
    match name {
        None | Some("cpu") => cpu_device(),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => hearth_models::gpu_device(),
        Some(other) => panic!("unknown device `{other}` (cpu, or wgpu with the wgpu feature)"),
    }
}

/// A comma-separated list of numbers from `var`, or `default`.
fn env_list(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var).map_or_else(
        |_| default.to_vec(),
        |v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("a comma-separated list of numbers"))
                .collect()
        },
    )
}

/// `runs` timings of some work after one warm-up.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// The median wall time of one run, in seconds.
    seconds: f64,
    /// The process's CPU time per run (every thread), in seconds: what the work costs even
    /// when another process takes a core away.
    cpu: f64,
    /// CPU time / wall time over the timed runs: 2.0 on the 2-core machine when nothing else
    /// ran and the work was parallel throughout.
    cores: f64,
}

fn median_seconds(runs: usize, mut work: impl FnMut()) -> Timing {
    work();
    let runs = runs.max(1);
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = cpu_seconds() - cpu;
    times.sort_by(f64::total_cmp);
    Timing {
        seconds: times[times.len() / 2],
        cpu: cpu / runs as f64,
        cores: cpu / wall.elapsed().as_secs_f64(),
    }
}

/// User + system CPU time of the whole process, every thread (`/proc/self/stat`, in the
/// kernel's 100 Hz ticks; 0 where there is no `/proc`).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name's closing parenthesis start at field 3.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The process's resident memory now and at its peak, in GB (`VmRSS` / `VmHWM`; Linux, "?"
/// elsewhere).
fn rss_gb() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or_else(|| "?".into(), |kb| format!("{:.2}", kb / 1e6))
    };
    format!("{} / {}", field("VmRSS:"), field("VmHWM:"))
}

/// `/proc/loadavg`'s 1-minute figure (Linux, "?" elsewhere): well above the bench's own
/// threads, something else shared the cores and the numbers are off by up to 2–3×.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Waits for `x` and checks it: random weights of the right scale keep every value finite.
fn finished<const D: usize>(x: Tensor<D>) {
    let values = x.into_data().try_to_vec::<f32>().expect("f32 values");
    assert!(values.iter().all(|v| v.is_finite()), "non-finite output");
}

fn main() {
    let dir = pipeline_dir();
    let device = device(std::env::args().nth(2).as_deref());
    let sides = env_list("HEARTH_BENCH_SIDES", &[256, 512]);
    let runs = env_list("HEARTH_BENCH_RUNS", &[3, 2]);
    let parts = std::env::var("HEARTH_BENCH_PARTS").is_ok_and(|v| v == "1");

    println!("load average before: {}", load_average());
    let started = Instant::now();
    let unet = UNet::load(&dir, &device).expect("load the UNet");
    let vae = Vae::load(&dir, &device, false).expect("load the VAE");
    println!(
        "loaded {} in {:.1} s (RSS now / peak {} GB)\n",
        dir.display(),
        started.elapsed().as_secs_f64(),
        rss_gb()
    );
    let factor = vae.scale_factor();

    println!("| work | timed runs | median s | cores busy | RSS now / peak GB |");
    println!("|---|---:|---:|---:|---:|");
    let mut steps = Vec::new();
    for (i, &side) in sides.iter().enumerate() {
        let latent = side / factor;
        let runs = runs.get(i).or(runs.last()).copied().unwrap_or(1);
        let sample = normal([BATCH, unet.in_channels(), latent, latent], &device);
        let context = normal([BATCH, TEXT_TOKENS, unet.context_width()], &device);
        let timesteps = [801.0; BATCH];
        let timing = median_seconds(runs, || {
            let out = unet
                .forward(sample.clone(), &timesteps, &context, None)
                .expect("UNet step");
            finished(out);
        });
        steps.push((side, timing));
        let Timing { seconds, cores, .. } = timing;
        println!(
            "| UNet step, {side}×{side} (latent {latent}×{latent}, batch {BATCH}) | {runs} | {seconds:.2} | {cores:.2} | {} |",
            rss_gb()
        );
    }
    for &side in &sides {
        let latent = side / factor;
        let z = normal([1, vae.latent_channels(), latent, latent], &device);
        let Timing { seconds, cores, .. } =
            median_seconds(1, || finished(vae.decode_unet_latent(z.clone())));
        println!(
            "| VAE decode, latent {latent}×{latent} → {side}×{side} (batch 1) | 1 | {seconds:.2} | {cores:.2} | {} |",
            rss_gb()
        );
    }
    if parts {
        for &(side, step) in &steps {
            time_parts(side / factor, step, &device);
        }
    }
    println!("\nload average after: {}", load_average());
}

/// One operation of the UNet, at its shape.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `inputs → outputs` channels, `kernel`×`kernel`, `stride`, on a `side`×`side` input.
    Conv {
        inputs: usize,
        outputs: usize,
        kernel: usize,
        stride: usize,
        side: usize,
    },
    /// Multi-head attention of `tokens` queries over `kv_tokens` keys, `channels` wide.
    Attention {
        tokens: usize,
        kv_tokens: usize,
        channels: usize,
    },
    /// `rows` × `inputs` → `outputs` (per batch sample).
    Linear {
        rows: usize,
        inputs: usize,
        outputs: usize,
    },
    /// GroupNorm (32 groups) over `channels`×`side`×`side`, then SiLU when `silu`.
    GroupNorm {
        channels: usize,
        side: usize,
        silu: bool,
    },
    /// LayerNorm over `channels`, `tokens` rows.
    LayerNorm { tokens: usize, channels: usize },
    /// GEGLU's gate: `value · gelu(gate)`, the two `inner`-wide halves of one projection.
    Geglu { tokens: usize, inner: usize },
}

impl Op {
    /// Which of `time_parts`' groups the operation belongs to.
    fn group(&self) -> usize {
        match *self {
            Self::Conv { .. } => 0,
            Self::Attention {
                tokens, kv_tokens, ..
            } if tokens == kv_tokens => 1,
            Self::Attention { .. } => 2,
            Self::Linear { .. } => 3,
            Self::GroupNorm { .. } => 4,
            Self::LayerNorm { .. } => 5,
            Self::Geglu { .. } => 6,
        }
    }

    /// Floating-point operations of the products (2 per multiply-add, the batch included);
    /// 0 for the norms and activations, which are bound by memory, not arithmetic.
    fn flops(&self) -> f64 {
        let products = match *self {
            Self::Conv {
                inputs,
                outputs,
                kernel,
                stride,
                side,
            } => side.div_ceil(stride).pow(2) * outputs * inputs * kernel * kernel,
            // QKᵀ and the weighted sum of V.
            Self::Attention {
                tokens,
                kv_tokens,
                channels,
            } => 2 * tokens * kv_tokens * channels,
            Self::Linear {
                rows,
                inputs,
                outputs,
            } => rows * inputs * outputs,
            Self::GroupNorm { .. } | Self::LayerNorm { .. } | Self::Geglu { .. } => 0,
        };
        2.0 * (BATCH * products) as f64
    }
}

/// SD 1.5's UNet as a list of operations (`block_out_channels` [320, 640, 1280, 1280],
/// 2 layers per block, attention on the first three levels and the middle, 8 heads, text
/// width 768), on a `latent`×`latent` input.
fn sd15_ops(latent: usize) -> Vec<Op> {
    const CHANNELS: [usize; 4] = [320, 640, 1280, 1280];
    const TEXT_WIDTH: usize = 768;
    let mut ops = Vec::new();
    let conv = |ops: &mut Vec<Op>, inputs, outputs, kernel, stride, side| {
        ops.push(Op::Conv {
            inputs,
            outputs,
            kernel,
            stride,
            side,
        });
    };
    let norm = |ops: &mut Vec<Op>, channels, side, silu| {
        ops.push(Op::GroupNorm {
            channels,
            side,
            silu,
        });
    };
    let resnet = |ops: &mut Vec<Op>, inputs: usize, outputs: usize, side: usize| {
        norm(ops, inputs, side, true);
        conv(ops, inputs, outputs, 3, 1, side);
        norm(ops, outputs, side, true);
        conv(ops, outputs, outputs, 3, 1, side);
        if inputs != outputs {
            conv(ops, inputs, outputs, 1, 1, side);
        }
    };
    let transformer = |ops: &mut Vec<Op>, c: usize, side: usize| {
        let tokens = side * side;
        let lin = |ops: &mut Vec<Op>, rows, inputs, outputs| {
            ops.push(Op::Linear {
                rows,
                inputs,
                outputs,
            });
        };
        norm(ops, c, side, false);
        lin(ops, tokens, c, c); // proj_in
        for _ in 0..3 {
            ops.push(Op::LayerNorm {
                tokens,
                channels: c,
            });
        }
        for _ in 0..4 {
            lin(ops, tokens, c, c); // attn1: to_q, to_k, to_v, to_out
        }
        ops.push(Op::Attention {
            tokens,
            kv_tokens: tokens,
            channels: c,
        });
        lin(ops, tokens, c, c); // attn2.to_q
        lin(ops, TEXT_TOKENS, TEXT_WIDTH, c); // attn2.to_k
        lin(ops, TEXT_TOKENS, TEXT_WIDTH, c); // attn2.to_v
        ops.push(Op::Attention {
            tokens,
            kv_tokens: TEXT_TOKENS,
            channels: c,
        });
        lin(ops, tokens, c, c); // attn2.to_out
        lin(ops, tokens, c, 8 * c); // GEGLU projection
        ops.push(Op::Geglu {
            tokens,
            inner: 4 * c,
        });
        lin(ops, tokens, 4 * c, c); // ff.net.2
        lin(ops, tokens, c, c); // proj_out
    };
    let mut side = latent;
    conv(&mut ops, 4, CHANNELS[0], 3, 1, side);
    let mut skips = vec![CHANNELS[0]];
    let mut x = CHANNELS[0];
    for (level, &c) in CHANNELS.iter().enumerate() {
        for _ in 0..2 {
            resnet(&mut ops, x, c, side);
            x = c;
            if level < 3 {
                transformer(&mut ops, c, side);
            }
            skips.push(c);
        }
        if level < 3 {
            conv(&mut ops, c, c, 3, 2, side);
            side = side.div_ceil(2);
            skips.push(c);
        }
    }
    resnet(&mut ops, x, x, side);
    transformer(&mut ops, x, side);
    resnet(&mut ops, x, x, side);
    for (i, &c) in CHANNELS.iter().rev().enumerate() {
        for _ in 0..3 {
            let skip = skips.pop().expect("a skip connection per up resnet");
            resnet(&mut ops, x + skip, c, side);
            x = c;
            if i > 0 {
                transformer(&mut ops, c, side);
            }
        }
        if i < 3 {
            side *= 2;
            conv(&mut ops, c, c, 3, 1, side);
        }
    }
    norm(&mut ops, CHANNELS[0], side, true);
    conv(&mut ops, CHANNELS[0], 4, 3, 1, side);
    ops
}

/// Random tensors by shape, made once (their values do not matter).
struct Inputs {
    device: Device,
    made: HashMap<Vec<usize>, Tensor<4>>,
}

impl Inputs {
    fn get<const D: usize>(&mut self, shape: [usize; D]) -> Tensor<D> {
        let mut padded = shape.to_vec();
        padded.resize(4, 1);
        let device = &self.device;
        self.made
            .entry(shape.to_vec())
            .or_insert_with(|| normal(padded.clone().try_into().expect("4 dims"), device))
            .clone()
            .reshape(shape)
    }
}

/// Runs `op` once on its inputs, as `hearth_models::diffusion` does (the attention with its
/// query slices of at most 2²⁶ scores).
fn run(op: Op, inputs: &mut Inputs) {
    match op {
        Op::Conv {
            inputs: ci,
            outputs,
            kernel,
            stride,
            side,
        } => {
            let x = inputs.get([BATCH, ci, side, side]);
            let weight = inputs.get([outputs, ci, kernel, kernel]);
            let bias = inputs.get([outputs]);
            let pad = kernel / 2;
            let _ = conv2d(
                x,
                weight,
                Some(bias),
                ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1),
            );
        }
        Op::Attention {
            tokens,
            kv_tokens,
            channels,
        } => {
            const HEADS: usize = 8;
            let split = |x: Tensor<3>, n: usize| {
                x.reshape([BATCH, n, HEADS, channels / HEADS])
                    .swap_dims(1, 2)
            };
            let query = split(inputs.get([BATCH, tokens, channels]), tokens);
            let key = split(inputs.get([BATCH, kv_tokens, channels]), kv_tokens);
            let value = key.clone();
            let slice = ((1 << 26) / (BATCH * HEADS * kv_tokens)).max(1);
            let options = AttentionModuleOptions::default();
            if slice >= tokens {
                let _ = attention(query, key, value, None, None, options)
                    .swap_dims(1, 2)
                    .reshape([BATCH, tokens, channels]);
                return;
            }
            let slices: Vec<Tensor<4>> = (0..tokens)
                .step_by(slice)
                .map(|start| {
                    let rows = query
                        .clone()
                        .slice(s![.., .., start..(start + slice).min(tokens)]);
                    attention(rows, key.clone(), value.clone(), None, None, options)
                })
                .collect();
            let _ = Tensor::cat(slices, 2)
                .swap_dims(1, 2)
                .reshape([BATCH, tokens, channels]);
        }
        Op::Linear {
            rows,
            inputs: ci,
            outputs,
        } => {
            let x = inputs.get([BATCH, rows, ci]);
            // Stored `[out, in]` and transposed, as the loader keeps diffusers' weights.
            let weight = inputs.get([outputs, ci]).transpose();
            let bias = inputs.get([outputs]);
            let _ = linear(x, weight, Some(bias));
        }
        Op::GroupNorm {
            channels,
            side,
            silu: with_silu,
        } => {
            // As `hearth_models::diffusion`'s GroupNorm: two-pass statistics.
            const GROUPS: usize = 32;
            let x = inputs.get([BATCH, channels, side, side]);
            let (gamma, beta) = (inputs.get([channels]), inputs.get([channels]));
            let grouped = x.reshape([BATCH, GROUPS, channels / GROUPS * side * side]);
            let mean = grouped.clone().mean_dim(2);
            let centred = grouped - mean;
            let variance = centred.clone().powi_scalar(2).mean_dim(2);
            let normalised = (centred * variance.add_scalar(1e-5).sqrt().recip())
                .reshape([BATCH, channels, side, side]);
            let y =
                normalised * gamma.reshape([1, channels, 1, 1]) + beta.reshape([1, channels, 1, 1]);
            let _ = if with_silu { silu(y) } else { y };
        }
        Op::LayerNorm { tokens, channels } => {
            let x = inputs.get([BATCH, tokens, channels]);
            let (gamma, beta) = (inputs.get([channels]), inputs.get([channels]));
            let _ = layer_norm(x, gamma, Some(beta), 1e-5);
        }
        Op::Geglu { tokens, inner } => {
            let projected = inputs.get([BATCH, tokens, 2 * inner]);
            let mut halves = projected.chunk(2, 2).into_iter();
            let (value, gate) = (halves.next().expect("value"), halves.next().expect("gate"));
            let _ = value * gelu_exact(gate).expect("GELU");
        }
    }
}

/// Times the UNet's operations group by group on their own at latent `latent` and prints
/// them beside the whole `step`. The shares are of CPU time, which another process on the
/// machine changes far less than wall time.
fn time_parts(latent: usize, step: Timing, device: &Device) {
    let ops = sd15_ops(latent);
    let mut inputs = Inputs {
        device: device.clone(),
        made: HashMap::new(),
    };
    let groups = [
        "convolutions (3×3 and 1×1)",
        "self-attention cores",
        "cross-attention cores (77 text tokens)",
        "linear projections (transformers)",
        "GroupNorms (+ SiLU in the resnets)",
        "LayerNorms (transformers)",
        "GEGLU gates (exact GELU × value)",
    ];
    let side = latent * 8;
    println!(
        "\nparts of a UNet step at {side}×{side} (batch {BATCH}; each group once after a warm-up):\n"
    );
    println!(
        "| part | calls | wall s | CPU s | cores busy | GFLOP/s | share of the step's CPU time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (mut wall, mut cpu) = (0.0, 0.0);
    for (group, name) in groups.into_iter().enumerate() {
        let chosen: Vec<Op> = ops
            .iter()
            .copied()
            .filter(|op| op.group() == group)
            .collect();
        let part = median_seconds(1, || {
            for &op in &chosen {
                run(op, &mut inputs);
            }
        });
        wall += part.seconds;
        cpu += part.cpu;
        let flops: f64 = chosen.iter().map(Op::flops).sum();
        let rate = if flops > 0.0 {
            format!("{:.0}", flops / part.seconds / 1e9)
        } else {
            "–".into()
        };
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {rate} | {:.0}% |",
            chosen.len(),
            part.seconds,
            part.cpu,
            part.cores,
            100.0 * part.cpu / step.cpu
        );
    }
    println!(
        "| the rest (residual adds, concatenations, layout copies, upsampling): step − parts | | {:.2} | {:.2} | | | {:.0}% |",
        step.seconds - wall,
        step.cpu - cpu,
        100.0 * (step.cpu - cpu) / step.cpu
    );
    let flops: f64 = ops.iter().map(Op::flops).sum();
    println!(
        "| whole step | | {:.2} | {:.2} | {:.2} | {:.0} | 100% |",
        step.seconds,
        step.cpu,
        step.cores,
        flops / step.seconds / 1e9
    );
}
