//! TLS for every connection twopc makes or accepts: coordinator ↔ participants (`wss://`), the
//! client API and event stream (HTTPS), the coordinator's PostgreSQL decision log and the Redis
//! participant's redis-server (`rediss://`).
//!
//! # What is shared, and why here
//!
//! Each of those connections needs the same four things: PEM files read into certificates, keys
//! and trust roots with errors that name the file; a rustls server configuration (optionally
//! demanding client certificates signed by a given CA: mutual TLS); a rustls client
//! configuration that trusts a given CA (and optionally presents a client certificate); and
//! one stream type that is either plain TCP or TLS, so the WebSocket, HTTP and PostgreSQL code
//! above it is written once for both. Writing them once keeps the rules in one place:
//!
//! * **One crypto provider, ring.** rustls picks a process default only when exactly one
//!   provider is compiled in; redis-rs and reqwest build their configurations from that
//!   default. [`install_default_provider`] makes the choice explicit at start-up anyway.
//! * **Verification is never off.** A client configuration always verifies the server's chain
//!   against the configured CA, and the host name too unless the caller asks for libpq's
//!   `verify-ca` semantics ([`client_config_any_name`]). There is no "accept anything" mode.
//! * **Errors a user can act on.** A failed handshake's rustls error is turned into a sentence
//!   naming what to check ([`explain`]) — "not signed by the configured CA", "not valid for
//!   host ..." — instead of `InvalidCertificate(UnknownIssuer)`.
//!
//! Certificates are read when a configuration is built (start-up); replacing the files needs a
//! restart of the process that reads them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use rustls;
pub use tokio_rustls;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read, or holds nothing usable.
    #[error("{what} {}: {detail}", path.display())]
    File {
        /// Which setting named the file ("cert_file", "key_file", "ca_file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A server's TLS material: its certificate chain and key, and, for mutual TLS, the CA that
/// signs the certificates its clients must present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsFiles {
    /// PEM file with the server's certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates a client certificate must chain to. When set, a
    /// client without such a certificate is refused during the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A client's TLS material: the CA its servers' certificates must chain to and, for mutual
/// TLS, its own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsFiles {
    /// PEM file with the CA certificates a server certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM file with the client certificate chain to present (mutual TLS).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The crypto provider every configuration here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider, for libraries that build their own rustls
/// configuration from the default (redis-rs, reqwest). Harmless when already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn file_error(what: &'static str, path: &Path, detail: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Reads every certificate in a PEM file; an empty one is an error.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file. The error never contains the file's bytes.
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        file_error(
            what,
            path,
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })
}

/// Reads a PEM file of CA certificates into a trust store.
pub fn load_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(what, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Whether a server with a `client_ca_file` insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// A client without a certificate signed by the CA is refused during the handshake (the
    /// participants' endpoints: mutual TLS).
    Required,
    /// A client may present one (then it must be signed by the CA) or none; the application
    /// decides what an anonymous connection may do (the API: a bearer token instead).
    Optional,
}

/// A server configuration; `alpn` lists the application protocols offered, in preference
/// order (empty: none). A `client_ca_file` makes client certificates required.
pub fn server_config(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(files, alpn, ClientCerts::Required)
}

/// [`server_config`], saying whether a client certificate is required or only verified when
/// presented.
pub fn server_config_with(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
    client_certs: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs("cert_file", &files.cert_file)?;
    let key = load_key("key_file", &files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(load_roots("client_ca_file", ca)?);
            let mut verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
            if client_certs == ClientCerts::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(format!("client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "cert_file {} and key_file {}: {e}",
            files.cert_file.display(),
            files.key_file.display()
        ))
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration that verifies the server's chain against `files.ca_file` and its
/// certificate against the host name dialled (libpq's `verify-full`).
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots("ca_file", &files.ca_file)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    finish_client(builder, files)
}

/// A client configuration that verifies the server's chain against `files.ca_file` but not
/// the host name (libpq's `verify-ca`: for servers reached by an address their certificate
/// does not name).
pub fn client_config_any_name(files: &ClientTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::new(load_roots("ca_file", &files.ca_file)?);
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(format!("ca_file: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)));
    finish_client(builder, files)
}

fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    files: &ClientTlsFiles,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = match (&files.cert_file, &files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let certs = load_certs("cert_file", cert)?;
            let key_der = load_key("key_file", key)?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                TlsError::Config(format!(
                    "cert_file {} and key_file {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both cert_file and key_file".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Verifies the chain with webpki and ignores only a name mismatch.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection that is plain TCP or TLS over TCP, either side.
pub enum Stream {
    /// No TLS (loopback, the demo).
    Plain(TcpStream),
    /// TLS, this side dialled.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, this side accepted.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the bytes are encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The application protocol the TLS handshake agreed on, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Client(s) => s.get_ref().1.alpn_protocol(),
            Stream::Server(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The certificate chain the peer presented (a client's, with mutual TLS).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Client(s) => s.get_ref().1.peer_certificates(),
            Stream::Server(s) => s.get_ref().1.peer_certificates(),
        }
    }
}

/// The subject common name (CN) of a certificate, if it has exactly one that is a string.
///
/// Called on a client certificate the handshake has already verified against the configured
/// CA, to say which configured client it is (as PostgreSQL's `cert` authentication maps the
/// CN to a role). A certificate with several CNs names nobody: which one counts would be a
/// guess.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let first = names.next()?.as_str().ok()?.to_owned();
    names.next().is_none().then_some(first)
}

/// Dials `host:port`; with `tls`, runs the TLS handshake, verifying the server as the
/// configuration says against `host`. Errors are explained ([`explain`]).
pub async fn connect(host: &str, port: u16, tls: Option<&Arc<ClientConfig>>) -> io::Result<Stream> {
    let tcp = TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    // An IPv6 literal arrives bracketed from a URL.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a host name or address TLS can verify"),
        )
    })?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map(|s| Stream::Client(Box::new(s)))
        .map_err(|e| io::Error::new(e.kind(), explain(&e)))
}

/// Runs the server side of the handshake on an accepted connection (no TLS: passes it on).
pub async fn accept(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> io::Result<Stream> {
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some(acceptor) => acceptor
            .accept(tcp)
            .await
            .map(|s| Stream::Server(Box::new(s)))
            .map_err(|e| io::Error::new(e.kind(), explain(&e))),
    }
}

/// A handshake error as a sentence naming what to check.
pub fn explain(e: &io::Error) -> String {
    explain_if_tls(e).unwrap_or_else(|| {
        if e.kind() == io::ErrorKind::InvalidData {
            format!("TLS handshake failed: {e} (is the peer speaking TLS?)")
        } else {
            format!("TLS handshake failed: {e}")
        }
    })
}

/// [`explain`] for an I/O error that carries a TLS error; `None` for any other I/O error.
/// With TLS 1.3 a server's refusal of the client's certificate arrives after the client's
/// side of the handshake is done, on the first read: this names it there too.
pub fn explain_if_tls(e: &io::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())?;
    let why = match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the peer's certificate is not signed by the configured CA".to_string()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "the peer's certificate is not valid for the host name or address dialled".to_string(),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the peer's certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the peer's certificate is not valid yet (check the clocks)".to_string()
        }
        rustls::Error::NoCertificatesPresented => {
            "the peer presented no certificate, and one is required".to_string()
        }
        rustls::Error::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateRequired) => {
            "the peer refused this side's certificate (or its absence)".to_string()
        }
        rustls::Error::InvalidMessage(_) => {
            "the peer is not speaking TLS (a plain-text endpoint?)".to_string()
        }
        other => other.to_string(),
    };
    Some(format!("TLS handshake failed: {why} ({tls})"))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "test-pki"))]
pub mod pki;
