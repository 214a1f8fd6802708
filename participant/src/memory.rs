//! A non-durable in-memory [`Resource`], for tests and demos of the protocol.
//!
//! It records prepared transactions and outcomes in a map and applies nothing anywhere; it is
//! *not* a real participant (a restart forgets everything). Its [`MemoryResource::gate`]
//! lets a test hold prepares in flight.

use crate::resource::{OnePhaseAnswer, OnePhaseContext, OnePhaseOutcome, PrepareOutcome, Resource};
use crate::ParticipantError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, NoClass, Operations, ParticipantKind, PreparedTx, TxId,
};

#[derive(Default)]
struct State {
    prepared: HashMap<TxId, PreparedTx>,
    outcomes: HashMap<TxId, Decision>,
}

/// An in-memory resource (see the module docs).
#[derive(Clone)]
pub struct MemoryResource {
    kind: ParticipantKind,
    state: Arc<Mutex<State>>,
    gate: Option<Arc<Semaphore>>,
}

impl MemoryResource {
    /// An empty resource that reports itself as `kind`.
    pub fn new(kind: ParticipantKind) -> Self {
        MemoryResource {
            kind,
            state: Arc::default(),
            gate: None,
        }
    }

    /// Makes every prepare wait for a permit of the returned semaphore (which starts empty).
    pub fn gate(mut self) -> (Self, Arc<Semaphore>) {
        let s = Arc::new(Semaphore::new(0));
        self.gate = Some(s.clone());
        (self, s)
    }

    /// The decision recorded for `txid`, once it was settled (or committed in one phase).
    pub fn outcome(&self, txid: &TxId) -> Option<Decision> {
        self.lock().outcomes.get(txid).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settle(&self, txid: &TxId, decision: Decision) -> AckResult {
        let mut st = self.lock();
        if st.prepared.remove(txid).is_some() {
            st.outcomes.insert(txid.clone(), decision);
            return AckResult::Applied;
        }
        match st.outcomes.get(txid) {
            Some(d) if *d == decision => AckResult::AlreadyApplied,
            Some(_) => AckResult::Conflict,
            None => AckResult::NotPrepared,
        }
    }
}

impl Resource for MemoryResource {
    fn kind(&self) -> ParticipantKind {
        self.kind
    }

    async fn prepare(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        _cx: crate::resource::PrepareContext<'_>,
    ) -> Result<PrepareOutcome, ParticipantError> {
        if let Some(g) = &self.gate {
            g.acquire()
                .await
                .map_err(ParticipantError::resource)?
                .forget();
        }
        if ops.is_empty() {
            return Ok(PrepareOutcome::ReadOnly);
        }
        let mut st = self.lock();
        match st.outcomes.get(txid) {
            Some(Decision::Commit) => return Ok(PrepareOutcome::Yes),
            Some(Decision::Abort) => {
                return Ok(PrepareOutcome::No {
                    reason: format!("transaction {txid} was already aborted"),
                    class: NoClass::Final,
                })
            }
            None => {}
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        st.prepared.entry(txid.clone()).or_insert(PreparedTx {
            txid: txid.clone(),
            coordinator: coordinator.clone(),
            prepared_at_ms: now,
        });
        Ok(PrepareOutcome::Yes)
    }

    // One coordinator per memory resource (the model checker's, the tests'): txids are its.
    async fn commit(
        &self,
        _coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        Ok(self.settle(txid, Decision::Commit))
    }

    async fn abort(
        &self,
        _coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        Ok(self.settle(txid, Decision::Abort))
    }

    async fn commit_one_phase(
        &self,
        _coordinator: &CoordinatorId,
        txid: &TxId,
        _ops: &Operations,
        _cx: OnePhaseContext<'_>,
    ) -> Result<OnePhaseAnswer, ParticipantError> {
        let mut st = self.lock();
        let result = match st.outcomes.get(txid) {
            Some(Decision::Commit) => AckResult::AlreadyApplied,
            Some(Decision::Abort) => {
                return Ok(OnePhaseAnswer::Decided(OnePhaseOutcome {
                    decision: Decision::Abort,
                    result: AckResult::AlreadyApplied,
                    reason: Some("aborted earlier".into()),
                }))
            }
            None => {
                st.outcomes.insert(txid.clone(), Decision::Commit);
                AckResult::Applied
            }
        };
        Ok(OnePhaseAnswer::Decided(OnePhaseOutcome {
            decision: Decision::Commit,
            result,
            reason: None,
        }))
    }

    async fn list_prepared(&self) -> Result<Vec<PreparedTx>, ParticipantError> {
        let mut v: Vec<PreparedTx> = self.lock().prepared.values().cloned().collect();
        v.sort_by_key(|p| p.prepared_at_ms);
        Ok(v)
    }
}
