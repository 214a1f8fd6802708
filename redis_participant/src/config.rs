//! Configuration: command-line flags, `TWOPC_REDIS_*` environment variables and a TOML file,
//! in that order of precedence (a flag beats the environment, which beats the file, which
//! beats the built-in default).

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use twopc_participant::{ServerConfig, Tokens};
use twopc_protocol::ParticipantName;
use twopc_tls::{ClientTlsFiles, ServerTlsFiles};

use crate::resource::Retention;
use crate::RedisParticipantError;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7401";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Default participant name.
pub const DEFAULT_NAME: &str = "redis";

/// The twopc Redis participant: serves the twopc wire protocol over WebSockets and keeps all
/// prepared state (staged writes, key locks, prepared records) inside Redis.
///
/// Every option can also be set by the environment variable shown and by the TOML file given
/// with --config (keys named like the long flags, with '_' for '-'). Flags win over the
/// environment, the environment wins over the file.
#[derive(Debug, Default, Parser)]
#[command(name = "twopc-redis-participant", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "TWOPC_REDIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for the coordinator's WebSocket [default: 127.0.0.1:7401].
    #[arg(long, env = "TWOPC_REDIS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// This participant's name, as the coordinator's configuration knows it [default: redis].
    #[arg(long, env = "TWOPC_REDIS_NAME")]
    pub name: Option<String>,
    /// Redis server URL [default: redis://127.0.0.1:6379/].
    #[arg(long, env = "TWOPC_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// The shared secret the coordinator sends as `Authorization: Bearer <token>`, from the
    /// environment variable [`TOKEN_ENV`] only (see [`Cli::read_token_env`]): never a flag,
    /// because every local user can read a process's command line (`ps`).
    #[arg(skip)]
    pub token: Option<String>,
    /// Refused with a message that says where the token goes instead; not in `--help`.
    #[arg(long = "token", hide = true, value_name = "TOKEN")]
    pub token_on_command_line: Option<String>,
    /// File holding the shared secret the coordinator sends as `Authorization: Bearer
    /// <token>` (surrounding whitespace is ignored). Or set the token itself in the
    /// environment variable TWOPC_REDIS_TOKEN; never on the command line.
    #[arg(long, env = "TWOPC_REDIS_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Ask the coordinator for the decision about a transaction prepared longer than this
    /// [default: 30000].
    #[arg(long, env = "TWOPC_REDIS_DECISION_TIMEOUT_MS", value_name = "MS")]
    pub decision_timeout_ms: Option<u64>,
    /// Requests in flight per connection before answering `busy` [default: 64].
    #[arg(long, env = "TWOPC_REDIS_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// WebSocket ping interval [default: 10000].
    #[arg(long, env = "TWOPC_REDIS_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Close a connection silent for this long [default: 30000].
    #[arg(long, env = "TWOPC_REDIS_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Outcomes of finished transactions remembered, at most [default: 100000].
    #[arg(long, env = "TWOPC_REDIS_KEEP_OUTCOMES", value_name = "N")]
    pub keep_outcomes: Option<u64>,
    /// Outcomes of finished transactions are forgotten after this many seconds
    /// [default: 604800].
    #[arg(long, env = "TWOPC_REDIS_KEEP_OUTCOMES_SECS", value_name = "SECS")]
    pub keep_outcomes_secs: Option<u64>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, env = "TWOPC_REDIS_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    /// PEM certificate (chain) of this endpoint: with it (and --tls-key-file) the coordinator
    /// must connect with wss://; without, the endpoint is plain ws:// (loopback, the demo).
    #[arg(long, env = "TWOPC_REDIS_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "TWOPC_REDIS_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates: a coordinator must present a client certificate signed by one of
    /// them (mutual TLS).
    #[arg(long, env = "TWOPC_REDIS_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// PEM CA certificates redis-server's certificate must chain to; needed for a rediss://
    /// URL (the certificate must also name the URL's host).
    #[arg(long, env = "TWOPC_REDIS_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to redis-server (for `tls-auth-clients yes`).
    #[arg(long, env = "TWOPC_REDIS_REDIS_CERT_FILE", value_name = "FILE")]
    pub redis_cert_file: Option<PathBuf>,
    /// PEM private key of --redis-cert-file.
    #[arg(long, env = "TWOPC_REDIS_REDIS_KEY_FILE", value_name = "FILE")]
    pub redis_key_file: Option<PathBuf>,
    /// Serve even if redis-server does not fsync every write before replying. Without this
    /// the participant checks (CONFIG GET) that redis-server runs with `appendonly yes` and
    /// `appendfsync always`, and refuses to serve otherwise: a crash could lose a prepared
    /// transaction after its YES vote. For tests and demos only.
    #[arg(long, env = "TWOPC_REDIS_ALLOW_UNSAFE_DURABILITY")]
    pub allow_unsafe_durability: bool,
}

/// The environment variable that holds the token.
pub const TOKEN_ENV: &str = "TWOPC_REDIS_TOKEN";

impl Cli {
    /// Takes the token from [`TOKEN_ENV`] (an empty value counts as unset).
    pub fn read_token_env(&mut self) {
        self.token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    }
}

/// The `--config` file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--listen`.
    pub listen: Option<SocketAddr>,
    /// See `--name`.
    pub name: Option<String>,
    /// See `--redis-url`.
    pub redis_url: Option<String>,
    /// See `--token`.
    pub token: Option<String>,
    /// See `--token-file` (relative to the config file's directory).
    pub token_file: Option<PathBuf>,
    /// See `--decision-timeout-ms`.
    pub decision_timeout_ms: Option<u64>,
    /// See `--max-in-flight`.
    pub max_in_flight: Option<usize>,
    /// See `--heartbeat-ms`.
    pub heartbeat_ms: Option<u64>,
    /// See `--idle-timeout-ms`.
    pub idle_timeout_ms: Option<u64>,
    /// See `--keep-outcomes`.
    pub keep_outcomes: Option<u64>,
    /// See `--keep-outcomes-secs`.
    pub keep_outcomes_secs: Option<u64>,
    /// See `--log`.
    pub log: Option<String>,
    /// See `--allow-unsafe-durability`.
    pub allow_unsafe_durability: Option<bool>,
    /// See `--tls-cert-file` (paths relative to the config file's directory, as for all
    /// files below).
    pub tls_cert_file: Option<PathBuf>,
    /// See `--tls-key-file`.
    pub tls_key_file: Option<PathBuf>,
    /// See `--tls-client-ca-file`.
    pub tls_client_ca_file: Option<PathBuf>,
    /// See `--redis-ca-file`.
    pub redis_ca_file: Option<PathBuf>,
    /// See `--redis-cert-file`.
    pub redis_cert_file: Option<PathBuf>,
    /// See `--redis-key-file`.
    pub redis_key_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, RedisParticipantError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RedisParticipantError::Config(format!("cannot read {}: {e}", path.display()))
        })?;
        let mut f: FileConfig = toml::from_str(&text)
            .map_err(|e| RedisParticipantError::Config(format!("{}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            for file in [
                &mut f.token_file,
                &mut f.tls_cert_file,
                &mut f.tls_key_file,
                &mut f.tls_client_ca_file,
                &mut f.redis_ca_file,
                &mut f.redis_cert_file,
                &mut f.redis_key_file,
            ] {
                if let Some(p) = file.as_ref().filter(|p| p.is_relative()) {
                    *file = Some(dir.join(p));
                }
            }
        }
        Ok(f)
    }
}

/// The resolved settings the participant runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Redis URL (may hold a password: log it with [`redact_url`] only).
    pub redis_url: String,
    /// TLS to redis-server (a rediss:// URL): the CA and an optional client certificate.
    pub redis_tls: Option<ClientTlsFiles>,
    /// Server behaviour (name, tokens, TLS, timings, limits).
    pub server: ServerConfig,
    /// The file the tokens were read from, re-read on SIGHUP (a rotation); `None` when they
    /// came from the environment or the config file itself.
    pub token_file: Option<PathBuf>,
    /// Outcome retention.
    pub retention: Retention,
    /// Log level.
    pub log: String,
    /// Serve without checking that redis-server fsyncs every write.
    pub allow_unsafe_durability: bool,
}

/// Where a token came from, strongest first (for flag > env > file between `token` and
/// `token_file`).
fn rank(m: Option<&ArgMatches>, id: &str) -> u8 {
    match m.and_then(|m| m.value_source(id)) {
        Some(ValueSource::CommandLine) => 3,
        Some(ValueSource::EnvVariable) => 2,
        _ => 1,
    }
}

/// The tokens in a token file: one, or two (one per line) while it is being rotated.
pub fn read_token_file(path: &Path) -> Result<Vec<String>, RedisParticipantError> {
    let t = std::fs::read_to_string(path).map_err(|e| {
        RedisParticipantError::Config(format!("cannot read token file {}: {e}", path.display()))
    })?;
    Ok(Tokens::parse(&t))
}

/// `url` with any password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else if user.is_empty() {
                format!("{scheme}://{host}{path}")
            } else {
                // `redis://secret@host` is a password without a user name.
                format!("{scheme}://***@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

impl Settings {
    /// Resolves the settings from parsed flags/env (`cli`, with `matches` telling flags from
    /// environment variables when available) and the config file it names.
    pub fn resolve(cli: &Cli, matches: Option<&ArgMatches>) -> Result<Self, RedisParticipantError> {
        let file = match &cli.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, matches, file)
    }

    /// Merges flags/env over a file's values over the defaults.
    pub fn merge(
        cli: &Cli,
        matches: Option<&ArgMatches>,
        file: FileConfig,
    ) -> Result<Self, RedisParticipantError> {
        let cfg = |m: String| RedisParticipantError::Config(m);
        let listen = match cli.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        let name_s = cli
            .name
            .clone()
            .or(file.name)
            .unwrap_or_else(|| DEFAULT_NAME.into());
        let name = ParticipantName::new(name_s).map_err(|e| cfg(format!("--name: {e}")))?;
        let redis_url = cli
            .redis_url
            .clone()
            .or(file.redis_url)
            .unwrap_or_else(|| DEFAULT_REDIS_URL.into());
        if rank(matches, "redis_url") == 3 && redact_url(&redis_url) != redis_url {
            return Err(cfg(
                "--redis-url holds a password, and the command line is visible to every local \
                 user (ps); put the URL in the environment variable TWOPC_REDIS_URL or in the \
                 config file's `redis_url` instead"
                    .into(),
            ));
        }
        let pick = |flag: &Option<PathBuf>, file: Option<PathBuf>| flag.clone().or(file);
        let redis_tls = match (
            pick(&cli.redis_ca_file, file.redis_ca_file),
            pick(&cli.redis_cert_file, file.redis_cert_file),
            pick(&cli.redis_key_file, file.redis_key_file),
        ) {
            (Some(ca_file), cert_file, key_file) => Some(ClientTlsFiles {
                ca_file,
                cert_file,
                key_file,
            }),
            (None, None, None) => None,
            (None, _, _) => {
                return Err(cfg(
                    "--redis-cert-file and --redis-key-file need --redis-ca-file (the CA that \
                     redis-server's certificate is checked against)"
                        .into(),
                ))
            }
        };
        let url_tls = redis_url.starts_with("rediss://");
        if url_tls && redis_tls.is_none() {
            return Err(cfg(format!(
                "{}: a rediss:// URL needs --redis-ca-file (redis-server's certificate is always \
                 verified)",
                redact_url(&redis_url)
            )));
        }
        if !url_tls && redis_tls.is_some() {
            return Err(cfg(format!(
                "{}: --redis-ca-file is set but the URL is not rediss://",
                redact_url(&redis_url)
            )));
        }
        if redis_url.contains('#') {
            return Err(cfg(format!(
                "{}: URL fragments (such as #insecure) are not accepted: redis-server's \
                 certificate is always verified",
                redact_url(&redis_url)
            )));
        }
        let tls = match (
            pick(&cli.tls_cert_file, file.tls_cert_file),
            pick(&cli.tls_key_file, file.tls_key_file),
            pick(&cli.tls_client_ca_file, file.tls_client_ca_file),
        ) {
            (None, None, None) => None,
            (Some(cert_file), Some(key_file), client_ca_file) => Some(ServerTlsFiles {
                cert_file,
                key_file,
                client_ca_file,
            }),
            _ => {
                return Err(cfg(
                    "TLS for the endpoint needs both --tls-cert-file and --tls-key-file \
                     (--tls-client-ca-file adds mutual TLS)"
                        .into(),
                ))
            }
        };

        if cli.token_on_command_line.is_some() {
            return Err(cfg(format!(
                "--token is not accepted: a token on the command line is visible to every \
                 local user (ps); put it in the environment variable {TOKEN_ENV} or in a file \
                 named by --token-file"
            )));
        }
        // Candidates for the token, strongest source first; a direct token beats a token
        // file from the same source. The direct token only ever comes from the environment.
        let mut candidates: Vec<(u8, u8, Result<String, PathBuf>)> = Vec::new();
        if let Some(t) = &cli.token {
            candidates.push((2, 1, Ok(t.clone())));
        }
        if let Some(p) = &cli.token_file {
            candidates.push((rank(matches, "token_file"), 0, Err(p.clone())));
        }
        if let Some(t) = file.token {
            candidates.push((0, 1, Ok(t)));
        }
        if let Some(p) = file.token_file {
            candidates.push((0, 0, Err(p)));
        }
        candidates.sort_by_key(|c| std::cmp::Reverse((c.0, c.1)));
        let (tokens, token_file) = match candidates.into_iter().next() {
            Some((_, _, Ok(t))) => (Tokens::parse(&t), None),
            Some((_, _, Err(p))) => (read_token_file(&p)?, Some(p)),
            None => {
                return Err(cfg(
                    "no token configured: set TWOPC_REDIS_TOKEN, or name a file with \
                     --token-file, TWOPC_REDIS_TOKEN_FILE or `token_file`/`token` in the \
                     config file"
                        .into(),
                ))
            }
        };

        let mut server = ServerConfig::new(name, String::new());
        server.tokens = Tokens::new(tokens).map_err(|e| cfg(e.to_string()))?;
        server.tls = tls;
        if let Some(ms) = cli.decision_timeout_ms.or(file.decision_timeout_ms) {
            server.decision_timeout = Duration::from_millis(ms);
            // Look a little more often than the timeout, but not in a tight loop.
            server.scan_interval = Duration::from_millis((ms / 4).clamp(10, 1000));
            server.decision_retry_initial = Duration::from_millis(ms.clamp(10, 1000));
        }
        if let Some(n) = cli.max_in_flight.or(file.max_in_flight) {
            server.max_in_flight = n;
        }
        if let Some(ms) = cli.heartbeat_ms.or(file.heartbeat_ms) {
            server.heartbeat_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = cli.idle_timeout_ms.or(file.idle_timeout_ms) {
            server.idle_timeout = Duration::from_millis(ms);
        }
        server.validate().map_err(|e| cfg(e.to_string()))?;
        let mut retention = Retention::default();
        if let Some(n) = cli.keep_outcomes.or(file.keep_outcomes) {
            if n == 0 {
                return Err(cfg("keep_outcomes must be at least 1".into()));
            }
            retention.keep_count = n;
        }
        if let Some(s) = cli.keep_outcomes_secs.or(file.keep_outcomes_secs) {
            retention.keep_for = Duration::from_secs(s);
        }
        let log = cli
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        // A switch: on when the flag (or its environment variable) or the file sets it.
        let allow_unsafe_durability =
            cli.allow_unsafe_durability || file.allow_unsafe_durability.unwrap_or(false);
        Ok(Settings {
            listen,
            redis_url,
            redis_tls,
            server,
            token_file,
            retention,
            log,
            allow_unsafe_durability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn parse(args: &[&str]) -> (Cli, ArgMatches) {
        let m = Cli::command()
            .try_get_matches_from(
                std::iter::once("twopc-redis-participant").chain(args.iter().copied()),
            )
            .unwrap();
        (Cli::from_arg_matches(&m).unwrap(), m)
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let (mut cli, m) = parse(&["--name", "cache"]);
        cli.token = Some("flagtok".into()); // as read_token_env() would from TWOPC_REDIS_TOKEN
        let file: FileConfig = toml::from_str(
            "name = \"fromfile\"\ntoken = \"filetok\"\nredis_url = \"redis://127.0.0.1:1/\"\nmax_in_flight = 3\n",
        )
        .unwrap();
        let s = Settings::merge(&cli, Some(&m), file).unwrap();
        assert_eq!(s.server.name.as_str(), "cache");
        assert_eq!(s.server.tokens.current(), ["flagtok"]);
        assert_eq!(s.redis_url, "redis://127.0.0.1:1/");
        assert_eq!(s.server.max_in_flight, 3);
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
    }

    #[test]
    fn token_file_flag_beats_file_token() {
        let dir = std::env::temp_dir().join(format!("twopc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tf = dir.join("tok");
        std::fs::write(&tf, "  fromfile-flag \n").unwrap();
        let (cli, m) = parse(&["--token-file", tf.to_str().unwrap()]);
        let file: FileConfig = toml::from_str("token = \"filetok\"").unwrap();
        let s = Settings::merge(&cli, Some(&m), file).unwrap();
        assert_eq!(s.server.tokens.current(), ["fromfile-flag"]);
        assert_eq!(s.token_file.as_deref(), Some(tf.as_path()));
        // During a rotation the file holds the old and the new token, one per line.
        std::fs::write(&tf, "old\nnew\n").unwrap();
        assert_eq!(read_token_file(&tf).unwrap(), ["old", "new"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_token_on_the_command_line_is_refused_and_points_at_the_alternatives() {
        let (cli, m) = parse(&["--token", "secret"]);
        let e = Settings::merge(&cli, Some(&m), FileConfig::default()).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("--token is not accepted"), "{e}");
        assert!(e.contains(TOKEN_ENV) && e.contains("--token-file"), "{e}");
        assert!(
            !e.contains("secret"),
            "the refusal must not echo the token: {e}"
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("--token <"), "{help}");
        assert!(help.contains("TWOPC_REDIS_TOKEN"), "{help}");
    }

    #[test]
    fn passwords_are_redacted_and_refused_on_the_command_line() {
        assert_eq!(
            redact_url("rediss://twopc:hunter2@db:6380/0"),
            "rediss://twopc:***@db:6380/0"
        );
        assert_eq!(redact_url("redis://hunter2@db/"), "redis://***@db/");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        let (mut cli, m) = parse(&["--redis-url", "redis://u:hunter2@h/"]);
        cli.token = Some("t".into());
        let e = Settings::merge(&cli, Some(&m), FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TWOPC_REDIS_URL") && !e.contains("hunter2"),
            "{e}"
        );
        // From the file (or the environment) it is fine, but rediss:// needs a CA.
        let (mut cli, m) = parse(&[]);
        cli.token = Some("t".into());
        let file: FileConfig = toml::from_str("redis_url = 'rediss://u:hunter2@h/'").unwrap();
        let e = Settings::merge(&cli, Some(&m), file)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--redis-ca-file") && !e.contains("hunter2"),
            "{e}"
        );
        let file: FileConfig =
            toml::from_str("redis_url = 'rediss://h/#insecure'\nredis_ca_file = 'ca.pem'").unwrap();
        let e = Settings::merge(&cli, Some(&m), file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("always verified"), "{e}");
        let file: FileConfig = toml::from_str("tls_cert_file = 'c.pem'").unwrap();
        let e = Settings::merge(&cli, Some(&m), file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-key-file"), "{e}");
    }

    #[test]
    fn missing_token_and_unknown_keys_are_errors() {
        let (cli, m) = parse(&[]);
        let e = Settings::merge(&cli, Some(&m), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("no token"), "{e}");
        assert!(toml::from_str::<FileConfig>("tokn = \"x\"").is_err());
    }
}
