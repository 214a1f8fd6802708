//! A throwaway `redis-server` with durable AOF.

use crate::util::{self, tail, wait_until};
use crate::{HarnessError, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server child process; killed and its directory deleted on drop.
#[derive(Debug)]
pub struct RedisServer {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Further `redis-server` arguments (TLS, ACL users), on every start.
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server in a new directory on a free port with `appendonly yes` and
    /// `appendfsync always`, and waits until it answers PING.
    pub fn start_new() -> Result<RedisServer> {
        Self::start_on(None)
    }

    /// Like [`start_new`](Self::start_new), on a fixed port when one is given.
    pub fn start_on(fixed_port: Option<u16>) -> Result<RedisServer> {
        Self::start_with_args(fixed_port, Vec::new())
    }

    /// Like [`start_on`](Self::start_on), with further arguments on every start (a TLS port,
    /// ACL users).
    pub fn start_with_args(
        fixed_port: Option<u16>,
        extra_args: Vec<String>,
    ) -> Result<RedisServer> {
        let mut last = None;
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("twopc-redis-")
                .tempdir_in("/tmp")?;
            let path = dir.path().to_path_buf();
            let port = match fixed_port {
                Some(p) => p,
                None => util::free_port()?,
            };
            let mut s = RedisServer {
                dir: Some(dir),
                path,
                port,
                child: None,
                extra_args: extra_args.clone(),
            };
            match s.start() {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// (Re)starts the server process on the same port and directory, loading its AOF.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = self.log_path();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.path)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .args(&self.extra_args)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let command = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .map_err(|source| HarnessError::Spawn { command, source })?;
        self.child = Some(child);
        let port = self.port;
        let ready = wait_until(Duration::from_secs(30), || {
            if !self.is_running() {
                return true; // exited: reported below
            }
            ping(port)
        });
        if !ready || !self.is_running() {
            self.kill9();
            return Err(HarnessError::NotReady {
                what: format!("redis-server on port {port}"),
                log: tail(&log, 20),
            });
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no final fsync beyond what `appendfsync always` already did.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid while this handle runs it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's data directory (holds the AOF).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.path.join("redis.log")
    }
}

/// True when a server on `port` answers PING with PONG (not LOADING, not an error).
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG"),
        Err(_) => false,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        crate::secrets::keep_log("redis", &self.log_path());
        if std::env::var_os("TWOPC_KEEP_CLUSTERS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}
