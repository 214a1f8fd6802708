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
//!   for the standby's flush too), as production would run it.
//!
//! Every stack has its own bank cluster, Redis and participants, so the variants share nothing
//! but the machine. Rounds alternate between the variants, the one that goes first rotating
//! with the round, because this machine's speed drifts by up to 2x over minutes; results are
//! medians over rounds and medians of the per-round ratios against the file log. Around every
//! round the coordinator's `/metrics` are read: the log's commits (`twopc_log_fsyncs`: file
//! fsyncs, or PostgreSQL transactions for the PostgreSQL log) and records per decision show how
//! much group commit there is.
//!
//! Environment: `TWOPC_BENCH_SECS` (seconds per round, default 5), `TWOPC_BENCH_ROUNDS`
//! (default 5), `TWOPC_BENCH_LEVELS` (default `1,64`), `TWOPC_BENCH_VARIANTS` (default
//! `file,postgres,postgres-standby`), `TWOPC_BENCH_LEASE_TTL_MS` (the PostgreSQL log's lease,
//! default 3000, renewed every third of it), `TWOPC_BENCH_OUT` (where to write the Markdown).

use std::fmt::Write as _;
use std::time::Instant;
use twopc_tests::bench::{env_list, env_num, median, metric, through_coordinator, Level};
use twopc_tests::stack::{http_get, Binaries, Stack, StackOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    File,
    Postgres,
    PostgresStandby,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::File => "file",
            Variant::Postgres => "postgres",
            Variant::PostgresStandby => "postgres-standby",
        }
    }

    fn parse(s: &str) -> Option<Variant> {
        [Variant::File, Variant::Postgres, Variant::PostgresStandby]
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

/// The coordinator's counters that a round's deltas are taken of.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    decisions: f64,
    log_commits: f64,
    log_records: f64,
}

impl Counters {
    fn read(stack: &Stack) -> Counters {
        let text = http_get(&stack.coordinator_url, "/metrics").unwrap_or_default();
        let m = |name: &str| metric(&text, name).unwrap_or(f64::NAN);
        Counters {
            decisions: m("twopc_transactions_committed_total")
                + m("twopc_transactions_aborted_total"),
            log_commits: m("twopc_log_fsyncs_total"),
            log_records: m("twopc_log_records_total"),
        }
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            decisions: self.decisions - before.decisions,
            log_commits: self.log_commits - before.log_commits,
            log_records: self.log_records - before.log_records,
        }
    }
}

struct Round {
    variant: Variant,
    round: usize,
    level: Level,
    /// Deltas of the coordinator's counters over the round.
    log: Counters,
}

impl Round {
    fn commits_per_decision(&self) -> f64 {
        self.log.log_commits / self.log.decisions.max(1.0)
    }
    fn records_per_decision(&self) -> f64 {
        self.log.log_records / self.log.decisions.max(1.0)
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

fn report(
    variants: &[Variant],
    levels: &[usize],
    secs: f64,
    rounds_n: usize,
    rounds: &[Round],
    extension: &str,
    run_secs: f64,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(
        out,
        "# Decision log benchmark: PostgreSQL log against file log\n"
    )?;
    writeln!(
        out,
        "The throughput benchmark's load (a 2-participant transfer: one Postgres row update + one \
         Redis INCRBY, every client on its own account, no lock conflicts) through {} stacks \
         started in the same run from the same release binaries, differing only in the \
         coordinator's decision log: {}. Each stack has its own bank cluster, Redis and \
         participants; the PostgreSQL logs are clusters of their own (database `twopc_log`, \
         `synchronous_commit = on`, fsync on, same disk). {secs} s per round, {} round(s) per \
         concurrency and log, alternating between the logs (the one going first rotates with \
         the round). Medians over rounds; \"vs file\" = median of the per-round ratios against \
         the file log's round. Log commits / decision: the coordinator's `twopc_log_fsyncs` \
         (file log: fdatasyncs; PostgreSQL log: committed write statements, each one \
         transaction) over its committed + aborted transactions in the round; records / \
         decision: `twopc_log_records` likewise (COMMIT + END). Whole run: {run_secs:.0} s \
         including setup.\n",
        variants.len(),
        variants
            .iter()
            .map(|v| format!("`{}`", v.name()))
            .collect::<Vec<_>>()
            .join(", "),
        rounds_n,
    )?;
    writeln!(out, "Installed extension: {extension}.\n")?;
    writeln!(
        out,
        "| concurrency | log | tx/s | tx/s vs file | p50 ms | p50 vs file | p99 ms | \
         log commits / decision | records / decision | prepare / decide / commit ms | errors |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    let file_round = |c: usize, round: usize| {
        rounds
            .iter()
            .find(|r| r.variant == Variant::File && r.level.concurrency == c && r.round == round)
    };
    let vs_file = |r: &Round, g: fn(&Level) -> f64| {
        file_round(r.level.concurrency, r.round).map(|f| g(&r.level) / g(&f.level).max(1e-9))
    };
    let fmt_ratio = |x: f64| {
        if x.is_nan() {
            "–".to_owned()
        } else {
            format!("{x:.2}x")
        }
    };
    for &c in levels {
        for &v in variants {
            let rs: Vec<&Round> = rounds
                .iter()
                .filter(|r| r.variant == v && r.level.concurrency == c)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let m = |g: &dyn Fn(&Round) -> f64| median(rs.iter().map(|r| g(r)).collect());
            let ratio =
                |g: fn(&Level) -> f64| median(rs.iter().filter_map(|r| vs_file(r, g)).collect());
            writeln!(
                out,
                "| {c} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {:.3} | {:.2} | {:.2} / {:.2} / {:.2} | {} |",
                v.name(),
                m(&|r| r.level.tps),
                fmt_ratio(ratio(|l| l.tps)),
                m(&|r| r.level.p50),
                fmt_ratio(ratio(|l| l.p50)),
                m(&|r| r.level.p99),
                m(&|r| r.commits_per_decision()),
                m(&|r| r.records_per_decision()),
                m(&|r| r.level.phases[0]),
                m(&|r| r.level.phases[1]),
                m(&|r| r.level.phases[2]),
                rs.iter().map(|r| r.level.errors).sum::<u64>(),
            )?;
        }
    }
    writeln!(
        out,
        "\nNot measured here: one coordinator against three on the shared PostgreSQL log (issue \
         #17's second half; several coordinators on one log database do not exist yet).\n"
    )?;
    writeln!(out, "## Rounds\n")?;
    writeln!(
        out,
        "| concurrency | round | log | tx/s | tx/s vs file | p50 ms | p50 vs file | p99 ms | \
         decisions | log commits | records | prepare / decide / commit ms | errors |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in rounds {
        let l = &r.level;
        writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} |",
            l.concurrency,
            r.round + 1,
            r.variant.name(),
            l.tps,
            fmt_ratio(vs_file(r, |l| l.tps).unwrap_or(f64::NAN)),
            l.p50,
            fmt_ratio(vs_file(r, |l| l.p50).unwrap_or(f64::NAN)),
            l.p99,
            r.log.decisions,
            r.log.log_commits,
            r.log.log_records,
            l.phases[0],
            l.phases[1],
            l.phases[2],
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
    let levels: Vec<usize> = env_list("TWOPC_BENCH_LEVELS", &[1, 64]);
    let lease_ttl_ms: u64 = env_num("TWOPC_BENCH_LEASE_TTL_MS", 3000);
    let variants: Vec<Variant> = env_list(
        "TWOPC_BENCH_VARIANTS",
        &[
            "file".to_owned(),
            "postgres".into(),
            "postgres-standby".into(),
        ],
    )
    .iter()
    .map(|s| Variant::parse(s).ok_or_else(|| format!("TWOPC_BENCH_VARIANTS: unknown `{s}`")))
    .collect::<Result<_, _>>()?;
    let bins = Binaries::next_to_current_exe();
    let mut stacks = Vec::new();
    for &v in &variants {
        eprintln!("starting the {} stack ...", v.name());
        let stack = Stack::start(&bins, v.options(lease_ttl_ms))?;
        // Warm up (connections, statement caches), not measured.
        through_coordinator(&stack, 64, 1.0).await;
        stacks.push((v, stack));
    }
    let mut rounds = Vec::new();
    for &c in &levels {
        for round in 0..rounds_n {
            for i in 0..stacks.len() {
                let (v, stack) = &stacks[(i + round) % stacks.len()];
                eprintln!(
                    "c={c}, round {}/{rounds_n}: {} log ...",
                    round + 1,
                    v.name()
                );
                let before = Counters::read(stack);
                let level = through_coordinator(stack, c, secs).await;
                let log = Counters::read(stack).since(before);
                eprintln!(
                    "  {:.0} tx/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} log commits for {} decisions",
                    level.tps, level.p50, level.p99, level.errors, log.log_commits, log.decisions
                );
                rounds.push(Round {
                    variant: *v,
                    round,
                    level,
                    log,
                });
            }
        }
    }
    let out = report(
        &variants,
        &levels,
        secs,
        rounds_n,
        &rounds,
        &installed_extension(),
        run_started.elapsed().as_secs_f64(),
    )?;
    println!("{out}");
    if let Ok(path) = std::env::var("TWOPC_BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    drop(stacks);
    Ok(())
}
