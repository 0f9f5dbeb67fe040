//! `baka`: the command line. Only argument parsing lives here; every command calls the library.

use anyhow::Result;
use bakallm::cli;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "baka", version, about = "Train small LMs from scratch and compare positional embeddings (BakaLLM in Rust/burn)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch the corpus, train the BPE tokenizer and write the token files (idempotent).
    ///
    /// Example: baka prepare experiments/quickstart.toml
    Prepare {
        /// Experiment whose data settings to use (default: the built-in defaults).
        experiment: Option<PathBuf>,
        /// Override a data setting, e.g. --set data.vocab_size=4096 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List the named branches (branches/*.toml), one line each.
    ///
    /// Example: baka branches
    Branches,
    /// Train one branch; writes config.toml, metrics.csv, eval.csv, run.json and a checkpoint.
    ///
    /// Example: baka train --branch 002_nope --steps 300 --set model.d_model=128 --set model.n_layers=2
    Train {
        /// Branch name (002_nope or nope) or path to a branch TOML.
        #[arg(long)]
        branch: String,
        /// Shorthand for --set train.steps=N.
        #[arg(long)]
        steps: Option<usize>,
        /// Shorthand for --set train.seed=S.
        #[arg(long)]
        seed: Option<u64>,
        /// Shorthand for --set train.device=D (cpu or cuda).
        #[arg(long)]
        device: Option<bakallm::config::Device>,
        /// Override any setting by its dotted key, e.g. --set model.d_model=128 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run directory (default runs/<branch>-s<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the run directory's last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Shorthand for --set train.gpus=N: N processes, one per GPU of this machine, each
        /// with batch / N of every step's samples (docs/multi-gpu.md).
        #[arg(long)]
        gpus: Option<usize>,
    },
    /// Train every branch × seed of an experiment that is not finished yet, then draw its charts.
    ///
    /// Example: baka experiment experiments/quickstart.toml --only 002_nope
    Experiment {
        /// The experiment file, e.g. experiments/quickstart.toml.
        experiment: PathBuf,
        /// Only this branch (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Continue unfinished runs from their last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Override a setting for every run, e.g. --set train.device=cuda (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Runs trained at once, one thread each (default: one per core on the CPU, one on CUDA);
        /// the results are identical to one at a time.
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        jobs: usize,
        /// Train only this NAME:SEED, e.g. 001_pristine:1 (what each job runs).
        #[arg(long, hide = true)]
        one: Option<String>,
        /// Shorthand for --set train.gpus=N: every run over N GPUs, one run at a time.
        #[arg(long)]
        gpus: Option<usize>,
    },
    /// Draw charts from CSVs alone: an experiment's runs, or any run directories.
    ///
    /// Example: baka plot experiments/quickstart.toml --steps 60..100
    ///
    /// Example: baka plot runs/001_pristine-s1 runs/f32 --by train.dtype --out plots/dtype
    Plot {
        /// An experiment TOML, or one or more run directories.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output directory (default plots/<experiment> or plots/runs).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also draw a zoom of this training-step range, e.g. 8000..9000.
        #[arg(long)]
        steps: Option<String>,
        /// Split series by this config key too (repeatable), e.g. train.dtype or train.lr:
        /// a branch's runs become "001_pristine dtype=f32", "001_pristine dtype=bf16".
        #[arg(long)]
        by: Vec<String>,
    },
    /// Charts + plots/<experiment>/report.md: table with CIs, volatility, verdict.
    ///
    /// Example: baka report experiments/quickstart.toml
    Report {
        /// The experiment file, e.g. experiments/posenc.toml (reads its runs/ or shipped results/).
        experiment: PathBuf,
        /// Draw the zoom of this training-step range instead of the experiment's `zoom`.
        #[arg(long)]
        steps: Option<String>,
    },
    /// Loss, perplexity and bits per byte of a run on the test (or validation) split or any text.
    ///
    /// Default: samples of the trained number of windows, loss per window index (--windows N
    /// carries memory through more windows: the recurrence test).
    ///
    /// --window L: one attention window of L tokens per sample, positions from 0, samples spread
    /// evenly over the split, loss by position (train short, test long).
    ///
    /// --text FILE|DIR: score any UTF-8 text (a file or a folder of .txt / .jsonl) with the run's tokenizer.
    ///
    /// Examples: baka eval experiments/quickstart/runs/002_nope-s1 --window 256
    ///
    ///           baka eval experiments/quickstart/runs/002_nope-s1 --text README.md
    Eval {
        /// A run directory or a weights/*.safetensors export.
        source: PathBuf,
        /// Windows per sample, carried through memory (default: as trained).
        #[arg(long)]
        windows: Option<usize>,
        /// One attention window of this many tokens per sample (e.g. 2048 for a model trained at 512).
        #[arg(long)]
        window: Option<usize>,
        /// Samples of windows (default: train.test_samples on test, train.eval_samples on val).
        #[arg(long)]
        samples: Option<usize>,
        /// Score this UTF-8 text file or folder of .txt / .jsonl files instead of a split.
        #[arg(long)]
        text: Option<PathBuf>,
        /// The held-out split to score.
        #[arg(long, value_enum, default_value = "test")]
        split: bakallm::eval::command::Split,
        /// At most this many tokens with --window or --text.
        #[arg(long, default_value_t = 65536)]
        max_tokens: usize,
        /// cpu, or cuda (a binary built with --features cuda).
        #[arg(long, default_value = "cpu")]
        device: bakallm::config::Device,
    },
    /// Export a run's weights to weights/<run>.safetensors (+ .json config, .tokenizer.json).
    ///
    /// Example: baka export experiments/quickstart/runs/002_nope-s1
    Export {
        /// The run directory to export.
        run: PathBuf,
        /// Output file (default weights/<run dir name>.safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the logits of exported weights (or a run) for given token ids, as JSON.
    ///
    /// Example: baka logits weights/002_nope-s1.safetensors --tokens 5,17,300 --windows-of 2
    Logits {
        /// A run directory or a weights/*.safetensors export.
        source: PathBuf,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        /// Read the tokens in windows of this many tokens (default: the model's window).
        #[arg(long)]
        windows_of: Option<usize>,
    },
    /// Sample text from a run or exported weights, printed as the tokens come (whole characters only).
    ///
    /// Example: baka generate experiments/quickstart/runs/001_pristine-s1 --prompt "It was a dark" --max-tokens 50 --temperature 0.8 --top-k 40
    Generate {
        /// A run directory or a weights/*.safetensors export.
        source: PathBuf,
        /// Text to continue (empty: start from the end-of-document token).
        #[arg(long, default_value = "")]
        prompt: String,
        /// Tokens to sample.
        #[arg(long, default_value_t = 100)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// 0 = no top-k filter.
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        /// Seed of the sampler (the same seed gives the same text).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Token ids of a text with a run's (or an export's) tokenizer, as JSON.
    ///
    /// Example: baka encode weights/002_nope-s1.safetensors --text "It was a dark and stormy night."
    Encode {
        /// A run directory or a weights/*.safetensors export.
        source: PathBuf,
        /// The text to encode.
        #[arg(long)]
        text: String,
    },
    /// Training-step throughput on random tokens: one JSON line (tok/s, ms/step, MFU, peak memory).
    ///
    /// Example: baka bench --branch 001_pristine --batch 32 --steps 20 --device cuda
    Bench {
        /// Branch name (001_pristine or pristine) or path to a branch TOML.
        #[arg(long)]
        branch: String,
        /// Windows per step (sets train.batch, with train.n_windows = 1); the JSON's "batch" is
        /// always windows per step (train.batch × train.n_windows).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Untimed steps first (autotuning, allocation).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// cpu or cuda (default: the branch's train.device).
        #[arg(long)]
        device: Option<bakallm::config::Device>,
        /// Dense bf16 peak for the MFU column (H100/H200: 989).
        #[arg(long, default_value_t = 989.0)]
        peak_tflops: f64,
        /// Also time the phases of a step (forward, backward, norm, read, optimizer): once as the
        /// host sees them, once with a device sync after each ("phases_ms", "phases_synced_ms").
        #[arg(long)]
        phases: bool,
        /// Record what the GPU runs during 5 more steps (CUPTI; CUDA builds): the timeline into
        /// FILE (Trace Event JSON, opens in ui.perfetto.dev), its summary into the line's "trace"
        /// (busy and idle time per step, the largest gaps, the kernels taking the most time).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Shorthand for --set train.gpus=N: the step over N GPUs, each with batch / N windows;
        /// "tok_s" is the whole run's, "mfu" per GPU.
        #[arg(long)]
        gpus: Option<usize>,
        /// Override any setting by its dotted key, e.g. --set train.dtype=bf16 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

/// glibc hands every large `free` back to the OS (munmap), so each training step page-faults its
/// tensors in again; keeping freed memory in the heap made CPU training ~2x faster (measured with
/// `baka bench`, see README "Performance").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    // SAFETY: mallopt only changes allocator tuning knobs; called before any thread starts.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Rust ignores SIGPIPE, so `baka … | head` would end in a "Broken pipe" panic; restore the
/// default so a closed pipe ends the process quietly, as for any Unix command-line tool.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: resets one signal to its default action before any thread starts.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

fn main() {
    default_sigpipe();
    keep_freed_memory();
    let cli = Cli::parse();
    let res: Result<()> = match cli.cmd {
        Cmd::Prepare { experiment, sets } => cli::prepare(experiment.as_deref(), &sets),
        Cmd::Branches => cli::branches(),
        Cmd::Train { branch, steps, seed, device, sets, out, resume, gpus } => {
            let all: Vec<String> = (steps.map(|v| format!("train.steps={v}")).into_iter())
                .chain(seed.map(|v| format!("train.seed={v}")))
                .chain(gpus.map(|v| format!("train.gpus={v}")))
                .chain(device.map(|v| format!("train.device=\"{}\"", v.name())))
                .chain(sets)
                .collect();
            cli::train(&branch, &all, out, resume)
        }
        Cmd::Experiment { experiment, only, resume, mut sets, jobs, one, gpus } => {
            sets.extend(gpus.map(|v| format!("train.gpus={v}")));
            cli::experiment(&experiment, &bakallm::experiment::RunOptions { only, resume, sets, jobs, one })
        }
        Cmd::Plot { inputs, out, steps, by } => cli::plot(&inputs, out, steps.as_deref(), &by),
        Cmd::Report { experiment, steps } => cli::report(&experiment, steps.as_deref()),
        Cmd::Bench { branch, batch, steps, warmup, device, peak_tflops, phases, trace, gpus, sets } => {
            let all: Vec<String> = (batch.into_iter().flat_map(|b| [format!("train.batch={b}"), "train.n_windows=1".into()]))
                .chain(device.map(|v| format!("train.device=\"{}\"", v.name())))
                .chain(gpus.map(|v| format!("train.gpus={v}")))
                .chain(sets)
                .collect();
            cli::bench(&branch, &all, &bakallm::bench::BenchOptions { steps, warmup, peak_tflops, phases, trace })
        }
        Cmd::Encode { source, text } => cli::encode(&source, &text),
        Cmd::Eval { source, windows, window, samples, text, split, max_tokens, device } => {
            cli::eval(&bakallm::eval::command::EvalArgs { source, windows, window, samples, text, split, max_tokens, device })
        }
        Cmd::Export { run, out, force } => cli::export(&run, out, force),
        Cmd::Logits { source, tokens, windows_of } => cli::logits(&source, &tokens, windows_of),
        Cmd::Generate { source, prompt, max_tokens, temperature, top_k, seed } => cli::generate(&source, &prompt, &bakallm::generate::GenOptions { max_tokens, temperature, top_k, seed }),
    };
    if let Err(e) = res {
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        // a rank of a multi-GPU run stopped by another's failure says so by its code (dist::launch)
        let by_peer = e.chain().any(|c| c.is::<bakallm::dist::hub::PeerFailed>());
        std::process::exit(if by_peer { bakallm::dist::hub::PEER_EXIT_CODE } else { 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_has_help_text() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "baka {} has no description", sub.get_name());
            for arg in sub.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
                assert!(arg.get_help().is_some(), "baka {} {}: no help text", sub.get_name(), arg.get_id());
            }
        }
    }
}
