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
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_prepared_transactions: 64,
            shared_preload_libraries: None,
            settings: Vec::new(),
            databases: Vec::new(),
            port: None,
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
        for (k, v) in &opts.settings {
            writeln!(conf, "{k} = {v}").ok();
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing)?;

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

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            // Immediate: we are about to delete the data anyway.
            if self.crash().is_err() {
                let _ = self.kill9();
            }
        }
        if std::env::var_os("TWOPC_KEEP_CLUSTERS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}
