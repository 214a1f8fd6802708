//! CPU time per process, read from `/proc`, for the benchmarks' per-process tables: how much
//! CPU each part of the stack (and the floor's servers) spent over one run, divided by what
//! the run committed.
//!
//! A PostgreSQL backend lives only as long as its connection, and the floor's connections
//! close when its run ends, so summing live processes would lose them. The postmaster's
//! `cutime` / `cstime` (children it has waited for) keep them instead: the PostgreSQL total
//! is the postmaster's own time, its waited-for children's, and its live children's. The
//! Postgres participant (the extension's background worker) is a live child for the whole run
//! and is counted apart from the backends.

use crate::stack::Stack;
use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (own user + system, waited-for children's user + system) seconds of `pid`, all threads;
/// `None` when it is gone or unreadable.
pub fn times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; after it, the state is
    // field 3 of stat(5), utime 14, stime 15, cutime 16, cstime 17.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 4 {
        return None;
    }
    let tick = ticks_per_second();
    Some(((f[0] + f[1]) / tick, (f[2] + f[3]) / tick))
}

/// The parts of the stack CPU is reported for, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The bank cluster's postmaster and every process of it but the participant worker:
    /// backends, WAL writer, checkpointer, the background workers of other extensions.
    PostgresBackends,
    /// The extension's background worker, the Postgres participant endpoint.
    PostgresParticipant,
    /// redis-server.
    RedisServer,
    /// The Redis participant process.
    RedisParticipant,
    /// The coordinator process.
    Coordinator,
    /// The benchmark process itself: its load clients.
    LoadClient,
}

impl Part {
    /// Every part, in table order.
    pub const ALL: [Part; 6] = [
        Part::PostgresBackends,
        Part::PostgresParticipant,
        Part::RedisServer,
        Part::RedisParticipant,
        Part::Coordinator,
        Part::LoadClient,
    ];

    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Part::PostgresBackends => "Postgres (backends, WAL writer, ...)",
            Part::PostgresParticipant => "Postgres participant (background worker)",
            Part::RedisServer => "redis-server",
            Part::RedisParticipant => "Redis participant",
            Part::Coordinator => "coordinator",
            Part::LoadClient => "load client",
        }
    }
}

/// Cumulative CPU seconds of each part at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSample(BTreeMap<Part, f64>);

impl CpuSample {
    /// Reads every part of `stack` now.
    pub fn take(stack: &Stack) -> CpuSample {
        let mut parts = BTreeMap::new();
        let worker: Vec<i32> = stack.pg.children_titled("twopc participant");
        if let Some(pm) = stack.pg.postmaster_pid() {
            let (own, reaped) = times(pm as u32).unwrap_or_default();
            let mut backends = own + reaped;
            let mut participant = 0.0;
            for child in crate::util::children_of(pm) {
                let (t, r) = times(child as u32).unwrap_or_default();
                if worker.contains(&child) {
                    participant += t + r;
                } else {
                    backends += t + r;
                }
            }
            parts.insert(Part::PostgresBackends, backends);
            parts.insert(Part::PostgresParticipant, participant);
        }
        let mut one = |part: Part, pid: Option<u32>| {
            if let Some((t, r)) = pid.and_then(times) {
                parts.insert(part, t + r);
            }
        };
        one(Part::RedisServer, stack.redis.pid());
        one(Part::RedisParticipant, stack.ledger.pid());
        one(Part::Coordinator, stack.coordinator.pid());
        one(Part::LoadClient, Some(std::process::id()));
        CpuSample(parts)
    }

    /// CPU µs per committed transaction of each part between `self` (earlier) and `later`.
    /// A participant worker that restarted in between would count less, never negative.
    pub fn per_transaction(&self, later: &CpuSample, committed: u64) -> CpuPerTransaction {
        let n = committed.max(1) as f64;
        CpuPerTransaction(
            later
                .0
                .iter()
                .map(|(part, after)| {
                    let before = self.0.get(part).copied().unwrap_or(0.0);
                    (*part, ((after - before).max(0.0)) * 1e6 / n)
                })
                .collect(),
        )
    }
}

/// CPU µs per committed transaction of each part over one run.
#[derive(Debug, Clone, Default)]
pub struct CpuPerTransaction(pub BTreeMap<Part, f64>);

impl CpuPerTransaction {
    /// All parts together.
    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }

    /// One part (0 when it was not running).
    pub fn part(&self, part: Part) -> f64 {
        self.0.get(&part).copied().unwrap_or(0.0)
    }
}
