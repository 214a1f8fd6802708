//! `twopc-bench-log`: the decision-log benchmark (run by `scripts/bench-log.sh`, never by the
//! tests).
//!
//! The throughput benchmark's load ([`through_coordinator`]: a 2-participant transfer, every
//! client on its own account) against stacks that differ only in where the coordinator keeps
//! its decisions, all started in the same run from the same release binaries:
//!
//! * `file`: the file log (the default; group-committed fdatasync in the coordinator's data
//!   directory);
//! * `postgres`: the PostgreSQL log, a cluster of the stack's own (database `twopc_log`);
//! * `postgres-standby`: the same with a synchronous streaming standby (a COMMIT row waits
//!   for the standby's flush too), as production would run it;
//! * `postgres-x3`: the `postgres` stack plus two more coordinators (`c2`, `c3`,
//!   [`Stack::spawn_coordinator`]) on the same participants and the same log database, each
//!   owning its id by a lease; the clients are dealt round-robin to the three coordinators
//!   ([`through_coordinators`]), each sticking to one, each still on its own account. It runs
//!   only at concurrencies of at least 3 (one client reaches one coordinator), and is compared
//!   with `postgres` at the same total concurrency.
//!
//! Every stack has its own bank cluster, Redis and participants, so the variants share nothing
//! but the machine. Rounds alternate between the variants, the one that goes first rotating
//! with the round, because this machine's speed drifts by up to 2x over minutes; results are
//! medians over rounds and medians of the per-round ratios against the file log (and, for
//! `postgres-x3`, against `postgres`). Around every round the coordinators' `/metrics` are read
//! (summed over a stack's coordinators): the log's commits (`twopc_log_fsyncs`: file fsyncs, or
//! PostgreSQL transactions for the PostgreSQL log) and records per decision show how much group
//! commit there is; and the coordinator processes' CPU time ([`cpu_seconds`]).
//!
//! Environment: `TWOPC_BENCH_SECS` (seconds per round, default 5), `TWOPC_BENCH_ROUNDS`
//! (default 5), `TWOPC_BENCH_LEVELS` (default `1,3,64`), `TWOPC_BENCH_VARIANTS` (default
//! `file,postgres,postgres-standby,postgres-x3`), `TWOPC_BENCH_LEASE_TTL_MS` (the PostgreSQL
//! log's lease, default 3000, renewed every third of it), `TWOPC_BENCH_OUT` (where to write the
//! Markdown).

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use twopc_tests::bench::{
    cpu_seconds, env_list, env_num, median, metric, through_coordinators, Level,
};
use twopc_tests::stack::{http_get, Binaries, Proc, Stack, StackOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    File,
    Postgres,
    PostgresStandby,
    PostgresX3,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::File => "file",
            Variant::Postgres => "postgres",
            Variant::PostgresStandby => "postgres-standby",
            Variant::PostgresX3 => "postgres-x3",
        }
    }

    /// Coordinators the load is spread over.
    fn coordinators(self) -> usize {
        if self == Variant::PostgresX3 {
            3
        } else {
            1
        }
    }

    fn parse(s: &str) -> Option<Variant> {
        [
            Variant::File,
            Variant::Postgres,
            Variant::PostgresStandby,
            Variant::PostgresX3,
        ]
        .into_iter()
        .find(|v| v.name() == s.trim())
    }

    fn options(self, lease_ttl_ms: u64) -> StackOptions {
        StackOptions {
            accounts: 64,
            initial_balance: 1_000_000,
            fault_injection: false,
            postgres_decision_log: (self != Variant::File).then_some(lease_ttl_ms),
            log_standby: self == Variant::PostgresStandby,
            ..StackOptions::default()
        }
    }
}

/// One variant's running stack and, for `postgres-x3`, its two further coordinators.
struct Running {
    variant: Variant,
    /// `c2` and `c3` (declared before `stack`: they go before their participants and log).
    extra: Vec<Proc>,
    /// Every coordinator's base URL, the stack's own first.
    urls: Vec<String>,
    _extra_dir: tempfile::TempDir,
    stack: Stack,
}

impl Running {
    fn start(bins: &Binaries, variant: Variant, lease_ttl_ms: u64) -> twopc_tests::Result<Running> {
        let stack = Stack::start(bins, variant.options(lease_ttl_ms))?;
        let extra_dir = tempfile::tempdir()?;
        let mut extra = Vec::new();
        let mut urls = vec![stack.coordinator_url.clone()];
        for k in 2..=variant.coordinators() {
            let (p, url) = stack.spawn_coordinator(bins, &format!("c{k}"), extra_dir.path())?;
            stack.wait_connected_at(&url, Duration::from_secs(30))?;
            extra.push(p);
            urls.push(url);
        }
        Ok(Running {
            variant,
            extra,
            urls,
            _extra_dir: extra_dir,
            stack,
        })
    }

    /// The coordinator processes' pids (the stack's own first).
    fn pids(&self) -> Vec<Option<u32>> {
        std::iter::once(&self.stack.coordinator)
            .chain(&self.extra)
            .map(Proc::pid)
            .collect()
    }
}

/// The coordinators' counters (summed over a stack's coordinators) that a round's deltas are
/// taken of.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    committed: f64,
    decisions: f64,
    log_commits: f64,
    log_records: f64,
    /// CPU seconds (user + system) of the coordinator processes.
    cpu: f64,
}

impl Counters {
    fn read(run: &Running) -> Counters {
        let mut c = Counters::default();
        for url in &run.urls {
            let text = http_get(url, "/metrics").unwrap_or_default();
            let m = |name: &str| metric(&text, name).unwrap_or(f64::NAN);
            c.committed += m("twopc_transactions_committed_total");
            c.decisions +=
                m("twopc_transactions_committed_total") + m("twopc_transactions_aborted_total");
            c.log_commits += m("twopc_log_fsyncs_total");
            c.log_records += m("twopc_log_records_total");
        }
        for pid in run.pids() {
            c.cpu += pid.and_then(cpu_seconds).unwrap_or(f64::NAN);
        }
        c
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            committed: self.committed - before.committed,
            decisions: self.decisions - before.decisions,
            log_commits: self.log_commits - before.log_commits,
            log_records: self.log_records - before.log_records,
            cpu: self.cpu - before.cpu,
        }
    }
}

struct Round {
    variant: Variant,
    round: usize,
    level: Level,
    /// Deltas of the coordinators' counters over the round.
    log: Counters,
    /// Wall-clock seconds of the round (the load's, including its last transactions).
    wall: f64,
}

impl Round {
    fn commits_per_decision(&self) -> f64 {
        self.log.log_commits / self.log.decisions.max(1.0)
    }
    fn records_per_decision(&self) -> f64 {
        self.log.log_records / self.log.decisions.max(1.0)
    }
    /// The coordinator processes' CPU, in cores (CPU seconds per second).
    fn cpu_cores(&self) -> f64 {
        self.log.cpu / self.wall.max(1e-9)
    }
    /// The coordinator processes' CPU per committed transaction, ms.
    fn cpu_ms_per_tx(&self) -> f64 {
        self.log.cpu * 1000.0 / self.log.committed.max(1.0)
    }
}

/// Size, modification time and build kind of the pg_twopc_ext the bank clusters load (the
/// script may keep the installed one instead of installing this tree's).
fn installed_extension() -> String {
    let path = "/usr/lib/postgresql/15/lib/pg_twopc_ext.so";
    let Ok(bytes) = std::fs::read(path) else {
        return format!("`{path}`: not readable");
    };
    let modified = std::process::Command::new("date")
        .args(["-u", "-r", path, "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let debug = bytes.windows(11).any(|w| w == b".debug_info");
    format!(
        "`{path}`: {:.1} MB, modified {modified}, {}",
        bytes.len() as f64 / 1e6,
        if debug {
            "**a debug build** (it has .debug_info; a release build is ~5 MB): the bank \
             participant is slower than in production, absolute figures are low, the ratios \
             between log kinds still hold"
        } else {
            "a release build"
        }
    )
}

/// Settings of the run, for the report's text.
struct Run<'a> {
    variants: &'a [Variant],
    levels: &'a [usize],
    secs: f64,
    rounds_n: usize,
    extension: &'a str,
    run_secs: f64,
}

fn fmt_ratio(x: f64) -> String {
    if x.is_nan() {
        "–".to_owned()
    } else {
        format!("{x:.2}x")
    }
}

/// `r`'s figure `g` over the same figure of `reference`'s round at the same concurrency and
/// round (`None` when that variant did not run it).
fn ratio_to(rounds: &[Round], r: &Round, reference: Variant, g: fn(&Level) -> f64) -> Option<f64> {
    rounds
        .iter()
        .find(|f| {
            f.variant == reference
                && f.level.concurrency == r.level.concurrency
                && f.round == r.round
        })
        .map(|f| g(&r.level) / g(&f.level).max(1e-9))
}

fn report(run: &Run, rounds: &[Round]) -> Result<String, std::fmt::Error> {
    let Run {
        variants,
        levels,
        secs,
        rounds_n,
        extension,
        run_secs,
    } = *run;
    let mut out = String::new();
    writeln!(
        out,
        "# Decision log benchmark: PostgreSQL log against file log, one coordinator against \
         three\n"
    )?;
    writeln!(
        out,
        "The throughput benchmark's load (a 2-participant transfer: one Postgres row update + one \
         Redis INCRBY, every client on its own account, no lock conflicts) through {} stacks \
         started in the same run from the same release binaries, differing only in the \
         coordinator's decision log: {}. Each stack has its own bank cluster, Redis and \
         participants; the PostgreSQL logs are clusters of their own (database `twopc_log`, \
         `synchronous_commit = on`, fsync on, same disk). `postgres-x3` is the `postgres` stack \
         with two more coordinators (ids `c2`, `c3`) on the same participants and the same log \
         database, each owning its id by a lease; its clients are dealt round-robin to the three \
         coordinators (at 64: 22 / 21 / 21), each client sticking to one. It runs only at \
         concurrencies of 3 and more (one client reaches one coordinator) and is compared with \
         `postgres` at the same total concurrency. {secs} s per round, {} round(s) per \
         concurrency and log, alternating between the logs (the one going first rotates with \
         the round). Medians over rounds; \"vs file\" = median of the per-round ratios against \
         the file log's round. Log commits / decision: the coordinators' `twopc_log_fsyncs` \
         (file log: fdatasyncs; PostgreSQL log: committed write statements, each one \
         transaction) over their committed + aborted transactions in the round; records / \
         decision: `twopc_log_records` likewise (COMMIT + END). Coordinator CPU: utime + stime \
         of the coordinator processes (`/proc/<pid>/stat`, summed over `postgres-x3`'s three) \
         over the round, in cores (CPU seconds per second of the round) and ms per committed \
         transaction; the machine has {} cores. Whole run: {run_secs:.0} s including setup.\n",
        variants.len(),
        variants
            .iter()
            .map(|v| format!("`{}`", v.name()))
            .collect::<Vec<_>>()
            .join(", "),
        rounds_n,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )?;
    writeln!(out, "Installed extension: {extension}.\n")?;
    writeln!(
        out,
        "| concurrency | log | tx/s | tx/s vs file | p50 ms | p50 vs file | p99 ms | \
         log commits / decision | records / decision | prepare / decide / commit ms | \
         coordinator CPU, cores | coordinator CPU ms / tx | errors |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    let of = |v: Variant, c: usize| -> Vec<&Round> {
        rounds
            .iter()
            .filter(|r| r.variant == v && r.level.concurrency == c)
            .collect()
    };
    let med = |rs: &[&Round], g: &dyn Fn(&Round) -> f64| median(rs.iter().map(|r| g(r)).collect());
    let med_ratio = |rs: &[&Round], reference: Variant, g: fn(&Level) -> f64| {
        median(
            rs.iter()
                .filter_map(|r| ratio_to(rounds, r, reference, g))
                .collect(),
        )
    };
    for &c in levels {
        for &v in variants {
            let rs = of(v, c);
            if rs.is_empty() {
                continue;
            }
            writeln!(
                out,
                "| {c} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {:.3} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} | {:.3} | {} |",
                v.name(),
                med(&rs, &|r| r.level.tps),
                fmt_ratio(med_ratio(&rs, Variant::File, |l| l.tps)),
                med(&rs, &|r| r.level.p50),
                fmt_ratio(med_ratio(&rs, Variant::File, |l| l.p50)),
                med(&rs, &|r| r.level.p99),
                med(&rs, &|r| r.commits_per_decision()),
                med(&rs, &|r| r.records_per_decision()),
                med(&rs, &|r| r.level.phases[0]),
                med(&rs, &|r| r.level.phases[1]),
                med(&rs, &|r| r.level.phases[2]),
                med(&rs, &|r| r.cpu_cores()),
                med(&rs, &|r| r.cpu_ms_per_tx()),
                rs.iter().map(|r| r.level.errors).sum::<u64>(),
            )?;
        }
    }
    if variants.contains(&Variant::Postgres) && variants.contains(&Variant::PostgresX3) {
        writeln!(
            out,
            "\n## One coordinator against three (PostgreSQL log, no standby)\n"
        )?;
        writeln!(
            out,
            "`postgres` (1 coordinator) and `postgres-x3` (3 coordinators on the same log \
             database, the same total number of clients spread over them) from the table above; \
             \"x3 / x1\" = median of the per-round ratios `postgres-x3` / `postgres` (same \
             concurrency, same round). At concurrency 1 only `postgres` runs.\n"
        )?;
        writeln!(
            out,
            "| concurrency | coordinators | tx/s | tx/s x3 / x1 | p50 ms | p50 x3 / x1 | p99 ms | \
             p99 x3 / x1 | log commits / decision | coordinator CPU, cores | CPU x3 / x1 | \
             coordinator CPU ms / tx | errors |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        for &c in levels {
            for v in [Variant::Postgres, Variant::PostgresX3] {
                let rs = of(v, c);
                if rs.is_empty() {
                    continue;
                }
                let x = |g: fn(&Level) -> f64| {
                    if v == Variant::PostgresX3 {
                        fmt_ratio(med_ratio(&rs, Variant::Postgres, g))
                    } else {
                        "1.00x".to_owned()
                    }
                };
                let cpu_ratio = if v == Variant::PostgresX3 {
                    fmt_ratio(median(
                        rs.iter()
                            .filter_map(|r| {
                                let one = rounds.iter().find(|f| {
                                    f.variant == Variant::Postgres
                                        && f.level.concurrency == c
                                        && f.round == r.round
                                })?;
                                Some(r.cpu_cores() / one.cpu_cores().max(1e-9))
                            })
                            .collect(),
                    ))
                } else {
                    "1.00x".to_owned()
                };
                writeln!(
                    out,
                    "| {c} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {} | {:.3} | {:.2} | {cpu_ratio} | {:.3} | {} |",
                    v.coordinators(),
                    med(&rs, &|r| r.level.tps),
                    x(|l| l.tps),
                    med(&rs, &|r| r.level.p50),
                    x(|l| l.p50),
                    med(&rs, &|r| r.level.p99),
                    x(|l| l.p99),
                    med(&rs, &|r| r.commits_per_decision()),
                    med(&rs, &|r| r.cpu_cores()),
                    med(&rs, &|r| r.cpu_ms_per_tx()),
                    rs.iter().map(|r| r.level.errors).sum::<u64>(),
                )?;
            }
        }
    }
    writeln!(out, "\n## Rounds\n")?;
    writeln!(
        out,
        "| concurrency | round | log | tx/s | tx/s vs file | p50 ms | p50 vs file | p99 ms | \
         decisions | log commits | records | prepare / decide / commit ms | coordinator CPU s | \
         errors |"
    )?;
    writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for r in rounds {
        let l = &r.level;
        let vs_file = |g: fn(&Level) -> f64| {
            fmt_ratio(ratio_to(rounds, r, Variant::File, g).unwrap_or(f64::NAN))
        };
        writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {:.2} | {} |",
            l.concurrency,
            r.round + 1,
            r.variant.name(),
            l.tps,
            vs_file(|l| l.tps),
            l.p50,
            vs_file(|l| l.p50),
            l.p99,
            r.log.decisions,
            r.log.log_commits,
            r.log.log_records,
            l.phases[0],
            l.phases[1],
            l.phases[2],
            r.log.cpu,
            l.errors,
        )?;
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_started = Instant::now();
    let secs: f64 = env_num("TWOPC_BENCH_SECS", 5.0);
    let rounds_n: usize = env_num("TWOPC_BENCH_ROUNDS", 5usize).max(1);
    let levels: Vec<usize> = env_list("TWOPC_BENCH_LEVELS", &[1, 3, 64]);
    let lease_ttl_ms: u64 = env_num("TWOPC_BENCH_LEASE_TTL_MS", 3000);
    let variants: Vec<Variant> = env_list(
        "TWOPC_BENCH_VARIANTS",
        &[
            "file".to_owned(),
            "postgres".into(),
            "postgres-standby".into(),
            "postgres-x3".into(),
        ],
    )
    .iter()
    .map(|s| Variant::parse(s).ok_or_else(|| format!("TWOPC_BENCH_VARIANTS: unknown `{s}`")))
    .collect::<Result<_, _>>()?;
    let bins = Binaries::next_to_current_exe();
    let mut stacks = Vec::new();
    for &v in &variants {
        eprintln!("starting the {} stack ...", v.name());
        let run = Running::start(&bins, v, lease_ttl_ms)?;
        // Warm up (connections, statement caches), not measured.
        through_coordinators(&run.urls, 64, 1.0).await;
        stacks.push(run);
    }
    let mut rounds = Vec::new();
    for &c in &levels {
        // One client reaches one coordinator: a variant with more coordinators than clients
        // would measure fewer coordinators than it names.
        let here: Vec<&Running> = stacks
            .iter()
            .filter(|s| s.variant.coordinators() <= c)
            .collect();
        for round in 0..rounds_n {
            for i in 0..here.len() {
                let run = here[(i + round) % here.len()];
                let v = run.variant;
                eprintln!(
                    "c={c}, round {}/{rounds_n}: {} log ...",
                    round + 1,
                    v.name()
                );
                let before = Counters::read(run);
                let t0 = Instant::now();
                let level = through_coordinators(&run.urls, c, secs).await;
                let wall = t0.elapsed().as_secs_f64();
                let log = Counters::read(run).since(before);
                eprintln!(
                    "  {:.0} tx/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} log commits for {} decisions, coordinator CPU {:.2} s",
                    level.tps, level.p50, level.p99, level.errors, log.log_commits, log.decisions, log.cpu
                );
                rounds.push(Round {
                    variant: v,
                    round,
                    level,
                    log,
                    wall,
                });
            }
        }
    }
    let out = report(
        &Run {
            variants: &variants,
            levels: &levels,
            secs,
            rounds_n,
            extension: &installed_extension(),
            run_secs: run_started.elapsed().as_secs_f64(),
        },
        &rounds,
    )?;
    println!("{out}");
    if let Ok(path) = std::env::var("TWOPC_BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    drop(stacks);
    Ok(())
}
