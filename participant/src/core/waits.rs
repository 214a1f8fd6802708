//! Lock waits: a prepare that needs a lock another transaction holds waits for it, and gives
//! way when waiting could be part of a deadlock that no single store can see.
//!
//! # The rules
//!
//! * **Wait, don't refuse.** A resource that finds a lock held answers
//!   [`PrepareOutcome::Blocked`] (Redis: the prepare script found a key locked and changed
//!   nothing). The call becomes [`Stage::Waiting`] on the holder, at the head of its txid's
//!   queue, and runs again the moment the holder settles here (its Commit or Abort completed):
//!   a prepared holder usually finishes within milliseconds. Only the first in line for each
//!   lock the holder had runs again (`wake_waiters_of`); the others wait for
//!   it as the new holder, and are handed the lock in turn when a run ends without taking it
//!   (`hand_on`). A newly arrived prepare may still take a free lock first:
//!   the resource's own order (Redis runs one script at a time) decides that race.
//! * **One-phase commits wait too.** A CommitOnePhase is asked with `may_wait`, and a
//!   resource that finds a key held answers [`Answer::OnePhaseBlocked`] having done and
//!   recorded nothing; it waits as a prepare does, but never gives way (it holds nothing
//!   while it waits, so no cycle runs through it) and is not cut short by the coordinator
//!   (which re-sends a CommitOnePhase rather than aborting it). When the bound runs out it
//!   is not answered from here: it runs once more without `may_wait`, and the resource
//!   commits it (the key is free by now) or aborts it *and records the abort*, so a
//!   repeated CommitOnePhase answers that abort instead of committing after the client
//!   heard "aborted" (the model checker finds exactly that when the abort is made up here).
//!   A wait whose connection closes ends with no answer and no record: the coordinator
//!   sends it again when it reconnects.
//! * **The lock-wait bound.** A prepare that has waited `lock_wait_ms` in all (or until the
//!   coordinator's prepare timeout would pass) votes NO, class `conflict`: another attempt
//!   can succeed.
//! * **Give way to the older.** Every transaction carries a [`Priority`] (its age, kept across
//!   the coordinator's retries). A transaction may wait for a *younger* holder up to the
//!   bound, but for an *older* one only `give_way_ms`; then it votes NO, class `conflict`
//!   ("gave way"). A holder this core has no priority for (prepared before a restart, or
//!   sent without one) counts as older. A resource that waits inside its own calls
//!   (PostgreSQL's lock manager) is asked for its waits every `wait_check_ms` while a
//!   prepare has run that long, and a waiter that must give way is [`Output::Cancel`]led;
//!   PostgreSQL's lock timeout is the bound there, and its own deadlock detector still covers
//!   cycles inside PostgreSQL.
//! * **Waiting ends with the transaction.** An Abort for a transaction whose prepare is
//!   waiting ends the wait at once (voting NO) rather than queueing behind it; so does the
//!   loss of the connection the Prepare came on (the coordinator aborts a transaction whose
//!   participant disconnected before voting).
//!
//! The coordinator by default prepares its participants one at a time in name order, so its
//! own transactions cannot deadlock across stores at all (DESIGN.md, "Contention"); giving way
//! is what keeps the system deadlock-free when they are prepared in parallel, when a client's
//! statements lock in different orders, or when several coordinators share participants.
//!
//! # Why no deadlock outlives `give_way_ms`
//!
//! A deadlock is a cycle of transactions each waiting for the next, possibly across stores:
//! T1 holds a Postgres row and waits here for a Redis key T2 holds, T2 waits in Postgres for
//! T1's row. Ages are totally ordered ([`twopc_protocol::priority::older`]), so going round
//! any cycle, some member waits for an older one (the youngest member does). That wait lasts
//! at most `give_way_ms` (plus one `wait_check_ms` inside PostgreSQL), then that member votes
//! NO, the coordinator aborts it, its locks go, and the cycle is broken. A member waiting for
//! a younger one is never the one that gives way, so the oldest transaction in the system
//! never gives way to anyone: it waits only for younger transactions, each of which is either
//! prepared (it waits for nothing and settles soon) or gives way to it. That is why the
//! coordinator keeps a transaction's priority across attempts: a retried transaction only gets
//! older, until it is the oldest and commits (wait-die, with a grace period so that the common
//! case, a young transaction behind an old prepared holder, waits instead of dying).

use super::io::{Answer, CallId, Now, Output};
use super::{Participant, Stage};
use crate::resource::{Blocked, PrepareOutcome, Wait};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use twopc_protocol::priority::older;
use twopc_protocol::{NoClass, Priority, TxId};

/// A call's lock wait (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LockWait {
    /// When it first found a lock held (the bound counts from here).
    pub(super) since_ms: u64,
    /// Who holds what it waits for now.
    pub(super) holder: TxId,
    /// What is locked.
    pub(super) what: String,
    /// When it started waiting for this holder (giving way counts from here).
    pub(super) holder_since_ms: u64,
    /// In line behind another waiter for the same lock, which was run first when the lock
    /// came free: this one runs only once that run has ended without taking the lock
    /// (`hand_on`), or waits for it as the new holder if it took it.
    pub(super) behind: Option<CallId>,
}

/// What to do with a prepare that found a lock held.
pub(super) enum Verdict {
    /// Wait for the holder.
    Wait,
    /// Vote NO (`conflict`) with this reason.
    GiveUp(String),
}

impl Participant {
    /// The priority this core knows for `txid`: `None` when it has not seen the transaction's
    /// Prepare, `Some(None)` when the Prepare carried none.
    fn known_priority(&self, txid: &TxId) -> Option<Option<Priority>> {
        self.priorities.get(txid).copied()
    }

    /// Whether `waiter` (priority `pw`) must give way to `holder`: the holder is older, or
    /// unknown here.
    pub(super) fn must_give_way(&self, waiter: &TxId, pw: Option<Priority>, holder: &TxId) -> bool {
        match self.known_priority(holder) {
            None => true,
            Some(ph) => older((waiter, pw), (holder, ph)) == Ordering::Greater,
        }
    }

    /// The waiter's txid, priority, the time its coordinator stops waiting for the vote, and
    /// whether it gives way to older holders; `None` for a call that never waits.
    ///
    /// A one-phase commit waits like a prepare but never gives way: it holds no lock while it
    /// waits (its script takes all its keys at once, or none), so no cycle can run through it,
    /// and only the bound ends its wait. Its coordinator re-sends rather than times out.
    fn wait_terms(p: &super::Pending) -> Option<(&TxId, Option<Priority>, u64, bool)> {
        match &p.op {
            super::Call::Prepare {
                txid,
                priority,
                timeout_ms,
                ..
            } => Some((
                txid,
                *priority,
                timeout_ms.map_or(u64::MAX, |ms| p.received_ms.saturating_add(ms)),
                true,
            )),
            super::Call::CommitOnePhase {
                txid,
                priority,
                may_wait: true,
                ..
            } => Some((txid, *priority, u64::MAX, false)),
            _ => None,
        }
    }

    /// A prepare answered [`PrepareOutcome::Blocked`]: wait, or give up now.
    pub(super) fn blocked(&mut self, now: Now, call: CallId, b: Blocked) -> Verdict {
        let t = now.monotonic_ms;
        let Some(p) = self.calls.get(&call) else {
            return Verdict::GiveUp(String::new());
        };
        if Self::wait_terms(p).is_none() {
            return Verdict::GiveUp(format!("{} is locked by {}", b.what, b.holder));
        }
        let mut wait = p.wait.clone().unwrap_or(LockWait {
            since_ms: t,
            holder: b.holder.clone(),
            what: b.what.clone(),
            holder_since_ms: t,
            behind: None,
        });
        wait.behind = None;
        if wait.holder != b.holder {
            wait.holder = b.holder.clone();
            wait.holder_since_ms = t;
        }
        wait.what = b.what;
        if let Some(reason) = self.give_up_reason(p, &wait, t) {
            return Verdict::GiveUp(reason);
        }
        if let Some(p) = self.calls.get_mut(&call) {
            p.stage = Stage::Waiting;
            p.wait = Some(wait);
        }
        Verdict::Wait
    }

    /// When the earliest lock-wait bound, give-way time or wait check is due.
    pub fn next_wake_ms(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |ms: u64| next = Some(next.map_or(ms, |n| n.min(ms)));
        for p in self.calls.values() {
            if let (Stage::Waiting, Some(w)) = (p.stage, &p.wait) {
                at(self.wait_deadline(p, w));
            }
        }
        if let Some(check) = self.wait_check_due() {
            at(check);
        }
        next
    }

    /// When `w` must end: at the lock-wait bound or the coordinator's timeout, or earlier,
    /// when it gives way.
    fn wait_deadline(&self, p: &super::Pending, w: &LockWait) -> u64 {
        let Some((txid, pw, timeout_at, gives_way)) = Self::wait_terms(p) else {
            return p.received_ms;
        };
        let mut due = self.bound(w, timeout_at);
        if gives_way && self.must_give_way(txid, pw, &w.holder) {
            due = due.min(w.holder_since_ms.saturating_add(self.config.give_way_ms));
        }
        due
    }

    /// The lock-wait bound of `w`, or the coordinator's timeout if that comes first.
    fn bound(&self, w: &LockWait, timeout_at: u64) -> u64 {
        w.since_ms
            .saturating_add(self.config.lock_wait_ms)
            .min(timeout_at)
    }

    /// Why the prepare waiting as `w` must give up at `t` (the bound first, then giving way),
    /// or `None` while it may wait on.
    fn give_up_reason(&self, p: &super::Pending, w: &LockWait, t: u64) -> Option<String> {
        let (txid, pw, timeout_at, gives_way) = Self::wait_terms(p)?;
        if t >= self.bound(w, timeout_at) {
            return Some(format!(
                "{} is locked by transaction {}; gave up after waiting {} ms (the lock-wait bound)",
                w.what,
                w.holder,
                t - w.since_ms
            ));
        }
        let gives_way = gives_way
            && self.must_give_way(txid, pw, &w.holder)
            && t >= w.holder_since_ms.saturating_add(self.config.give_way_ms);
        gives_way.then(|| gave_way(&w.what, &w.holder, t - w.holder_since_ms))
    }

    /// When the resource's waits should next be listed: only for a resource that waits inside
    /// its calls, only while some prepare has run `wait_check_ms`, one listing at a time.
    fn wait_check_due(&self) -> Option<u64> {
        let every = self.config.wait_check_ms?;
        if self.checking_waits {
            return None;
        }
        let oldest = self
            .calls
            .values()
            .filter(|p| p.stage == Stage::Running && matches!(p.op, super::Call::Prepare { .. }))
            .map(|p| p.started_ms)
            .min()?;
        Some(
            oldest
                .saturating_add(every)
                .max(self.last_wait_check_ms.saturating_add(every)),
        )
    }

    /// [`super::Input::Wake`]: gives up the waits past their time and lists the resource's
    /// waits when a check is due.
    pub(super) fn wake(&mut self, now: Now, out: &mut Vec<Output>) {
        let t = now.monotonic_ms;
        let due: Vec<(CallId, String)> = self
            .calls
            .iter()
            .filter_map(|(call, p)| match (p.stage, &p.wait) {
                (Stage::Waiting, Some(w)) => self.give_up_reason(p, w, t).map(|r| (*call, r)),
                _ => None,
            })
            .collect();
        for (call, reason) in due {
            self.give_up(now, call, reason, out);
        }
        if self.wait_check_due().is_some_and(|at| at <= t) {
            self.checking_waits = true;
            self.last_wait_check_ms = t;
            self.start_listing_waits(now, out);
        }
    }

    /// Ends a waiting prepare with a NO (`conflict`), as if the resource had voted it; a
    /// waiting one-phase commit gets its last try instead, since only the resource may decide
    /// its outcome and remember it.
    pub(super) fn give_up(
        &mut self,
        now: Now,
        call: CallId,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        if self
            .calls
            .get(&call)
            .is_some_and(|p| matches!(p.op, super::Call::CommitOnePhase { .. }))
        {
            return self.last_try(now, call, out);
        }
        let no = PrepareOutcome::No {
            reason,
            class: NoClass::Conflict,
        };
        self.completed(now, call, Ok(Answer::Voted(no)), out);
    }

    /// A one-phase commit whose wait ran out runs once more, not allowed to wait: it commits
    /// if the lock is free by now, or the resource aborts it and remembers why (a repeated
    /// CommitOnePhase answers the same abort, never commits later).
    pub(super) fn last_try(&mut self, now: Now, call: CallId, out: &mut Vec<Output>) {
        let Some(p) = self.calls.get_mut(&call) else {
            return;
        };
        if let super::Call::CommitOnePhase { may_wait, .. } = &mut p.op {
            *may_wait = false;
        }
        p.wait = None;
        self.run(now, call, out);
    }

    /// `holder` has just settled here: for each lock it held that calls wait for, the first
    /// in line (the longest waiting) runs again, and the others line up behind it. Running
    /// them all would cost a script per waiter at every hand-over (Redis runs one at a time:
    /// one wins, the rest find the winner holding the lock and wait again), so a queue of n
    /// would run n scripts per transaction that passes through.
    pub(super) fn wake_waiters_of(&mut self, now: Now, holder: &TxId, out: &mut Vec<Output>) {
        let mut waiting: Vec<(u64, CallId, String)> = self
            .calls
            .iter()
            .filter_map(|(c, p)| match (&p.stage, &p.wait) {
                (Stage::Waiting, Some(w)) if &w.holder == holder && w.behind.is_none() => {
                    Some((w.since_ms, *c, w.what.clone()))
                }
                _ => None,
            })
            .collect();
        waiting.sort();
        let mut first_for: BTreeMap<String, CallId> = BTreeMap::new();
        for (_, call, what) in waiting {
            match first_for.get(&what) {
                Some(&first) => self.line_up(now, call, first),
                None => {
                    first_for.insert(what, call);
                    self.run(now, call, out);
                }
            }
        }
    }

    /// Puts waiting `call` in line behind `first`, run for the same lock: it now waits for
    /// `first`'s transaction (giving way, if it must, counts from now).
    fn line_up(&mut self, now: Now, call: CallId, first: CallId) {
        let Some(first_txid) = self.calls.get(&first).and_then(|p| p.op.txid().cloned()) else {
            return;
        };
        if let Some(w) = self.calls.get_mut(&call).and_then(|p| p.wait.as_mut()) {
            w.behind = Some(first);
            w.holder = first_txid;
            w.holder_since_ms = now.monotonic_ms;
        }
    }

    /// The run of `call` has ended: those in line behind it wait for its transaction as
    /// the lock's holder if it `took` the lock (a prepare voted YES), and otherwise the first
    /// of them runs and the rest line up behind that one.
    pub(super) fn hand_on(&mut self, now: Now, call: CallId, took: bool, out: &mut Vec<Output>) {
        let mut behind: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter_map(|(c, p)| match &p.wait {
                Some(w) if p.stage == Stage::Waiting && w.behind == Some(call) => {
                    Some((w.since_ms, *c))
                }
                _ => None,
            })
            .collect();
        behind.sort();
        if took {
            for (_, c) in behind {
                if let Some(w) = self.calls.get_mut(&c).and_then(|p| p.wait.as_mut()) {
                    w.behind = None;
                }
            }
            return;
        }
        let mut rest = behind.into_iter().map(|(_, c)| c);
        let Some(next) = rest.next() else {
            return;
        };
        if let Some(w) = self.calls.get_mut(&next).and_then(|p| p.wait.as_mut()) {
            w.behind = None;
        }
        for c in rest {
            self.line_up(now, c, next);
        }
        self.run(now, next, out);
    }

    /// The waits a resource that waits inside its calls reported: cancel each waiter that
    /// must give way and has waited long enough.
    pub(super) fn waits_listed(&mut self, waits: Vec<Wait>, out: &mut Vec<Output>) {
        for w in waits {
            let Some(call) = self.queues.get(&w.waiter).and_then(|q| q.front().copied()) else {
                continue;
            };
            let Some(p) = self.calls.get(&call) else {
                continue;
            };
            let super::Call::Prepare { priority, .. } = &p.op else {
                continue;
            };
            if p.stage != Stage::Running
                || p.gave_way.is_some()
                || w.waited_ms < self.config.give_way_ms
                || !self.must_give_way(&w.waiter, *priority, &w.holder)
            {
                continue;
            }
            let reason = gave_way("a row lock", &w.holder, w.waited_ms);
            if let Some(p) = self.calls.get_mut(&call) {
                p.gave_way = Some(reason);
            }
            out.push(Output::Cancel {
                txid: w.waiter.clone(),
            });
        }
    }
}

fn gave_way(what: &str, holder: &TxId, waited_ms: u64) -> String {
    format!(
        "{what} is held by the older transaction {holder}; gave way after {waited_ms} ms \
         (deadlock avoidance: a transaction waits only briefly for an older one)"
    )
}
