//! Shared rig of the reliability suites (crash matrix, network faults, soak, bad input): the
//! whole [`Stack`] with a [`FaultProxy`] in front of each participant, a client that records
//! what it was told about every transaction, and the summary table every suite prints.
//!
//! The proxies are put in place without touching the stack: the coordinator's config file is
//! rewritten to dial the proxies, and the coordinator restarted (same data directory).

use crate::fault_proxy::FaultProxy;
use crate::invariants::{self, CheckOptions, Report, Told, TxRecord};
use crate::stack::{Binaries, Stack, StackOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twopc_protocol::api::{Outcome, TransactionResponse};

/// Fails with a clear message when the extension is not installed.
pub fn require_extension() {
    let control = "/usr/share/postgresql/15/extension/pg_twopc_ext.control";
    assert!(
        std::path::Path::new(control).exists(),
        "{control} is missing: install the extension first (`cargo pgrx install` in \
         pg_twopc_ext/, as scripts/test.sh does)"
    );
}

/// The stack, its proxies, the client and the record of every transaction.
pub struct Rig {
    /// The stack (public: tests crash its pieces).
    pub stack: Stack,
    /// Proxy in front of the bank (Postgres) participant.
    pub bank: FaultProxy,
    /// Proxy in front of the ledger (Redis) participant.
    pub ledger: FaultProxy,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Every transaction submitted so far and what the client heard.
    pub txs: Vec<TxRecord>,
    /// Options for checks.
    pub check_opts: CheckOptions,
    counter: Arc<AtomicU64>,
    prefix: String,
}

/// The outcome of one HTTP submission (`None`: no response at all, e.g. the connection was
/// lost or the request timed out). Only 202 and a lost connection leave the client without an
/// answer; a 5xx or an unreadable 200 is an answer the API must never give.
pub fn told_of(status: Option<u16>, body: Option<&TransactionResponse>) -> Told {
    match (status, body) {
        (None, _) | (Some(202), _) => Told::Unknown,
        (Some(200), Some(r)) => match r.outcome {
            Outcome::Committed => Told::Committed,
            Outcome::Aborted => Told::Aborted,
            Outcome::InProgress => Told::Unknown,
            // The coordinator says the stores may disagree: no promise either way to check.
            Outcome::HeuristicMixed | Outcome::HeuristicHazard => Told::Unknown,
        },
        (Some(200), None) => Told::BadAnswer(0),
        (Some(s), _) if (400..500).contains(&s) => Told::Refused,
        (Some(s), _) => Told::BadAnswer(s),
    }
}

impl Rig {
    /// Starts the stack and the proxies and points the coordinator at the proxies.
    pub async fn start(bins: Binaries, opts: StackOptions, prefix: &str) -> Rig {
        require_extension();
        let initial_balance = opts.initial_balance;
        let stack = tokio::task::spawn_blocking(move || Stack::start(&bins, opts))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("stack did not start: {e}"));
        let bank = FaultProxy::start(&stack.bank_addr).await.unwrap();
        let ledger = FaultProxy::start(&stack.ledger_addr).await.unwrap();
        let mut rig = Rig {
            stack,
            bank,
            ledger,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap(),
            txs: Vec::new(),
            check_opts: CheckOptions {
                initial_balance,
                ..CheckOptions::default()
            },
            counter: Arc::new(AtomicU64::new(0)),
            prefix: prefix.to_owned(),
        };
        let cfg = std::fs::read_to_string(&rig.stack.coordinator_config).unwrap();
        let cfg = cfg
            .replace(
                &format!("ws://{}/", rig.stack.bank_addr),
                &format!("ws://{}/", rig.bank.addr()),
            )
            .replace(
                &format!("ws://{}/", rig.stack.ledger_addr),
                &format!("ws://{}/", rig.ledger.addr()),
            );
        std::fs::write(&rig.stack.coordinator_config, cfg).unwrap();
        rig.restart_coordinator(&[]).await;
        rig
    }

    /// Restarts the coordinator (kill -9 first if it runs) with failpoints armed; waits until
    /// it is connected to both participants unless failpoints are armed.
    pub async fn restart_coordinator(&mut self, failpoints: &[&str]) {
        self.stack.restart_coordinator(failpoints).unwrap();
        self.wait_connected().await;
    }

    /// Waits until the coordinator sees both participants (60 s bound).
    pub async fn wait_connected(&self) {
        let url = format!("{}/v1/participants", self.stack.coordinator_url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if v.as_array()
                        .is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["connected"] == true))
                    {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "coordinator did not reconnect to both participants within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fresh txid.
    pub fn next_txid(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A transfer body with the given txid.
    pub fn transfer_body(&self, txid: &str, from: u64, to: u64, amount: i64) -> serde_json::Value {
        // The id goes in as text: bad-input tests send ids no TxId would hold.
        let mut body =
            serde_json::to_value(bank_ledger_transfer(from, to, amount)).expect("a request");
        body["id"] = txid.into();
        body
    }

    /// Submits in the background; the handle yields what the client was told.
    pub fn spawn_post(&self, body: serde_json::Value) -> tokio::task::JoinHandle<Told> {
        let http = self.http.clone();
        let url = format!("{}/v1/transactions", self.stack.coordinator_url);
        tokio::spawn(async move { post_told(&http, &url, &body).await })
    }

    /// Submits a transfer in the background; once its answer is in, record it with
    /// [`Rig::record`] (the returned record says what the transfer does; set its `told`).
    pub fn spawn_transfer(
        &self,
        from: u64,
        to: u64,
        amount: i64,
    ) -> (TxRecord, tokio::task::JoinHandle<Told>) {
        let txid = self.next_txid();
        let body = self.transfer_body(&txid, from, to, amount);
        (
            TxRecord::transfer(txid, Told::Unknown, from, to, amount),
            self.spawn_post(body),
        )
    }

    /// Records a transaction with what its client was told.
    pub fn record(&mut self, mut tx: TxRecord, told: Told) {
        tx.told = told;
        self.txs.push(tx);
    }

    /// Runs one transfer to completion and records it.
    pub async fn transfer(&mut self, from: u64, to: u64, amount: i64) -> Told {
        let (tx, h) = self.spawn_transfer(from, to, amount);
        let told = h.await.unwrap_or(Told::Unknown);
        self.record(tx, told);
        told
    }

    /// Arms a coordinator fault through its HTTP API.
    pub async fn coordinator_fault(&self, body: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/v1/faults", self.stack.coordinator_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    }

    /// Checks every invariant over all transactions so far (blocking work off the runtime).
    pub async fn check(&self) -> Report {
        let stack: &Stack = &self.stack;
        let txs = self.txs.clone();
        let opts = self.check_opts.clone();
        // psql and the blocking Redis client: fine on a multi-thread runtime's worker.
        tokio::task::block_in_place(|| invariants::check(stack, &txs, &opts))
    }
}

/// What a submission spawned with [`Rig::spawn_post`] / [`Rig::spawn_transfer`] was told,
/// waiting at most 40 s (beyond the coordinator's client timeout): `Unknown` when no answer
/// came.
pub async fn told_in_time(h: tokio::task::JoinHandle<Told>) -> Told {
    tokio::time::timeout(Duration::from_secs(40), h)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(Told::Unknown)
}

/// POSTs a transaction and classifies the answer.
pub async fn post_told(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Told {
    post_told_reason(http, url, body).await.0
}

/// Like [`post_told`], with the abort reason (or the HTTP failure) when there is one.
pub async fn post_told_reason(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (Told, Option<String>) {
    match http.post(url).json(body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await;
            let parsed = text
                .as_deref()
                .ok()
                .and_then(|t| serde_json::from_str::<TransactionResponse>(t).ok());
            let reason = match (&parsed, &text) {
                (Some(b), _) => b.reason.clone(),
                (None, Ok(t)) => Some(format!(
                    "http {status}: {}",
                    t.chars().take(200).collect::<String>()
                )),
                (None, Err(e)) => Some(format!("http {status}, body unreadable: {e}")),
            };
            // A body lost mid-read is a lost connection, not a bad answer.
            let status = if text.is_err() && status == 200 {
                None
            } else {
                Some(status)
            };
            (told_of(status, parsed.as_ref()), reason)
        }
        Err(e) => (Told::Unknown, Some(format!("request failed: {e}"))),
    }
}

/// One line of a suite's summary table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub name: String,
    /// Faults injected.
    pub faults: u64,
    /// Transactions checked.
    pub txs: usize,
    /// Violations found.
    pub violations: usize,
    /// Wall time.
    pub ms: u128,
    /// Free text (what happened, or what failed).
    pub note: String,
}

/// Prints the summary table of a suite and returns the total number of violations.
pub fn print_summary(suite: &str, rows: &[Row]) -> usize {
    let mut out = String::new();
    out.push_str(&format!(
        "\n=== {suite}: summary ===\n{:<58} {:>6} {:>5} {:>10} {:>8}  note\n",
        "scenario", "faults", "txs", "violations", "ms"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:<58} {:>6} {:>5} {:>10} {:>8}  {}\n",
            r.name, r.faults, r.txs, r.violations, r.ms, r.note
        ));
    }
    let total_v: usize = rows.iter().map(|r| r.violations).sum();
    let total_f: u64 = rows.iter().map(|r| r.faults).sum();
    let total_t: usize = rows.iter().map(|r| r.txs).sum();
    out.push_str(&format!(
        "TOTAL: {} scenarios, {} faults injected, {} transaction checks, {} violations\n",
        rows.len(),
        total_f,
        total_t,
        total_v
    ));
    println!("{out}");
    total_v
}

/// A bank transfer between the stacks' `bank` (Postgres) and `ledger` (Redis) participants.
pub fn bank_ledger_transfer(
    from: u64,
    to: u64,
    amount: i64,
) -> twopc_protocol::api::TransactionRequest {
    let name = |n: &str| twopc_protocol::ParticipantName::new(n).expect("a valid name");
    twopc_coordinator::load::transfer(&name("bank"), &name("ledger"), from, to, amount)
}

/// Whether `text` (an API response, a vote reason, an SQL error) carries a Rust backtrace or
/// a source path of the build machine, which nothing a user reads may.
pub fn shows_rust_internals(text: &str) -> bool {
    [
        "stack backtrace",
        "panicked at",
        "/rustc/",
        ".cargo/registry",
        "RUST_BACKTRACE",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}
