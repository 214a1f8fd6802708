use super::*;
use crate::pki::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Setup {
    _dir: tempfile::TempDir,
    ca: TestPki,
    other: TestPki,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestPki::new(dir.path(), "ours").unwrap();
    let other = TestPki::new(dir.path(), "theirs").unwrap();
    Setup {
        _dir: dir,
        ca,
        other,
    }
}

/// One accepted connection: handshake, then echo one line back. Returns what the server saw.
async fn serve_once(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
) -> tokio::task::JoinHandle<Result<bool, String>> {
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut s = accept(tcp, acceptor.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let had_client_cert = s.peer_certificates().is_some();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        Ok(had_client_cert)
    })
}

async fn round_trip(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    host: &str,
) -> (Result<Stream, String>, Result<bool, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = serve_once(listener, Some(TlsAcceptor::from(server))).await;
    let dialled = match connect(host, port, Some(&client)).await {
        Ok(mut s) => {
            s.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 5];
            match s.read_exact(&mut buf).await {
                Ok(_) => {
                    assert_eq!(&buf, b"hello");
                    Ok(s)
                }
                Err(e) => Err(explain(&e)),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    let served = task.await.unwrap();
    (dialled, served)
}

/// A client configuration trusting our CA, presenting `cert` if given.
fn trusting_ours(s: &Setup, cert: Option<&pki::IssuedCert>) -> Arc<ClientConfig> {
    client_config(&ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: cert.map(|c| c.cert_file.clone()),
        key_file: cert.map(|c| c.key_file.clone()),
    })
    .unwrap()
}

fn server_files(leaf: &pki::IssuedCert, client_ca: Option<&Path>) -> ServerTlsFiles {
    ServerTlsFiles {
        cert_file: leaf.cert_file.clone(),
        key_file: leaf.key_file.clone(),
        client_ca_file: client_ca.map(Path::to_owned),
    }
}

#[tokio::test]
async fn a_server_signed_by_the_configured_ca_is_trusted_by_address_and_by_name() {
    let s = setup();
    let leaf = s.ca.issue("server", &["localhost", "127.0.0.1"]).unwrap();
    let server = server_config(&server_files(&leaf, None), &[b"h2", b"http/1.1"]).unwrap();
    let trust = ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: None,
        key_file: None,
    };
    let mut client = (*client_config(&trust).unwrap()).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);
    for host in ["127.0.0.1", "localhost"] {
        let (dialled, served) = round_trip(server.clone(), client.clone(), host).await;
        let stream = dialled.unwrap_or_else(|e| panic!("{host}: {e}"));
        assert!(stream.is_tls());
        assert_eq!(stream.alpn(), Some(&b"http/1.1"[..]));
        assert_eq!(served, Ok(false), "no client certificate was presented");
    }
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_with_a_reason() {
    let s = setup();
    let leaf = s.other.issue("impostor", &["127.0.0.1"]).unwrap();
    let server = server_config(&server_files(&leaf, None), &[]).unwrap();
    let client = client_config(&ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: None,
        key_file: None,
    })
    .unwrap();
    let (dialled, served) = round_trip(server, client, "127.0.0.1").await;
    let e = dialled.err().expect("refused");
    assert!(e.contains("not signed by the configured CA"), "{e}");
    assert!(served.is_err(), "the server saw the refusal too");
}

#[tokio::test]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let s = setup();
    let leaf = s.ca.issue("elsewhere", &["db.example"]).unwrap();
    let server = server_config(&server_files(&leaf, None), &[]).unwrap();
    let trust = ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: None,
        key_file: None,
    };
    let (dialled, _) =
        round_trip(server.clone(), client_config(&trust).unwrap(), "127.0.0.1").await;
    let e = dialled.err().expect("wrong name refused");
    assert!(e.contains("not valid for the host name"), "{e}");
    let (dialled, _) =
        round_trip(server, client_config_any_name(&trust).unwrap(), "127.0.0.1").await;
    assert!(dialled.is_ok(), "{:?}", dialled.err());
    // verify-ca still checks the chain.
    let impostor = s.other.issue("impostor", &["127.0.0.1"]).unwrap();
    let server = server_config(&server_files(&impostor, None), &[]).unwrap();
    let (dialled, _) =
        round_trip(server, client_config_any_name(&trust).unwrap(), "127.0.0.1").await;
    assert!(dialled.err().unwrap().contains("not signed"));
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_or_from_another_ca() {
    let s = setup();
    let leaf = s.ca.issue("server", &["127.0.0.1"]).unwrap();
    let server = server_config(&server_files(&leaf, Some(&s.ca.ca_file)), &[]).unwrap();
    let ours = s.ca.issue("client", &["coordinator"]).unwrap();
    let theirs = s.other.issue("stranger", &["coordinator"]).unwrap();
    let with = |cert: Option<&pki::IssuedCert>| trusting_ours(&s, cert);
    let (dialled, served) = round_trip(server.clone(), with(Some(&ours)), "127.0.0.1").await;
    assert!(dialled.is_ok(), "{:?}", dialled.err());
    assert_eq!(served, Ok(true));

    let (dialled, served) = round_trip(server.clone(), with(None), "127.0.0.1").await;
    assert!(
        dialled.is_err(),
        "a client without a certificate is refused"
    );
    let e = served.unwrap_err();
    assert!(e.contains("no certificate"), "{e}");

    let (dialled, served) = round_trip(server, with(Some(&theirs)), "127.0.0.1").await;
    assert!(dialled.is_err());
    assert!(served
        .unwrap_err()
        .contains("not signed by the configured CA"));
}

#[tokio::test]
async fn optional_client_certificates_are_verified_when_presented_and_name_the_client() {
    let s = setup();
    let leaf = s.ca.issue("server", &["127.0.0.1"]).unwrap();
    let server = server_config_with(
        &server_files(&leaf, Some(&s.ca.ca_file)),
        &[],
        ClientCerts::Optional,
    )
    .unwrap();
    let ours = s.ca.issue("payments", &["payments"]).unwrap();
    let theirs = s.other.issue("stranger", &["payments"]).unwrap();
    let with = |cert: Option<&pki::IssuedCert>| trusting_ours(&s, cert);
    // No certificate: let in, anonymous.
    let (dialled, served) = round_trip(server.clone(), with(None), "127.0.0.1").await;
    assert!(dialled.is_ok(), "{:?}", dialled.err());
    assert_eq!(served, Ok(false));
    // Ours: let in, and its CN is the name.
    let (dialled, served) = round_trip(server.clone(), with(Some(&ours)), "127.0.0.1").await;
    assert!(dialled.is_ok(), "{:?}", dialled.err());
    assert_eq!(served, Ok(true));
    let pem = std::fs::read(&ours.cert_file).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(common_name(&der).as_deref(), Some("payments"));
    // Another CA's: still refused, optional or not.
    let (dialled, served) = round_trip(server, with(Some(&theirs)), "127.0.0.1").await;
    assert!(dialled.is_err());
    assert!(served
        .unwrap_err()
        .contains("not signed by the configured CA"));
    // Not a certificate at all: no name, no panic.
    assert_eq!(
        common_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2])),
        None
    );
    assert_eq!(common_name(&CertificateDer::from(Vec::new())), None);
}

#[tokio::test]
async fn a_plain_text_peer_is_explained() {
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let client = client_config(&ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: None,
        key_file: None,
    })
    .unwrap();
    let e = connect("127.0.0.1", port, Some(&client))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("not speaking TLS"), "{e}");
    plain.await.unwrap();
}

#[test]
fn bad_files_name_the_setting_and_the_file_and_never_their_content() {
    let s = setup();
    let leaf = s.ca.issue("server", &["127.0.0.1"]).unwrap();
    let missing = ServerTlsFiles {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: leaf.key_file.clone(),
        client_ca_file: None,
    };
    let e = server_config(&missing, &[]).unwrap_err().to_string();
    assert!(e.starts_with("cert_file /nonexistent/cert.pem"), "{e}");

    // A key given where the certificate belongs, and the other way round.
    let swapped = ServerTlsFiles {
        cert_file: leaf.key_file.clone(),
        key_file: leaf.cert_file.clone(),
        client_ca_file: None,
    };
    let e = server_config(&swapped, &[]).unwrap_err().to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "{e}");
    let key_only = ServerTlsFiles {
        cert_file: leaf.cert_file.clone(),
        key_file: leaf.cert_file.clone(),
        client_ca_file: None,
    };
    let e = server_config(&key_only, &[]).unwrap_err().to_string();
    assert!(
        e.contains("key_file") && e.contains("no PEM private key"),
        "{e}"
    );

    // A key that does not belong to the certificate.
    let other = s.ca.issue("other", &["127.0.0.1"]).unwrap();
    let mismatched = ServerTlsFiles {
        cert_file: leaf.cert_file.clone(),
        key_file: other.key_file.clone(),
        client_ca_file: None,
    };
    let e = server_config(&mismatched, &[]).unwrap_err().to_string();
    assert!(e.contains("TLS configuration"), "{e}");

    let half = ClientTlsFiles {
        ca_file: s.ca.ca_file.clone(),
        cert_file: Some(leaf.cert_file.clone()),
        key_file: None,
    };
    let e = client_config(&half).unwrap_err().to_string();
    assert!(e.contains("both cert_file and key_file"), "{e}");
}
