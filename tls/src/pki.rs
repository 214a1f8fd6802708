//! A throw-away certificate authority for tests and the demo: a CA certificate and leaf
//! certificates signed by it, written as PEM files into a directory.
//!
//! Every leaf is good for both ends of a connection (server and client authentication), so
//! one certificate can serve a participant's endpoint and sign the coordinator in as a
//! mutual-TLS client. Keys are written with mode 0600 (PostgreSQL refuses a key file others
//! can read).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A CA whose key lives in memory only, and the directory its files go to.
pub struct TestPki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), the file to configure as `ca_file` / `client_ca_file`.
    pub ca_file: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8, mode 0600).
    pub key_file: PathBuf,
}

fn failed(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl TestPki {
    /// A new CA named `name`; writes `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> std::io::Result<TestPki> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(failed)?;
        let ca = CertifiedIssuer::self_signed(params, key).map_err(failed)?;
        std::fs::create_dir_all(dir)?;
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem())?;
        Ok(TestPki {
            dir: dir.to_owned(),
            ca,
            ca_file,
        })
    }

    /// A leaf certificate for `names` (DNS names and IP addresses, e.g. `localhost`,
    /// `127.0.0.1`), signed by this CA; writes `<dir>/<file_stem>.pem` and `.key`.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> std::io::Result<IssuedCert> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(failed)?;
        params
            .distinguished_name
            .push(DnType::CommonName, file_stem);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.ca).map_err(failed)?;
        let cert_file = self.dir.join(format!("{file_stem}.pem"));
        let key_file = self.dir.join(format!("{file_stem}.key"));
        std::fs::write(&cert_file, cert.pem())?;
        write_private(&key_file, key.serialize_pem().as_bytes())?;
        Ok(IssuedCert {
            cert_file,
            key_file,
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
