//! bakallm: train small language models from scratch and run positional-embedding ablations.
//! See README.md for the tour; DESIGN choices are documented next to the code they shape.

pub mod backend;
pub mod bench;
pub mod config;
/// The model's operations and their kernels (the workspace crate `crates/bakallm-kernels`).
pub use bakallm_kernels as kernels;
pub mod model;
pub mod plot;
pub mod progress;
pub mod report;
pub mod state;
pub mod stats;
pub mod timeline;
pub mod weights;

pub mod cli;
pub mod data;
pub mod dist;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod faults;
pub mod fsutil;
pub mod generate;
pub mod train;
pub mod utf8_stream;

/// Holds the tests that build or differentiate autodiff graphs one at a time: burn-autodiff 0.21's
/// `backward()` sweeps every graph in the process and can free steps another thread is still
/// building, losing a gradient (tracel-ai/burn#5573). Training runs one graph at a time (each
/// experiment job is its own process); only tests run side by side in one process.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
