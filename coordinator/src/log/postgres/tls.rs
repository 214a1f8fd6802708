//! TLS to the decision log's PostgreSQL, with libpq's names for it.
//!
//! The decision log URL takes libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! (in a `postgresql://` URL's query or as `key=value` words). tokio-postgres itself knows only
//! `disable`, `prefer` and `require`, verifies nothing and reads no certificate files, so those
//! four are taken out of the URL here and turned into a rustls configuration:
//!
//! | sslmode | here |
//! |---|---|
//! | (none), `disable`, `allow`, `prefer` | plain text (refused off loopback unless `allow_plain_text_off_loopback`) |
//! | `require` | only with `sslrootcert`, as `verify-ca` (libpq does the same when a root certificate is there; without one it would accept any server, which twopc never does) |
//! | `verify-ca` | the server's chain checked against `sslrootcert` |
//! | `verify-full` | the chain checked, and the certificate must name the host dialled |
//!
//! `sslrootcert` must be given for the verifying modes (libpq's fallback
//! `~/.postgresql/root.crt` is not looked for: the configuration says which CA it trusts).
//! A Unix-socket host never uses TLS (PostgreSQL does not offer it there), and needs none.

use crate::log::LogError;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use twopc_tls::rustls;

/// What the URL's `ssl*` parameters ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgTlsMode {
    /// No TLS (no `sslmode`, or `disable`, `allow`, `prefer`).
    Plain,
    /// TLS with the chain verified; with `full`, the host name too.
    Verify {
        /// `verify-full`.
        full: bool,
        /// The CA file and the optional client certificate.
        files: twopc_tls::ClientTlsFiles,
    },
}

/// The URL without its `ssl*` parameters, and what they asked for.
pub(crate) fn split_url(url: &str) -> Result<(String, PgTlsMode), LogError> {
    let bad = |detail: String| LogError::Database {
        op: "parse the decision log URL",
        detail,
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.starts_with("ssl") && k != "sslnegotiation" {
                params.push((k.to_owned(), percent_decode(v).map_err(bad)?));
            } else {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        // key=value words; quoted values are left to tokio-postgres unless they are ours.
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if k.starts_with("ssl") && k != "sslnegotiation" => {
                    params.push((k.to_owned(), v.trim_matches('\'').to_owned()))
                }
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let mut mode = None;
    let (mut root, mut cert, mut key) = (None, None, None);
    for (k, v) in params {
        match k.as_str() {
            "sslmode" => mode = Some(v),
            "sslrootcert" => root = Some(PathBuf::from(v)),
            "sslcert" => cert = Some(PathBuf::from(v)),
            "sslkey" => key = Some(PathBuf::from(v)),
            other => {
                return Err(bad(format!(
                    "{other} is not supported (sslmode, sslrootcert, sslcert and sslkey are)"
                )))
            }
        }
    }
    let files = |root: Option<PathBuf>, mode: &str| match root {
        Some(ca_file) => Ok(twopc_tls::ClientTlsFiles {
            ca_file,
            cert_file: cert.clone(),
            key_file: key.clone(),
        }),
        None => Err(bad(format!(
            "sslmode={mode} needs sslrootcert (the CA file the server's certificate is checked \
             against)"
        ))),
    };
    let parsed = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => PgTlsMode::Plain,
        Some("require") if root.is_none() => {
            return Err(bad(
                "sslmode=require without sslrootcert would accept any server's certificate; \
                 give sslrootcert (then it checks the chain, as libpq does), or use \
                 sslmode=verify-full"
                    .into(),
            ))
        }
        Some(m @ ("require" | "verify-ca")) => PgTlsMode::Verify {
            full: false,
            files: files(root, m)?,
        },
        Some("verify-full") => PgTlsMode::Verify {
            full: true,
            files: files(root, "verify-full")?,
        },
        Some(other) => {
            return Err(bad(format!(
                "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, \
                 verify-full"
            )))
        }
    };
    if parsed == PgTlsMode::Plain && (cert.is_some() || key.is_some()) {
        return Err(bad(
            "sslcert/sslkey are given but sslmode does not ask for TLS (use verify-full)".into(),
        ));
    }
    Ok((rest, parsed))
}

fn percent_decode(v: &str) -> Result<String, String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {v:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{v:?} is not UTF-8 once decoded"))
}

/// tokio-postgres's TLS hook over rustls.
#[derive(Clone)]
pub(crate) struct RustlsConnect(pub(crate) Arc<rustls::ClientConfig>);

impl RustlsConnect {
    /// The connector for a verifying mode.
    pub(crate) fn new(full: bool, files: &twopc_tls::ClientTlsFiles) -> Result<Self, LogError> {
        let config = if full {
            twopc_tls::client_config(files)
        } else {
            twopc_tls::client_config_any_name(files)
        }
        .map_err(|e| LogError::Database {
            op: "read the decision log's TLS files",
            detail: e.to_string(),
        })?;
        Ok(RustlsConnect(config))
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = RustlsConnectOne;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectOne, io::Error> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} is not a host name or address TLS can verify"),
            )
        })?;
        Ok(RustlsConnectOne {
            name,
            config: self.0.clone(),
        })
    }
}

/// One connection's handshake.
pub(crate) struct RustlsConnectOne {
    name: rustls::pki_types::ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
}

impl<S> TlsConnect<S> for RustlsConnectOne
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            twopc_tls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(|s| PgTlsStream(Box::new(s)))
                .map_err(|e| io::Error::new(e.kind(), twopc_tls::explain(&e)))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct PgTlsStream<S>(Box<twopc_tls::tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding would need the certificate's hash by its signature
        // algorithm; without it SCRAM-SHA-256 runs as usual, inside the verified TLS session.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_ssl_parameters_are_taken_out_of_the_url() {
        let (rest, mode) = split_url(
            "postgresql://u:pw@db.internal:5432/twopc?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://u:pw@db.internal:5432/twopc?application_name=x"
        );
        assert_eq!(
            mode,
            PgTlsMode::Verify {
                full: true,
                files: twopc_tls::ClientTlsFiles {
                    ca_file: "/etc/ca.pem".into(),
                    cert_file: None,
                    key_file: None
                }
            }
        );
        let (rest, mode) =
            split_url("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem sslcert=/c sslkey=/k")
                .unwrap();
        assert_eq!(rest, "host=db user=u");
        assert!(matches!(mode, PgTlsMode::Verify { full: false, .. }));
        assert_eq!(split_url("postgresql://h/db").unwrap().1, PgTlsMode::Plain);
        assert_eq!(
            split_url("postgresql://h/db?sslmode=prefer").unwrap(),
            ("postgresql://h/db".into(), PgTlsMode::Plain)
        );
        for (url, says) in [
            (
                "postgresql://h/db?sslmode=require",
                "would accept any server",
            ),
            ("postgresql://h/db?sslmode=verify-full", "needs sslrootcert"),
            ("postgresql://h/db?sslmode=sometimes", "is not one of"),
            ("postgresql://h/db?sslcrl=/x", "sslcrl is not supported"),
            ("postgresql://h/db?sslcert=/c", "does not ask for TLS"),
        ] {
            let e = split_url(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
