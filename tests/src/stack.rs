//! The whole twopc stack as real processes: PostgreSQL 15 with pg_twopc_ext preloaded (its
//! background worker is the `bank` participant), redis-server with the Redis participant
//! process (`ledger`), and the coordinator process. Used by the demo and the end-to-end and
//! reliability tests.
//!
//! Every piece can be crashed and restarted on its own: the coordinator and the Redis
//! participant with SIGKILL, PostgreSQL with `pg_ctl stop -m immediate` or SIGKILL, redis-server
//! with SIGKILL. Ports stay the same across restarts, so connections come back by themselves.

use crate::coordinator_config::{CoordinatorConfig, ParticipantEntry};
use crate::{util, PgCluster, PgOptions, RedisServer, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the stack's executables are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The coordinator (`twopc-coordinator` or its under-test twin).
    pub coordinator: PathBuf,
    /// The Redis participant.
    pub redis_participant: PathBuf,
}

impl Binaries {
    /// The under-test twins built next to the running executable (for binaries of this crate;
    /// integration tests pass `CARGO_BIN_EXE_*` paths instead).
    pub fn next_to_current_exe() -> Binaries {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Binaries {
            coordinator: dir.join("twopc-coordinator-under-test"),
            redis_participant: dir.join("twopc-redis-participant-under-test"),
        }
    }
}

/// Ports and knobs.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// PostgreSQL port (`None`: free port).
    pub pg_port: Option<u16>,
    /// redis-server port.
    pub redis_port: Option<u16>,
    /// The Postgres participant endpoint's port.
    pub bank_port: Option<u16>,
    /// The Redis participant's port.
    pub ledger_port: Option<u16>,
    /// The coordinator's HTTP port (0: free port).
    pub coordinator_port: u16,
    /// The coordinator's data directory (`None`: a temporary one).
    pub coordinator_data: Option<PathBuf>,
    /// Directory with the built web app.
    pub web_dir: Option<PathBuf>,
    /// Accounts 1..=N seeded with `initial_balance` in both stores.
    pub accounts: u32,
    /// Starting balance of every account.
    pub initial_balance: i64,
    /// Coordinator prepare timeout.
    pub prepare_timeout_ms: u64,
    /// Participants ask for the decision after this long.
    pub decision_timeout_ms: u64,
    /// Enable the coordinator's fault-injection API.
    pub fault_injection: bool,
    /// Use this coordinator configuration file instead of a generated one (its participant
    /// URLs must match the ports above; tokens are passed as TWOPC_BANK_TOKEN and
    /// TWOPC_LEDGER_TOKEN).
    pub coordinator_config_file: Option<PathBuf>,
    /// Extra settings for the generated coordinator configuration (name, TOML value).
    pub coordinator_settings: Vec<(String, String)>,
    /// Extra TOML tables for the generated coordinator configuration (`[[client]]`, ...).
    pub coordinator_tables: String,
    /// The client token the harness itself uses for the API (with `[[client]]`s configured).
    pub api_token: Option<String>,
    /// Keep the coordinator's decisions in a PostgreSQL cluster of their own
    /// ([`Stack::log_pg`]) instead of the file log, with this lease TTL in milliseconds
    /// (renewed every third of it).
    pub postgres_decision_log: Option<u64>,
    /// With the PostgreSQL decision log: give its cluster a synchronous streaming standby
    /// ([`Stack::log_standby`]) and point the coordinator at both with a multi-host URL
    /// (`target_session_attrs=read-write`), so a promoted standby takes over.
    pub log_standby: bool,
    /// TLS on every connection the product encrypts ([`crate::stack_tls`]): `wss://` with
    /// mutual TLS to both participants, HTTPS for the API, `rediss://` with an ACL user from
    /// the Redis participant to redis-server.
    pub tls: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            pg_port: None,
            redis_port: None,
            bank_port: None,
            ledger_port: None,
            coordinator_port: 0,
            coordinator_data: None,
            web_dir: None,
            accounts: 10,
            initial_balance: 100,
            prepare_timeout_ms: 3000,
            decision_timeout_ms: 2000,
            fault_injection: true,
            coordinator_config_file: None,
            coordinator_settings: Vec::new(),
            coordinator_tables: String::new(),
            api_token: None,
            postgres_decision_log: None,
            log_standby: false,
            tls: false,
        }
    }
}

/// A child process we can kill and restart with the same command line.
#[derive(Debug)]
pub struct Proc {
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The first line the process printed (its "listening on ..." line).
    pub first_line: String,
}

impl Proc {
    /// Starts `cmd` (program first) with `env` added, and waits for its first line of output.
    pub fn spawn(cmd: Vec<String>, env: Vec<(String, String)>) -> Result<Proc> {
        let mut p = Proc {
            cmd,
            env,
            child: None,
            first_line: String::new(),
        };
        p.start()?;
        Ok(p)
    }

    /// Starts the process (again) and waits for its first line of output.
    pub fn start(&mut self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// Like [`start`](Self::start) with extra environment variables for this run only (e.g.
    /// `TWOPC_FAILPOINTS`).
    pub fn start_with_env(&mut self, extra: &[(&str, &str)]) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut c = Command::new(&self.cmd[0]);
        c.args(&self.cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // As on a Rust developer's machine: nothing a user reads may carry a backtrace.
            .env("RUST_BACKTRACE", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        let command = format!("{:?}", self.cmd);
        let mut child = c.spawn().map_err(|source| crate::HarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.is_empty() {
            let status = child.wait().ok();
            return Err(crate::HarnessError::Command {
                command,
                detail: format!("exited before it was ready: {status:?}"),
            });
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        self.first_line = line.trim().to_owned();
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (up to 10 s, then SIGKILL).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the process exits by itself (a failpoint); true if it did within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The running stack.
pub struct Stack {
    /// PostgreSQL, with the `bank` participant inside.
    pub pg: PgCluster,
    /// redis-server.
    pub redis: RedisServer,
    /// The `ledger` participant process.
    pub ledger: Proc,
    /// The coordinator process.
    pub coordinator: Proc,
    /// The coordinator's base URL (`http://127.0.0.1:port`).
    pub coordinator_url: String,
    /// The bank participant's WebSocket address.
    pub bank_addr: String,
    /// The ledger participant's WebSocket address.
    pub ledger_addr: String,
    /// The coordinator's configuration file.
    pub coordinator_config: PathBuf,
    /// Participant tokens (bank, ledger).
    pub tokens: (String, String),
    /// Accounts seeded.
    pub accounts: u32,
    /// The cluster holding the coordinator's decisions (database `twopc_log`), when
    /// [`StackOptions::postgres_decision_log`] asked for one.
    pub log_pg: Option<PgCluster>,
    /// The synchronous standby of [`Stack::log_pg`], when [`StackOptions::log_standby`].
    pub log_standby: Option<PgCluster>,
    /// The URL the coordinators reach the PostgreSQL decision log at.
    pub log_url: Option<String>,
    /// The generated coordinator configuration (participants direct, not through any proxy),
    /// from which [`Stack::spawn_coordinator`] derives further coordinators' configurations.
    pub coordinator_settings: CoordinatorConfig,
    /// The client token the harness uses for the API ([`StackOptions::api_token`]).
    pub api_token: Option<String>,
    /// The certificates of a TLS stack ([`StackOptions::tls`]).
    pub tls: Option<crate::stack_tls::StackTls>,
    /// redis-server's TLS port, in a TLS stack.
    pub redis_tls_port: Option<u16>,
    _dir: tempfile::TempDir,
}

fn random_token() -> String {
    crate::secrets::new_token()
}

impl Stack {
    /// Starts everything, seeds the bank-transfer accounts, and waits until the coordinator
    /// sees both participants connected.
    pub fn start(bins: &Binaries, opts: StackOptions) -> Result<Stack> {
        let dir = tempfile::Builder::new()
            .prefix("twopc-stack-")
            .tempdir_in("/tmp")?;
        let bank_port = match opts.bank_port {
            Some(p) => p,
            None => util::free_port()?,
        };
        let ledger_port = match opts.ledger_port {
            Some(p) => p,
            None => util::free_port()?,
        };
        let (bank_token, ledger_token) = (random_token(), random_token());
        if let Some(t) = &opts.api_token {
            crate::secrets::register(t);
        }
        let bank_addr = format!("127.0.0.1:{bank_port}");
        let tls = if opts.tls {
            Some(crate::stack_tls::StackTls::new()?)
        } else {
            None
        };
        let pg = PgCluster::start(PgOptions {
            port: opts.pg_port,
            shared_preload_libraries: Some("pg_twopc_ext".into()),
            settings: tls
                .iter()
                .flat_map(|t| t.bank_settings())
                .chain(bank_worker_settings(
                    &bank_addr,
                    &bank_token,
                    "bank",
                    opts.decision_timeout_ms,
                ))
                .collect(),
            databases: vec!["bank".into()],
            ..PgOptions::default()
        })?;
        seed_bank(
            &pg,
            &format!("generate_series(1, {})", opts.accounts),
            opts.initial_balance,
        )?;
        let redis_tls_port = match &tls {
            Some(_) => Some(util::free_port()?),
            None => None,
        };
        let redis = match (&tls, redis_tls_port) {
            (Some(t), Some(port)) => {
                RedisServer::start_with_args(opts.redis_port, t.redis_args(port))?
            }
            _ => RedisServer::start_on(opts.redis_port)?,
        };
        seed_balances(redis.port(), 1..=opts.accounts, opts.initial_balance)?;
        let ledger_addr = format!("127.0.0.1:{ledger_port}");
        // The URL through the environment: with TLS it holds the ACL user's password.
        let mut ledger_env = vec![("TWOPC_REDIS_TOKEN".to_string(), ledger_token.clone())];
        let mut ledger_tls_args = Vec::new();
        match (&tls, redis_tls_port) {
            (Some(t), Some(port)) => {
                ledger_env.push(("TWOPC_REDIS_URL".into(), t.ledger_redis_url(port)));
                ledger_tls_args = t.ledger_args();
            }
            _ => ledger_env.push(("TWOPC_REDIS_URL".into(), redis.url())),
        }
        let ledger = Proc::spawn(
            [
                bins.redis_participant.display().to_string(),
                "--listen".into(),
                ledger_addr.clone(),
                "--name".into(),
                "ledger".into(),
                "--decision-timeout-ms".into(),
                opts.decision_timeout_ms.to_string(),
                "--log".into(),
                "warn".into(),
                "--max-in-flight".into(),
                "1024".into(),
            ]
            .into_iter()
            .chain(ledger_tls_args)
            .collect(),
            // Never `--token`: a command line is visible to every user (ps).
            ledger_env,
        )?;
        let data = opts
            .coordinator_data
            .clone()
            .unwrap_or_else(|| dir.path().join("coordinator"));
        let config = dir.path().join("coordinator.toml");
        let mut settings = CoordinatorConfig::new(
            &data,
            vec![
                ParticipantEntry::postgres("bank", &bank_addr, &bank_token),
                ParticipantEntry::redis("ledger", &ledger_addr, &ledger_token),
            ],
        );
        settings.listen = format!("127.0.0.1:{}", opts.coordinator_port);
        if let Some(t) = &tls {
            settings.participant_scheme = "wss";
            settings
                .extra
                .push_str(&t.coordinator_tables(&t.ca.ca_file, &t.coordinator));
        }
        if let Some(w) = &opts.web_dir {
            settings = settings.set("web_dir", format!("\"{}\"", w.display()));
        }
        settings = settings
            .set("prepare_timeout_ms", opts.prepare_timeout_ms)
            .set("ack_wait_ms", 2000)
            .set("client_timeout_ms", 30000)
            .set("retry_base_ms", 100)
            .set("retry_max_ms", 1000)
            .set("heartbeat_ms", 1000)
            .set("fault_injection", opts.fault_injection);
        let log_pg = match opts.postgres_decision_log {
            Some(ttl) => {
                settings = settings.set(
                    "decision_log",
                    format!(
                        "{{ kind = \"postgres\", url_env = \"TWOPC_LOG_URL\", \
                         lease_ttl_ms = {ttl}, lease_renew_ms = {} }}",
                        ttl / 3
                    ),
                );
                Some(PgCluster::start(PgOptions {
                    databases: vec!["twopc_log".into()],
                    settings: tls.iter().flat_map(|t| t.log_pg_settings()).collect(),
                    ..PgOptions::default()
                })?)
            }
            None => None,
        };
        for (name, value) in &opts.coordinator_settings {
            settings = settings.set(name, value);
        }
        settings.extra.push_str(&opts.coordinator_tables);
        settings.write(&config)?;
        let coordinator_settings = settings.clone();
        let (args, env) = match &opts.coordinator_config_file {
            // A given configuration file (the demo uses the documented example): tokens come
            // through the environment it names, paths through flags.
            Some(file) => {
                let mut args = vec![
                    bins.coordinator.display().to_string(),
                    "serve".into(),
                    "--config".into(),
                    file.display().to_string(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ];
                if let Some(w) = &opts.web_dir {
                    args.push("--web-dir".into());
                    args.push(w.display().to_string());
                }
                let env = vec![
                    ("TWOPC_LOG".into(), "warn".into()),
                    ("TWOPC_BANK_TOKEN".into(), bank_token.clone()),
                    ("TWOPC_LEDGER_TOKEN".into(), ledger_token.clone()),
                ];
                (args, env)
            }
            None => (
                vec![
                    bins.coordinator.display().to_string(),
                    "serve".into(),
                    "--config".into(),
                    config.display().to_string(),
                ],
                vec![("TWOPC_LOG".into(), "warn".into())],
            ),
        };
        let mut env = env;
        let mut log_standby = None;
        let log_url = match &log_pg {
            Some(log) if opts.log_standby => {
                const NAME: &str = "log_standby";
                let standby = log.start_standby(crate::pg::StandbyOptions {
                    application_name: NAME.into(),
                    ..Default::default()
                })?;
                log.set_synchronous_standby(Some(NAME))?;
                let url = crate::pg::multi_host_url(&[log, &standby], "twopc_log", "postgres");
                log_standby = Some(standby);
                Some(url)
            }
            Some(log) => Some(match &tls {
                Some(t) => {
                    crate::stack_tls::StackTls::verify_full(&log.url("twopc_log"), &t.ca.ca_file)
                }
                None => log.url("twopc_log"),
            }),
            None => None,
        };
        if let Some(url) = &log_url {
            // Through the environment, as a URL with a password would have to be.
            env.push(("TWOPC_LOG_URL".into(), url.clone()));
        }
        let coordinator = Proc::spawn(args, env)?;
        let coordinator_url = coordinator
            .first_line
            .strip_prefix("listening on ")
            .unwrap_or(&coordinator.first_line)
            .to_owned();
        if let Some(t) = &tls {
            crate::stack_tls::trust(&coordinator_url, t.client_config(&[b"http/1.1"]));
        }
        let stack = Stack {
            pg,
            redis,
            ledger,
            coordinator,
            coordinator_url,
            bank_addr,
            ledger_addr,
            coordinator_config: config,
            tokens: (bank_token, ledger_token),
            accounts: opts.accounts,
            log_pg,
            log_standby,
            log_url,
            coordinator_settings,
            api_token: opts.api_token.clone(),
            tls,
            redis_tls_port,
            _dir: dir,
        };
        stack.wait_connected(Duration::from_secs(30))?;
        Ok(stack)
    }

    /// Starts one more coordinator, with id `id`, on the same participants (directly, not
    /// through any proxy) and the same decision log, on a free port and with a data directory
    /// of its own under `dir`. Returns it with its base URL.
    pub fn spawn_coordinator(
        &self,
        bins: &Binaries,
        id: &str,
        dir: &Path,
    ) -> Result<(Proc, String)> {
        self.spawn_coordinator_on(bins, id, 0, dir)
    }

    /// [`Stack::spawn_coordinator`] on a fixed port (`0`: a free one).
    pub fn spawn_coordinator_on(
        &self,
        bins: &Binaries,
        id: &str,
        port: u16,
        dir: &Path,
    ) -> Result<(Proc, String)> {
        self.spawn_coordinator_with_env(bins, id, port, dir, &[])
    }

    /// [`Stack::spawn_coordinator_on`] with extra environment variables (failpoints, ...).
    pub fn spawn_coordinator_with_env(
        &self,
        bins: &Binaries,
        id: &str,
        port: u16,
        dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> Result<(Proc, String)> {
        self.spawn_coordinator_configured(bins, (id, port, dir), extra_env, |_| {})
    }

    /// [`Stack::spawn_coordinator_with_env`], its configuration changed by `configure` first
    /// (other TLS tables, clients, ...); a later `extra_env` entry overrides an earlier one.
    pub fn spawn_coordinator_configured(
        &self,
        bins: &Binaries,
        (id, port, dir): (&str, u16, &Path),
        extra_env: &[(&str, &str)],
        configure: impl FnOnce(&mut CoordinatorConfig),
    ) -> Result<(Proc, String)> {
        let mut cfg = self.coordinator_settings.clone();
        cfg.coordinator_id = id.into();
        cfg.listen = format!("127.0.0.1:{port}");
        cfg.data_dir = dir.join(format!("coordinator-{id}"));
        configure(&mut cfg);
        let path = dir.join(format!("coordinator-{id}.toml"));
        cfg.write(&path)?;
        let mut env = vec![("TWOPC_LOG".to_string(), "warn".to_string())];
        if let Some(url) = &self.log_url {
            env.push(("TWOPC_LOG_URL".into(), url.clone()));
        }
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let p = Proc::spawn(
            vec![
                bins.coordinator.display().to_string(),
                "serve".into(),
                "--config".into(),
                path.display().to_string(),
            ],
            env,
        )?;
        let url = p
            .first_line
            .strip_prefix("listening on ")
            .unwrap_or(&p.first_line)
            .to_owned();
        Ok((p, url))
    }

    /// Restarts the coordinator after a crash; with a fixed port the URL stays the same,
    /// otherwise it is updated.
    pub fn restart_coordinator(&mut self, failpoints: &[&str]) -> Result<()> {
        let fp = failpoints.join(",");
        self.restart_coordinator_with_env(&[("TWOPC_FAILPOINTS", &fp)])
    }

    /// Restarts the coordinator (kill -9 first if it runs) with extra environment variables for
    /// this run only (failpoints, an `LD_PRELOAD` shim, ...).
    pub fn restart_coordinator_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        self.coordinator.kill9();
        self.coordinator.start_with_env(env)?;
        self.coordinator_url = self
            .coordinator
            .first_line
            .strip_prefix("listening on ")
            .unwrap_or(&self.coordinator.first_line)
            .to_owned();
        Ok(())
    }

    /// Polls `/v1/participants` (with a plain TCP HTTP/1.0 request: no client dependency) until
    /// both participants are connected.
    pub fn wait_connected(&self, within: Duration) -> Result<()> {
        self.wait_connected_at(&self.coordinator_url, within)
    }

    /// [`Stack::wait_connected`] for the coordinator at `url` (one from
    /// [`Stack::spawn_coordinator`]).
    pub fn wait_connected_at(&self, url: &str, within: Duration) -> Result<()> {
        let url = url.to_owned();
        let token = self.api_token.as_deref();
        let ok = util::wait_until(within, || {
            http_get_as(&url, "/v1/participants", token)
                .map(|body| body.matches("\"connected\":true").count() == 2)
                .unwrap_or(false)
        });
        if ok {
            Ok(())
        } else {
            Err(crate::HarnessError::NotReady {
                what: "coordinator with both participants connected".into(),
                log: http_get_as(&url, "/v1/participants", token).unwrap_or_default(),
            })
        }
    }

    /// The command lines (as `ps` shows them) of every process on this machine that carry one
    /// of this stack's participant tokens. Tokens travel in the environment or in files only,
    /// so this must be empty.
    pub fn command_lines_showing_tokens(&self) -> Vec<String> {
        let mut found = Vec::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        for p in procs.flatten() {
            // Processes come and go while we look; one that is gone is not showing anything.
            let Ok(raw) = std::fs::read(p.path().join("cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if line.contains(&self.tokens.0) || line.contains(&self.tokens.1) {
                found.push(format!("pid {}: {line}", p.file_name().to_string_lossy()));
            }
        }
        found
    }

    /// Sum of balances and per-account balances in Postgres, as "id=balance" pairs.
    pub fn pg_balances(&self) -> Result<Vec<(u32, i64)>> {
        let out = self.pg.psql_ok(
            "bank",
            "SELECT id || '=' || balance FROM accounts ORDER BY id",
        )?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (a, b) = l.split_once('=')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect())
    }
}

/// The settings that make a cluster's pg_twopc_ext worker a bank participant at `addr`,
/// reporting itself as `name`, for database `bank` as role `app` (client role `app_client`).
pub fn bank_worker_settings(
    addr: &str,
    token: &str,
    name: &str,
    decision_timeout_ms: u64,
) -> Vec<(String, String)> {
    vec![
        ("twopc.listen_addr".into(), format!("'{addr}'")),
        ("twopc.database".into(), "'bank'".into()),
        ("twopc.role".into(), "'app'".into()),
        ("twopc.client_role".into(), "'app_client'".into()),
        ("twopc.auth_token".into(), format!("'{token}'")),
        ("twopc.participant_name".into(), format!("'{name}'")),
        (
            "twopc.decision_timeout".into(),
            decision_timeout_ms.to_string(),
        ),
    ]
}

/// Sets database `bank` up for the worker of [`bank_worker_settings`]: its roles and grants,
/// the extension, and `accounts` with one row of `balance` per id that the SQL set-returning
/// expression `ids` yields (`generate_series(1, 4)`, `unnest('{1,3}'::int[])`).
pub fn seed_bank(pg: &PgCluster, ids: &str, balance: i64) -> Result<()> {
    pg.psql_ok(
        "bank",
        &format!(
            "CREATE ROLE app LOGIN;
             CREATE ROLE app_client NOLOGIN;
             GRANT app_client TO app;
             CREATE EXTENSION pg_twopc_ext;
             GRANT USAGE ON SCHEMA twopc TO app;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twopc TO app;
             GRANT SELECT ON ALL TABLES IN SCHEMA twopc TO app;
             CREATE TABLE accounts(id int PRIMARY KEY, owner text NOT NULL,
                                   balance bigint NOT NULL CHECK (balance >= 0));
             INSERT INTO accounts SELECT i, 'owner-' || i, {balance} FROM {ids} i;
             GRANT SELECT, UPDATE ON accounts TO app_client;"
        ),
    )?;
    Ok(())
}

/// Sets `balance:<id>` to `balance` for every id, on the plain-text redis-server at `port`
/// (one pipelined write, then the replies).
pub fn seed_balances(
    port: u16,
    ids: impl IntoIterator<Item = u32>,
    balance: i64,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let mut cmd = String::new();
    let mut count = 0;
    for i in ids {
        let key = format!("balance:{i}");
        let val = balance.to_string();
        cmd.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
            key.len(),
            val.len()
        ));
        count += 1;
    }
    s.write_all(cmd.as_bytes())?;
    // Each reply is "+OK\r\n".
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while got < count * 5 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(())
}

/// A minimal HTTP GET over TCP (the harness stays free of an HTTP client).
pub fn http_get(base: &str, path: &str) -> std::io::Result<String> {
    http_get_as(base, path, None)
}

/// [`http_get`] with a client token. An `https://` base needs its CA registered with
/// [`crate::stack_tls::trust`] (a TLS stack does that for its coordinator).
pub fn http_get_as(base: &str, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let (tls, hostport) = match base.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, base.trim_start_matches("http://")),
    };
    let hostport = hostport.trim_end_matches('/');
    let mut s: Box<dyn ReadWrite> = if tls {
        Box::new(crate::stack_tls::connect_blocking(hostport)?)
    } else {
        let s = std::net::TcpStream::connect(hostport)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Box::new(s)
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}\r\n")?;
    let mut resp = String::new();
    if let Err(e) = s.read_to_string(&mut resp) {
        // A TLS server that closes without close_notify still sent the whole HTTP/1.0 body.
        if e.kind() != std::io::ErrorKind::UnexpectedEof || resp.is_empty() {
            return Err(e);
        }
    }
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// A connection [`http_get_as`] can talk HTTP over: TCP or TLS.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}
