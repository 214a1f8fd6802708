//! Throwaway real services for twopc's end-to-end tests and demo.
//!
//! The tests in this crate talk to a real PostgreSQL 15 cluster and a real `redis-server`,
//! started here, each on its own port and in its own temporary directory, and removed again
//! when the handle is dropped (also when a test fails or panics: `Drop` runs during
//! unwinding). Each can be crashed and restarted for fault tests:
//!
//! * [`PgCluster`]: `initdb` as the `postgres` user (PostgreSQL refuses to run as root),
//!   `max_prepared_transactions > 0`, optional `shared_preload_libraries` and extra settings,
//!   a private unix-socket directory. [`PgCluster::crash`] is `pg_ctl stop -m immediate`,
//!   [`PgCluster::kill9`] sends SIGKILL to the postmaster and every backend.
//!   [`PgCluster::start_standby`] adds a streaming-replication standby of a running cluster,
//!   [`PgCluster::set_synchronous_standby`] makes it synchronous and [`PgCluster::promote`]
//!   turns it into the primary; [`multi_host_url`] lists several clusters for a client that
//!   must find the writable one.
//! * [`RedisServer`]: `appendonly yes`, `appendfsync always`, no RDB snapshots, so what Redis
//!   acknowledged is on disk. [`RedisServer::kill9`] then [`RedisServer::start`] restarts it
//!   from its AOF on the same port.
//!
//! # Layout
//!
//! * [`bench`]: load and measurement shared by the benchmark binaries.
//! * [`browser`]: real headless Chromium over the DevTools protocol (web app tests).
//! * [`coordinator_config`]: the configuration file tests start coordinators with.
//! * [`pg`]: the PostgreSQL cluster.
//! * [`proc_cpu`]: CPU time per process of a stack, from `/proc` (the benchmarks' CPU tables).
//! * [`redis_server`]: the Redis server.
//! * [`stack`]: the whole twopc stack as real processes (demo, end-to-end and fault tests).
//! * [`sharded`]: a stack whose bank and ledger each run on several shards.
//! * [`util`]: free ports, waiting, running commands as the `postgres` user.
//! * [`wire_client`]: a WebSocket client speaking the twopc wire protocol, for driving
//!   participants the way the coordinator does.

pub mod bench;
pub mod browser;
pub mod coordinator_config;
pub mod fault_proxy;
pub mod invariants;
pub mod pg;
pub mod proc_cpu;
pub mod redis_server;
pub mod reliability;
pub mod secrets;
pub mod sharded;
pub mod stack;
pub mod stack_tls;
pub mod util;
pub mod wire_client;

pub use pg::{multi_host_url, PgCluster, PgOptions, StandbyOptions};
pub use redis_server::RedisServer;

/// Everything the harness can fail with.
#[derive(Debug)]
pub enum HarnessError {
    /// A command could not be spawned (missing binary, say).
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command ran and failed.
    Command {
        /// The command line.
        command: String,
        /// Its exit status and output.
        detail: String,
    },
    /// A server did not become ready in time.
    NotReady {
        /// Which server.
        what: String,
        /// The tail of its log.
        log: String,
    },
    /// A filesystem or other I/O error.
    Io(std::io::Error),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HarnessError::Spawn { command, source } => {
                write!(f, "cannot run `{command}`: {source}")
            }
            HarnessError::Command { command, detail } => write!(f, "`{command}` failed: {detail}"),
            HarnessError::NotReady { what, log } => {
                write!(f, "{what} did not become ready; log tail:\n{log}")
            }
            HarnessError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<std::io::Error> for HarnessError {
    fn from(e: std::io::Error) -> Self {
        HarnessError::Io(e)
    }
}

/// Result of a harness operation.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// The repository root (for locating scripts, golden files and built artefacts).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives one level below the repository root")
        .to_path_buf()
}
