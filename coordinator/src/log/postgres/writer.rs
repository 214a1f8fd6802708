//! The PostgreSQL log's writer task: group commit, with the lease check in every write.
//!
//! Appends arrive over a channel in call order. The task takes everything queued (up to
//! `max_batch` records), folds it into rows (a decision and its End in the same batch become
//! one row that is already ended) and writes the batch as **one statement**, so one round
//! trip and one commit (one WAL flush, and with synchronous replication one standby
//! confirmation) make a whole batch durable. While that statement runs, new appends queue up
//! and ride the next one. A batch of lazy records only (End) waits up to `linger` for company
//! first, so an idle log does not spend a commit per lazy record.
//!
//! The statement's first CTE locks the lease row `FOR SHARE` at this holder's epoch; the
//! inserts and updates happen only if it found the row, and the statement reports whether it
//! did. No row means the lease is gone (expired, or claimed by another holder at a higher
//! epoch): the batch wrote nothing, every receipt fails with [`LogError::Fenced`] and so does
//! every later append. See [`super::lease`] for why that cannot race with a claim.
//!
//! A connection error leaves the batch's fate unknown: the task reconnects (a multi-host URL
//! with `target_session_attrs=read-write` then finds a promoted standby) and writes the same
//! batch again, which is idempotent (`ON CONFLICT DO NOTHING` for decisions, `ended = true`
//! for Ends). It retries as long as the lease task keeps the process alive; receipts resolve
//! only once a write is known to have committed.

use super::lease::Lease;
use super::{is_transient, Connector, PgShared};
use crate::log::{LogError, LogEvent, LogRecord, Lsn};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

/// What the handle sends the task.
pub(super) enum Request {
    /// A record; `done` for a forced one.
    Append {
        record: LogRecord,
        done: Option<oneshot::Sender<Result<Lsn, LogError>>>,
    },
    /// Make everything so far durable.
    Flush(oneshot::Sender<Result<Lsn, LogError>>),
    /// Write what is queued, then stop.
    Close(oneshot::Sender<()>),
}

/// The writer task's state.
pub(super) struct Writer {
    pub(super) connector: Connector,
    pub(super) client: Option<Client>,
    pub(super) lease: Lease,
    pub(super) shared: Arc<PgShared>,
    pub(super) next_lsn: Lsn,
    pub(super) max_batch: usize,
    pub(super) linger: Duration,
}

/// One `decision` row to insert.
struct Row {
    txid: String,
    decision: &'static str,
    participants: String,
    body_hash: i64,
    at_ms: i64,
    reason: Option<String>,
    client: Option<String>,
    ended: bool,
    heuristics: String,
}

/// A batch folded into the statement's parameters.
#[derive(Default)]
struct Folded {
    rows: Vec<Row>,
    /// Ends of transactions decided in an earlier batch: (txid, heuristics as JSON).
    ends: Vec<(String, String)>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// The row a decision record inserts (`None` for an End).
fn decision_row(r: &LogRecord) -> Option<Row> {
    let (decision, participants, body_hash, at_ms, reason, client) = match r {
        LogRecord::Commit {
            participants,
            body_hash,
            at_ms,
            client,
            ..
        } => ("commit", json(participants), body_hash, at_ms, None, client),
        LogRecord::Abort {
            body_hash,
            reason,
            at_ms,
            client,
            ..
        } => (
            "abort",
            "[]".into(),
            body_hash,
            at_ms,
            reason.clone(),
            client,
        ),
        LogRecord::End { .. } => return None,
    };
    Some(Row {
        txid: r.txid().as_str().to_owned(),
        decision,
        participants,
        body_hash: *body_hash as i64,
        at_ms: *at_ms as i64,
        reason,
        client: client.as_ref().map(|c| c.as_str().to_owned()),
        ended: false,
        heuristics: "[]".into(),
    })
}

fn fold(records: &[LogRecord]) -> Folded {
    let mut f = Folded::default();
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut end_at: HashMap<String, usize> = HashMap::new();
    for r in records {
        if let Some(row) = decision_row(r) {
            // The first decision for a txid wins.
            if !at.contains_key(&row.txid) {
                at.insert(row.txid.clone(), f.rows.len());
                f.rows.push(row);
            }
            continue;
        }
        let LogRecord::End { txid, heuristics } = r else {
            continue;
        };
        let key = txid.as_str();
        if let Some(&i) = at.get(key) {
            let row = &mut f.rows[i];
            row.ended = true;
            row.participants = "[]".into();
            row.heuristics = json(heuristics);
        } else if let Some(&i) = end_at.get(key) {
            f.ends[i].1 = json(heuristics);
        } else {
            end_at.insert(key.to_owned(), f.ends.len());
            f.ends.push((key.to_owned(), json(heuristics)));
        }
    }
    f
}

/// The batch statement: lease check, inserts, Ends; returns how many lease rows it found (1,
/// or 0 when fenced). The data-modifying CTEs run to completion whether or not the final
/// SELECT reads them (PostgreSQL's rule for `WITH`), so nothing else is returned.
const WRITE: &str = "
WITH lease AS (
    SELECT epoch FROM twopc_log.lease
    WHERE coordinator_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
    FOR SHARE
), ins AS (
    INSERT INTO twopc_log.decision AS d (coordinator_id, txid, decision, participants,
        body_hash, at_ms, reason, client, ended, heuristics, epoch)
    SELECT $1, r.txid, r.decision, r.participants::jsonb, r.body_hash, r.at_ms, r.reason,
        r.client, r.ended, r.heuristics::jsonb, $3
    FROM unnest($4::text[], $5::text[], $6::text[], $7::int8[], $8::int8[], $9::text[],
        $10::text[], $11::bool[], $12::text[])
        AS r(txid, decision, participants, body_hash, at_ms, reason, client, ended, heuristics)
    WHERE EXISTS (SELECT 1 FROM lease)
    ON CONFLICT (coordinator_id, txid) DO NOTHING
), fin AS (
    UPDATE twopc_log.decision AS d
    SET ended = true, participants = '[]', heuristics = e.heuristics::jsonb
    FROM unnest($13::text[], $14::text[]) AS e(txid, heuristics)
    WHERE d.coordinator_id = $1 AND d.txid = e.txid AND EXISTS (SELECT 1 FROM lease)
)
SELECT count(*) FROM lease";

/// What one round of the writer collected.
#[derive(Default)]
struct Batch {
    records: Vec<LogRecord>,
    waiters: Vec<(Lsn, oneshot::Sender<Result<Lsn, LogError>>)>,
    close: Option<oneshot::Sender<()>>,
    /// Someone waits for durability: write at once.
    forced: bool,
}

impl Batch {
    /// Takes one request; LSNs are given in channel order, i.e. in call order.
    fn add(&mut self, req: Request, next_lsn: &mut Lsn) {
        match req {
            Request::Append { record, done } => {
                let lsn = *next_lsn;
                *next_lsn += 1;
                self.records.push(record);
                if let Some(d) = done {
                    self.forced = true;
                    self.waiters.push((lsn, d));
                }
            }
            Request::Flush(d) => {
                self.forced = true;
                self.waiters.push((*next_lsn - 1, d));
            }
            Request::Close(d) => {
                self.forced = true;
                self.close = Some(d);
            }
        }
    }
}

enum Written {
    Durable,
    Fenced,
}

impl Writer {
    /// Runs until the handle is dropped or closed.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut pending: Option<Request> = None;
        loop {
            let first = match pending.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => return,
                },
            };
            let mut batch = Batch::default();
            batch.add(first, &mut self.next_lsn);
            let linger_until = Instant::now() + self.linger;
            while batch.records.len() < self.max_batch && batch.close.is_none() {
                match rx.try_recv() {
                    Ok(r) => {
                        batch.add(r, &mut self.next_lsn);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                if batch.forced {
                    break;
                }
                // Lazy records only: wait a little for company (or a forced record).
                let left = linger_until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some(r)) => batch.add(r, &mut self.next_lsn),
                    Ok(None) | Err(_) => break,
                }
            }
            let result = if let Some(e) = self.shared.failure.get() {
                Err(e.clone())
            } else if batch.records.is_empty() {
                Ok(())
            } else {
                self.write(&batch.records).await
            };
            for (lsn, w) in batch.waiters {
                let _ = w.send(result.clone().map(|_| lsn));
            }
            if let Some(c) = batch.close {
                let _ = c.send(());
                return;
            }
            // Anything that arrived while writing is the next batch.
            if let Ok(r) = rx.try_recv() {
                pending = Some(r);
            }
        }
    }

    /// Writes one batch until it is durable, fenced or fails for good.
    async fn write(&mut self, records: &[LogRecord]) -> Result<(), LogError> {
        let f = fold(records);
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_write(&f).await {
                Ok(Written::Durable) => break,
                Ok(Written::Fenced) => {
                    self.shared.fenced_writes.fetch_add(1, Ordering::Relaxed);
                    return Err(self.shared.lose(
                        &self.lease,
                        format!(
                            "a decision write found the lease on coordinator id {} gone \
                             (expired, or claimed by another holder after epoch {})",
                            self.lease.coordinator, self.lease.epoch
                        ),
                    ));
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(
                        "decision log: writing {} records failed ({}); reconnecting and \
                         writing them again",
                        records.len(),
                        super::describe(&e)
                    );
                    self.client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    let e = LogError::Failed {
                        cause: format!(
                            "PostgreSQL refused a decision write: {}",
                            super::describe(&e)
                        ),
                    };
                    let _ = self.shared.failure.set(e.clone());
                    return Err(e);
                }
            }
        }
        let micros = started.elapsed().as_micros() as u64;
        let s = &self.shared;
        s.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        s.commits.fetch_add(1, Ordering::Relaxed);
        let first = self.next_lsn - records.len() as u64;
        for (i, r) in records.iter().enumerate() {
            let _ = s.events.send(LogEvent::Write {
                kind: r.kind(),
                txid: Some(r.txid().clone()),
                lsn: first + i as u64,
            });
        }
        let _ = s.events.send(LogEvent::Fsync {
            records: records.len() as u32,
            micros,
        });
        Ok(())
    }

    async fn try_write(&mut self, f: &Folded) -> Result<Written, tokio_postgres::Error> {
        if self.client.is_none() {
            self.client = Some(self.connector.connect().await?);
        }
        let client = self.client.as_ref().expect("connected above");
        let txids: Vec<&str> = f.rows.iter().map(|r| r.txid.as_str()).collect();
        let decisions: Vec<&str> = f.rows.iter().map(|r| r.decision).collect();
        let participants: Vec<&str> = f.rows.iter().map(|r| r.participants.as_str()).collect();
        let hashes: Vec<i64> = f.rows.iter().map(|r| r.body_hash).collect();
        let at: Vec<i64> = f.rows.iter().map(|r| r.at_ms).collect();
        let reasons: Vec<Option<&str>> = f.rows.iter().map(|r| r.reason.as_deref()).collect();
        let clients: Vec<Option<&str>> = f.rows.iter().map(|r| r.client.as_deref()).collect();
        let ended: Vec<bool> = f.rows.iter().map(|r| r.ended).collect();
        let heur: Vec<&str> = f.rows.iter().map(|r| r.heuristics.as_str()).collect();
        let end_txids: Vec<&str> = f.ends.iter().map(|e| e.0.as_str()).collect();
        let end_heur: Vec<&str> = f.ends.iter().map(|e| e.1.as_str()).collect();
        let row = client
            .query_one(
                WRITE,
                &[
                    &self.lease.coordinator,
                    &self.lease.holder,
                    &self.lease.epoch,
                    &txids,
                    &decisions,
                    &participants,
                    &hashes,
                    &at,
                    &reasons,
                    &clients,
                    &ended,
                    &heur,
                    &end_txids,
                    &end_heur,
                ],
            )
            .await?;
        let lease_rows: i64 = row.get(0);
        Ok(if lease_rows == 1 {
            Written::Durable
        } else {
            Written::Fenced
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twopc_protocol::TxId;

    fn t(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    #[test]
    fn a_decision_and_its_end_in_one_batch_are_one_ended_row() {
        let f = fold(&[
            LogRecord::Commit {
                txid: t("a"),
                participants: vec![],
                body_hash: 1,
                at_ms: 5,
                client: None,
            },
            LogRecord::Abort {
                txid: t("a"),
                body_hash: 1,
                reason: None,
                at_ms: 6,
                client: None,
            },
            LogRecord::End {
                txid: t("a"),
                heuristics: vec![],
            },
            LogRecord::End {
                txid: t("old"),
                heuristics: vec![],
            },
            LogRecord::End {
                txid: t("old"),
                heuristics: vec![],
            },
        ]);
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].decision, "commit", "the first decision wins");
        assert!(f.rows[0].ended);
        assert_eq!(f.ends.len(), 1, "an End for an earlier batch's row, once");
        assert_eq!(f.ends[0].0, "old");
    }
}
