//! Data-parallel training: one process per GPU (a *rank*), each with a share of every step's
//! batch, the gradients averaged over the ranks before the clip and AdamW, so that every rank takes
//! the same step on the same weights.
//!
//! How the ranks find each other is torchrun's convention: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`
//! (the GPU this process uses on its node), `MASTER_ADDR` and `MASTER_PORT` (rank 0's machine;
//! its hub listens on the next port). `baka train --gpus N` without them starts N copies of itself on this machine with
//! them set ([`launch`]) and stops all of them when one fails; on several machines a launcher
//! sets them (docs/multi-gpu.md).

pub mod grads;
pub mod hub;

use anyhow::{anyhow, bail, Context, Result};
use hub::Hub;
use std::sync::{Mutex, OnceLock};

/// This process's place among the ranks (`WORLD_SIZE` 1 or unset: alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    /// Where rank 0's hub listens: `MASTER_ADDR:BAKA_HUB_PORT`, by default `MASTER_PORT + 1`
    /// (torchrun's agent holds `MASTER_PORT` itself).
    pub addr: String,
}

impl World {
    /// The world the environment describes: `None` when `WORLD_SIZE` is unset.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(size) = var("WORLD_SIZE") else { return Ok(None) };
        let num = |k: &str, v: &str| v.trim().parse::<usize>().map_err(|_| anyhow!("{k}={v:?}: expected a whole number"));
        let size = num("WORLD_SIZE", &size)?;
        if size == 0 {
            bail!("WORLD_SIZE=0: expected at least 1");
        }
        let get = |k: &str| var(k).ok_or_else(|| anyhow!("WORLD_SIZE is set but {k} is not (torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)"));
        let rank = num("RANK", &get("RANK")?)?;
        if rank >= size {
            bail!("RANK={rank}: expected below WORLD_SIZE={size}");
        }
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", &v)?,
            None => rank,
        };
        let addr = if size > 1 {
            let port_of = |k: &str, v: &str| num(k, v).ok().filter(|&p| (1..65536).contains(&p)).ok_or_else(|| anyhow!("{k}={v:?}: expected a port number, 1 to 65535"));
            let master = port_of("MASTER_PORT", &get("MASTER_PORT")?)?;
            let hub = match var("BAKA_HUB_PORT") {
                Some(v) => port_of("BAKA_HUB_PORT", &v)?,
                None if master < 65535 => master + 1,
                None => bail!("MASTER_PORT=65535: set BAKA_HUB_PORT (the hub listens on MASTER_PORT + 1 by default)"),
            };
            format!("{}:{hub}", get("MASTER_ADDR")?.trim())
        } else {
            String::new()
        };
        Ok(Some(Self { rank, size, local_rank, addr }))
    }
}

/// The process's connections to the other ranks, once [`join`] has made them.
static HUB: OnceLock<Mutex<Hub>> = OnceLock::new();

/// Joins the ranks the environment describes (once per process; later calls return the same
/// world). `None`: a single process.
pub fn join() -> Result<Option<World>> {
    let Some(world) = World::from_env()? else { return Ok(None) };
    if HUB.get().is_none() {
        let hub = Hub::connect(world.rank, world.size, &world.addr)?;
        let _ = HUB.set(Mutex::new(hub));
    }
    Ok(Some(world))
}

/// For a command of `gpus` ranks (`train.gpus`; `command`: `train`, `bench`, for the message):
/// checks that the environment describes that many, joins them and sets up the GPUs'
/// collective ([`setup_gpu_collective`]). One rank: nothing to do.
pub fn join_ranks(gpus: usize, device: crate::config::Device, command: &str) -> Result<()> {
    match World::from_env()? {
        Some(w) if w.size != gpus => bail!("WORLD_SIZE={} but train.gpus = {gpus}: expected the same number of ranks", w.size),
        None if gpus > 1 => bail!("train.gpus = {gpus}: start it with `baka {command} --gpus {gpus}`, or with a launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (docs/multi-gpu.md)"),
        _ => {}
    }
    join()?;
    setup_gpu_collective(device)
}

/// Runs `f` on the hub, if this process has joined ranks (else `None`).
pub fn with_hub<T>(f: impl FnOnce(&mut Hub) -> Result<T>) -> Result<Option<T>> {
    match HUB.get() {
        None => Ok(None),
        Some(h) => f(&mut h.lock().unwrap_or_else(|e| e.into_inner())).map(Some),
    }
}

/// This process's rank (0 alone; before [`join`], as the environment says).
pub fn rank() -> usize {
    match HUB.get() {
        Some(h) => h.lock().unwrap_or_else(|e| e.into_inner()).rank(),
        None => World::from_env().ok().flatten().map_or(0, |w| w.rank),
    }
}

/// The number of ranks (1 alone).
pub fn size() -> usize {
    HUB.get().map_or(1, |h| h.lock().unwrap_or_else(|e| e.into_inner()).size())
}

/// Whether this process writes the run's files (rank 0, or alone).
pub fn is_writer() -> bool {
    rank() == 0
}

/// Waits for every rank (nothing alone).
pub fn barrier() -> Result<()> {
    with_hub(|h| h.barrier()).map(|_| ())
}

/// The GPU this process trains on: `LOCAL_RANK` among several ranks, else 0.
pub fn gpu_index() -> usize {
    match World::from_env() {
        Ok(Some(w)) => w.local_rank,
        _ => 0,
    }
}

/// On CUDA among several ranks: the gradients are averaged by NCCL on the GPUs (rank 0 makes the
/// communicator's id and sends it to the others), unless `BAKA_COLLECTIVE=host` (through the
/// host, as on the CPU). Every rank calls it, at the same point.
pub fn setup_gpu_collective(device: crate::config::Device) -> Result<()> {
    if size() == 1 || !device.is_cuda() {
        return Ok(());
    }
    #[cfg(feature = "cuda")]
    {
        let gpus = crate::kernels::nccl::gpu_count().map_err(anyhow::Error::msg)?;
        if gpu_index() >= gpus {
            bail!("rank {} would train on GPU {} (LOCAL_RANK), but this machine shows {gpus} GPU(s): --gpus N needs N GPUs", rank(), gpu_index());
        }
    }
    match std::env::var("BAKA_COLLECTIVE").as_deref() {
        Ok("host") => return Ok(()),
        Ok("nccl") | Err(_) => {}
        Ok(v) => bail!("BAKA_COLLECTIVE={v:?}: expected \"nccl\" (the default on CUDA) or \"host\""),
    }
    #[cfg(feature = "cuda")]
    {
        use crate::kernels::nccl;
        if nccl::configured() {
            return Ok(()); // an earlier run of this process (an experiment's) set it up
        }
        nccl::available().map_err(|e| anyhow!("rank {}: {e}", rank()))?;
        let id = if rank() == 0 { nccl::unique_id().map_err(anyhow::Error::msg)?.to_vec() } else { vec![] };
        let id = with_hub(|h| h.broadcast(&id))?.expect("joined");
        let id: [u8; nccl::ID_BYTES] = id.try_into().map_err(|_| anyhow!("rank 0 sent an NCCL id of the wrong size"))?;
        nccl::configure(rank(), size(), id);
    }
    Ok(())
}

/// A free TCP port on this machine (the OS's pick; free when this returns).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Where a command of several ranks starts them: if `trains` (the settings of the runs it will
/// train, one `train.gpus` among them) ask for more than one rank and this process is not one
/// already, checks their device, starts the ranks ([`launch`]) and returns `true` once they have
/// finished; else `false` (this process trains).
pub fn start_ranks(trains: &[&crate::config::TrainConfig], then: &str) -> Result<bool> {
    let gpus = trains.first().map_or(1, |t| t.gpus);
    if gpus == 1 || World::from_env()?.is_some() {
        return Ok(false);
    }
    for t in trains {
        crate::backend::check_device(t)?;
    }
    launch(gpus, then).map(|_| true)
}

/// Starts `n` copies of this process with the same arguments, ranks 0..n on this machine, and waits
/// for them. When one fails the others are stopped, and the error names it (`then`: what to do
/// next, for the message). NCCL's NVLink multicast stays off in the children (`NCCL_NVLS_ENABLE=0`).
pub fn launch(n: usize, then: &str) -> Result<()> {
    let exe = std::env::current_exe().context("finding this program to start its ranks")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let port = free_port()?.to_string();
    let mut children = Vec::with_capacity(n);
    for r in 0..n {
        let child = std::process::Command::new(&exe)
            .args(&args)
            .env("RANK", r.to_string())
            .env("LOCAL_RANK", r.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .env("BAKA_HUB_PORT", &port)
            .env("NCCL_NVLS_ENABLE", "0")
            .spawn()
            .with_context(|| format!("starting rank {r} ({})", exe.display()));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e);
            }
        }
    }
    let mut done = vec![false; n];
    loop {
        let mut failed = None;
        for (r, c) in children.iter_mut().enumerate() {
            if done[r] {
                continue;
            }
            if let Some(status) = c.try_wait().with_context(|| format!("waiting for rank {r}"))? {
                done[r] = true;
                if !status.success() {
                    failed = Some((r, status));
                    break;
                }
            }
        }
        if let Some(first) = failed {
            // the others stop on their own once a peer fails (exit code PEER_EXIT_CODE): the
            // cause is a rank that died by a signal or failed by itself; if every failed rank
            // stopped for a peer, the peer is one still running, hung
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut all = vec![first];
            let mut running = vec![];
            for (r, c) in children.iter_mut().enumerate() {
                match c.try_wait() {
                    Ok(Some(s)) if !s.success() && r != first.0 => all.push((r, s)),
                    Ok(None) => running.push(r),
                    _ => {}
                }
            }
            stop(&mut children);
            let cause = all.iter().copied().find(|(_, s)| s.code().is_none()).or_else(|| all.iter().copied().find(|(_, s)| s.code() != Some(hub::PEER_EXIT_CODE)));
            let what = match (cause, running.first()) {
                (Some((r, s)), _) => format!("rank {r} of {n} {}", s.code().map_or("was killed by a signal".to_string(), |c| format!("exited with code {c}"))),
                (None, Some(r)) => format!("rank {r} of {n} stopped answering"),
                (None, None) => format!("rank {} of {n} exited with code {}", first.0, first.1.code().unwrap_or(-1)),
            };
            bail!("{what}; the other ranks were stopped{then}");
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn stop(children: &mut [std::process::Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>> {
        let m: std::collections::HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        World::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn the_environment_names_the_world_or_the_variable_that_is_wrong() {
        assert_eq!(world(&[]).unwrap(), None);
        let w = world(&[("WORLD_SIZE", "4"), ("RANK", "2"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")]).unwrap().unwrap();
        assert_eq!(w, World { rank: 2, size: 4, local_rank: 2, addr: "10.0.0.1:29501".into() });
        let w = world(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "29500"), ("BAKA_HUB_PORT", "4000")]).unwrap().unwrap();
        assert_eq!((w.local_rank, w.addr.as_str()), (0, "h:4000"));
        let w = world(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap().unwrap();
        assert_eq!((w.size, w.addr.as_str()), (1, ""));
        for (vars, says) in [
            (vec![("WORLD_SIZE", "two")], "WORLD_SIZE=\"two\""),
            (vec![("WORLD_SIZE", "0")], "WORLD_SIZE=0"),
            (vec![("WORLD_SIZE", "2")], "RANK is not"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "2")], "RANK=2"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "h")], "MASTER_PORT is not"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")], "MASTER_PORT=\"70000\""),
            (vec![("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_PORT", "29500")], "MASTER_ADDR is not"),
            (vec![("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "-1")], "LOCAL_RANK=\"-1\""),
            (vec![("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1"), ("BAKA_HUB_PORT", "0")], "BAKA_HUB_PORT=\"0\""),
        ] {
            let e = world(&vars).expect_err(says).to_string();
            assert!(e.contains(says), "{e} should name {says}");
        }
    }
}
