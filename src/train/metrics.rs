//! The run's CSV files: append-only, header once, one flushed row at a time.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub const METRICS_HEADER: &str = "step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s";
pub const EVAL_HEADER: &str = "step,window,loss";

/// An open CSV file, or nothing (`discard`: a rank other than 0 writes no files).
pub struct CsvLog {
    file: Option<File>,
    path: PathBuf,
}

impl CsvLog {
    /// Creates the file with its header, or (when resuming) keeps the rows up to and including
    /// `keep_through_step` and drops later ones, so a resumed run never duplicates a row.
    pub fn open(path: &Path, header: &str, keep_through_step: Option<u64>) -> Result<Self> {
        let mut kept = String::new();
        if let (Some(last), true) = (keep_through_step, path.exists()) {
            let f = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
                let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
                let complete = line.split(',').count() == header.split(',').count();
                if i == 0 || (complete && step.is_some_and(|s| s <= last)) {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        }
        if kept.is_empty() {
            kept = format!("{header}\n");
        }
        crate::fsutil::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).with_context(|| format!("{}: cannot open for appending", path.display()))?;
        Ok(Self { file: Some(file), path: path.to_path_buf() })
    }

    /// A log whose rows go nowhere.
    pub fn discard() -> Self {
        Self { file: None, path: PathBuf::new() }
    }

    pub fn row(&mut self, fields: &[String]) -> Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        crate::faults::io("csv-row").and_then(|_| writeln!(file, "{}", fields.join(","))).and_then(|_| file.flush()).with_context(|| format!("{}: write failed", self.path.display()))
    }
}

/// Shortest text that reads back to the same f32 (so CSVs compare bit-for-bit).
pub fn f(x: f32) -> String {
    format!("{x}")
}
