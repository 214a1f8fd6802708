//! TLS on every connection (issue 19), against the real stack with TLS turned on
//! ([`StackOptions::tls`]): the Postgres participant (the extension's worker) and the Redis
//! participant serve only `wss://` and demand a client certificate from the stack's CA; the
//! coordinator verifies their certificates against that CA and serves its API over HTTPS
//! (HTTP/2 and HTTP/1.1); the Redis participant reaches redis-server over `rediss://`, with a
//! client certificate, as an ACL user that may run only what it needs.
//!
//! * a transfer over HTTPS commits in PostgreSQL and Redis, over HTTP/2 and over HTTP/1.1, and
//!   the event stream streams over `wss://`;
//! * plain text is refused everywhere: `http://` to the API, `ws://` to either participant,
//!   and nothing about the stack is hurt by it;
//! * a coordinator that trusts another CA refuses the participants' certificates, and one whose
//!   client certificate comes from another CA is refused by the participants; each says why in
//!   `GET /v1/participants`;
//! * the ACL user cannot FLUSHALL, cannot touch a key outside its patterns, and needs TLS with a
//!   client certificate.

use futures_util::StreamExt;
use std::time::Duration;
use twopc_protocol::api::{Outcome, ParticipantStatus, TransactionResponse};
use twopc_tests::stack::{Binaries, Proc, Stack, StackOptions};

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// An HTTPS client trusting only the stack's CA.
fn https(stack: &Stack, http1_only: bool) -> reqwest::Client {
    let tls = stack.tls.as_ref().unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca.ca_file).unwrap()).unwrap();
    let b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30));
    let b = if http1_only { b.http1_only() } else { b };
    b.build().unwrap()
}

/// Submits a bank-ledger transfer `(from, to, amount)` and checks that it committed.
async fn assert_committed(http: &reqwest::Client, base: &str, (from, to, amount): (u64, u64, i64)) {
    let body: TransactionResponse = http
        .post(format!("{base}/v1/transactions"))
        .json(&twopc_tests::reliability::bank_ledger_transfer(
            from, to, amount,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body.outcome, Outcome::Committed, "{body:?}");
}

async fn redis_get(stack: &Stack, key: &str) -> Option<i64> {
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn participants(http: &reqwest::Client, base: &str) -> Vec<ParticipantStatus> {
    http.get(format!("{base}/v1/participants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Starts another coordinator `id` on the stack's participants, its configuration's tables
/// `extra` (TLS, clients), logging at `log`; returns it and its `https://` base URL.
fn spawn_coordinator(
    stack: &Stack,
    dir: &std::path::Path,
    id: &str,
    extra: String,
    log: &str,
) -> (Proc, String) {
    let (proc, base) = stack
        .spawn_coordinator_configured(&bins(), (id, 0, dir), &[("TWOPC_LOG", log)], |c| {
            c.extra = extra
        })
        .unwrap();
    assert!(base.starts_with("https://"), "{base}");
    (proc, base)
}

/// Starts another coordinator on the stack's participants with the given `[participant_tls]`
/// CA and client certificate, waits until both have failed, and checks that each says why:
/// its `last_error` contains `says`.
async fn refused_by(
    stack: &Stack,
    dir: &std::path::Path,
    (id, ca, client): (&str, &std::path::Path, &twopc_tls::pki::IssuedCert),
    says: &str,
) {
    let tls = stack.tls.as_ref().unwrap();
    let extra = tls.coordinator_tables(ca, client);
    let (proc, base) = spawn_coordinator(stack, dir, id, extra, "error");
    let http = https(stack, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = participants(&http, &base).await;
        if list.iter().all(|p| !p.connected && p.last_error.is_some()) {
            drop(proc);
            for p in &list {
                let e = p.last_error.as_deref().unwrap_or_default();
                assert!(e.contains(says), "{}: {e}", p.name);
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants never reported refused: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_tls_and_strangers_are_refused() {
    let stack = tokio::task::block_in_place(|| {
        Stack::start(
            &bins(),
            StackOptions {
                accounts: 4,
                tls: true,
                ..StackOptions::default()
            },
        )
        .expect("start the TLS stack")
    });
    let base = stack.coordinator_url.clone();
    assert!(base.starts_with("https://"), "{base}");
    let tls = stack.tls.as_ref().unwrap();

    // The participants are dialled over wss:// and report connected (Stack::start waited).
    let h2 = https(&stack, false);
    let list = participants(&h2, &base).await;
    assert!(
        list.iter()
            .all(|p| p.connected && p.url.starts_with("wss://")),
        "{list:?}"
    );

    // The event stream over wss:// (HTTP/1.1 upgrade through TLS).
    let stream = twopc_tls::connect(
        "127.0.0.1",
        base.rsplit(':').next().unwrap().parse().unwrap(),
        Some(&tls.client_config(&[b"http/1.1"])),
    )
    .await
    .unwrap();
    let ws_url = format!("{}/v1/events", base.replace("https://", "wss://"));
    let (mut events, _) = tokio_tungstenite::client_async(ws_url.as_str(), stream)
        .await
        .expect("the event stream over wss://");

    // A transfer over HTTP/2, then one over HTTP/1.1: both commit in both stores.
    let h1 = https(&stack, true);
    for (http, version, from, to) in [
        (&h2, reqwest::Version::HTTP_2, 1, 2),
        (&h1, reqwest::Version::HTTP_11, 3, 4),
    ] {
        let resp = http
            .post(format!("{base}/v1/transactions"))
            .json(&twopc_tests::reliability::bank_ledger_transfer(from, to, 7))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        let body: TransactionResponse = resp.json().await.unwrap();
        assert_eq!(body.outcome, Outcome::Committed, "{body:?}");
    }
    let pg = tokio::task::block_in_place(|| stack.pg_balances().unwrap());
    assert_eq!(pg, vec![(1, 93), (2, 107), (3, 93), (4, 107)]);
    for (key, want) in [
        ("balance:1", 93),
        ("balance:2", 107),
        ("balance:3", 93),
        ("balance:4", 107),
    ] {
        assert_eq!(redis_get(&stack, key).await, Some(want), "{key}");
    }
    // The stream saw them.
    let mut committed = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while committed < 2 && tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(m))) if m.is_text() => {
                let text = m.into_text().unwrap();
                committed += text
                    .matches(r#""kind":"tx_end","decision":"commit""#)
                    .count();
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("event stream ended: {other:?}"),
        }
    }
    assert_eq!(committed, 2, "both transfers ended committed on the stream");

    // Plain text is refused: http:// to the API, ws:// to each participant. Each refusal is
    // an error for the client, nothing for the server.
    let plain = reqwest::Client::new()
        .get(base.replace("https://", "http://") + "/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be served"
    );
    for addr in [&stack.bank_addr, &stack.ledger_addr] {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(format!("ws://{addr}/")),
        )
        .await
        .expect("a ws:// client is refused promptly, not left hanging");
        assert!(
            r.is_err(),
            "ws:// to a TLS-only participant at {addr} must fail"
        );
    }
    // TLS without a client certificate is refused by the participants too.
    for addr in [&stack.bank_addr, &stack.ledger_addr] {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let r = async {
            let s = twopc_tls::connect(host, port.parse().unwrap(), Some(&tls.client_config(&[])))
                .await?;
            tokio_tungstenite::client_async(format!("wss://{addr}/"), s)
                .await
                .map_err(std::io::Error::other)
        }
        .await;
        assert!(r.is_err(), "no client certificate: {addr} must refuse");
    }

    // A coordinator that trusts another CA refuses the participants' certificates; one whose
    // client certificate comes from another CA is refused by the participants.
    let dir = tempfile::tempdir().unwrap();
    refused_by(
        &stack,
        dir.path(),
        ("c-wrong-ca", &tls.stranger.ca_file, &tls.coordinator),
        "not signed by the configured CA",
    )
    .await;
    let stranger = tls
        .stranger
        .issue("stranger-coordinator", &["127.0.0.1"])
        .unwrap();
    refused_by(
        &stack,
        dir.path(),
        ("c-stranger", &tls.ca.ca_file, &stranger),
        "refused this side's certificate",
    )
    .await;

    // Through all of that the stack's own coordinator stayed connected, and commits.
    let list = participants(&h2, &base).await;
    assert!(list.iter().all(|p| p.connected), "{list:?}");
    assert_committed(&h2, &base, (2, 1, 7)).await;

    // The Redis participant's ACL user, over TLS with a client certificate: what the
    // participant needs works, FLUSHALL and keys outside its patterns are refused.
    let port = stack.redis_tls_port.unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let certs = |with_client: bool| redis::TlsCertificates {
        client_tls: with_client.then(|| redis::ClientTlsConfig {
            client_cert: read(&tls.ledger_client.cert_file),
            client_key: read(&tls.ledger_client.key_file),
        }),
        root_cert: Some(read(&tls.ca.ca_file)),
    };
    twopc_tls::install_default_provider();
    let acl = redis::Client::build_with_tls(tls.ledger_redis_url(port), certs(true)).unwrap();
    let mut c = acl.get_multiplexed_async_connection().await.unwrap();
    let v: Option<i64> = redis::cmd("GET")
        .arg("balance:1")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, Some(100));
    let e = redis::cmd("FLUSHALL")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("no permissions"),
        "{e}"
    );
    let e = redis::cmd("GET")
        .arg("secret:1")
        .query_async::<Option<String>>(&mut c)
        .await
        .unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("no permissions"),
        "{e}"
    );
    assert_eq!(
        redis_get(&stack, "balance:1").await,
        Some(100),
        "nothing was flushed"
    );
    // Without a client certificate redis-server refuses the TLS connection.
    let no_cert = redis::Client::build_with_tls(tls.ledger_redis_url(port), certs(false)).unwrap();
    assert!(no_cert.get_multiplexed_async_connection().await.is_err());
}

/// The PostgreSQL decision log over TLS with libpq's `sslmode=verify-full`: the coordinator's
/// sessions are encrypted (PostgreSQL's own `pg_stat_ssl` says so), and a coordinator that
/// trusts another CA, or names the server by an address its certificate does not carry,
/// refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_is_reached_over_verified_tls() {
    let stack = tokio::task::block_in_place(|| {
        Stack::start(
            &bins(),
            StackOptions {
                accounts: 2,
                tls: true,
                postgres_decision_log: Some(3000),
                ..StackOptions::default()
            },
        )
        .expect("start the TLS stack with the PostgreSQL decision log")
    });
    let tls = stack.tls.as_ref().unwrap();
    let url = stack.log_url.clone().unwrap();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let base = stack.coordinator_url.clone();
    let http = https(&stack, false);
    assert_committed(&http, &base, (1, 2, 5)).await;
    let log = stack.log_pg.as_ref().unwrap();
    let out = tokio::task::block_in_place(|| {
        log.psql_ok(
            "twopc_log",
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'twopc-coordinator%'",
        )
        .unwrap()
    });
    let counts: Vec<i64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        counts.len() >= 2 && counts[1] > 0 && counts[0] == counts[1],
        "every coordinator session to the log is TLS: {out}"
    );

    // Another CA, or a name the certificate does not carry: refused at start, with a reason.
    let dir = tempfile::tempdir().unwrap();
    let plain = url.split('?').next().unwrap();
    for (id, url, says) in [
        (
            "c-wrong-ca",
            twopc_tests::stack_tls::StackTls::verify_full(plain, &tls.stranger.ca_file),
            "not signed by the configured CA",
        ),
        (
            "c-wrong-name",
            // Dialled at 127.0.0.1, verified as db.example, which the certificate lacks.
            format!(
                "{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                plain.replace("127.0.0.1", "db.example"),
                tls.ca.ca_file.display()
            ),
            "not valid for the host name",
        ),
    ] {
        let mut cfg = stack.coordinator_settings.clone();
        cfg.coordinator_id = id.into();
        cfg.data_dir = dir.path().join(id);
        let path = dir.path().join(format!("{id}.toml"));
        cfg.write(&path).unwrap();
        let out = tokio::task::block_in_place(|| {
            std::process::Command::new(bins().coordinator)
                .args(["serve", "--config"])
                .arg(&path)
                .env("TWOPC_LOG_URL", &url)
                .env("TWOPC_LOG", "error")
                .env("RUST_BACKTRACE", "1")
                .output()
                .unwrap()
        });
        assert!(!out.status.success(), "{id} must not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{id}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains(".rs:"),
            "{stderr}"
        );
    }
}

/// An HTTPS client trusting the stack's CA that presents `cert` as its client certificate.
fn https_as(stack: &Stack, cert: &twopc_tls::pki::IssuedCert) -> reqwest::Client {
    let tls = stack.tls.as_ref().unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca.ca_file).unwrap()).unwrap();
    let mut pem = std::fs::read(&cert.cert_file).unwrap();
    pem.extend(std::fs::read(&cert.key_file).unwrap());
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Clients known by their TLS client certificate (`[[client]] certificate_cn`, verified
/// against `[api_tls] client_ca_file`): such a client needs no token, its transactions carry
/// its name, and the CLI signs in with `--cert-file`; a certificate whose name is no client's,
/// one from another CA with a client's name, and no certificate at all are refused; a token
/// beside a certificate decides alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_signs_a_client_in_without_a_token() {
    let stack = tokio::task::block_in_place(|| {
        Stack::start(
            &bins(),
            StackOptions {
                accounts: 2,
                tls: true,
                ..StackOptions::default()
            },
        )
        .expect("start the TLS stack")
    });
    let tls = stack.tls.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ops = tls.ca.issue("api-ops", &["api-ops"]).unwrap();
    let nobody = tls.ca.issue("api-nobody", &["api-nobody"]).unwrap();
    // Another CA's certificate with exactly the configured name.
    let evil = twopc_tls::pki::TestPki::new(dir.path(), "evil").unwrap();
    let forged = evil.issue("api-ops", &["api-ops"]).unwrap();
    let reader_token = twopc_tests::secrets::new_token();

    let extra = tls
        .coordinator_tables(&tls.ca.ca_file, &tls.coordinator)
        .replace(
            "\n[participant_tls]",
            &format!(
                "client_ca_file = \"{}\"\n\n[participant_tls]",
                tls.ca.ca_file.display()
            ),
        )
        + &format!(
            "\n[[client]]\nname = \"ops-cert\"\ncertificate_cn = \"api-ops\"\n\
             scopes = [\"submit\", \"read\"]\n\
             \n[[client]]\nname = \"reader\"\ntoken_sha256 = [\"{}\"]\nscopes = [\"read\"]\n",
            twopc_coordinator::clients::token_digest_hex(&reader_token)
        );
    let (proc, base) = spawn_coordinator(&stack, dir.path(), "c-certs", extra, "warn");

    // The certificate alone signs ops-cert in, and its transactions carry its name.
    let as_ops = https_as(&stack, &ops);
    let whoami: serde_json::Value = as_ops
        .get(format!("{base}/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["client"], "ops-cert", "{whoami}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !participants(&as_ops, &base)
        .await
        .iter()
        .all(|p| p.connected)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body: TransactionResponse = as_ops
        .post(format!("{base}/v1/transactions"))
        .json(&twopc_tests::reliability::bank_ledger_transfer(1, 2, 3))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body.outcome, Outcome::Committed, "{body:?}");
    assert_eq!(body.submitted_by.as_deref(), Some("ops-cert"));

    // Refused: no certificate and no token; a certificate naming no client; another CA's
    // certificate with ops-cert's name (refused by the handshake itself).
    let status = |r: reqwest::Response| r.status().as_u16();
    let anonymous = https(&stack, false);
    let r = anonymous
        .get(format!("{base}/v1/participants"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 401);
    let r = https_as(&stack, &nobody)
        .get(format!("{base}/v1/participants"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("names none of this coordinator's clients"),
        "{text}"
    );
    let r = https_as(&stack, &forged)
        .get(format!("{base}/v1/whoami"))
        .send()
        .await;
    assert!(
        r.is_err(),
        "another CA's certificate must be refused: {r:?}"
    );

    // A token beside the certificate decides alone: reader may read, not submit.
    let r = as_ops
        .post(format!("{base}/v1/transactions"))
        .bearer_auth(&reader_token)
        .json(&twopc_tests::reliability::bank_ledger_transfer(2, 1, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 403);
    let who: serde_json::Value = as_ops
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(&reader_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["client"], "reader", "{who}");

    // The CLI signs in with its certificate; without one it is refused.
    let cli = |with_cert: bool| {
        let mut cmd = std::process::Command::new(bins().coordinator);
        cmd.args(["in-doubt", "--url", &base, "--ca-file"])
            .arg(&tls.ca.ca_file)
            .env_remove("TWOPC_TOKEN")
            .env("RUST_BACKTRACE", "1");
        if with_cert {
            cmd.arg("--cert-file")
                .arg(&ops.cert_file)
                .arg("--key-file")
                .arg(&ops.key_file);
        }
        tokio::task::block_in_place(|| cmd.output().unwrap())
    };
    let said = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let out = cli(true);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("bank"), "{}", said(&out));
    let out = cli(false);
    assert!(!out.status.success());
    let text = said(&out);
    assert!(text.contains("token or certificate"), "{text}");
    assert!(
        !twopc_tests::reliability::shows_rust_internals(&text),
        "{text}"
    );

    // Both stores agree on the one transfer.
    let pg = tokio::task::block_in_place(|| stack.pg_balances().unwrap());
    assert_eq!(pg, vec![(1, 97), (2, 103)]);
    assert_eq!(redis_get(&stack, "balance:1").await, Some(97));
    drop(proc);
}
