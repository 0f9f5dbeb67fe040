//! Fault injection for the crash tests: `BAKA_FAULT=<point>` or `<point>@<n>` kills the process
//! (abort, like `kill -9`: no destructors, no flushing) the n-th time `<point>` is reached, or
//! with `BAKA_FAULT=ioerror:<point>` makes that point return a write error. Unset: no effect.
//! `BAKA_FAULT=hang:<point>` makes the process stop answering there, for good.
//! With `BAKA_FAULT_RANK=<r>` only rank r of a multi-process run (`RANK`, crate::dist) is hit.

use std::sync::atomic::{AtomicUsize, Ordering};

static HITS: AtomicUsize = AtomicUsize::new(0);

fn armed(point: &str, prefix: &str) -> bool {
    let Ok(spec) = std::env::var("BAKA_FAULT") else { return false };
    if let Ok(only) = std::env::var("BAKA_FAULT_RANK") {
        if std::env::var("RANK").unwrap_or_else(|_| "0".into()) != only {
            return false;
        }
    }
    let Some(spec) = spec.strip_prefix(prefix) else { return false };
    let (name, nth) = spec.split_once('@').map_or((spec, 1), |(n, k)| (n, k.parse().unwrap_or(1)));
    name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth
}

/// A place where a crash (`BAKA_FAULT=<point>`) or a hang (`BAKA_FAULT=hang:<point>`: the
/// process sleeps for good) is simulated.
pub fn hit(point: &str) {
    if armed(point, "") {
        eprintln!("BAKA_FAULT: aborting at {point}");
        std::process::abort();
    }
    if armed(point, "hang:") {
        eprintln!("BAKA_FAULT: hanging at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// A place where a write error (e.g. a full disk) is simulated.
pub fn io(point: &str) -> std::io::Result<()> {
    if armed(point, "ioerror:") {
        return Err(std::io::Error::other(format!("injected write error at {point} (BAKA_FAULT)")));
    }
    Ok(())
}
