//! A throwaway PostgreSQL 15 cluster owned by the `postgres` user.

use crate::util::{self, as_postgres, give_to_postgres, run, tail, wait_until};
use crate::{HarnessError, Result};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Where Debian's PostgreSQL 15 server binaries live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The `pg_hba.conf` of every cluster the harness starts (see [`PgCluster::start`]).
const PG_HBA: &str = "\
# twopc test harness: trust, over the private socket directory and 127.0.0.1 only.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
";

/// How to set up the cluster.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `max_prepared_transactions` (0 refuses PREPARE TRANSACTION; tests of that case set 0).
    pub max_prepared_transactions: u32,
    /// `shared_preload_libraries`, e.g. `Some("pg_twopc_ext")`.
    pub shared_preload_libraries: Option<String>,
    /// Extra `postgresql.conf` lines as (name, value); values are written verbatim.
    pub settings: Vec<(String, String)>,
    /// Extra databases to create after start.
    pub databases: Vec<String>,
    /// A fixed TCP port (the demo uses one); `None` picks a free one.
    pub port: Option<u16>,
    /// `max_wal_senders`: how many standbys (and base backups in progress) may stream at once.
    /// A standby holds one sender while it streams, and [`PgCluster::start_standby`]'s
    /// `pg_basebackup -X stream` two while it copies. `wal_level` is left at PostgreSQL 15's
    /// default, `replica`.
    pub max_wal_senders: u32,
    /// `synchronous_standby_names` at start, e.g. `Some("standby1".into())` or
    /// `Some("FIRST 1 (s1, s2)".into())`; written as one quoted string. While no standby of
    /// that name streams, every commit waits, so only set it when a standby is started right
    /// after; [`PgCluster::set_synchronous_standby`] changes it on a running server.
    pub synchronous_standby_names: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_prepared_transactions: 64,
            shared_preload_libraries: None,
            settings: Vec::new(),
            databases: Vec::new(),
            port: None,
            // PostgreSQL 15's own default, written out so that a test needing more can see
            // where to raise it.
            max_wal_senders: 10,
            synchronous_standby_names: None,
        }
    }
}

/// A running (or crashed) cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    // Held for its Drop: removes the whole directory.
    dir: Option<tempfile::TempDir>,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
}

impl PgCluster {
    /// initdb, configure, start, and wait until it accepts connections.
    pub fn start(opts: PgOptions) -> Result<PgCluster> {
        let mut last = None;
        // A port found free can be taken before the server binds it; try a few.
        for _ in 0..3 {
            match Self::try_start(&opts) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_start(opts: &PgOptions) -> Result<PgCluster> {
        let dir = tempfile::Builder::new()
            .prefix("twopc-pg-")
            .tempdir_in("/tmp")?;
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        give_to_postgres(&root)?;
        let data = root.join("data");
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir)?;
        give_to_postgres(&socket_dir)?;
        let log = root.join("postgres.log");

        let mut initdb = as_postgres(&format!("{PG_BIN}/initdb"));
        initdb.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        run(initdb)?;

        let port = match opts.port {
            Some(p) => p,
            None => util::free_port()?,
        };
        let mut conf = String::new();
        writeln!(conf, "\n# --- twopc test harness ---").ok();
        writeln!(conf, "port = {port}").ok();
        writeln!(conf, "listen_addresses = '127.0.0.1'").ok();
        writeln!(conf, "unix_socket_directories = '{}'", socket_dir.display()).ok();
        writeln!(
            conf,
            "max_prepared_transactions = {}",
            opts.max_prepared_transactions
        )
        .ok();
        writeln!(conf, "max_connections = 200").ok();
        writeln!(conf, "shared_buffers = '64MB'").ok();
        if let Some(libs) = &opts.shared_preload_libraries {
            writeln!(conf, "shared_preload_libraries = '{libs}'").ok();
        }
        writeln!(conf, "max_wal_senders = {}", opts.max_wal_senders).ok();
        if let Some(names) = &opts.synchronous_standby_names {
            writeln!(conf, "synchronous_standby_names = {}", conf_quote(names)).ok();
        }
        for (k, v) in &opts.settings {
            writeln!(conf, "{k} = {v}").ok();
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)?;
        // The harness's own access rules instead of the packaged sample's, so that what a
        // standby needs is written here rather than assumed: trust (as `--auth=trust` above)
        // over the private socket directory and 127.0.0.1, the only places the server listens,
        // for ordinary sessions and for replication (pg_basebackup and the standby's WAL
        // receiver connect over TCP as `postgres`).
        std::fs::write(data.join("pg_hba.conf"), PG_HBA)?;

        let cluster = PgCluster {
            dir: Some(dir),
            data,
            socket_dir,
            log,
            port,
        };
        cluster.start_server()?;
        for db in &opts.databases {
            cluster.psql_ok("postgres", &format!("CREATE DATABASE \"{db}\""))?;
        }
        Ok(cluster)
    }

    /// Starts the server (again) and waits until it accepts connections. After a crash this is
    /// crash recovery: prepared transactions come back from the WAL.
    pub fn start_server(&self) -> Result<()> {
        let mut cmd = as_postgres(&format!("{PG_BIN}/pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "start"])
            // What a client reads must never carry a Rust backtrace or source path; pgrx
            // appends one to errors when the server runs with this set, so every cluster does.
            .env("RUST_BACKTRACE", "1");
        if let Err(e) = run(cmd) {
            return Err(HarnessError::NotReady {
                what: format!("postgres on port {} ({e})", self.port),
                log: tail(&self.log, 30),
            });
        }
        let ready = wait_until(Duration::from_secs(60), || {
            Command::new(format!("{PG_BIN}/pg_isready"))
                .arg("-h")
                .arg(&self.socket_dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-q",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        if !ready {
            return Err(HarnessError::NotReady {
                what: format!("postgres on port {}", self.port),
                log: tail(&self.log, 30),
            });
        }
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: every backend exits at once without a checkpoint; the next
    /// start runs crash recovery.
    pub fn crash(&self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// A clean shutdown (`pg_ctl stop -m fast`).
    pub fn stop(&self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        let mut cmd = as_postgres(&format!("{PG_BIN}/pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        run(cmd).map(|_| ())
    }

    /// SIGKILL to the postmaster and all its children at once, like a machine losing power
    /// (minus the page cache). The next [`start_server`](Self::start_server) recovers.
    pub fn kill9(&self) -> Result<()> {
        let pid = self.postmaster_pid().ok_or_else(|| HarnessError::Command {
            command: "read postmaster.pid".into(),
            detail: "server not running".into(),
        })?;
        let children = util::children_of(pid);
        util::sigkill(pid);
        for c in &children {
            util::sigkill(*c);
        }
        wait_until(Duration::from_secs(30), || {
            !util::alive(pid) && children.iter().all(|c| !util::alive(*c))
        });
        // A stale postmaster.pid is fine: postgres checks whether that pid is alive.
        Ok(())
    }

    /// The postmaster's pid while it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        util::alive(pid).then_some(pid)
    }

    /// Pids of the postmaster's children whose process title contains `title` (e.g. a
    /// background worker's type).
    pub fn children_titled(&self, title: &str) -> Vec<i32> {
        let Some(pm) = self.postmaster_pid() else {
            return Vec::new();
        };
        util::children_of(pm)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(title))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix-socket directory (the `host` for socket connections).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A libpq key/value connection string for `db` over TCP, as superuser `postgres`.
    pub fn conn_string(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A libpq URI for `db` over TCP, as superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `psql` against `db` with `sql` on standard input and returns its output whether
    /// or not it succeeded (golden tests compare stdout and stderr).
    pub fn psql_raw(&self, db: &str, args: &[&str], sql: &str) -> Result<Output> {
        let mut cmd = Command::new(format!("{PG_BIN}/psql"));
        cmd.args(["-X", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let command = format!("{cmd:?}");
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(sql.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs psql as `user` with `sql` on stdin, as pg_regress does: stdout and stderr
    /// interleaved in one string, in order (psql flushes stdout before it writes to stderr),
    /// and no `psql:file:line:` prefixes on errors.
    pub fn psql_script(&self, db: &str, user: &str, extra: &[&str], sql: &str) -> String {
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        let mut cmd = Command::new(format!("{PG_BIN}/psql"));
        cmd.args(["-X", "-h"])
            .arg(self.socket_dir())
            .args(["-p", &self.port().to_string(), "-U", user, "-d", db])
            .args(extra)
            .env("PGTZ", "UTC")
            .env("PGDATESTYLE", "ISO")
            // A script that blocks on a lock (say, a prepared transaction left behind by an earlier
            // statement that failed) fails with a timeout in its output instead of hanging the run.
            .env("PGOPTIONS", "-c lock_timeout=30s -c statement_timeout=120s")
            .stdin(Stdio::piped())
            .stdout(writer.try_clone().expect("clone pipe"))
            .stderr(writer);
        let mut child = cmd.spawn().expect("spawn psql");
        // The Command holds the write ends; drop it so that EOF arrives when psql exits.
        drop(cmd);
        let mut stdin = child.stdin.take().expect("stdin");
        let input = sql.to_owned();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let mut out = String::new();
        reader.read_to_string(&mut out).expect("read psql output");
        feeder.join().expect("feeder");
        child.wait().expect("wait psql");
        out
    }

    /// Panics when the server log shows a FATAL, a PANIC or a crashed backend (every test of
    /// the extension ends with this).
    pub fn assert_clean_log(&self) {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("FATAL:")
                    || l.contains("PANIC:")
                    || (l.contains("server process") && l.contains("terminated"))
                    || l.contains("was terminated by signal")
            })
            // `pg_ctl stop -m immediate` makes the postmaster log this about itself; not a crash
            // of ours. Connection-time FATALs during startup are not either.
            .filter(|l| !l.contains("the database system is starting up"))
            .filter(|l| !l.contains("the database system is shutting down"))
            .filter(|l| !l.contains("terminating connection because of crash of another"))
            // The harness's readiness probe (pg_isready) connects as the OS user.
            .filter(|l| !(l.contains("FATAL:  role") && l.contains("does not exist")))
            .collect();
        assert!(bad.is_empty(), "server log has:\n{}", bad.join("\n"));
    }

    /// [`psql_ok`](Self::psql_ok) as superuser that panics with the query and psql's error
    /// when it fails: for tests, where a failing setup query is the test failing.
    pub fn query(&self, db: &str, sql: &str) -> String {
        self.psql_ok(db, sql)
            .unwrap_or_else(|e| panic!("query failed: {sql}\n{e}"))
    }

    /// Runs `sql` with `ON_ERROR_STOP` and returns unaligned, tuples-only stdout.
    pub fn psql_ok(&self, db: &str, sql: &str) -> Result<String> {
        let out = self.psql_raw(db, &["-v", "ON_ERROR_STOP=1", "-At", "-q"], sql)?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("psql -d {db} <<< {sql:?}"),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }
}

/// How to set up a streaming-replication standby ([`PgCluster::start_standby`]).
#[derive(Debug, Clone)]
pub struct StandbyOptions {
    /// The `application_name` the standby connects to its primary with: the name the primary's
    /// `pg_stat_replication` lists it under and [`PgCluster::set_synchronous_standby`] takes.
    /// PostgreSQL keeps only printable ASCII of it and compares it case-insensitively.
    pub application_name: String,
    /// Extra settings for the standby as (name, value), written verbatim after the primary's
    /// (which the base backup copies), so they win.
    pub settings: Vec<(String, String)>,
}

impl Default for StandbyOptions {
    fn default() -> Self {
        StandbyOptions {
            application_name: "standby".into(),
            settings: Vec::new(),
        }
    }
}

/// A libpq URI that lists `clusters` in order (over TCP, as `user`) with
/// `target_session_attrs=read-write`: a client tries each in turn and keeps the first that
/// accepts a connection and allows writes, so after a failover it skips the dead primary and
/// the read-only standbys and reaches the promoted one. libpq and tokio-postgres 0.7 both take
/// it; `user` and `db` are written verbatim, as in [`PgCluster::url`].
pub fn multi_host_url(clusters: &[&PgCluster], db: &str, user: &str) -> String {
    let hosts: Vec<String> = clusters
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.port))
        .collect();
    format!(
        "postgresql://{user}@{}/{db}?target_session_attrs=read-write",
        hosts.join(",")
    )
}

/// `s` as a single-quoted `postgresql.conf` string (a backslash escapes there too).
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `s` as an SQL string literal (`standard_conforming_strings` is on: only quotes are special).
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a single-quoted libpq connection-string value.
fn conninfo_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `s` as one double-quoted name in `synchronous_standby_names`, so that whatever it holds
/// (commas, parentheses, the words FIRST or ANY) is taken as a name and not as list syntax.
fn standby_name_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Streaming replication: standbys, synchronous replication, promotion.
impl PgCluster {
    /// Takes a base backup of this running cluster (`pg_basebackup -R`, which also writes the
    /// standby's `primary_conninfo` and `standby.signal`) and starts it as a hot standby on its
    /// own free port, in its own directory that the returned cluster removes on drop like any
    /// other. Returns once this cluster's `pg_stat_replication` shows it streaming under
    /// `opts.application_name`.
    ///
    /// The standby keeps this cluster's settings except its port, its socket directory and
    /// `synchronous_standby_names`, which it starts without: once promoted it has no standby of
    /// its own, and a copied list (one naming the standby itself, say) would make every
    /// commit on it wait forever.
    pub fn start_standby(&self, opts: StandbyOptions) -> Result<PgCluster> {
        // As in `start`: a port found free can be taken before the standby binds it.
        let mut attempt = self.try_start_standby(&opts);
        for _ in 1..3 {
            if attempt.is_ok() {
                break;
            }
            attempt = self.try_start_standby(&opts);
        }
        let standby = attempt?;

        let name = &opts.application_name;
        let mut seen = String::new();
        let streaming = wait_until(Duration::from_secs(60), || {
            if standby.postmaster_pid().is_none() {
                seen = "nothing: the standby exited".into();
                return true;
            }
            seen = match self.replication_state(name) {
                Ok(s) if s.is_empty() => "no row".into(),
                Ok(s) => format!("state {s}"),
                Err(e) => e.to_string(),
            };
            seen == "state streaming"
        });
        if !streaming || seen != "state streaming" {
            return Err(HarnessError::NotReady {
                what: format!(
                    "standby '{name}' on port {} streaming from the primary on port {} (the \
                     primary's pg_stat_replication last showed {seen} for it)",
                    standby.port, self.port
                ),
                log: tail(&standby.log, 30),
            });
        }
        Ok(standby)
    }

    fn try_start_standby(&self, opts: &StandbyOptions) -> Result<PgCluster> {
        let dir = tempfile::Builder::new()
            .prefix("twopc-pg-standby-")
            .tempdir_in("/tmp")?;
        let root = dir.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        give_to_postgres(&root)?;
        let data = root.join("data");
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir)?;
        give_to_postgres(&socket_dir)?;
        let log = root.join("postgres.log");
        let port = util::free_port()?;

        // Over TCP, as a standby on another machine would connect. `-R` writes this
        // connection's parameters, application_name included, into the standby's
        // primary_conninfo, which is how the primary comes to know it by that name.
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres application_name={}",
            self.port,
            conninfo_quote(&opts.application_name)
        );
        let mut backup = as_postgres(&format!("{PG_BIN}/pg_basebackup"));
        backup
            .arg("-d")
            .arg(&conninfo)
            .arg("-D")
            .arg(&data)
            // Fast checkpoint: the default spreads the backup's checkpoint over minutes.
            // No fsync, like initdb --no-sync: the directory is thrown away after the test.
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]);
        run(backup)?;

        // Into postgresql.auto.conf after what `-R` wrote there: that file is read after
        // postgresql.conf, and the copy of the primary's may hold its ALTER SYSTEM settings
        // (synchronous_standby_names from set_synchronous_standby) that must not apply here.
        let mut conf = String::new();
        writeln!(conf, "# --- twopc test harness: standby ---").ok();
        writeln!(conf, "port = {port}").ok();
        writeln!(
            conf,
            "unix_socket_directories = {}",
            conf_quote(&socket_dir.display().to_string())
        )
        .ok();
        writeln!(conf, "synchronous_standby_names = ''").ok();
        for (k, v) in &opts.settings {
            writeln!(conf, "{k} = {v}").ok();
        }
        let auto_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&auto_path)?;
        existing.push_str(&conf);
        std::fs::write(&auto_path, existing)?;

        let standby = PgCluster {
            dir: Some(dir),
            data,
            socket_dir,
            log,
            port,
        };
        standby.start_server()?;
        Ok(standby)
    }

    /// `state` of the primary's `pg_stat_replication` row for `application_name` (empty when
    /// there is none).
    fn replication_state(&self, application_name: &str) -> Result<String> {
        self.psql_ok(
            "postgres",
            &format!(
                "SELECT state FROM pg_stat_replication WHERE application_name = {}",
                sql_literal(application_name)
            ),
        )
    }

    /// On a primary: makes the standby connected as `application_name` its synchronous standby
    /// (`Some`), or every standby asynchronous again (`None`), with `ALTER SYSTEM SET
    /// synchronous_standby_names` and `pg_reload_conf()`; returns once `pg_stat_replication`
    /// shows that standby with `sync_state = 'sync'` (or none that is not `async`).
    ///
    /// `synchronous_commit` keeps its value. PostgreSQL's default, `on`, makes a commit wait
    /// until the synchronous standby has flushed it, so it survives the primary's loss; a read
    /// on the standby may still briefly miss it, unless `synchronous_commit = remote_apply`
    /// (set it in [`PgOptions::settings`]) makes commits wait for the standby's replay too.
    pub fn set_synchronous_standby(&self, application_name: Option<&str>) -> Result<()> {
        let names = application_name.map(standby_name_quote).unwrap_or_default();
        // Two statements psql sends one at a time: ALTER SYSTEM refuses to run in a
        // transaction block, which one multi-statement query string would be.
        self.psql_ok(
            "postgres",
            &format!(
                "ALTER SYSTEM SET synchronous_standby_names = {};\nSELECT pg_reload_conf();",
                sql_literal(&names)
            ),
        )?;
        // Each walsender computes its own sync_state after it has reloaded, so 'sync' here
        // means the reload reached the standby's sender. Committing backends learn that a
        // synchronous standby is configured from the checkpointer, which reloads on the same
        // signal and wakes for it at once, well before this poll's psql returns.
        let check = match application_name {
            Some(name) => format!(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_replication \
                 WHERE lower(application_name) = lower({}) AND sync_state = 'sync')",
                sql_literal(name)
            ),
            None => "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_replication \
                     WHERE sync_state <> 'async')"
                .into(),
        };
        let mut seen = String::new();
        let done = wait_until(Duration::from_secs(30), || {
            seen = self
                .psql_ok("postgres", &check)
                .unwrap_or_else(|e| e.to_string());
            seen == "t"
        });
        if !done {
            let rows = self
                .psql_ok(
                    "postgres",
                    "SELECT application_name, state, sync_state FROM pg_stat_replication",
                )
                .unwrap_or_else(|e| e.to_string());
            return Err(HarnessError::NotReady {
                what: format!(
                    "synchronous_standby_names = {names:?} on the primary on port {} \
                     (pg_stat_replication: {rows:?})",
                    self.port
                ),
                log: tail(&self.log, 30),
            });
        }
        Ok(())
    }

    /// On a standby: promotes it to a primary (`pg_ctl promote -w`) and returns once it has
    /// left recovery, i.e. accepts writes.
    pub fn promote(&self) -> Result<()> {
        let mut cmd = as_postgres(&format!("{PG_BIN}/pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "promote"]);
        run(cmd)?;
        // pg_ctl waits for the postmaster to report the end of recovery; ask a session too,
        // since what a client sees is what the tests depend on.
        if !wait_until(Duration::from_secs(60), || {
            matches!(self.is_in_recovery(), Ok(false))
        }) {
            return Err(HarnessError::NotReady {
                what: format!("promoted standby on port {}", self.port),
                log: tail(&self.log, 30),
            });
        }
        Ok(())
    }

    /// `pg_is_in_recovery()`: true on a standby (also while a promotion is under way), false
    /// on a primary.
    pub fn is_in_recovery(&self) -> Result<bool> {
        let sql = "SELECT pg_is_in_recovery()";
        match self.psql_ok("postgres", sql)?.as_str() {
            "t" => Ok(true),
            "f" => Ok(false),
            other => Err(HarnessError::Command {
                command: format!("psql -d postgres <<< {sql:?}"),
                detail: format!("unexpected output {other:?}"),
            }),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            // Immediate: we are about to delete the data anyway.
            if self.crash().is_err() {
                let _ = self.kill9();
            }
        }
        crate::secrets::keep_log("postgres", &self.log);
        if std::env::var_os("TWOPC_KEEP_CLUSTERS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}
