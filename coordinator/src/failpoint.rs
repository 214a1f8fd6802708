//! Crash points for the fault tests.
//!
//! `TWOPC_FAILPOINTS=name[,name...]` makes the process abort (SIGABRT: no destructors, no
//! flushing, as close to kill -9 as a process can do to itself) when execution reaches one of
//! the named points. Without the variable every check is one relaxed load of a cached empty
//! list. Points:
//!
//! | name | where |
//! |---|---|
//! | `before_commit_log` | all votes YES, before the COMMIT record is appended |
//! | `after_commit_log` | the COMMIT record is durable, before any Commit is sent |
//! | `after_first_commit_send` | after the first Commit of a transaction was handed to its connection |

use std::sync::OnceLock;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("TWOPC_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process if `name` is armed.
pub fn hit(name: &str) {
    if armed().iter().any(|a| a == name) {
        eprintln!("failpoint {name} hit: aborting the process");
        std::process::abort();
    }
}

/// Logs the armed failpoints at start-up, so a test log shows them.
pub fn announce() {
    if !armed().is_empty() {
        tracing::warn!("failpoints armed: {:?}", armed());
    }
}
