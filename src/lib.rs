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
pub mod weights;

pub mod cli;
pub mod data;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod faults;
pub mod fsutil;
pub mod generate;
pub mod train;
pub mod utf8_stream;
