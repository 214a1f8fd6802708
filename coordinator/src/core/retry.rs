//! Running a transaction again after an abort that another attempt could avoid.
//!
//! An attempt whose abort came from a `conflict` NO (a lock wait bound exceeded, a
//! deadlock-avoidance victim, a serialization failure) is retried: its own abort runs to the
//! end as any abort does (ABORT to every participant that may hold it, presumed abort for the
//! rest), and once a jittered backoff has passed, the same operations run again with the same
//! [`Priority`] as a new protocol transaction under a new wire txid
//! ([`twopc_protocol::attempt`]). Between the two the client's transaction is in
//! [`ClientTx::Backoff`]; while an attempt of number 2 or more runs, in [`ClientTx::Running`].
//! A transaction never retried has no entry here at all: its wire txid is the client's.
//!
//! The budget is [`RetryPolicy`]: at most `max_attempts` attempts, and no attempt starts after
//! `deadline_ms` from the first submission. Backoff doubles from `backoff_ms` up to
//! `backoff_max_ms`, with "equal jitter" (half fixed, half drawn) from a small PRNG seeded by
//! the client txid and the attempt number: the core stays deterministic, and two transactions
//! that collided do not retry in lockstep.

use super::events;
use super::query::answer;
use super::transaction::Tx;
use super::{Core, Output, RequestId};
use std::collections::BTreeMap;
use twopc_protocol::api::{PhaseTimings, TransactionResponse};
use twopc_protocol::message::NoClass;
use twopc_protocol::{Operations, ParticipantName, Priority, TxId};

/// When and how often a transaction aborted by `conflict` NO votes is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all (1: never retry).
    pub max_attempts: u32,
    /// Backoff before attempt 2 (before jitter); doubles per attempt.
    pub backoff_ms: u64,
    /// Largest backoff (before jitter).
    pub backoff_max_ms: u64,
    /// No attempt starts later than this after the first submission.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    /// Suited to lock hold times of a millisecond or two: 3 ms, doubling to 100 ms, 10
    /// attempts within 5 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            backoff_ms: 3,
            backoff_max_ms: 100,
            deadline_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `next` (2 or more) of `client`: exponential, capped, then
    /// jittered over its upper half.
    pub fn backoff(&self, client: &TxId, next: u32) -> u64 {
        let exp = next.saturating_sub(2).min(32);
        let full = self
            .backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_ms)
            .max(1);
        let seed = client
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
            ^ u64::from(next);
        let half = full / 2;
        half + splitmix64(seed) % (full - half + 1)
    }
}

/// One step of SplitMix64: a well-mixed 64-bit value from any seed.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A client transaction that has been (or is about to be) retried.
#[derive(Debug, Clone)]
pub(super) enum ClientTx {
    /// Attempt 2 or later runs under this wire txid.
    Running(TxId),
    /// Waiting for the next attempt.
    Backoff(Backoff),
}

/// What the next attempt needs: the transaction as submitted, and who waits for it.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    pub(super) next_attempt: u32,
    pub(super) due_ms: u64,
    pub(super) body_hash: u64,
    pub(super) participants: BTreeMap<ParticipantName, Operations>,
    pub(super) priority: Priority,
    pub(super) waiters: Vec<RequestId>,
    pub(super) first_us: u64,
    pub(super) submitted_by: Option<String>,
}

impl Backoff {
    /// What a client is told while the next attempt has not started.
    pub(super) fn response(&self, client: &TxId, now_us: u64) -> TransactionResponse {
        let waited = super::transaction::ms(now_us.saturating_sub(self.first_us));
        let timings = PhaseTimings {
            prepare_ms: waited,
            total_ms: waited,
            ..PhaseTimings::default()
        };
        let mut r = answer(client, None, None, None, timings, Vec::new());
        r.attempts = self.next_attempt - 1;
        r.submitted_by = self.submitted_by.clone();
        r
    }
}

/// Why an aborted attempt is not run again (only asked of `conflict` aborts).
fn refusal(p: &RetryPolicy, tx: &Tx, now_ms: u64, delay: u64) -> Option<String> {
    if tx.attempt >= p.max_attempts {
        return Some(format!("{} attempts is the limit", p.max_attempts));
    }
    if now_ms + delay > tx.started_us / 1000 + p.deadline_ms {
        return Some(format!(
            "the retry deadline of {} ms would pass",
            p.deadline_ms
        ));
    }
    None
}

impl Core {
    /// Called as attempt `txid` is decided ABORT: schedules the next attempt if the abort
    /// was caused by a `conflict` NO and the budget allows, and says so (`true`). Otherwise
    /// names the attempt and, for a conflict that is not retried, why, in its reason.
    pub(super) fn retry_instead(
        &mut self,
        now_ms: u64,
        txid: &TxId,
        out: &mut Vec<Output>,
    ) -> bool {
        let policy = self.cfg.conflict_retry;
        let Some(tx) = self.txs.get_mut(txid) else {
            return false;
        };
        let next = tx.attempt + 1;
        let delay = policy.backoff(&tx.client, next);
        // One-phase: the participant's Ack carries no class, so its abort is never known to
        // be retryable. Retries off (one attempt): nothing to say about them either.
        let conflict = tx.abort_class == Some(NoClass::Conflict)
            && tx.parts.len() > 1
            && policy.max_attempts > 1;
        let refused = conflict
            .then(|| refusal(&policy, tx, now_ms, delay))
            .flatten();
        if !conflict || refused.is_some() {
            if tx.attempt > 1 || refused.is_some() {
                let why = tx.reason.take().unwrap_or_default();
                let why = match refused {
                    Some(r) => format!("attempt {}: {why}; not retried: {r}", tx.attempt),
                    None => format!("attempt {}: {why}", tx.attempt),
                };
                tx.reason = Some(twopc_protocol::reason::bounded(why));
            }
            return false;
        }
        tx.superseded = true;
        let backoff = Backoff {
            next_attempt: next,
            due_ms: now_ms + delay,
            body_hash: tx.body_hash,
            participants: tx
                .parts
                .iter()
                .map(|(n, p)| {
                    (
                        n.clone(),
                        p.ops.clone().unwrap_or(Operations::Sql(Vec::new())),
                    )
                })
                .collect(),
            priority: tx.priority,
            waiters: std::mem::take(&mut tx.waiters),
            first_us: tx.started_us,
            submitted_by: tx.submitted_by.clone(),
        };
        let client = tx.client.clone();
        out.push(events::retry_scheduled(
            txid,
            &client,
            next,
            delay,
            tx.reason.clone().unwrap_or_default(),
        ));
        self.metrics.tx_retries += 1;
        self.timers.insert((backoff.due_ms, client.clone()));
        self.clients.insert(client, ClientTx::Backoff(backoff));
        true
    }

    /// Starts the next attempt of `client` if its backoff is over.
    pub(super) fn start_due_retry(&mut self, now_ms: u64, client: &TxId, out: &mut Vec<Output>) {
        let due =
            matches!(self.clients.get(client), Some(ClientTx::Backoff(b)) if b.due_ms <= now_ms);
        if !due {
            return;
        }
        let Some(ClientTx::Backoff(b)) = self.clients.remove(client) else {
            return;
        };
        let wire = twopc_protocol::attempt::attempt_txid(client, b.next_attempt, b.priority);
        self.clients
            .insert(client.clone(), ClientTx::Running(wire.clone()));
        self.start_attempt(
            now_ms,
            wire,
            super::transitions::Attempt {
                client: client.clone(),
                number: b.next_attempt,
                first_us: b.first_us,
                body_hash: b.body_hash,
                participants: b.participants,
                priority: b.priority,
                waiters: b.waiters,
                submitted_by: b.submitted_by,
            },
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let p = RetryPolicy::default();
        let t = TxId::new("t1").unwrap();
        for next in 2..40 {
            let full = (3u64 << (next - 2).min(32)).min(100);
            let b = p.backoff(&t, next);
            assert!(b >= full / 2 && b <= full, "attempt {next}: {b} of {full}");
            assert_eq!(b, p.backoff(&t, next), "deterministic");
        }
        // Different transactions draw different waits (not all equal).
        let waits: std::collections::BTreeSet<u64> = (0..20)
            .map(|i| p.backoff(&TxId::new(format!("t{i}")).unwrap(), 6))
            .collect();
        assert!(waits.len() > 3, "{waits:?}");
    }
}
