//! bakallm: train small language models from scratch and run positional-embedding ablations.
//! See README.md for the tour; DESIGN choices are documented next to the code they shape.

pub mod backend;
pub mod config;
pub mod model;
pub mod state;

/// Temporary stand-in until the data module lands.
pub mod data {
    use serde::{Deserialize, Serialize};
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    pub struct DataConfig {
        pub corpus: String,
        pub vocab_size: usize,
        pub tokenizer: Option<String>,
        pub cache_dir: String,
        pub val_fraction: f64,
        pub block_bytes: usize,
        pub latin1_fallback: bool,
    }
    impl Default for DataConfig {
        fn default() -> Self {
            Self { corpus: "default".into(), vocab_size: 8192, tokenizer: None, cache_dir: "data".into(), val_fraction: 0.02, block_bytes: 65536, latin1_fallback: false }
        }
    }
    impl DataConfig {
        pub fn validate(&self) -> anyhow::Result<()> {
            Ok(())
        }
    }
}
