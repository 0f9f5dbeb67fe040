//! Training: a hand-written loop (not burn-train's `Learner`) because a step carries a
//! `BakaState` across windows with truncated BPTT, and resume must reproduce CSV rows exactly.
//! burn supplies the autodiff, AdamW's math and state, and the record (checkpoint) format.

pub mod adamw;
pub mod checkpoint;
pub mod metrics;
pub mod optim;
mod step;
mod trainer;

pub use step::{batch_loss, train_step, train_step_marked, PendingStats, StepStats};
pub use trainer::{finished, prepare_run, train, RunSummary, TrainOptions};
