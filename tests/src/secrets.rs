//! The suite-wide check that no secret reaches a log: every token and password the harness
//! makes (or a test hands it) is written to the file named by `TWOPC_SECRETS_FILE`, and every
//! server log the harness's clusters and redis-servers wrote is copied into `TWOPC_SUITE_LOGS`
//! before their directories are deleted. `scripts/test.sh` sets both, keeps the output of the
//! whole test run (which carries every coordinator's and participant's log: their stderr is
//! the test's) beside them, and at the end `scripts/check-secrets.sh` searches all of it for
//! every secret. Without the variables (a developer's `cargo test`) nothing is written.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records `secret` for the end-of-suite search (short strings are refused: a secret that
/// also occurs by chance in ordinary text would make the search meaningless).
pub fn register(secret: &str) {
    assert!(
        secret.len() >= 12,
        "a registered secret must be at least 12 characters"
    );
    let Some(path) = std::env::var_os("TWOPC_SECRETS_FILE") else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("TWOPC_SECRETS_FILE {}: {e}", Path::new(&path).display()));
    // One write per line: tests in parallel append whole lines.
    f.write_all(format!("{secret}\n").as_bytes())
        .expect("append to TWOPC_SECRETS_FILE");
}

/// A new random token (64 hex digits), registered.
pub fn new_token() -> String {
    let t = twopc_coordinator::clients::random_token().expect("random bytes from /dev/urandom");
    register(&t);
    t
}

/// Copies the log file at `path` into `TWOPC_SUITE_LOGS` as `<what>-<pid>-<n>.log`, if set.
pub fn keep_log(what: &str, path: &Path) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Some(dir) = std::env::var_os("TWOPC_SUITE_LOGS") else {
        return;
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let to = Path::new(&dir).join(format!("{what}-{}-{n}.log", std::process::id()));
    // A log that is not there (a server that never started) is nothing to search.
    let _ = std::fs::copy(path, to);
}
