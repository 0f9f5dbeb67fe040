//! The ranks' rendezvous and host-side collectives over TCP: rank 0 listens on the hub's port
//! (`MASTER_PORT + 1` or `BAKA_HUB_PORT`, [`super::World`]), every other rank connects to it
//! once. What travels: a step's gradients and `[loss, norm]` where NCCL is not in use (the CPU,
//! and CUDA with `BAKA_COLLECTIVE=host`), and small things always (the weights' checksums, NCCL's
//! unique id, barriers).
//!
//! Rank 0 sums in rank order (`((g0 + g1) + g2) + …`), so every rank gets the same bits, whatever
//! order the messages arrive in. A rank that stops closes its socket: the peers' next read fails at
//! once and names it; a rank that hangs is named when `BAKA_DIST_TIMEOUT` seconds (default 1800:
//! rank 0 evaluates while the others wait) pass without its answer.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a rank tries to reach rank 0 before it gives up.
const CONNECT_FOR: Duration = Duration::from_secs(120);

/// A collective failed because of another rank (it stopped, or did not answer): this rank stops
/// too, with [`PEER_EXIT_CODE`], so that the launcher names the rank that caused it.
#[derive(Debug)]
pub struct PeerFailed(pub String);

impl std::fmt::Display for PeerFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerFailed {}

/// The exit code of a rank that stops because another rank failed.
pub const PEER_EXIT_CODE: i32 = 3;

/// This process's connections: rank 0 holds one per other rank (index r − 1), the others one to
/// rank 0.
pub struct Hub {
    rank: usize,
    size: usize,
    peers: Vec<TcpStream>,
}

/// The seconds a collective waits for a peer (`BAKA_DIST_TIMEOUT`).
fn timeout() -> Result<Duration> {
    match std::env::var("BAKA_DIST_TIMEOUT") {
        Err(_) => Ok(Duration::from_secs(1800)),
        Ok(v) => v.trim().parse::<u64>().ok().filter(|&s| s > 0).map(Duration::from_secs).ok_or_else(|| anyhow!("BAKA_DIST_TIMEOUT={v:?}: expected a whole number of seconds above 0")),
    }
}

impl Hub {
    /// Connects the `size` ranks at `addr` (`host:port`); rank 0 waits for every other rank.
    pub fn connect(rank: usize, size: usize, addr: &str) -> Result<Self> {
        let wait = timeout()?;
        if size == 1 {
            return Ok(Self { rank, size, peers: vec![] });
        }
        let peers = if rank == 0 {
            // every interface: MASTER_ADDR may name this machine by an address only others use
            let port = addr.rsplit_once(':').map_or("", |(_, p)| p);
            let listener = TcpListener::bind(format!("0.0.0.0:{port}")).with_context(|| format!("rank 0: cannot listen on port {port} (MASTER_PORT + 1, or BAKA_HUB_PORT)"))?;
            listener.set_nonblocking(true)?;
            let mut slots: Vec<Option<TcpStream>> = (1..size).map(|_| None).collect();
            let start = Instant::now();
            while slots.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false)?;
                        s.set_read_timeout(Some(CONNECT_FOR))?;
                        let r = read_u64(&mut s).context("rank 0: a peer connected but did not say its rank")? as usize;
                        if r == 0 || r >= size || slots[r - 1].is_some() {
                            bail!("rank 0: a peer says it is rank {r}; expected each of 1..{} once (WORLD_SIZE = {size})", size - 1);
                        }
                        slots[r - 1] = Some(s);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if start.elapsed() > CONNECT_FOR {
                            let missing: Vec<String> = slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| (i + 1).to_string()).collect();
                            bail!("rank 0: rank(s) {} did not connect to {addr} within {} s", missing.join(", "), CONNECT_FOR.as_secs());
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e).context(format!("rank 0: accepting on {addr}")),
                }
            }
            slots.into_iter().map(|s| s.expect("every rank connected")).collect()
        } else {
            let target = addr.to_socket_addrs().with_context(|| format!("MASTER_ADDR:MASTER_PORT = {addr}: not an address"))?.next().ok_or_else(|| anyhow!("{addr}: no address"))?;
            let start = Instant::now();
            let mut s = loop {
                match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                    Ok(s) => break s,
                    Err(e) if start.elapsed() > CONNECT_FOR => return Err(e).context(format!("rank {rank}: rank 0 did not answer at {addr} within {} s", CONNECT_FOR.as_secs())),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            write_u64(&mut s, rank as u64)?;
            vec![s]
        };
        for p in &peers {
            p.set_read_timeout(Some(wait))?;
            p.set_write_timeout(Some(wait))?;
            p.set_nodelay(true)?;
        }
        Ok(Self { rank, size, peers })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Which rank a connection leads to.
    fn peer_rank(&self, i: usize) -> usize {
        if self.rank == 0 {
            i + 1
        } else {
            0
        }
    }

    fn recv(&mut self, i: usize) -> Result<Vec<u8>> {
        let peer = self.peer_rank(i);
        let me = self.rank;
        read_frame(&mut self.peers[i]).map_err(|e| peer_error(me, peer, e))
    }

    fn send(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let peer = self.peer_rank(i);
        let me = self.rank;
        write_frame(&mut self.peers[i], bytes).map_err(|e| peer_error(me, peer, e))
    }

    /// Every rank's `bytes`, in rank order, on every rank.
    pub fn all_gather(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.size == 1 {
            return Ok(vec![bytes.to_vec()]);
        }
        if self.rank == 0 {
            let mut all = vec![bytes.to_vec()];
            for i in 0..self.peers.len() {
                all.push(self.recv(i)?);
            }
            let packed = pack(&all);
            for i in 0..self.peers.len() {
                self.send(i, &packed)?;
            }
            Ok(all)
        } else {
            self.send(0, bytes)?;
            unpack(&self.recv(0)?)
        }
    }

    /// Rank 0's `bytes` on every rank (the others' argument is ignored).
    pub fn broadcast(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        if self.rank == 0 {
            for i in 0..self.peers.len() {
                self.send(i, bytes)?;
            }
            Ok(bytes.to_vec())
        } else {
            self.recv(0)
        }
    }

    /// `v` becomes the element-wise sum over the ranks, added in rank order.
    pub fn all_reduce_sum(&mut self, v: &mut [f32]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        if self.rank == 0 {
            for i in 0..self.peers.len() {
                let got = self.recv(i)?;
                for (b, a) in f32s(&got, v.len(), i + 1)?.zip(v.iter_mut()) {
                    *a += b;
                }
            }
            let bytes = to_bytes(v);
            for i in 0..self.peers.len() {
                self.send(i, &bytes)?;
            }
        } else {
            self.send(0, &to_bytes(v))?;
            let got = self.recv(0)?;
            for (b, a) in f32s(&got, v.len(), 0)?.zip(v.iter_mut()) {
                *a = b;
            }
        }
        Ok(())
    }

    /// Waits until every rank has called it, however long that takes (rank 0 may be preparing
    /// data, or scoring the run before the next): a rank that stops is still reported at once.
    pub fn barrier(&mut self) -> Result<()> {
        let wait = timeout()?;
        let set = |peers: &[TcpStream], t: Option<Duration>| peers.iter().try_for_each(|p| p.set_read_timeout(t));
        set(&self.peers, None)?;
        let r = self.all_gather(&[]).map(|_| ());
        set(&self.peers, Some(wait))?;
        r
    }
}

fn peer_error(me: usize, peer: usize, e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::*;
    let msg = match e.kind() {
        WouldBlock | TimedOut => format!("rank {me}: rank {peer} did not answer within BAKA_DIST_TIMEOUT ({} s); stopping", timeout().map(|d| d.as_secs()).unwrap_or(0)),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted => format!("rank {me}: rank {peer} stopped (its connection closed); stopping"),
        _ => format!("rank {me}: talking to rank {peer}: {e}"),
    };
    PeerFailed(msg).into()
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The `n` f32 of a message from rank `from` to an all-reduce of `n` values.
fn f32s(b: &[u8], n: usize, from: usize) -> Result<impl Iterator<Item = f32> + '_> {
    if b.len() != 4 * n {
        bail!("rank {from} sent {} values to an all-reduce of {n} (the ranks run different models or configs)", b.len() / 4);
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))))
}

fn pack(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend((p.len() as u64).to_le_bytes());
        out.extend(p);
    }
    out
}

fn unpack(mut b: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (n, rest) = b.split_at_checked(8).ok_or_else(|| anyhow!("a gathered message ends inside a length"))?;
        let n = u64::from_le_bytes(n.try_into().expect("8 bytes")) as usize;
        let (part, rest) = rest.split_at_checked(n).ok_or_else(|| anyhow!("a gathered message is shorter than it says"))?;
        out.push(part.to_vec());
        b = rest;
    }
    Ok(out)
}

fn read_u64(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_u64(s: &mut TcpStream, v: u64) -> std::io::Result<()> {
    s.write_all(&v.to_le_bytes())
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let n = read_u64(s)? as usize;
    let mut b = vec![0u8; n];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    write_u64(s, bytes.len() as u64)?;
    s.write_all(bytes)?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each rank saw: the reduced values, the gathered bytes, the broadcast bytes.
    type Seen = (Vec<f32>, Vec<Vec<u8>>, Vec<u8>);

    /// Three ranks as threads on a free port: the sum in rank order on every rank, gather and
    /// broadcast, and a rank that stops is named by the others.
    #[test]
    fn three_ranks_reduce_gather_and_name_a_rank_that_stops() {
        let port = super::super::free_port().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let run = |rank: usize| {
            let addr = addr.clone();
            std::thread::spawn(move || -> Result<Seen> {
                let mut hub = Hub::connect(rank, 3, &addr)?;
                let mut v = vec![rank as f32 + 0.5, 1e8, -(rank as f32)];
                hub.all_reduce_sum(&mut v)?;
                let all = hub.all_gather(&[rank as u8; 2])?;
                let b = hub.broadcast(if rank == 0 { b"id" } else { b"" })?;
                if rank == 2 {
                    return Ok((v, all, b)); // stops: its socket closes
                }
                let mut w = [1.0f32];
                let err = hub.all_reduce_sum(&mut w).expect_err("a rank stopped");
                assert!(err.to_string().contains("stopped"), "{err}");
                Ok((v, all, b))
            })
        };
        let handles: Vec<_> = (0..3).map(run).collect();
        for h in handles {
            let (v, all, b) = h.join().unwrap().unwrap();
            assert_eq!(v, vec![((0.5f32 + 1.5) + 2.5), ((1e8f32 + 1e8) + 1e8), ((0.0f32 - 1.0) - 2.0)]);
            assert_eq!(all, vec![vec![0, 0], vec![1, 1], vec![2, 2]]);
            assert_eq!(b, b"id");
        }
    }
}
