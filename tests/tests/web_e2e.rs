//! The web app in real headless Chromium against the real stack (coordinator serving the
//! built app, the Postgres worker and the Redis participant): load the page, submit a transfer
//! and see its arrows and the final committed badges, trigger a NO vote and see it aborted, run
//! a fault scenario and see the recovery, check the narrow layout, watch the page's coordinator
//! take over another coordinator's id and finish its transaction. Screenshots are saved under
//! `tests/artifacts/` as test artefacts.
//!
//! Needs `web/dist` (scripts/build-web.sh; scripts/test.sh builds it before the tests).

use std::path::PathBuf;
use std::time::Duration;
use twopc_tests::browser::Browser;
use twopc_tests::stack::{Binaries, Stack, StackOptions};

fn artifacts() -> PathBuf {
    twopc_tests::repo_root().join("tests/artifacts")
}

fn bins() -> Binaries {
    Binaries {
        coordinator: env!("CARGO_BIN_EXE_twopc-coordinator-under-test").into(),
        redis_participant: env!("CARGO_BIN_EXE_twopc-redis-participant-under-test").into(),
    }
}

fn start_stack() -> Stack {
    start_stack_with(|_| {})
}

fn start_stack_with(f: impl FnOnce(&mut StackOptions)) -> Stack {
    let dist = twopc_tests::repo_root().join("web/dist");
    assert!(
        dist.join("index.html").exists(),
        "web/dist is missing: run scripts/build-web.sh first"
    );
    let mut opts = StackOptions {
        accounts: 2,
        web_dir: Some(dist),
        decision_timeout_ms: 20_000,
        ..StackOptions::default()
    };
    f(&mut opts);
    Stack::start(&bins(), opts).expect("start the stack")
}

const SECS: Duration = Duration::from_secs(30);

/// Opens the app at `width`x`height` and waits until its event stream is connected.
async fn open_app(stack: &Stack, width: u32, height: u32) -> Browser {
    let mut b = Browser::launch(width, height)
        .await
        .expect("launch chromium");
    b.goto(&format!("{}/", stack.coordinator_url))
        .await
        .unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=socket-status]')?.dataset.state === 'open'",
        SECS,
    )
    .await
    .unwrap();
    // The page names the coordinator whose transactions it shows.
    b.wait_for(
        "document.querySelector('[data-testid=coordinator-id]')?.dataset.value === 'c1'",
        SECS,
    )
    .await
    .unwrap();
    b
}

/// Accounts 1 and 2 hold `one` and `two` in both stores.
fn assert_balances(stack: &Stack, one: i64, two: i64) {
    assert_eq!(stack.pg_balances().unwrap(), vec![(1, one), (2, two)]);
    let redis = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &stack.redis.port().to_string(),
            "MGET",
            "balance:1",
            "balance:2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&redis.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![one.to_string(), two.to_string()]
    );
}

/// Waits until the participants' lanes are drawn: the configuration (GET /v1/config) has
/// arrived, without which a submit click sends nothing.
async fn wait_lanes(b: &mut Browser) {
    b.wait_for(
        "document.querySelectorAll('[data-testid^=lane-]').length >= 4",
        SECS,
    )
    .await
    .unwrap();
}

/// Waits until exactly `n` transaction rows show `outcome`.
async fn wait_rows(b: &mut Browser, outcome: &str, n: usize) {
    b.wait_for(
        &format!("document.querySelectorAll('[data-testid=tx-row][data-outcome={outcome}]').length === {n}"),
        SECS,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shows_commits_aborts_and_recovery_live() {
    let stack = start_stack();
    let mut b = open_app(&stack, 1280, 800).await;
    wait_lanes(&mut b).await;
    for lane in ["bank", "ledger"] {
        assert_eq!(
            b.count(&format!("[data-testid=lane-{lane}]"))
                .await
                .unwrap(),
            1,
            "lane {lane}"
        );
    }

    // A transfer: arrows are drawn, both participants end committed.
    b.click("submit-transfer").await.unwrap();
    b.wait_for("document.querySelectorAll('.arrow-line').length > 0", SECS)
        .await
        .unwrap();
    b.screenshot(&artifacts().join("web-1-transfer-in-flight.png"))
        .await
        .unwrap();
    wait_rows(&mut b, "committed", 1).await;
    b.wait_for(
        "['bank','ledger'].every(n => document.querySelector(`[data-testid=badge-${n}]`)?.dataset.state === 'committed')",
        SECS,
    )
    .await
    .unwrap();
    b.screenshot(&artifacts().join("web-2-transfer-committed.png"))
        .await
        .unwrap();
    assert_eq!(stack.pg_balances().unwrap(), vec![(1, 90), (2, 110)]);

    // A guard failure: the ledger votes NO, the transaction shows aborted.
    b.click("submit-failing").await.unwrap();
    wait_rows(&mut b, "aborted", 1).await;
    b.screenshot(&artifacts().join("web-3-no-vote-aborted.png"))
        .await
        .unwrap();
    assert_eq!(stack.pg_balances().unwrap(), vec![(1, 90), (2, 110)]);

    // A fault scenario: the COMMIT to the ledger is held back and the ledger is partitioned;
    // the app shows it in doubt, then the heal and the recovery to committed.
    b.click("scenario-partition-phase2").await.unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=badge-ledger]')?.dataset.state === 'in-doubt'",
        SECS,
    )
    .await
    .unwrap();
    b.screenshot(&artifacts().join("web-4-partition-in-doubt.png"))
        .await
        .unwrap();
    wait_rows(&mut b, "committed", 2).await;
    b.wait_for(
        "document.querySelector('[data-testid=badge-ledger]')?.dataset.state === 'committed'",
        SECS,
    )
    .await
    .unwrap();
    b.screenshot(&artifacts().join("web-5-recovered.png"))
        .await
        .unwrap();
    // Both stores agree after the recovery.
    assert_balances(&stack, 80, 120);

    // Replay: step back through the recorded history and forward again.
    b.click("timeline-play").await.unwrap();
    b.click("timeline-back").await.unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=timeline-mode]')?.textContent.length > 0",
        SECS,
    )
    .await
    .unwrap();
    b.click("timeline-live").await.unwrap();
    assert!(
        b.console.iter().all(|c| !c.starts_with("exception")),
        "page exceptions: {:?}",
        b.console
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_fits_a_narrow_window() {
    let stack = start_stack();
    let mut b = open_app(&stack, 420, 900).await;
    b.click("submit-transfer").await.unwrap();
    wait_rows(&mut b, "committed", 1).await;
    let overflow = b
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await
        .unwrap();
    assert!(
        overflow.as_f64().unwrap_or(1e9) <= 1.0,
        "page wider than a narrow window by {overflow}px"
    );
    b.screenshot(&artifacts().join("web-6-narrow.png"))
        .await
        .unwrap();
    // The help overlay opens with '?'.
    b.eval("document.dispatchEvent(new KeyboardEvent('keydown', {key: '?', bubbles: true}))")
        .await
        .unwrap();
    b.wait_for(
        "!!document.querySelector('[data-testid=help-overlay]')",
        SECS,
    )
    .await
    .unwrap();
}

/// A heuristic outcome on screen: the COMMIT to the ledger is held back while an operator
/// (another client of the ledger participant, with its token) rolls the ledger's branch back;
/// the ledger then acknowledges the COMMIT with `conflict`. The app must show the transaction
/// as HEURISTIC (row and ledger badge), never as plainly committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_shows_a_heuristic_outcome() {
    use twopc_protocol::{Message, TxId};
    use twopc_tests::wire_client::WireClient;
    let stack = start_stack();
    let mut b = open_app(&stack, 1280, 800).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/faults", stack.coordinator_url))
        .body(r#"{"fault":"delay_next","participant":"ledger","ms":1500,"msg_type":"commit"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = twopc_tests::reliability::bank_ledger_transfer(1, 2, 10);
    body.id = Some(twopc_protocol::TxId::new("web-heuristic").unwrap());
    let url = format!("{}/v1/transactions", stack.coordinator_url);
    let client = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    // Once the ledger holds it prepared, the operator rolls it back.
    let port = stack.redis.port().to_string();
    let prepared = tokio::task::block_in_place(|| {
        twopc_tests::util::wait_until(SECS, || {
            std::process::Command::new("redis-cli")
                .args(["-p", &port, "EXISTS", "twopc:tx:web-heuristic"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
                .unwrap_or(false)
        })
    });
    assert!(prepared, "the ledger never prepared it");
    let mut operator =
        WireClient::connect(stack.ledger_addr.parse().unwrap(), Some(&stack.tokens.1))
            .await
            .unwrap();
    let ack = operator
        .request(Message::Abort {
            txid: TxId::new("web-heuristic").unwrap(),
            reason: Some("operator: heuristic rollback".into()),
            coordinator: None,
            epoch: None,
        })
        .await;
    assert!(matches!(ack, Message::Ack { .. }), "{ack:?}");
    let told = client.await.unwrap();
    assert_eq!(told["outcome"], "heuristic_mixed", "{told}");
    wait_rows(&mut b, "heuristic", 1).await;
    b.wait_for(
        "['ledger','coordinator','client'].every(n => document.querySelector(`[data-testid=badge-${n}]`)?.dataset.state === 'heuristic')",
        SECS,
    )
    .await
    .unwrap();
    // Counted as heuristic, not as committed.
    b.wait_for(
        "document.querySelector('[data-testid=count-heuristic]')?.dataset.value === '1'",
        SECS,
    )
    .await
    .unwrap();
    // Let the badge colour transitions and the last arrow finish before the picture.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.screenshot(&artifacts().join("web-7-heuristic.png"))
        .await
        .unwrap();
    assert!(
        b.console.iter().all(|c| !c.starts_with("exception")),
        "page exceptions: {:?}",
        b.console
    );
}

/// Two coordinators on one PostgreSQL decision log; the page watches c1. c2 crashes right
/// after sending the first Commit of a transfer (a failpoint), leaving the transfer committed
/// in its log and prepared at a participant. c1 takes c2's id over and finishes it: the page
/// draws the takeover banner and the transfer as a row of its own, marked as c2's, committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_draws_a_takeover_and_the_transaction_it_finishes() {
    let stack = start_stack_with(|o| o.postgres_decision_log = Some(1500));
    let mut b = open_app(&stack, 1280, 800).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut c2, c2_url) = tokio::task::block_in_place(|| {
        let spawned = stack
            .spawn_coordinator_with_env(
                &bins(),
                "c2",
                0,
                dir.path(),
                &[("TWOPC_FAILPOINTS", "after_first_commit_send")],
            )
            .unwrap();
        stack.wait_connected_at(&spawned.1, SECS).unwrap();
        spawned
    });
    let mut body = twopc_tests::reliability::bank_ledger_transfer(1, 2, 10);
    body.id = Some(twopc_protocol::TxId::new("web-takeover").unwrap());
    // c2 dies before it can answer.
    let answer = reqwest::Client::new()
        .post(format!("{c2_url}/v1/transactions"))
        .json(&body)
        .send()
        .await;
    assert!(
        answer.is_err() || !answer.unwrap().status().is_success(),
        "c2 answered"
    );
    let died =
        tokio::task::block_in_place(|| twopc_tests::util::wait_until(SECS, || !c2.is_running()));
    assert!(died, "c2 did not hit its failpoint");
    let lease = || {
        stack.log_pg.as_ref().unwrap().query(
            "twopc_log",
            "SELECT split_part(holder, '@', 1) || ' ' || epoch FROM twopc_log.lease WHERE coordinator_id = 'c2'",
        )
    };
    let taken = tokio::task::block_in_place(|| {
        twopc_tests::util::wait_until(SECS, || lease().trim().starts_with("c1 "))
    });
    assert!(taken, "c1 did not take c2's id over: lease {:?}", lease());
    // c1 claims c2's expired lease and finishes the transfer; the page shows both.
    b.wait_for(
        "document.querySelectorAll('.banner-takeover').length >= 1",
        SECS,
    )
    .await
    .unwrap();
    b.wait_for(
        "[...document.querySelectorAll('[data-testid=tx-row]')].some(r => r.dataset.outcome === 'committed' && r.querySelector('[data-testid=tx-taken-over][data-coordinator=c2]'))",
        SECS,
    )
    .await
    .unwrap();
    let shown = b
        .eval("document.querySelector('[data-testid=tx-taken-over]').closest('tr').dataset.tx")
        .await
        .unwrap();
    assert_eq!(shown, serde_json::json!("web-takeover \u{b7} c2"));
    b.wait_for(
        "document.querySelector('[data-testid=count-takeovers]')?.dataset.value === '1'",
        SECS,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.screenshot(&artifacts().join("web-8-takeover.png"))
        .await
        .unwrap();
    b.eval("document.querySelector('[data-testid=tx-list]').scrollIntoView()")
        .await
        .unwrap();
    b.screenshot(&artifacts().join("web-8-takeover-list.png"))
        .await
        .unwrap();
    b.eval("window.scrollTo(0, 0)").await.unwrap();
    // Selected, its diagram shows the Commits the new holder sent and their acks.
    b.eval("document.querySelector('[data-testid=tx-taken-over]').closest('tr').click()")
        .await
        .unwrap();
    b.wait_for(
        "[...document.querySelectorAll('[data-testid=mark]')].some(i => (i.dataset.label || '').startsWith('COMMITTED (for c2)'))",
        SECS,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.screenshot(&artifacts().join("web-9-takeover-selected.png"))
        .await
        .unwrap();
    // Committed in both stores.
    assert_balances(&stack, 90, 110);
    assert!(
        b.console.iter().all(|c| !c.starts_with("exception")),
        "page exceptions: {:?}",
        b.console
    );
    c2.kill9();
}

/// A coordinator with a `[[client]]`: the page asks for a token, refuses a wrong one (asks
/// again), and with the right one shows the client and its scopes and runs a transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_asks_for_a_client_token_and_shows_its_scope() {
    const TOKEN: &str = "tok-web-3b9e1c7a5d20";
    const WATCHER: &str = "tok-web-watch-8e2a4f61";
    let digest = twopc_coordinator::clients::token_digest_hex;
    twopc_tests::secrets::register(WATCHER);
    let tables = format!(
        "\n[[client]]\nname = \"ops\"\ntoken_sha256 = [\"{}\"]\nscopes = [\"submit\", \"read\", \"events\", \"faults\"]\n\
         \n[[client]]\nname = \"watcher\"\ntoken_sha256 = [\"{}\"]\nscopes = [\"read\", \"events\"]\n",
        digest(TOKEN),
        digest(WATCHER)
    );
    let stack = start_stack_with(|o| {
        o.coordinator_tables = tables;
        o.api_token = Some(TOKEN.into());
    });
    let mut b = Browser::launch(1280, 800).await.expect("launch chromium");
    b.goto(&format!("{}/", stack.coordinator_url))
        .await
        .unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=token-prompt]') !== null",
        SECS,
    )
    .await
    .unwrap();
    b.screenshot(&artifacts().join("web-10-token-prompt.png"))
        .await
        .unwrap();
    let enter = |token: &str| {
        format!(
            "(() => {{ document.querySelector('[data-testid=token-input]').value = {}; \
             document.querySelector('[data-testid=token-submit]').click(); return true; }})()",
            serde_json::to_string(token).unwrap()
        )
    };
    // A wrong token: the page reloads (the marker set on this page is gone) and asks again.
    b.eval("window.beforeTheToken = true").await.unwrap();
    // (Each of these evaluations reloads the page, which may end the evaluation's context
    // before it answers: its result does not matter, the waits after it do.)
    let _ = b.eval(&enter("not-the-token")).await;
    b.wait_for(
        "window.beforeTheToken === undefined && document.querySelector('[data-testid=token-prompt]') !== null && sessionStorage.getItem('twopc-client-token') === 'not-the-token'",
        SECS,
    )
    .await
    .unwrap();
    // The right one: the stream opens, the page names the client and what it may do.
    let _ = b.eval(&enter(TOKEN)).await;
    b.wait_for(
        "document.querySelector('[data-testid=socket-status]')?.dataset.state === 'open'",
        SECS,
    )
    .await
    .unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=client-identity]')?.dataset.value === 'ops' && document.querySelector('[data-testid=token-prompt]') === null",
        SECS,
    )
    .await
    .unwrap();
    let scopes = b
        .eval("document.querySelector('[data-testid=client-identity]').dataset.scopes")
        .await
        .unwrap();
    assert_eq!(scopes, serde_json::json!("submit,read,events,faults"));
    // The reloaded page fetches GET /v1/config beside the identity: a click before it has
    // arrived submits nothing, and the committed row never came (seen once in the full suite).
    wait_lanes(&mut b).await;
    b.click("submit-transfer").await.unwrap();
    wait_rows(&mut b, "committed", 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.screenshot(&artifacts().join("web-11-client-token.png"))
        .await
        .unwrap();
    assert_balances(&stack, 90, 110);
    // A client that may only watch: the stream opens, submitting and faults are switched off.
    let _ = b
        .eval(&format!(
            "sessionStorage.setItem('twopc-client-token', '{WATCHER}'); location.reload(); true"
        ))
        .await;
    b.wait_for(
        "document.querySelector('[data-testid=client-identity]')?.dataset.value === 'watcher' && document.querySelector('[data-testid=socket-status]')?.dataset.state === 'open'",
        SECS,
    )
    .await
    .unwrap();
    let off = b
        .eval(
            "[!!document.querySelector('[data-testid=submit-out-of-scope]'), \
              document.querySelector('[data-testid=submit-transfer]').closest('fieldset').disabled, \
              document.querySelector('[data-testid=fault-crash]').closest('fieldset').disabled]",
        )
        .await
        .unwrap();
    assert_eq!(off, serde_json::json!([true, true, true]));
    assert!(
        b.console.iter().all(|c| !c.starts_with("exception")),
        "page exceptions: {:?}",
        b.console
    );
}

/// A sharded stack (bank on two PostgreSQL clusters, ledger on three redis-servers): every
/// shard has its lane, the shards of one participant are boxed together under its name, and
/// the page's transfer is drawn to, and ends committed on, exactly the shards its accounts
/// live on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_lanes_are_boxed_under_their_participant() {
    use twopc_tests::sharded::{ShardedOptions, ShardedStack};
    let dist = twopc_tests::repo_root().join("web/dist");
    let stack = tokio::task::block_in_place(|| {
        ShardedStack::start_with(
            &bins(),
            (2, 3, 4),
            ShardedOptions {
                web_dir: Some(dist),
                ..ShardedOptions::default()
            },
        )
    })
    .expect("start the sharded stack");
    let mut b = Browser::launch(1600, 800).await.expect("launch chromium");
    b.goto(&format!("{}/", stack.coordinator_url))
        .await
        .unwrap();
    b.wait_for(
        "document.querySelector('[data-testid=socket-status]')?.dataset.state === 'open'",
        SECS,
    )
    .await
    .unwrap();
    for (group, shards) in [("bank", 2), ("ledger", 3)] {
        b.wait_for(
            &format!(
                "document.querySelector('[data-testid=lane-group-{group}]')?.dataset.shards === '{shards}'"
            ),
            SECS,
        )
        .await
        .unwrap();
    }
    for lane in [
        "bank/pg1",
        "bank/pg2",
        "ledger/r1",
        "ledger/r2",
        "ledger/r3",
    ] {
        assert_eq!(
            b.count(&format!("[data-testid=\"lane-{lane}\"]"))
                .await
                .unwrap(),
            1,
            "lane {lane}"
        );
    }
    // The page's transfer (account 1 to account 2) ends committed on the shards those
    // accounts live on.
    let touched: Vec<String> = [1u32, 2]
        .iter()
        .flat_map(|&id| {
            [
                format!("bank/{}", ShardedStack::shard_of_row(&stack.bank_ring, id)),
                format!(
                    "ledger/{}",
                    stack.ledger_ring.route_redis(&format!("balance:{id}"))
                ),
            ]
        })
        .collect();
    b.click("submit-transfer").await.unwrap();
    let names = touched
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    b.wait_for(
        &format!(
            "[{names}].every(n => document.querySelector(`[data-testid=\"badge-${{n}}\"]`)?.dataset.state === 'committed')"
        ),
        SECS,
    )
    .await
    .unwrap();
    b.screenshot(&artifacts().join("web-9-sharded.png"))
        .await
        .unwrap();
}
