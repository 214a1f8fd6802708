//! Small process and network helpers shared by the servers.

use crate::{HarnessError, Result};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The Unix user PostgreSQL runs as.
pub const PG_USER: &str = "postgres";

/// A TCP port on 127.0.0.1 that was free a moment ago and that nothing else is likely to take
/// before a server binds it: it lies below the kernel's ephemeral range, so no outgoing
/// connection can be given it as its local port meanwhile (a port that `bind(0)` handed out
/// lies inside that range, and a soak run lost its coordinator's port to the ledger's own
/// connection to redis-server that way), and this process never hands out one port twice.
/// Servers that then fail to bind are retried with another port by their start functions.
pub fn free_port() -> Result<u16> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low + 1000 {
        // Distinct seeds per process, so test binaries running side by side do not walk the
        // same sequence.
        let mut state = (std::process::id() as u64) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let given = given.get_or_insert_with(HashSet::new);
        for _ in 0..1000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let port = low + ((state >> 33) % u64::from(high - low)) as u16;
            if given.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return Ok(port);
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// True when this process runs as root (then PostgreSQL commands run as [`PG_USER`]).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of a user, from the password database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static record we read immediately; tests
    // call this from one thread at a time per process in practice and only read two integers.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// Gives `path` to the postgres user (when running as root), so the server can write there.
pub fn give_to_postgres(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = user_ids(PG_USER).ok_or_else(|| HarnessError::Command {
        command: format!("getpwnam({PG_USER})"),
        detail: "no such user; run scripts/setup.sh (it installs postgresql-15)".into(),
    })?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    Ok(())
}

/// A command that runs as the postgres user when we are root, as ourselves otherwise.
pub fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Runs a command to completion and fails with its output when it exits non-zero.
pub fn run(mut cmd: Command) -> Result<Output> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            command,
            detail: format!(
                "{}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}

/// Polls `ready` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a text file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends SIGKILL to `pid`, ignoring "no such process".
pub fn sigkill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Child processes of `parent`, read from /proc.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces; ppid follows the state.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let _state = fields.next();
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// True while a process with this pid exists, zombies included: PostgreSQL refuses to start
/// while the pid in `postmaster.pid` exists (`kill(pid, 0)` succeeds on a zombie), so a killed
/// postmaster counts as gone only once it has been reaped.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A small line diff (longest common subsequence) for mismatch reports.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{:>4}: {}\n", j + 1, b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{:>4}: {}\n", i + 1, a[i]));
            i += 1;
        }
    }
    out
}
