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
        device: Option<String>,
        /// Override any setting by its dotted key, e.g. --set model.d_model=128 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run directory (default runs/<branch>-s<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the run directory's last checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Train every branch × seed of an experiment that is not finished yet, then draw its charts.
    ///
    /// Example: baka experiment experiments/quickstart.toml --only 002_nope
    Experiment {
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
    },
    /// Draw charts from CSVs alone: an experiment's runs, or any run directories.
    ///
    /// Example: baka plot experiments/quickstart.toml --steps 100..200
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
    },
    /// Charts + plots/<experiment>/report.md: table with CIs, volatility, verdict.
    ///
    /// Example: baka report experiments/quickstart.toml
    Report {
        experiment: PathBuf,
        /// Also draw a zoom of this training-step range.
        #[arg(long)]
        steps: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let res: Result<()> = match cli.cmd {
        Cmd::Prepare { experiment, sets } => cli::prepare(experiment.as_deref(), &sets),
        Cmd::Branches => cli::branches(),
        Cmd::Train { branch, steps, seed, device, sets, out, resume } => {
            let mut all = Vec::new();
            steps.map(|v| all.push(format!("train.steps={v}")));
            seed.map(|v| all.push(format!("train.seed={v}")));
            device.map(|v| all.push(format!("train.device=\"{v}\"")));
            all.extend(sets);
            cli::train(&branch, &all, out, resume)
        }
        Cmd::Experiment { experiment, only, resume, sets } => cli::experiment(&experiment, &bakallm::experiment::RunOptions { only, resume, sets }),
        Cmd::Plot { inputs, out, steps } => cli::plot(&inputs, out, steps.as_deref()),
        Cmd::Report { experiment, steps } => cli::report(&experiment, steps.as_deref()),
    };
    if let Err(e) = res {
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
