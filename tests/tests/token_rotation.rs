//! Participant tokens are rotated without restarting the participants (issue 19): each accepts
//! the old and the new token while the coordinators switch, then only the new one, and a
//! connection already up stays up throughout.
//!
//! * The PostgreSQL participant (the extension's worker) re-reads `twopc.auth_token_file` on a
//!   configuration reload (`pg_reload_conf()`); switching from `twopc.auth_token` to a file
//!   needs no restart either. No token reaches the server log.
//! * The Redis participant re-reads its token file on SIGHUP; a file it would refuse (three
//!   tokens) changes nothing.

use std::net::SocketAddr;
use std::time::Duration;
use twopc_tests::stack::{http_get, Binaries, Proc, Stack, StackOptions};
use twopc_tests::wire_client::WireClient;
use twopc_tests::RedisServer;

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

/// Waits until `token` is accepted (`true`) or refused with 401 (`false`) by `addr`.
async fn wait_for(addr: SocketAddr, token: &str, accepted: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ok = WireClient::connect(addr, Some(token)).await.is_ok();
        if ok == accepted {
            if !accepted {
                let refused = WireClient::refused(addr, Some(token)).await;
                assert_eq!(refused.status, 401, "{}", refused.body);
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr}: token never {}",
            if accepted { "accepted" } else { "refused" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_participant_takes_a_new_token_on_a_configuration_reload() {
    let stack = tokio::task::block_in_place(|| {
        Stack::start(
            &bins(),
            StackOptions {
                accounts: 2,
                ..StackOptions::default()
            },
        )
        .expect("start the stack")
    });
    let bank: SocketAddr = stack.bank_addr.parse().unwrap();
    let old = stack.tokens.0.clone();
    let new = twopc_tests::secrets::new_token();
    // The token file, in a directory the postgres user can reach, readable by it alone.
    let dir = tempfile::Builder::new()
        .prefix("twopc-tok-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let file = dir.path().join("bank.token");
    std::fs::write(&file, format!("{old}\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    twopc_tests::util::give_to_postgres(&file).unwrap();
    let psql = |sql: String| {
        tokio::task::block_in_place(|| {
            stack.pg.psql_ok("postgres", &sql).unwrap();
        })
    };
    let set = |value: String| {
        std::fs::write(&file, value).unwrap();
        psql("SELECT pg_reload_conf()".into());
    };
    wait_for(bank, &new, false).await;
    // From the GUC to the file, without a restart.
    psql(format!(
        "ALTER SYSTEM SET twopc.auth_token_file = '{}'",
        file.display()
    ));
    psql("SELECT pg_reload_conf()".into());
    wait_for(bank, &old, true).await;
    set(format!("{old}\n{new}\n"));
    wait_for(bank, &new, true).await;
    wait_for(bank, &old, true).await;
    set(new.clone());
    wait_for(bank, &old, false).await;
    wait_for(bank, &new, true).await;
    // A file the participant would refuse (three tokens) is logged and changes nothing.
    set(format!("{new} a b"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for(bank, &new, true).await;
    // The coordinator's connection, made with the old token, stayed up all along.
    let body = tokio::task::block_in_place(|| {
        http_get(&stack.coordinator_url, "/v1/participants").unwrap()
    });
    assert_eq!(body.matches("\"connected\":true").count(), 2, "{body}");
    let log = std::fs::read_to_string(stack.pg.log_path()).unwrap_or_default();
    assert!(
        log.contains("1 token(s) accepted") && log.contains("2 token(s) accepted"),
        "{log}"
    );
    assert!(log.contains("tokens kept"), "{log}");
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&new) || l.contains(&old))
        .collect();
    assert!(leaks.is_empty(), "no token in the server log: {leaks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_participant_rereads_its_token_file_on_sighup() {
    let redis = tokio::task::block_in_place(RedisServer::start_new).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "old-token-3b1f\n").unwrap();
    let port = twopc_tests::util::free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proc = tokio::task::block_in_place(|| {
        Proc::spawn(
            vec![
                bins().redis_participant.display().to_string(),
                "--listen".into(),
                addr.to_string(),
                "--name".into(),
                "ledger".into(),
                "--token-file".into(),
                file.display().to_string(),
                "--log".into(),
                "warn".into(),
            ],
            vec![("TWOPC_REDIS_URL".into(), redis.url())],
        )
    })
    .unwrap();
    let hup = || {
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(proc.pid().unwrap() as i32, libc::SIGHUP) };
    };
    let kept = WireClient::connect(addr, Some("old-token-3b1f"))
        .await
        .unwrap();
    wait_for(addr, "new-token-8c2d", false).await;
    std::fs::write(&file, "old-token-3b1f\nnew-token-8c2d\n").unwrap();
    hup();
    wait_for(addr, "new-token-8c2d", true).await;
    wait_for(addr, "old-token-3b1f", true).await;
    std::fs::write(&file, "new-token-8c2d\n").unwrap();
    hup();
    wait_for(addr, "old-token-3b1f", false).await;
    std::fs::write(&file, "x y z\n").unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for(addr, "new-token-8c2d", true).await;
    wait_for(addr, "x", false).await;
    // The connection made with the old token is still served.
    let mut kept = kept;
    let pong = kept
        .request(twopc_protocol::Message::Ping { nonce: 7 })
        .await;
    assert_eq!(pong, twopc_protocol::Message::Pong { nonce: 7 });
}
