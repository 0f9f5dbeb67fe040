//! Several runs of an experiment at once, each a single-threaded `baka experiment --one` process
//! (the CPU's kernels give the same bits with one thread as with several, tested).

use super::{Experiment, Planned, RunOptions};
use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Job {
    label: String,
    child: Child,
    /// Forwards the child's stderr and returns its `error:` line, if any.
    reader: JoinHandle<Option<String>>,
}

/// Trains `plan[i]` for every i in `todo`, `jobs` at a time; on a failure the other jobs finish,
/// then the first failure is the error.
pub fn run_parallel(e: &Experiment, plan: &[Planned], todo: &[usize], opts: &RunOptions, jobs: usize) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the baka binary to start jobs")?;
    let n = plan.len();
    eprintln!("training {} runs, {jobs} at a time (one thread each)", todo.len());
    let (started, mut queue, mut running, mut done) = (Instant::now(), todo.iter(), Vec::<Job>::new(), 0usize);
    let mut failed: Option<String> = None;
    loop {
        while running.len() < jobs && failed.is_none() {
            let Some(&i) = queue.next() else { break };
            let (name, s) = (e.run_name(&plan[i]), plan[i].seed);
            let mut cmd = Command::new(&exe);
            cmd.arg("experiment").arg(&e.path).arg("--one").arg(format!("{name}:{s}"));
            if opts.resume {
                cmd.arg("--resume");
            }
            for set in &opts.sets {
                cmd.arg("--set").arg(set);
            }
            cmd.env("RAYON_NUM_THREADS", "1").env("BAKA_PLAIN_PROGRESS", "1").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
            let mut child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
            let stderr = child.stderr.take().expect("piped");
            let reader = std::thread::spawn(move || {
                let mut error = None;
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    match line.strip_prefix("error: ") {
                        Some(msg) => error = Some(msg.to_string()),
                        // the experiment said it once before starting the jobs
                        None if line.starts_with("data ready: ") && line.ends_with("(nothing to do)") => {}
                        None => eprintln!("{line}"),
                    }
                }
                error
            });
            running.push(Job { label: format!("[{}/{n}] {name} s{s}", i + 1), child, reader });
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut k = 0;
        while k < running.len() {
            let Some(status) = running[k].child.try_wait()? else {
                k += 1;
                continue;
            };
            let job = running.remove(k);
            let error = job.reader.join().unwrap_or(None);
            if status.success() {
                done += 1;
                let left = todo.len() - done;
                let per = started.elapsed().as_secs_f64() / done as f64;
                eprintln!("{}: done; {done} of {} runs to train finished, about {} left", job.label, todo.len(), crate::progress::duration(per * left as f64));
            } else if failed.is_none() {
                failed = Some(format!("{}: {}", job.label, error.unwrap_or_else(|| format!("stopped ({status})"))));
            }
        }
    }
    if let Some(f) = failed {
        bail!("{f}");
    }
    Ok(())
}
