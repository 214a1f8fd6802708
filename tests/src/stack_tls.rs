//! TLS for a test stack: a certificate authority of its own, certificates for every endpoint,
//! the settings that turn TLS on in each process, and HTTPS for the harness's own requests.
//!
//! With [`StackOptions::tls`](crate::stack::StackOptions::tls) every connection of the stack
//! that the product encrypts is encrypted, with the same files an operator would configure:
//! coordinator ↔ participants (`wss://`, mutual TLS: each participant demands the
//! coordinator's client certificate), the API (HTTPS), and the Redis participant ↔
//! redis-server (`rediss://`, mutual TLS, as the ACL user [`REDIS_ACL_USER`]). The harness
//! itself keeps redis-server's plain port on 127.0.0.1 for seeding and the invariant checks,
//! as an operator keeps a local admin socket.

use crate::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use twopc_tls::pki::{IssuedCert, TestPki};

/// The ACL user the Redis participant logs in as, over TLS.
pub const REDIS_ACL_USER: &str = "twopc";

/// What that user may do: the commands the participant sends and those its Lua scripts call
/// (scripts run with the caller's rights), on the participant's own keys (`twopc:*`) and the
/// application's (`balance:*` in these tests). Nothing else: no FLUSHALL, no CONFIG SET, no
/// KEYS, no other key.
pub const REDIS_ACL_RULES: &[&str] = &[
    "on",
    "resetkeys",
    "~twopc:*",
    "~balance:*",
    "resetchannels",
    "-@all",
    "+ping",
    "+config|get",
    "+evalsha",
    "+eval",
    "+script|load",
    "+get",
    "+set",
    "+del",
    "+exists",
    "+type",
    "+incrby",
    "+hget",
    "+hmget",
    "+hset",
    "+hdel",
    "+zadd",
    "+zcard",
    "+zpopmin",
    "+zrange",
    "+zrangebyscore",
    "+zrem",
];

/// The stack's certificate authority and the certificates it issued.
pub struct StackTls {
    _dir: tempfile::TempDir,
    /// The CA every component trusts.
    pub ca: TestPki,
    /// A CA nobody trusts, for certificates that must be refused.
    pub stranger: TestPki,
    /// The Postgres participant's endpoint (owned by the postgres user, which reads it).
    pub bank: IssuedCert,
    /// The Redis participant's endpoint.
    pub ledger: IssuedCert,
    /// redis-server's TLS port.
    pub redis: IssuedCert,
    /// The coordinator: its HTTPS listener and its client certificate to participants.
    pub coordinator: IssuedCert,
    /// The Redis participant's client certificate to redis-server.
    pub ledger_client: IssuedCert,
    /// The PostgreSQL decision log's server (owned by the postgres user).
    pub log_pg: IssuedCert,
    /// The password of [`REDIS_ACL_USER`].
    pub redis_password: String,
}

impl StackTls {
    /// A new CA and certificates for 127.0.0.1 / localhost.
    pub fn new() -> Result<StackTls> {
        let dir = tempfile::Builder::new()
            .prefix("twopc-pki-")
            .tempdir_in("/tmp")?;
        // The postgres user must reach its files; keys stay 0600 and owned by who reads them.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let ca = TestPki::new(dir.path(), "twopc")?;
        let stranger = TestPki::new(dir.path(), "stranger")?;
        let names = ["127.0.0.1", "localhost"];
        let bank = ca.issue("bank", &names)?;
        let log_pg = ca.issue("log-pg", &names)?;
        for f in [
            &bank.cert_file,
            &bank.key_file,
            &log_pg.cert_file,
            &log_pg.key_file,
        ] {
            crate::util::give_to_postgres(f)?;
        }
        Ok(StackTls {
            ledger: ca.issue("ledger", &names)?,
            redis: ca.issue("redis", &names)?,
            coordinator: ca.issue("coordinator", &names)?,
            ledger_client: ca.issue("ledger-client", &["ledger"])?,
            redis_password: crate::secrets::new_token(),
            bank,
            log_pg,
            ca,
            stranger,
            _dir: dir,
        })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The extension's GUCs for a TLS endpoint that demands a client certificate.
    pub fn bank_settings(&self) -> Vec<(String, String)> {
        vec![
            ("twopc.tls_cert_file".into(), quoted(&self.bank.cert_file)),
            ("twopc.tls_key_file".into(), quoted(&self.bank.key_file)),
            ("twopc.tls_client_ca_file".into(), quoted(&self.ca.ca_file)),
        ]
    }

    /// The decision log cluster's settings: TLS on, with the log-pg certificate.
    pub fn log_pg_settings(&self) -> Vec<(String, String)> {
        vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), quoted(&self.log_pg.cert_file)),
            ("ssl_key_file".into(), quoted(&self.log_pg.key_file)),
        ]
    }

    /// `url` (a `postgresql://` URL without a query) with libpq's verify-full against `ca`.
    pub fn verify_full(url: &str, ca: &Path) -> String {
        format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display())
    }

    /// The Redis participant's flags: a TLS endpoint demanding a client certificate, and
    /// rediss:// to redis-server with its own client certificate.
    pub fn ledger_args(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls-cert-file".into(),
            p(&self.ledger.cert_file),
            "--tls-key-file".into(),
            p(&self.ledger.key_file),
            "--tls-client-ca-file".into(),
            p(&self.ca.ca_file),
            "--redis-ca-file".into(),
            p(&self.ca.ca_file),
            "--redis-cert-file".into(),
            p(&self.ledger_client.cert_file),
            "--redis-key-file".into(),
            p(&self.ledger_client.key_file),
        ]
    }

    /// The Redis participant's URL (through the environment: it holds a password).
    pub fn ledger_redis_url(&self, tls_port: u16) -> String {
        format!(
            "rediss://{REDIS_ACL_USER}:{}@127.0.0.1:{tls_port}/",
            self.redis_password
        )
    }

    /// redis-server's flags: a TLS port demanding client certificates, and the ACL user.
    pub fn redis_args(&self, tls_port: u16) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        let mut args = vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            p(&self.redis.cert_file),
            "--tls-key-file".into(),
            p(&self.redis.key_file),
            "--tls-ca-cert-file".into(),
            p(&self.ca.ca_file),
            "--tls-auth-clients".into(),
            "yes".into(),
            "--user".into(),
            REDIS_ACL_USER.into(),
        ];
        args.extend(REDIS_ACL_RULES.iter().map(|r| r.to_string()));
        args.push(format!(">{}", self.redis_password));
        args
    }

    /// The coordinator's `[api_tls]` and `[participant_tls]` tables, trusting `ca`.
    pub fn coordinator_tables(&self, ca: &Path, client: &IssuedCert) -> String {
        format!(
            "\n[api_tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             \n[participant_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.coordinator.cert_file.display(),
            self.coordinator.key_file.display(),
            ca.display(),
            client.cert_file.display(),
            client.key_file.display()
        )
    }

    /// A rustls client configuration trusting the stack's CA (ALPN as given).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<twopc_tls::rustls::ClientConfig> {
        let mut c = (*twopc_tls::client_config(&twopc_tls::ClientTlsFiles {
            ca_file: self.ca.ca_file.clone(),
            cert_file: None,
            key_file: None,
        })
        .expect("the stack's own CA file"))
        .clone();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The CAs the harness's own HTTPS requests trust, by `host:port`.
fn trusted() -> &'static Mutex<HashMap<String, Arc<twopc_tls::rustls::ClientConfig>>> {
    static TRUST: OnceLock<Mutex<HashMap<String, Arc<twopc_tls::rustls::ClientConfig>>>> =
        OnceLock::new();
    TRUST.get_or_init(Default::default)
}

/// Makes [`crate::stack::http_get_as`] trust `config` for `https://host:port`.
pub fn trust(base: &str, config: Arc<twopc_tls::rustls::ClientConfig>) {
    let hostport = base.trim_start_matches("https://").trim_end_matches('/');
    trusted()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(hostport.to_owned(), config);
}

/// A blocking TLS connection to `hostport` with the configuration [`trust`] registered.
pub fn connect_blocking(
    hostport: &str,
) -> std::io::Result<
    twopc_tls::rustls::StreamOwned<twopc_tls::rustls::ClientConnection, std::net::TcpStream>,
> {
    let config = trusted()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(hostport)
        .cloned()
        .ok_or_else(|| std::io::Error::other(format!("no CA registered for https://{hostport}")))?;
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let name = twopc_tls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(std::io::Error::other)?;
    let conn =
        twopc_tls::rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(hostport)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    Ok(twopc_tls::rustls::StreamOwned::new(conn, tcp))
}
