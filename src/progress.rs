//! Progress bars on a terminal (indicatif); hidden when stderr is not one.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` items prefixed by `label`, with elapsed time and ETA.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len).with_prefix(label.to_string());
    pb.set_style(ProgressStyle::with_template("{prefix} {bar:28.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]").expect("template"));
    pb
}
