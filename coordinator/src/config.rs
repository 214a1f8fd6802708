//! Coordinator configuration: a TOML file, overridden by flags and environment variables.
//!
//! ```toml
//! coordinator_id = "c1"
//! listen = "127.0.0.1:7700"
//! data_dir = ".demo/coordinator"
//! web_dir = "web/dist"
//! prepare_timeout_ms = 5000
//! max_event_subscribers = 64   # /v1/events clients at once
//! event_buffer = 4096          # events a slow subscriber may fall behind before drops
//!
//! [[participant]]
//! name = "bank"
//! kind = "postgres"
//! url = "ws://127.0.0.1:7801/"
//! token_env = "TWOPC_BANK_TOKEN"   # or `token = "..."`, or `token_file = "..."`
//! ```
//!
//! `coordinator/example.toml` is the documented example the demo uses.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use twopc_protocol::{CoordinatorId, ParticipantKind, ParticipantName};

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One participant the coordinator connects to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// The name clients use in transactions.
    pub name: ParticipantName,
    /// Postgres or Redis (decides which operations it accepts).
    pub kind: ParticipantKind,
    /// Its WebSocket URL (`ws://host:port/`); empty for a participant with shards.
    #[serde(default)]
    pub url: String,
    /// The shared bearer token, inline.
    #[serde(default)]
    pub token: Option<String>,
    /// An environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Its shards, when it stands for several endpoints (see [`crate::shards`]); replaced by
    /// one participant per shard when the configuration is read.
    #[serde(default)]
    pub shards: Vec<crate::shards::ShardConfig>,
}

impl ParticipantConfig {
    /// The token, from wherever the configuration says it is.
    pub fn resolve_token(&self) -> Result<String, ConfigError> {
        resolve_secret(
            &format!("participant {}", self.name),
            (&self.token, &self.token_env, &self.token_file),
        )
        .unwrap_or_else(|| {
            Err(ConfigError::Invalid(format!(
                "participant {} has no token (set token, token_env or token_file)",
                self.name
            )))
        })
    }
}

/// A secret (a token, a URL with a password) given inline, by environment variable, or by a
/// file (its content trimmed), whichever is set first in that order; `None` when none is.
/// `what` names the setting in errors.
fn resolve_secret(
    what: &str,
    (inline, env, file): (&Option<String>, &Option<String>, &Option<PathBuf>),
) -> Option<Result<String, ConfigError>> {
    if let Some(v) = inline {
        return Some(Ok(v.clone()));
    }
    if let Some(var) = env {
        return Some(std::env::var(var).map_err(|_| {
            ConfigError::Invalid(format!("{what}: environment variable {var} is not set"))
        }));
    }
    let f = file.as_ref()?;
    Some(
        std::fs::read_to_string(f)
            .map(|s| s.trim().to_owned())
            .map_err(|e| ConfigError::Invalid(format!("{what}: {}: {e}", f.display()))),
    )
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:7700".parse().expect("valid literal")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("twopc-data")
}
fn default_prepare_timeout() -> u64 {
    5_000
}
fn default_ack_wait() -> u64 {
    2_000
}
fn default_client_timeout() -> u64 {
    30_000
}
fn default_retry_base() -> u64 {
    200
}
fn default_retry_max() -> u64 {
    5_000
}
fn default_ordered_prepare() -> bool {
    true
}
fn default_parallel_prepare_when_idle() -> bool {
    true
}
fn default_parallel_prepare_hold() -> u64 {
    100
}
fn default_conflict_retry_max_attempts() -> u32 {
    crate::core::RetryPolicy::default().max_attempts
}
fn default_conflict_retry_backoff() -> u64 {
    crate::core::RetryPolicy::default().backoff_ms
}
fn default_conflict_retry_backoff_max() -> u64 {
    crate::core::RetryPolicy::default().backoff_max_ms
}
fn default_conflict_retry_deadline() -> u64 {
    crate::core::RetryPolicy::default().deadline_ms
}
fn default_heartbeat() -> u64 {
    2_000
}
fn default_max_event_subscribers() -> usize {
    64
}
fn default_event_buffer() -> usize {
    4_096
}

/// Which decision log a coordinator writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// Segment files in `data_dir` (the embedded default; one coordinator per directory).
    #[default]
    File,
    /// A PostgreSQL database, shared by several coordinators (each owning its id by a lease).
    Postgres,
}

/// `[decision_log]`: where decisions are stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// `file` (default) or `postgres`.
    #[serde(default)]
    pub kind: LogKind,
    /// For `postgres`: the libpq URI, inline (avoid: it may hold a password).
    #[serde(default)]
    pub url: Option<String>,
    /// For `postgres`: an environment variable holding the URI.
    #[serde(default)]
    pub url_env: Option<String>,
    /// For `postgres`: a file holding the URI.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// For `postgres`: how long the coordinator id's lease lasts without renewal.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_ms: u64,
    /// For `postgres`: how often the lease is renewed (at most a third of the TTL).
    #[serde(default = "default_lease_renew")]
    pub lease_renew_ms: u64,
}

fn default_lease_ttl() -> u64 {
    3_000
}
fn default_lease_renew() -> u64 {
    1_000
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            kind: LogKind::File,
            url: None,
            url_env: None,
            url_file: None,
            lease_ttl_ms: default_lease_ttl(),
            lease_renew_ms: default_lease_renew(),
        }
    }
}

impl DecisionLogConfig {
    /// The PostgreSQL URI, from wherever the configuration says it is.
    pub fn resolve_url(&self) -> Result<String, ConfigError> {
        resolve_secret("decision_log", (&self.url, &self.url_env, &self.url_file)).unwrap_or_else(
            || {
                Err(ConfigError::Invalid(
                    "decision_log: kind = \"postgres\" needs url, url_env or url_file".into(),
                ))
            },
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let sources = [
            self.url.is_some(),
            self.url_env.is_some(),
            self.url_file.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        match self.kind {
            LogKind::File if sources > 0 => Err(ConfigError::Invalid(
                "decision_log: url, url_env and url_file are for kind = \"postgres\"".into(),
            )),
            LogKind::Postgres if sources != 1 => Err(ConfigError::Invalid(
                "decision_log: kind = \"postgres\" needs exactly one of url, url_env, url_file"
                    .into(),
            )),
            _ if self.lease_renew_ms == 0 || self.lease_renew_ms * 3 > self.lease_ttl_ms => {
                Err(ConfigError::Invalid(
                    "decision_log: lease_renew_ms must be positive and at most a third of \
                     lease_ttl_ms"
                        .into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This coordinator's id.
    pub coordinator_id: CoordinatorId,
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the file decision log lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Which decision log to write (`[decision_log]`; the file log in `data_dir` by default).
    #[serde(default)]
    pub decision_log: DecisionLogConfig,
    /// Directory with the built web app (`index.html`, wasm, JS); not served when absent.
    #[serde(default)]
    pub web_dir: Option<PathBuf>,
    /// Phase 1 timeout.
    #[serde(default = "default_prepare_timeout")]
    pub prepare_timeout_ms: u64,
    /// How long a committed transaction waits for acks before the client is answered.
    #[serde(default = "default_ack_wait")]
    pub ack_wait_ms: u64,
    /// How long `POST /v1/transactions` waits for the outcome before answering 202.
    #[serde(default = "default_client_timeout")]
    pub client_timeout_ms: u64,
    /// First phase-2 re-send interval.
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Largest phase-2 re-send interval.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// Most attempts of a transaction aborted by `conflict` NO votes (lock waits, deadlock
    /// avoidance, serialization failures), the first included; 1 turns retries off.
    #[serde(default = "default_conflict_retry_max_attempts")]
    pub conflict_retry_max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt, jittered over its upper half.
    #[serde(default = "default_conflict_retry_backoff")]
    pub conflict_retry_backoff_ms: u64,
    /// Largest backoff between attempts.
    #[serde(default = "default_conflict_retry_backoff_max")]
    pub conflict_retry_backoff_max_ms: u64,
    /// No attempt starts later than this after the first submission.
    #[serde(default = "default_conflict_retry_deadline")]
    pub conflict_retry_deadline_ms: u64,
    /// Prepare the participants one at a time in name order (no deadlock across stores can
    /// form) rather than all at once (one participant's prepare time faster per transaction).
    /// A retried attempt is prepared in order either way.
    #[serde(default = "default_ordered_prepare")]
    pub ordered_prepare: bool,
    /// With `ordered_prepare`, a transaction that starts while no other is in flight at this
    /// coordinator is prepared all at once anyway (the lone client saves one participant's
    /// prepare time); one starting while the lone one still waits for votes is held until
    /// they are in, then prepared in order (DESIGN.md, "Contention").
    #[serde(default = "default_parallel_prepare_when_idle")]
    pub parallel_prepare_when_idle: bool,
    /// The longest a transaction waits, asking nobody, behind a lone one prepared all at once
    /// (`parallel_prepare_when_idle`) that still waits for votes; then it is prepared in order.
    #[serde(default = "default_parallel_prepare_hold")]
    pub parallel_prepare_hold_ms: u64,
    /// Heartbeat interval on participant connections.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Most `/v1/events` subscribers at once; one more is refused with 503
    /// `too_many_subscribers`. Each costs a task, socket buffers and a share of the work per
    /// event, so the number is bounded whatever clients do.
    #[serde(default = "default_max_event_subscribers")]
    pub max_event_subscribers: usize,
    /// How many events a `/v1/events` subscriber may fall behind before the oldest are dropped
    /// for it; it is then sent `{"lagged": n}` with the number it missed. The buffer is one
    /// ring shared by all subscribers (each event is stored and serialized once).
    #[serde(default = "default_event_buffer")]
    pub event_buffer: usize,
    /// Allow the fault-injection API (demo and tests only).
    #[serde(default)]
    pub fault_injection: bool,
    /// The participants.
    #[serde(default, rename = "participant")]
    pub participants: Vec<ParticipantConfig>,
    /// The API's clients (`[[client]]`, see [`crate::clients`]); none: the API is open to
    /// whoever reaches it, which only a loopback listener allows.
    #[serde(default, rename = "client")]
    pub clients: Vec<crate::clients::ClientConfig>,
    /// Serve an open API (no `[[client]]`) on a listener other than loopback anyway.
    #[serde(default)]
    pub allow_open_api_off_loopback: bool,
    /// `[api_tls]`: HTTPS (HTTP/1.1 and HTTP/2) for the client API, the event stream (`wss://`)
    /// and the web app. Without it the listener speaks plain HTTP. Its `client_ca_file`
    /// verifies the client certificates that `[[client]] certificate_cn` names; a client
    /// without a certificate is still let in to present a token.
    #[serde(default)]
    pub api_tls: Option<twopc_tls::ServerTlsFiles>,
    /// `[participant_tls]`: the CA `wss://` participants' certificates must chain to (and name
    /// the URL's host), and the client certificate to present to participants that demand
    /// one (mutual TLS).
    #[serde(default)]
    pub participant_tls: Option<twopc_tls::ClientTlsFiles>,
    /// Speak plain text (an HTTP listener, a `ws://` participant, a PostgreSQL decision log
    /// without TLS) with addresses other than loopback anyway. Off: the coordinator refuses to
    /// start with any of them.
    #[serde(default)]
    pub allow_plain_text_off_loopback: bool,
    /// The participants with shards, for routing (their shards are in `participants`).
    #[serde(skip)]
    pub sharded: Vec<crate::shards::Sharded>,
}

/// Whether `host` (from a URL, possibly a bracketed IPv6 literal) is this machine's loopback,
/// where plain text never leaves the machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `scheme://[user@]host[:port]/...` URL, parsed as the participant dialer
/// parses it (an `http::Uri`), so the check and the connection agree on the host.
pub fn url_host(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    uri.host().filter(|h| !h.is_empty()).map(str::to_owned)
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { detail, .. } => ConfigError::Parse {
                path: path.to_owned(),
                detail,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            detail: e.to_string(),
        })?;
        let (endpoints, sharded) = crate::shards::expand(std::mem::take(&mut cfg.participants))?;
        cfg.participants = endpoints;
        cfg.sharded = sharded;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.participants {
            if !seen.insert(p.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "participant {} is listed twice",
                    p.name
                )));
            }
            if !(p.url.starts_with("ws://") || p.url.starts_with("wss://")) {
                return Err(ConfigError::Invalid(format!(
                    "participant {}: url {:?} must start with ws:// or wss://",
                    p.name, p.url
                )));
            }
            let Some(host) = url_host(&p.url) else {
                return Err(ConfigError::Invalid(format!(
                    "participant {}: url {:?} has no host",
                    p.name, p.url
                )));
            };
            if p.url.starts_with("wss://") && self.participant_tls.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "participant {}: a wss:// url needs [participant_tls] ca_file (the CA its \
                     certificate is verified against)",
                    p.name
                )));
            }
            if p.url.starts_with("ws://")
                && !is_loopback_host(&host)
                && !self.allow_plain_text_off_loopback
            {
                return Err(ConfigError::Invalid(format!(
                    "participant {}: url {:?} is plain text to a host other than loopback: its \
                     token and every statement would cross the network readable; use wss:// \
                     with [participant_tls], or set allow_plain_text_off_loopback = true",
                    p.name, p.url
                )));
            }
        }
        if let Some(t) = &self.participant_tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(ConfigError::Invalid(
                    "[participant_tls]: a client certificate needs both cert_file and key_file"
                        .into(),
                ));
            }
        }
        self.decision_log.validate()?;
        let loopback = self.listen.ip().is_loopback();
        if !loopback && self.api_tls.is_none() && !self.allow_plain_text_off_loopback {
            return Err(ConfigError::Invalid(format!(
                "listen = {} is not loopback and [api_tls] is not configured: clients' tokens \
                 and transactions would cross the network in plain HTTP; configure [api_tls] \
                 cert_file and key_file, or set allow_plain_text_off_loopback = true",
                self.listen
            )));
        }
        if self.fault_injection && !loopback {
            return Err(ConfigError::Invalid(format!(
                "fault_injection is for the demo and tests: it is never enabled on a listener \
                 other than loopback (listen = {})",
                self.listen
            )));
        }
        let cert_clients = self.clients.iter().filter(|c| c.certificate_cn.is_some());
        let client_ca = self
            .api_tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if let (Some(c), false) = (cert_clients.clone().next(), client_ca) {
            return Err(ConfigError::Invalid(format!(
                "client {} has a certificate_cn, but [api_tls] has no client_ca_file to verify \
                 client certificates with",
                c.name
            )));
        }
        if client_ca && cert_clients.count() == 0 {
            return Err(ConfigError::Invalid(
                "[api_tls] client_ca_file is set, but no [[client]] has a certificate_cn: a \
                 certificate would name nobody"
                    .into(),
            ));
        }
        if self.clients.is_empty() && !loopback && !self.allow_open_api_off_loopback {
            return Err(ConfigError::Invalid(format!(
                "listen = {} is not loopback, and no [[client]] is configured: anybody who \
                 reaches the port could run transactions; configure clients, or set \
                 allow_open_api_off_loopback = true to serve it open anyway",
                self.listen
            )));
        }
        if self.event_buffer == 0 {
            return Err(ConfigError::Invalid(
                "event_buffer must be at least 1 event".into(),
            ));
        }
        if self.prepare_timeout_ms == 0 || self.retry_base_ms == 0 {
            return Err(ConfigError::Invalid("timeouts must be positive".into()));
        }
        if self.conflict_retry_max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "conflict_retry_max_attempts must be at least 1 (1: no retries)".into(),
            ));
        }
        if self.conflict_retry_backoff_ms > self.conflict_retry_backoff_max_ms {
            return Err(ConfigError::Invalid(
                "conflict_retry_backoff_ms must not exceed conflict_retry_backoff_max_ms".into(),
            ));
        }
        Ok(())
    }

    /// The retry policy for transactions aborted by `conflict` NO votes.
    pub fn conflict_retry(&self) -> crate::core::RetryPolicy {
        crate::core::RetryPolicy {
            max_attempts: self.conflict_retry_max_attempts,
            backoff_ms: self.conflict_retry_backoff_ms,
            backoff_max_ms: self.conflict_retry_backoff_max_ms,
            deadline_ms: self.conflict_retry_deadline_ms,
        }
    }

    /// The participant named `name`.
    pub fn participant(&self, name: &ParticipantName) -> Option<&ParticipantConfig> {
        self.participants.iter().find(|p| &p.name == name)
    }

    /// The names clients use: every participant without shards and every one with them
    /// (not its shards).
    pub fn client_names(&self) -> Vec<ParticipantName> {
        self.participants
            .iter()
            .map(|p| p.name.clone())
            .filter(ParticipantName::is_plain)
            .chain(self.sharded.iter().map(|s| s.name.clone()))
            .collect()
    }

    /// The kind of the participant a client names, sharded or not.
    pub fn client_participant_kind(&self, name: &ParticipantName) -> Option<ParticipantKind> {
        if !name.is_plain() {
            return None;
        }
        self.sharded
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.kind)
            .or_else(|| self.participant(name).map(|p| p.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../example.toml");
        let cfg = Config::from_toml(text).unwrap();
        assert_eq!(cfg.coordinator_id.as_str(), "c1");
        assert_eq!(cfg.participants.len(), 2);
        assert_eq!(cfg.conflict_retry(), crate::core::RetryPolicy::default());
    }

    #[test]
    fn retries_are_on_by_default_and_can_be_turned_off() {
        let cfg = Config::from_toml("coordinator_id = 'c1'").unwrap();
        assert_eq!(cfg.conflict_retry().max_attempts, 10);
        let cfg =
            Config::from_toml("coordinator_id = 'c1'\nconflict_retry_max_attempts = 1").unwrap();
        assert_eq!(cfg.conflict_retry().max_attempts, 1);
        let e = Config::from_toml("coordinator_id = 'c1'\nconflict_retry_max_attempts = 0")
            .unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn the_decision_log_is_the_file_log_unless_postgres_is_named() {
        let cfg = Config::from_toml("coordinator_id = 'c1'").unwrap();
        assert_eq!(cfg.decision_log.kind, LogKind::File);
        let cfg = Config::from_toml(
            "coordinator_id = 'c1'\n[decision_log]\nkind = 'postgres'\nurl = 'postgresql://h/db'",
        )
        .unwrap();
        assert_eq!(cfg.decision_log.kind, LogKind::Postgres);
        assert_eq!(cfg.decision_log.resolve_url().unwrap(), "postgresql://h/db");
        assert_eq!(cfg.decision_log.lease_ttl_ms, 3000);
        for (text, says) in [
            ("kind = 'postgres'", "exactly one of url"),
            (
                "kind = 'postgres'\nurl = 'a'\nurl_env = 'B'",
                "exactly one of url",
            ),
            ("url = 'postgresql://h/db'", "are for kind"),
            (
                "kind = 'postgres'\nurl = 'a'\nlease_ttl_ms = 1000\nlease_renew_ms = 500",
                "a third",
            ),
            ("kind = 'etcd'", "unknown variant"),
        ] {
            let e = Config::from_toml(&format!("coordinator_id = 'c1'\n[decision_log]\n{text}"))
                .unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let cfg = Config::from_toml(
            "coordinator_id = 'c1'\n[decision_log]\nkind = 'postgres'\nurl_env = 'TWOPC_NO_SUCH_VAR'",
        )
        .unwrap();
        let e = cfg.decision_log.resolve_url().unwrap_err();
        assert!(e.to_string().contains("TWOPC_NO_SUCH_VAR"), "{e}");
    }

    #[test]
    fn bad_configs_explain_themselves() {
        let e = Config::from_toml("coordinator_id = 'c:1'").unwrap_err();
        assert!(e.to_string().contains("coordinator id"), "{e}");
        let e = Config::from_toml(
            "coordinator_id = 'c1'\n[[participant]]\nname='a'\nkind='redis'\nurl='http://x'\ntoken='t'",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ws://"), "{e}");
        let e = Config::from_toml("coordinator_id = 'c1'\nlisten_port = 3").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");
    }

    /// Off loopback the API must have clients (or be opened explicitly), and fault injection
    /// is refused outright.
    #[test]
    fn a_listener_off_loopback_wants_clients_and_no_faults() {
        let open =
            "coordinator_id = 'c1'\nlisten = '0.0.0.0:7700'\nallow_plain_text_off_loopback = true\n";
        let e = Config::from_toml(open).unwrap_err();
        assert!(e.to_string().contains("no [[client]] is configured"), "{e}");
        assert!(Config::from_toml(&format!("{open}allow_open_api_off_loopback = true\n")).is_ok());
        let with_client = format!(
            "{open}[[client]]\nname = 'ops'\ntoken_sha256 = ['{}']\nscopes = ['read']\n",
            crate::clients::token_digest_hex("t")
        );
        assert!(Config::from_toml(&with_client).is_ok());
        let e = Config::from_toml(&format!("fault_injection = true\n{with_client}")).unwrap_err();
        assert!(e.to_string().contains("never enabled"), "{e}");
        // Loopback stays as it was: open, faults allowed.
        assert!(Config::from_toml("coordinator_id = 'c1'\nfault_injection = true\n").is_ok());
        let e = Config::from_toml(&with_client.replace("['read']", "['nap']")).unwrap_err();
        assert!(e.to_string().contains("scopes"), "{e}");
    }

    /// A certificate client needs a CA to verify its certificate with, and a CA needs a
    /// client its certificates can name.
    #[test]
    fn certificate_clients_and_the_client_ca_come_together() {
        let cert_client = "[[client]]\nname = 'svc'\ncertificate_cn = 'svc'\nscopes = ['read']\n";
        let tls = |ca: &str| {
            format!(
                "coordinator_id = 'c1'\n[api_tls]\ncert_file = 'c.pem'\nkey_file = 'c.key'\n{ca}"
            )
        };
        let e = Config::from_toml(&format!("{}{cert_client}", tls("")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no client_ca_file"), "{e}");
        let e = Config::from_toml(&format!("coordinator_id = 'c1'\n{cert_client}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no client_ca_file"), "{e}");
        let with_ca = tls("client_ca_file = 'ca.pem'\n");
        assert!(Config::from_toml(&format!("{with_ca}{cert_client}")).is_ok());
        let token_client = format!(
            "[[client]]\nname = 'ops'\ntoken_sha256 = ['{}']\nscopes = ['read']\n",
            crate::clients::token_digest_hex("t")
        );
        let e = Config::from_toml(&format!("{with_ca}{token_client}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("would name nobody"), "{e}");
    }

    /// Plain text leaves the machine only when the configuration says so explicitly.
    #[test]
    fn plain_text_off_loopback_is_refused_unless_allowed() {
        let client = format!(
            "[[client]]\nname = 'ops'\ntoken_sha256 = ['{}']\nscopes = ['read']\n",
            crate::clients::token_digest_hex("t")
        );
        let http = format!("coordinator_id = 'c1'\nlisten = '10.0.0.5:7700'\n{client}");
        let e = Config::from_toml(&http).unwrap_err().to_string();
        assert!(
            e.contains("[api_tls]") && e.contains("allow_plain_text_off_loopback"),
            "{e}"
        );
        let https = format!(
            "coordinator_id = 'c1'\nlisten = '10.0.0.5:7700'\n\
             [api_tls]\ncert_file = 'c.pem'\nkey_file = 'c.key'\n{client}"
        );
        assert!(Config::from_toml(&https).is_ok());

        let participant = |url: &str| {
            format!(
                "coordinator_id = 'c1'\n[[participant]]\nname = 'bank'\nkind = 'postgres'\n\
                 url = '{url}'\ntoken = 't'\n"
            )
        };
        for url in [
            "ws://127.0.0.1:7801/",
            "ws://localhost:7801/",
            "ws://[::1]:7801/",
        ] {
            assert!(Config::from_toml(&participant(url)).is_ok(), "{url}");
        }
        let e = Config::from_toml(&participant("ws://db.internal:7801/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain text") && e.contains("wss://"), "{e}");
        assert!(Config::from_toml(&format!(
            "allow_plain_text_off_loopback = true\n{}",
            participant("ws://db.internal:7801/")
        ))
        .is_ok());
        let e = Config::from_toml(&participant("wss://db.internal:7801/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[participant_tls]"), "{e}");
        let with_ca = |extra: &str| {
            format!(
                "{}[participant_tls]\nca_file = 'ca.pem'\n{extra}",
                participant("wss://db.internal:7801/")
            )
        };
        assert!(Config::from_toml(&with_ca("")).is_ok());
        let e = Config::from_toml(&with_ca("cert_file = 'c.pem'\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("both cert_file and key_file"), "{e}");
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("wss://db.internal:7801/").as_deref(),
            Some("db.internal")
        );
        assert_eq!(url_host("ws://[::1]:7801/x").as_deref(), Some("[::1]"));
        assert_eq!(
            url_host("postgresql://u:p@10.0.0.1/db").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(url_host("postgresql:///db?host=/tmp").as_deref(), None);
        assert!(is_loopback_host("[::1]") && is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
