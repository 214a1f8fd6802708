//! What a participant server is configured with, and the checks that refuse values that would
//! make it misbehave.

use crate::auth::Tokens;
use crate::core::CoreConfig;
use crate::ParticipantError;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use twopc_protocol::{ParticipantKind, ParticipantName, MAX_FRAME_BYTES};

/// How a participant server behaves. [`ServerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The participant's name, reported in every in-doubt report.
    pub name: ParticipantName,
    /// The shared secrets the coordinator may present as `Authorization: Bearer <token>`: one,
    /// or two while it is being rotated. A clone shares them, so they can be replaced while
    /// the server runs ([`Tokens::set`]).
    pub tokens: Tokens,
    /// TLS for the endpoint (`wss://`): its certificate and key, and with `client_ca_file` the
    /// CA a coordinator's client certificate must chain to (mutual TLS). `None`: plain `ws://`.
    pub tls: Option<twopc_tls::ServerTlsFiles>,
    /// Requests that may use the resource at once on one connection; more get `busy`.
    pub max_in_flight: usize,
    /// How often the server pings each connection.
    pub heartbeat_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived for this long is closed.
    pub idle_timeout: Duration,
    /// A transaction prepared for longer than this makes the participant ask for the decision.
    pub decision_timeout: Duration,
    /// Wait before asking again about the same transaction; doubles on every attempt.
    pub decision_retry_initial: Duration,
    /// The longest wait between two decision requests for one transaction.
    pub decision_retry_max: Duration,
    /// How often the termination task looks at the prepared transactions.
    pub scan_interval: Duration,
    /// How long a client may take to complete the WebSocket upgrade.
    pub handshake_timeout: Duration,
    /// The lock-wait bound: a prepare that has waited this long for locks votes NO
    /// (`conflict`). Keep it well under the coordinator's prepare timeout.
    pub lock_wait: Duration,
    /// How long a transaction waits for an older one before giving way (the bound on a
    /// deadlock across stores; see the participant core's lock-wait rules).
    pub give_way: Duration,
    /// How often the lock waits inside a resource that has them (PostgreSQL) are looked at.
    pub wait_check: Duration,
}

impl ServerConfig {
    /// A configuration with the given name and token, no TLS, and default timings: heartbeat 10 s,
    /// idle timeout 30 s, decision timeout 30 s, retries from 1 s up to 30 s, 64 requests in
    /// flight per connection; lock waits bounded at 1 s, giving way to an older transaction
    /// after 200 ms, waits inside PostgreSQL looked at every 25 ms.
    pub fn new(name: ParticipantName, token: impl Into<String>) -> Self {
        ServerConfig {
            name,
            tokens: Tokens::unchecked(vec![token.into()]),
            tls: None,
            max_in_flight: 64,
            heartbeat_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            decision_timeout: Duration::from_secs(30),
            decision_retry_initial: Duration::from_secs(1),
            decision_retry_max: Duration::from_secs(30),
            scan_interval: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(10),
            lock_wait: Duration::from_secs(1),
            give_way: Duration::from_millis(200),
            wait_check: Duration::from_millis(25),
        }
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ParticipantError> {
        let bad = |m: &str| Err(ParticipantError::Config(m.to_string()));
        Tokens::check(&self.tokens.current())?;
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1");
        }
        for (what, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("idle_timeout", self.idle_timeout),
            ("decision_retry_initial", self.decision_retry_initial),
            ("decision_retry_max", self.decision_retry_max),
            ("scan_interval", self.scan_interval),
            ("handshake_timeout", self.handshake_timeout),
            ("wait_check", self.wait_check),
        ] {
            if d.is_zero() {
                return bad(&format!("{what} must be greater than zero"));
            }
        }
        if self.idle_timeout <= self.heartbeat_interval {
            return bad("idle_timeout must be longer than heartbeat_interval");
        }
        Ok(())
    }

    /// What the protocol core needs of this configuration.
    pub(crate) fn core_config(&self, kind: ParticipantKind, waits_inside: bool) -> CoreConfig {
        let ms = |d: Duration| d.as_millis().try_into().unwrap_or(u64::MAX);
        CoreConfig {
            name: self.name.clone(),
            kind,
            max_in_flight: self.max_in_flight,
            decision_timeout_ms: ms(self.decision_timeout),
            decision_retry_initial_ms: ms(self.decision_retry_initial),
            decision_retry_max_ms: ms(self.decision_retry_max),
            lock_wait_ms: ms(self.lock_wait),
            give_way_ms: ms(self.give_way),
            wait_check_ms: waits_inside.then(|| ms(self.wait_check)),
        }
    }
}

/// The WebSocket limits every participant connection uses.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_explains_itself() {
        let name: ParticipantName = "p".parse().unwrap();
        assert!(ServerConfig::new(name.clone(), "t").validate().is_ok());
        let e = ServerConfig::new(name.clone(), " ").validate().unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let e = ServerConfig::new(name.clone(), "a b")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("whitespace"), "{e}");
        let mut c = ServerConfig::new(name, "t");
        c.max_in_flight = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_in_flight"));
    }
}
