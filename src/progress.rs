//! Progress bars on a terminal (indicatif); hidden when stderr is not one.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` items prefixed by `label`, with elapsed time and ETA (hidden also when
/// `BAKA_PLAIN_PROGRESS` is set: the jobs of an experiment print plain lines).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || std::env::var_os("BAKA_PLAIN_PROGRESS").is_some() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len).with_prefix(label.to_string());
    pb.set_style(ProgressStyle::with_template("{prefix} {bar:28.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]").expect("template"));
    pb
}

/// A bar of `len` bytes (shown in MB, with the rate), hidden like [`bar`].
pub fn bytes_bar(len: u64, label: &str) -> ProgressBar {
    let pb = bar(len, label);
    pb.set_style(ProgressStyle::with_template("{prefix} {bar:28.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} [{elapsed_precise} < {eta_precise}]").expect("template"));
    pb
}

/// "45 s", "3 min 20 s", "1 h 05 min".
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
