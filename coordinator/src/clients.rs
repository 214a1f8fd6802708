//! API clients: who may call the coordinator's HTTP API, with which rights and limits.
//!
//! Each `[[client]]` of the configuration is one client: a name (shown in the coordinator's
//! own logs, never its token), the SHA-256 of its bearer token (the token itself is never
//! stored: `twopc-coordinator hash-token` prints the digest), its scopes, the participants
//! its transactions may name, and its limits:
//!
//! ```toml
//! [[client]]
//! name = "payments"
//! token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! scopes = ["submit", "read"]          # submit, read, events, faults
//! participants = ["bank", "ledger"]    # default: every participant
//! requests_per_sec = 500               # token bucket, burst of one second's worth
//! max_in_flight = 64                   # transactions running at once
//! ```
//!
//! `token_sha256` takes one digest or two (while a token is rotated, both are good). With at
//! least one client configured, every endpoint except `/healthz` and the web app's files wants
//! `Authorization: Bearer <token>` (`/v1/events` also takes `?access_token=`, since a
//! browser's WebSocket cannot send headers); see `api::auth` for the answers.
//!
//! Instead of (or beside) a token, a client can be known by its TLS client certificate:
//! `certificate_cn = "payments"` names the subject common name of a certificate signed by
//! `[api_tls] client_ca_file`, as PostgreSQL's `cert` authentication maps a certificate's CN
//! to a role. The handshake has verified the chain before the name is read; a request that
//! carries a bearer token is judged by the token alone.
//!
//! Why digests: a configuration file ends up in backups, tickets and repositories; a SHA-256
//! of a random token is useless to whoever reads it (tokens are random, so no salt or slow
//! hash is needed: there is nothing to guess). Every configured digest is compared with the
//! presented token's in constant time, all of them, so the time taken says nothing about
//! which client or how many bytes matched.

use crate::config::ConfigError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use twopc_protocol::ParticipantName;

pub use twopc_protocol::api::Scope;

fn default_requests_per_sec() -> u32 {
    1_000
}

fn default_max_in_flight() -> usize {
    256
}

/// One `[[client]]` of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's name (letters, digits, `-`, `_`, `.`; at most 64).
    pub name: String,
    /// SHA-256 digests (64 hex digits) of the bearer tokens that identify it: one, or two
    /// while its token is rotated; none for a client known by its certificate only.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// The subject common name of the TLS client certificate that identifies it (signed by
    /// `[api_tls] client_ca_file`).
    #[serde(default)]
    pub certificate_cn: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The participants its transactions may name (all when absent).
    #[serde(default)]
    pub participants: Option<Vec<ParticipantName>>,
    /// Requests per second (a token bucket holding one second's worth); 0 for no limit.
    #[serde(default = "default_requests_per_sec")]
    pub requests_per_sec: u32,
    /// Transactions it may have running at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `token`, as the 64 lowercase hex digits the configuration holds.
pub fn token_digest_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes from the kernel's random source, as hex.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(hex(&bytes))
}

fn parse_digest(client: &str, hex: &str) -> Result<[u8; 32], ConfigError> {
    let bad = || {
        ConfigError::Invalid(format!(
            "client {client}: token_sha256 entries are 64 hex digits (the SHA-256 of the token; \
             `twopc-coordinator hash-token` prints it)"
        ))
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A request budget refilled continuously: `rate` per second, at most `rate` stored.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A configured client, as the API sees it once its token matched.
#[derive(Debug)]
pub struct Client {
    /// Its name.
    pub name: String,
    scopes: BTreeSet<Scope>,
    participants: Option<BTreeSet<ParticipantName>>,
    requests_per_sec: u32,
    max_in_flight: usize,
    digests: Vec<[u8; 32]>,
    certificate_cn: Option<String>,
    bucket: Mutex<Bucket>,
    in_flight: AtomicUsize,
}

impl Client {
    /// Whether its scopes include `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether its transactions may name `participant`.
    pub fn may_use(&self, participant: &ParticipantName) -> bool {
        self.participants
            .as_ref()
            .is_none_or(|ps| ps.contains(participant))
    }

    /// Takes one request from its budget, or says how long until one is there.
    pub fn take_request(&self, now: Instant) -> Result<(), Duration> {
        if self.requests_per_sec == 0 {
            return Ok(());
        }
        let rate = f64::from(self.requests_per_sec);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// Counts one more running transaction, if it may have one; dropping the guard ends it.
    pub fn begin_transaction(self: &Arc<Self>) -> Option<InFlight> {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= self.max_in_flight {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(InFlight(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Its limit of running transactions.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Who it is and what it may do, for `GET /v1/whoami`.
    pub fn identity(&self) -> twopc_protocol::api::ClientIdentity {
        twopc_protocol::api::ClientIdentity {
            authenticated: true,
            client: Some(self.name.clone()),
            scopes: self.scopes.iter().copied().collect(),
            participants: self
                .participants
                .as_ref()
                .map(|ps| ps.iter().cloned().collect()),
        }
    }
}

/// One running transaction of a client (see [`Client::begin_transaction`]).
#[derive(Debug)]
pub struct InFlight(Arc<Client>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every configured client.
#[derive(Debug, Default)]
pub struct Clients {
    clients: Vec<Arc<Client>>,
}

impl Clients {
    /// The clients of the configuration, checked: names valid and unique, digests well
    /// formed, no digest shared by two clients, at least one scope each, participants known.
    pub fn from_config(
        configs: &[ClientConfig],
        known: &[ParticipantName],
    ) -> Result<Clients, ConfigError> {
        let mut names = BTreeSet::new();
        let mut digests = BTreeSet::new();
        let mut common_names = BTreeSet::new();
        let mut clients = Vec::new();
        for c in configs {
            let valid = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "client name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                    c.name
                )));
            }
            if !names.insert(c.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "client {} is listed twice",
                    c.name
                )));
            }
            if c.token_sha256.len() > 2 {
                return Err(ConfigError::Invalid(format!(
                    "client {}: token_sha256 lists one digest, or two while a token is rotated",
                    c.name
                )));
            }
            if c.token_sha256.is_empty() && c.certificate_cn.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "client {}: give it a token_sha256, a certificate_cn, or both",
                    c.name
                )));
            }
            if let Some(cn) = &c.certificate_cn {
                if cn.is_empty() || cn.len() > 255 || cn.chars().any(char::is_control) {
                    return Err(ConfigError::Invalid(format!(
                        "client {}: certificate_cn must be 1 to 255 printable characters",
                        c.name
                    )));
                }
                if !common_names.insert(cn.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "client {}: certificate_cn {cn:?} names another client too",
                        c.name
                    )));
                }
            }
            if c.scopes.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "client {}: scopes lists nothing it may do",
                    c.name
                )));
            }
            if c.max_in_flight == 0 {
                return Err(ConfigError::Invalid(format!(
                    "client {}: max_in_flight must be at least 1",
                    c.name
                )));
            }
            if let Some(unknown) = c.participants.iter().flatten().find(|p| !known.contains(p)) {
                return Err(ConfigError::Invalid(format!(
                    "client {}: participant {unknown} is not configured",
                    c.name
                )));
            }
            let mut own = Vec::new();
            for hex in &c.token_sha256 {
                let d = parse_digest(&c.name, &hex.to_ascii_lowercase())?;
                if !digests.insert(d) {
                    return Err(ConfigError::Invalid(format!(
                        "client {}: a token digest is listed twice (one token, two clients?)",
                        c.name
                    )));
                }
                own.push(d);
            }
            let rate = f64::from(c.requests_per_sec);
            clients.push(Arc::new(Client {
                name: c.name.clone(),
                scopes: c.scopes.iter().copied().collect(),
                participants: c
                    .participants
                    .as_ref()
                    .map(|ps| ps.iter().cloned().collect()),
                requests_per_sec: c.requests_per_sec,
                max_in_flight: c.max_in_flight,
                digests: own,
                certificate_cn: c.certificate_cn.clone(),
                bucket: Mutex::new(Bucket {
                    tokens: rate,
                    at: Instant::now(),
                }),
                in_flight: AtomicUsize::new(0),
            }));
        }
        Ok(Clients { clients })
    }

    /// Whether any client is configured (then the API authenticates every request).
    pub fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Whether some client is known by a certificate (then `[api_tls]` needs a
    /// `client_ca_file`).
    pub fn want_certificates(&self) -> bool {
        self.clients.iter().any(|c| c.certificate_cn.is_some())
    }

    /// The client whose `certificate_cn` is this verified certificate's common name.
    pub fn authenticate_certificate(&self, common_name: &str) -> Option<Arc<Client>> {
        self.clients
            .iter()
            .find(|c| c.certificate_cn.as_deref() == Some(common_name))
            .cloned()
    }

    /// The client whose token this is. Every digest of every client is compared, in constant
    /// time, whatever matches first.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Client>> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for c in &self.clients {
            for d in &c.digests {
                let eq: bool = subtle::ConstantTimeEq::ct_eq(&presented[..], &d[..]).into();
                if eq {
                    found = Some(c.clone());
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, token: &str, scopes: &[Scope]) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            token_sha256: vec![token_digest_hex(token)],
            certificate_cn: None,
            scopes: scopes.to_vec(),
            participants: None,
            requests_per_sec: 10,
            max_in_flight: 2,
        }
    }

    fn names() -> Vec<ParticipantName> {
        vec!["bank".parse().unwrap(), "ledger".parse().unwrap()]
    }

    #[test]
    fn a_token_finds_its_client_and_nothing_else_does() {
        let clients = Clients::from_config(
            &[
                cfg("a", "token-a", &[Scope::Submit]),
                cfg("b", "token-b", &[Scope::Read]),
            ],
            &names(),
        )
        .unwrap();
        assert_eq!(clients.authenticate("token-a").unwrap().name, "a");
        assert_eq!(clients.authenticate("token-b").unwrap().name, "b");
        assert!(clients.authenticate("token-c").is_none());
        assert!(clients.authenticate("").is_none());
        assert!(clients.authenticate("token-a ").is_none());
        let a = clients.authenticate("token-a").unwrap();
        assert!(a.allows(Scope::Submit) && !a.allows(Scope::Read));
    }

    #[test]
    fn two_digests_during_a_rotation_are_both_good() {
        let mut c = cfg("a", "old", &[Scope::Read]);
        c.token_sha256.push(token_digest_hex("new").to_uppercase());
        let clients = Clients::from_config(&[c], &names()).unwrap();
        assert!(clients.authenticate("old").is_some());
        assert!(clients.authenticate("new").is_some());
    }

    #[test]
    fn a_certificate_name_finds_its_client_and_no_token_does() {
        let mut by_cert = cfg("svc", "unused", &[Scope::Submit]);
        by_cert.token_sha256.clear();
        by_cert.certificate_cn = Some("svc.clients".into());
        let clients =
            Clients::from_config(&[by_cert, cfg("b", "token-b", &[Scope::Read])], &names())
                .unwrap();
        assert!(clients.want_certificates());
        assert_eq!(
            clients
                .authenticate_certificate("svc.clients")
                .unwrap()
                .name,
            "svc"
        );
        assert!(clients.authenticate_certificate("b").is_none());
        assert!(clients.authenticate_certificate("svc.clients ").is_none());
        assert!(clients.authenticate("unused").is_none());
        assert!(
            !Clients::from_config(&[cfg("b", "t", &[Scope::Read])], &names())
                .unwrap()
                .want_certificates()
        );
    }

    #[test]
    fn bad_client_configurations_are_refused_with_a_reason() {
        let mut bad_digest = cfg("a", "t", &[Scope::Read]);
        bad_digest.token_sha256 = vec!["abc".into()];
        let mut no_way_in = cfg("a", "t", &[Scope::Read]);
        no_way_in.token_sha256.clear();
        let mut cn_a = cfg("a", "t", &[Scope::Read]);
        cn_a.certificate_cn = Some("same".into());
        let mut cn_b = cfg("b", "u", &[Scope::Read]);
        cn_b.certificate_cn = Some("same".into());
        let mut bad_cn = cfg("a", "t", &[Scope::Read]);
        bad_cn.certificate_cn = Some("x\ny".into());
        let mut unknown = cfg("a", "t", &[Scope::Read]);
        unknown.participants = Some(vec!["vault".parse().unwrap()]);
        let cases = [
            (vec![bad_digest], "64 hex digits"),
            (vec![no_way_in], "a token_sha256, a certificate_cn, or both"),
            (vec![cn_a, cn_b], "names another client too"),
            (vec![bad_cn], "printable characters"),
            (vec![cfg("a b", "t", &[Scope::Read])], "client name"),
            (vec![cfg("a", "t", &[])], "nothing it may do"),
            (vec![unknown], "vault is not configured"),
            (
                vec![cfg("a", "t", &[Scope::Read]), cfg("a", "u", &[Scope::Read])],
                "listed twice",
            ),
            (
                vec![cfg("a", "t", &[Scope::Read]), cfg("b", "t", &[Scope::Read])],
                "digest is listed twice",
            ),
        ];
        for (configs, want) in cases {
            let err = Clients::from_config(&configs, &names()).unwrap_err();
            assert!(err.to_string().contains(want), "{err} (want {want:?})");
        }
    }

    #[test]
    fn the_request_budget_refills_at_its_rate() {
        let clients = Clients::from_config(&[cfg("a", "t", &[Scope::Read])], &names()).unwrap();
        let c = clients.authenticate("t").unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(c.take_request(t0).is_ok());
        }
        let wait = c.take_request(t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(c.take_request(t0 + Duration::from_millis(100)).is_ok());
        assert!(c.take_request(t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn running_transactions_are_counted_and_released() {
        let clients = Clients::from_config(&[cfg("a", "t", &[Scope::Submit])], &names()).unwrap();
        let c = clients.authenticate("t").unwrap();
        let one = c.begin_transaction().unwrap();
        let two = c.begin_transaction().unwrap();
        assert!(c.begin_transaction().is_none());
        drop(one);
        let three = c.begin_transaction();
        assert!(three.is_some());
        drop((two, three));
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 0);
    }
}
