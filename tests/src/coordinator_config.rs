//! The coordinator configuration file the tests start coordinators with: one writer instead
//! of a TOML template per test file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `[[participant]]` entry.
#[derive(Debug, Clone)]
pub struct ParticipantEntry {
    /// Its name.
    pub name: String,
    /// `redis` or `postgres`.
    pub kind: &'static str,
    /// `host:port` of its WebSocket endpoint.
    pub addr: String,
    /// The bearer token it expects.
    pub token: String,
}

impl ParticipantEntry {
    /// A Redis participant at `addr`.
    pub fn redis(name: &str, addr: impl ToString, token: &str) -> ParticipantEntry {
        ParticipantEntry {
            name: name.into(),
            kind: "redis",
            addr: addr.to_string(),
            token: token.into(),
        }
    }

    /// A Postgres participant (the extension's worker) at `addr`.
    pub fn postgres(name: &str, addr: impl ToString, token: &str) -> ParticipantEntry {
        ParticipantEntry {
            kind: "postgres",
            ..ParticipantEntry::redis(name, addr, token)
        }
    }
}

/// A coordinator configuration: `coordinator_id` (`"c1"`), the listen address, the data
/// directory, timing settings written verbatim (`name = value` lines, in order), and the
/// participants.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `coordinator_id` (`c1` unless set).
    pub coordinator_id: String,
    /// `listen`, e.g. `127.0.0.1:0`.
    pub listen: String,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// Further top-level settings, verbatim.
    pub settings: Vec<(String, String)>,
    /// Extra text appended after the settings (a test's own lines).
    pub extra: String,
    /// The participants.
    pub participants: Vec<ParticipantEntry>,
    /// `ws` or `wss`, for every participant URL.
    pub participant_scheme: &'static str,
}

impl CoordinatorConfig {
    /// Listening on a free loopback port, keeping its log in `data_dir`.
    pub fn new(data_dir: &Path, participants: Vec<ParticipantEntry>) -> CoordinatorConfig {
        CoordinatorConfig {
            coordinator_id: "c1".into(),
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.to_path_buf(),
            settings: Vec::new(),
            extra: String::new(),
            participants,
            participant_scheme: "ws",
        }
    }

    /// Adds a top-level setting (`value` is written verbatim: quote strings yourself).
    pub fn set(mut self, name: &str, value: impl ToString) -> CoordinatorConfig {
        self.settings.push((name.into(), value.to_string()));
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "coordinator_id = \"{}\"\nlisten = \"{}\"\ndata_dir = \"{}\"\n",
            self.coordinator_id,
            self.listen,
            self.data_dir.display()
        );
        for (k, v) in &self.settings {
            writeln!(s, "{k} = {v}").ok();
        }
        s.push_str(&self.extra);
        for p in &self.participants {
            write!(
                s,
                "\n[[participant]]\nname = \"{}\"\nkind = \"{}\"\nurl = \"{}://{}/\"\ntoken = \"{}\"\n",
                p.name, p.kind, self.participant_scheme, p.addr, p.token
            )
            .ok();
        }
        s
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.render())
    }
}
