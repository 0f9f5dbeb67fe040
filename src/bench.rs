//! `baka bench`: training-step throughput of a branch on random tokens, one JSON line.
//!
//! Same step as training (forward over the windows, loss, backward, clip, AdamW), warm-up and
//! autotune excluded, timed between two device syncs. MFU uses the formula of
//! `bench/torch_reference.py`: flops/token = 6·(N − V·d) + 12·layers·d·T, against the GPU's
//! dense bf16 peak (989 TFLOP/s for H100/H200 unless `--peak-tflops` says otherwise).

use crate::config::{serde_name, Config, Device, TrainConfig};
use crate::data::batches::mix;
use crate::kernels::ops::{AttnKernel, Ce, Kernels, Matmul, TrainOps};
use crate::model::{padded_vocab, param_count, BakaLM};
use crate::train::adamw::AdamW;
use crate::train::{train_step, train_step_marked};
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub steps: usize,
    pub warmup: usize,
    pub peak_tflops: f64,
    /// Time the phases of a step too (see [`phases`]).
    pub phases: bool,
    /// Record the GPU's timeline of [`TRACE_STEPS`] more steps into this file (Trace Event JSON,
    /// [`crate::timeline`]) and its summary into the line's "trace".
    pub trace: Option<std::path::PathBuf>,
}

/// Steps recorded by `--trace`, after the timed ones.
pub const TRACE_STEPS: usize = 5;

/// Model FLOPs per trained token (see module doc).
pub fn flops_per_token(cfg: &Config) -> f64 {
    let m = &cfg.model;
    let n = param_count(m, &cfg.memory) as f64;
    6.0 * (n - (m.vocab * m.d_model) as f64) + 12.0 * (m.n_layers * m.d_model * m.window) as f64
}

/// Runs the benchmark and returns the JSON line.
pub fn bench(mut cfg: Config, o: &BenchOptions) -> Result<serde_json::Value> {
    if cfg.model.vocab == 0 {
        cfg.model.vocab = padded_vocab(cfg.data.vocab_size);
    }
    if let Some(path) = &o.trace {
        if cfg.train.gpus > 1 {
            bail!("--trace with --gpus {}: records one GPU's timeline; trace with --gpus 1", cfg.train.gpus);
        }
        if !cfg.train.device.is_cuda() {
            bail!("--trace records what the GPU runs: it needs --device cuda (the run's device is {})", cfg.train.device.name());
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            bail!("--trace {}: directory {} does not exist", path.display(), dir.display());
        }
        #[cfg(feature = "cuda")]
        if !crate::kernels::trace::available() {
            bail!("--trace: CUPTI (libcupti.so) not found: add the directory holding it (the CUDA toolkit's extras/CUPTI/lib64) to LD_LIBRARY_PATH");
        }
    }
    crate::backend::check_device(&cfg.train)?;
    crate::dist::join_ranks(cfg.train.gpus, cfg.train.device, "bench")?;
    let device = cfg.train.device;
    crate::with_train_backend!(device, |B, dev| run::<B>(&cfg, o, &dev))
}

#[cfg(feature = "cuda")]
fn reserved_bytes(device: Device) -> Option<u64> {
    use cubecl::Runtime;
    device.is_cuda().then(|| cubecl::cuda::CudaRuntime::client(&crate::backend::cuda_device()).memory_usage().map(|m| m.bytes_reserved).unwrap_or(0))
}

#[cfg(not(feature = "cuda"))]
fn reserved_bytes(_device: Device) -> Option<u64> {
    None
}

/// `nvrtc::host_counters` (zeros without CUDA).
#[cfg(feature = "cuda")]
fn kernel_host() -> [u64; 5] {
    crate::kernels::nvrtc::host_counters()
}

#[cfg(not(feature = "cuda"))]
fn kernel_host() -> [u64; 5] {
    [0; 5]
}

/// Runs `f` while a side thread samples cubecl's pool (on this thread's stream, every
/// millisecond); returns `f`'s result and the most seen of `[bytes in use, bytes reserved]`. Why
/// in use: the pool's reserved bytes include its slack, while PyTorch reports
/// `max_memory_allocated`; this is the like-for-like figure (a lower bound: a peak shorter than the
/// interval can be missed). The timed steps sample nothing: a query waits for cubecl's device
/// thread, which the host would otherwise spend running ahead of the GPU.
#[cfg(feature = "cuda")]
fn peak_in_use<R>(device: Device, f: impl FnOnce() -> R) -> (R, Option<[u64; 2]>) {
    use cubecl::Runtime;
    use std::sync::atomic::{AtomicBool, Ordering};
    if !device.is_cuda() {
        return (f(), None);
    }
    let (stream, client) = (cubecl::stream_id::StreamId::current(), cubecl::cuda::CudaRuntime::client(&crate::backend::cuda_device()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = [0, 0];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = stream.executes(|| client.memory_usage()) {
                    peak = [peak[0].max(m.bytes_in_use), peak[1].max(m.bytes_reserved)];
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            peak
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        (r, sampler.join().ok())
    })
}

#[cfg(not(feature = "cuda"))]
fn peak_in_use<R>(_device: Device, f: impl FnOnce() -> R) -> (R, Option<[u64; 2]>) {
    (f(), None)
}

/// The kernels a run uses, as they run: on the CPU burn's ops but the loss, the attention (one
/// op: "fused" unless "burn") and the gate; on CUDA with the attention the model can take
/// ([`Config::attention_as_run`]).
fn kernels_run(cfg: &Config) -> Kernels {
    let k = cfg.train.kernels();
    if !cfg.train.device.is_cuda() {
        let attention = if k.attention == AttnKernel::Burn { AttnKernel::Burn } else { AttnKernel::Fused };
        return Kernels { matmul: k.matmul, ce: k.ce, attention, gate: k.gate, ..Kernels::REFERENCE };
    }
    Kernels { attention: cfg.attention_as_run().0, ..k }
}

/// "baka-cpu", or "baka-cuda" plus the kernel settings that differ from the defaults, e.g.
/// "baka-cuda (burn matmul)", so rows of one comparison stay apart in `bench/compare.py`.
fn system(t: &TrainConfig) -> String {
    if !t.device.is_cuda() {
        return "baka-cpu".into();
    }
    let (k, fast) = (t.kernels(), Kernels { ce_chunk: TrainConfig::default().ce_chunk, ..Kernels::FAST });
    let ce = if k.ce == Ce::Chunked { format!("chunked CE of {} rows", k.ce_chunk) } else { format!("{} CE", serde_name(&k.ce)) };
    let pool = format!("{} memory pool", serde_name(&t.memory_pool));
    let attention = format!("{} attention", serde_name(&k.attention));
    let burn = |a: bool, what: &'static str| (a, what.to_string());
    let differ: Vec<String> = [
        burn(k.matmul != fast.matmul, "burn matmul"),
        (k.attention != fast.attention, attention),
        burn(k.embedding != fast.embedding, "burn embedding"),
        burn(k.norm != fast.norm, "burn layernorm"),
        burn(k.gate != fast.gate, "burn gate"),
        burn(!t.fused_adamw(), "burn adamw"),
        (k.ce != fast.ce || k.ce_chunk != fast.ce_chunk, ce),
        (t.memory_pool != TrainConfig::default().memory_pool, pool),
    ]
    .into_iter()
    .filter(|x| x.0)
    .map(|x| x.1)
    .collect();
    if differ.is_empty() {
        "baka-cuda".into()
    } else {
        format!("baka-cuda ({})", differ.join(", "))
    }
}

fn run<B: TrainOps>(cfg: &Config, o: &BenchOptions, dev: &B::Device) -> Result<serde_json::Value> {
    let t = &cfg.train;
    let len = t.n_windows * cfg.model.window;
    let v = cfg.model.vocab as u64;
    // among several ranks (`--gpus N`) rank r takes the r-th share of the same global batch
    let share = t.batch / crate::dist::size();
    let first_row = crate::dist::rank() * share;
    let batch = |step: usize| {
        let ids: Vec<i64> = (first_row * (len + 1)..(first_row + share) * (len + 1)).map(|i| (mix(((step as u64) << 32) ^ i as u64) % v) as i64).collect();
        let all = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [share, len + 1]), dev);
        (all.clone().narrow(1, 0, len), all.narrow(1, 1, len))
    };
    let mut model = BakaLM::<B>::new(&cfg.model, &cfg.memory, t.seed, dev).with_kernels(t.dtype.float(), t.kernels());
    let mut optim = AdamW::<B>::new(t);
    let t_warm = Instant::now();
    let mut first = f32::NAN;
    for i in 0..o.warmup {
        let (x, y) = batch(i);
        let (m, loss, _) = train_step(model, &mut optim, x, y, t.lr, t)?;
        model = m;
        if i == 0 {
            first = loss;
        }
    }
    B::sync(dev)?;
    let warm_s = t_warm.elapsed().as_secs_f64();
    let mut peak = reserved_bytes(t.device).unwrap_or(0);
    let t0 = Instant::now();
    let pending;
    (model, pending) = steps(model, &mut optim, t, o.warmup..o.warmup + o.steps, &batch)?;
    B::sync(dev)?;
    let dt = t0.elapsed().as_secs_f64();
    peak = peak.max(reserved_bytes(t.device).unwrap_or(0));
    let last = pending.map_or(f32::NAN, |p| p.wait(&mut optim).0);
    let tok_s = (o.steps * t.batch * len) as f64 / dt;
    // three more steps, untimed, with the memory sampler running
    let (model, in_use) = peak_in_use(t.device, || -> Result<BakaLM<B>> {
        let mut model = model;
        for i in 0..3 {
            let (x, y) = batch(o.warmup + o.steps + i);
            model = train_step(model, &mut optim, x, y, t.lr, t)?.0;
        }
        B::sync(dev)?;
        Ok(model)
    });
    let mut model = model?;
    let gpu = t.device.is_cuda();
    let k = kernels_run(cfg);
    let fused = |f: crate::kernels::ops::Fusion| serde_name(&f);
    let mut line = serde_json::json!({
        "system": system(t),
        "branch": cfg.branch,
        "backend": if gpu { "burn-cuda 0.21 (fusion, autotune)" } else { "burn-flex 0.21" },
        "kernels": serde_name(&t.kernels),
        // on the CPU bakallm's linears call the gemm crate (cpu_linear.rs), not cuBLAS
        "matmul": if !gpu && k.matmul == Matmul::Cublas { "gemm".to_string() } else { serde_name(&k.matmul) },
        "ce": serde_name(&k.ce),
        "ce_chunk": (gpu && k.ce == Ce::Chunked).then_some(k.ce_chunk),
        "attention": serde_name(&k.attention),
        "embedding": fused(k.embedding),
        "layernorm": fused(k.norm),
        "gate": fused(k.gate),
        "adamw": if t.fused_adamw() { "fused" } else { "burn" },
        "memory_pool": gpu.then(|| serde_name(&t.memory_pool)),
        "dtype": t.dtype.name(),
        "batch": t.batch * t.n_windows,
        "gpus": t.gpus,
        "seq": cfg.model.window,
        "params": param_count(&cfg.model, &cfg.memory),
        "tok_s": (tok_s * 10.0).round() / 10.0,
        "ms_step": (dt / o.steps as f64 * 1e6).round() / 1e3,
        // per GPU: the whole run's tokens over the GPUs' peak
        "mfu": if gpu { Some(tok_s * flops_per_token(cfg) / (o.peak_tflops * 1e12 * t.gpus as f64)) } else { None },
        "peak_mem_gib": if gpu { Some(peak.max(in_use.map_or(0, |[_, r]| r)) as f64 / (1u64 << 30) as f64) } else { None },
        "peak_in_use_gib": in_use.map(|[b, _]| b as f64 / (1u64 << 30) as f64),
        "warmup_s": (warm_s * 10.0).round() / 10.0,
        "loss_first": first,
        "loss_last": last,
    });
    if o.phases {
        let mut next = o.warmup + o.steps + 3;
        for (key, sync) in [("phases_ms", false), ("phases_synced_ms", true)] {
            let ms;
            (model, ms) = phases(model, &mut optim, o.steps, sync, t, dev, |_| {
                next += 1;
                batch(next)
            })?;
            line[key] = ms;
        }
    }
    if let Some(path) = &o.trace {
        let rec = crate::kernels::trace::Recorder::start().map_err(anyhow::Error::msg).context("--trace")?;
        let mut synced_steps = |model, range| -> Result<BakaLM<B>> {
            let (model, pending) = steps(model, &mut optim, t, range, &batch)?;
            B::sync(dev)?;
            if let Some(p) = pending {
                p.wait(&mut optim);
            }
            Ok(model)
        };
        // one step first, not kept: CUPTI's start-up (its first launches wait for it)
        let from = o.warmup + o.steps + 3;
        model = synced_steps(model, from..from + 1)?;
        let kept_from = rec.now_ns().map_err(anyhow::Error::msg)?;
        synced_steps(model, from + 1..from + 1 + TRACE_STEPS)?;
        let (acts, dropped) = rec.stop(kept_from).map_err(anyhow::Error::msg).context("--trace")?;
        let events = serde_json::to_vec(&crate::timeline::chrome_trace(&acts))?;
        crate::fsutil::write_atomic(path, &events).with_context(|| format!("--trace {}", path.display()))?;
        line["trace"] = crate::timeline::summary(&acts, TRACE_STEPS, dropped);
        line["trace"]["file"] = path.display().to_string().into();
    }
    Ok(line)
}

/// Training steps `range` (their batches by index) as `baka train` runs them: each step's loss is
/// read once the next is queued (`StepStats::later`). Returns the model and the last step's
/// pending read (to `wait` on).
fn steps<B: TrainOps>(
    mut model: BakaLM<B>,
    optim: &mut AdamW<B>,
    t: &TrainConfig,
    range: std::ops::Range<usize>,
    batch: &impl Fn(usize) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>),
) -> Result<(BakaLM<B>, Option<crate::train::PendingStats>)> {
    let mut pending = None;
    for i in range {
        let (x, y) = batch(i);
        let (m, stats) = train_step_marked(model, optim, x, y, t.lr, t, &mut |_| {})?;
        model = m;
        if let Some(p) = pending.replace(stats.later()) {
            p.wait(optim);
        }
    }
    Ok((model, pending))
}

/// Mean milliseconds per phase of [`train_step_marked`] over `steps` steps. Without `sync` they are
/// the host's: where it spends the step ("read" includes waiting for the device to catch up); with a
/// device sync after each phase, each is that phase's device time (or its host time, if longer).
fn phases<B: TrainOps>(
    mut model: BakaLM<B>,
    optim: &mut AdamW<B>,
    steps: usize,
    sync: bool,
    t: &crate::config::TrainConfig,
    dev: &B::Device,
    mut batch: impl FnMut(usize) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>),
) -> Result<(BakaLM<B>, serde_json::Value)> {
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    let k0 = kernel_host();
    for i in 0..steps {
        let (x, y) = batch(i);
        B::sync(dev)?;
        let mut last = Instant::now();
        let mut mark = |name: &'static str| {
            if sync {
                B::sync(dev).expect("device sync");
            }
            let dt = std::mem::replace(&mut last, Instant::now()).elapsed().as_secs_f64() * 1e3;
            match sums.iter_mut().find(|s| s.0 == name) {
                Some(s) => s.1 += dt,
                None => sums.push((name, dt)),
            }
        };
        let stats;
        (model, stats) = train_step_marked(model, optim, x, y, t.lr, t, &mut mark)?;
        stats.now().wait(optim);
        mark("read");
    }
    B::sync(dev)?;
    let per_step = |v: f64| serde_json::json!((v / steps as f64 * 100.0).round() / 100.0);
    let mut ms: serde_json::Map<String, serde_json::Value> = sums.into_iter().map(|(k, v)| (k.to_string(), per_step(v))).collect();
    let k = kernel_host();
    if k[2] > k0[2] {
        // bakallm's ops, per step: host ms handing them to cubecl's device thread, ms launching,
        // launches, ms of the device thread in their tasks, ms of it in cuBLAS calls
        let d = |i: usize| per_step((k[i] - k0[i]) as f64 / 1e6);
        let launches = (k[2] - k0[2]) / steps as u64;
        ms.insert("kernels".into(), serde_json::json!({"pointers": d(0), "launch": d(1), "launches": launches, "device_tasks": d(3), "cublas": d(4)}));
    }
    Ok((model, serde_json::Value::Object(ms)))
}
