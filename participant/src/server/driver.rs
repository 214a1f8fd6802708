//! The driver: runs the protocol core ([`crate::core`]) against a real [`Resource`], real
//! connections and real clocks.
//!
//! The core sits behind one mutex and is only ever stepped with it held, so its inputs are
//! totally ordered; nothing slow happens under the lock. Resource calls run on their own tasks
//! (tracked, so shutdown waits for them) and come back as [`Input::Completed`]. Frames go into
//! each connection's outbound queue without waiting: a queue that is full or closed is reported
//! back to the core as [`Input::Undelivered`], which decides what a lost frame means.

use super::{lock, text};
use crate::core::{Answer, Call, CloseWhy, ConnId, IfUndelivered, Input, Now, Output, Participant};
use crate::core::{CoreConfig, ResourceFailed};
use crate::resource::{OnePhaseAnswer, OnePhaseContext, Resource};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use twopc_protocol::{AckResult, Decision, Frame, Message};

pub(super) struct Driver<R> {
    resource: R,
    core: Mutex<Participant>,
    /// Outbound queues of the open connections.
    outbound: Mutex<HashMap<ConnId, mpsc::Sender<WsMessage>>>,
    epoch: Instant,
    pub(super) tracker: TaskTracker,
    /// When the wake timer is set for (monotonic ms), if at all.
    armed: Mutex<Option<u64>>,
    /// Tells the wake timer that the core wants to be woken earlier than it is set for.
    rearm: tokio::sync::Notify,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<R: Resource> Driver<R> {
    pub(super) fn new(resource: R, config: CoreConfig) -> Self {
        Driver {
            resource,
            core: Mutex::new(Participant::new(config)),
            outbound: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            tracker: TaskTracker::new(),
            armed: Mutex::new(None),
            rearm: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> Now {
        Now {
            monotonic_ms: self.epoch.elapsed().as_millis() as u64,
            unix_ms: unix_ms(),
        }
    }

    /// A new, authenticated connection: its first outbound message is the in-doubt report, or
    /// a close frame when the report cannot be read.
    pub(super) fn connected(self: &Arc<Self>, conn: ConnId, out: mpsc::Sender<WsMessage>) {
        lock(&self.outbound).insert(conn, out);
        self.input(Input::Connected { conn }, None);
    }

    pub(super) fn disconnected(self: &Arc<Self>, conn: ConnId) {
        lock(&self.outbound).remove(&conn);
        self.input(Input::Disconnected { conn }, None);
    }

    /// A frame from `conn`; returns the replies to write at once, in order.
    pub(super) fn received(self: &Arc<Self>, conn: ConnId, frame: Frame) -> Vec<Frame> {
        if let Message::Error { code, message } = &frame.msg {
            debug!(
                id = frame.id,
                ?code,
                "coordinator reported an error: {message}"
            );
        }
        self.input(Input::Received { conn, frame }, Some(conn))
    }

    pub(super) fn tick(self: &Arc<Self>) {
        self.input(Input::Tick, None);
    }

    /// Feeds [`Input::Wake`] whenever the core's [`Participant::next_wake_ms`] comes, until
    /// `stop` is cancelled.
    pub(super) async fn wake_timer(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            let at = lock(&self.core).next_wake_ms();
            *lock(&self.armed) = at;
            let sleep = match at {
                Some(ms) => tokio::time::sleep_until(self.epoch + Duration::from_millis(ms)),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep => {
                    self.input(Input::Wake, None);
                }
                _ = self.rearm.notified() => {}
            }
        }
    }

    /// Steps the core with `input` (and whatever it asks to be told next) and carries out the
    /// outputs; frames for `caller` are returned instead of queued.
    fn input(self: &Arc<Self>, input: Input, mut caller: Option<ConnId>) -> Vec<Frame> {
        let mut direct = Vec::new();
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            // Only the first step answers the caller's frame.
            let caller = caller.take();
            let (outputs, wake) = {
                let mut core = lock(&self.core);
                let outputs = core.step(self.now(), input);
                (outputs, core.next_wake_ms())
            };
            if let Some(at) = wake {
                if lock(&self.armed).is_none_or(|armed| at < armed) {
                    self.rearm.notify_one();
                }
            }
            for output in outputs {
                match output {
                    Output::Send { conn, frame, .. } if Some(conn) == caller => direct.push(frame),
                    Output::Send {
                        conn,
                        frame,
                        if_undelivered,
                    } => {
                        if !self.queue(conn, text(&frame)) {
                            if if_undelivered != IfUndelivered::Drop {
                                inputs.push_back(Input::Undelivered(if_undelivered));
                            }
                        } else if let Message::DecisionRequest { txid, .. } = &frame.msg {
                            info!(%txid, conn, "asked the coordinator for the decision");
                        }
                    }
                    Output::Call { call, op } => {
                        let driver = self.clone();
                        self.tracker.spawn(async move {
                            let result = driver.call(op).await;
                            driver.input(Input::Completed { call, result }, None);
                        });
                    }
                    Output::Cancel { txid } => {
                        let driver = self.clone();
                        self.tracker.spawn(async move {
                            debug!(%txid, "cancelling a prepare that gives way");
                            driver.resource.cancel(&txid).await;
                        });
                    }
                    Output::Close { conn, why } => {
                        let reason = match why {
                            CloseWhy::CannotListPrepared => {
                                "participant cannot read its prepared transactions; retry"
                            }
                        };
                        let frame = super::close(CloseCode::Error, reason);
                        self.queue(conn, WsMessage::Close(Some(frame)));
                    }
                }
            }
        }
        direct
    }

    fn queue(&self, conn: ConnId, msg: WsMessage) -> bool {
        lock(&self.outbound)
            .get(&conn)
            .is_some_and(|out| out.try_send(msg).is_ok())
    }

    /// Carries out one call against the resource.
    async fn call(&self, op: Call) -> Result<Answer, ResourceFailed> {
        let result = match &op {
            Call::Prepare {
                coordinator,
                txid,
                ops,
                timeout_ms,
                submitted_by,
                ..
            } => {
                let timeout = timeout_ms.map(Duration::from_millis);
                let r = self
                    .resource
                    .prepare(
                        coordinator,
                        txid,
                        ops,
                        crate::resource::PrepareContext {
                            timeout,
                            submitted_by: submitted_by.as_deref(),
                        },
                    )
                    .await;
                match &r {
                    Ok(vote) => debug!(%txid, ?vote, "prepare"),
                    Err(e) => warn!(%txid, "prepare failed: {e}"),
                }
                r.map(Answer::Voted)
            }
            Call::Settle {
                txid,
                decision,
                coordinator,
            } => {
                let r = match decision {
                    Decision::Commit => self.resource.commit(coordinator.as_ref(), txid).await,
                    Decision::Abort => self.resource.abort(coordinator.as_ref(), txid).await,
                };
                match &r {
                    Ok(result)
                        if *result == AckResult::Conflict
                            || (*decision == Decision::Commit
                                && *result == AckResult::NotPrepared) =>
                    {
                        warn!(%txid, ?decision, ?result, "phase 2 did not find the expected state")
                    }
                    Ok(result) => debug!(%txid, ?decision, ?result, "phase 2"),
                    Err(e) => warn!(%txid, ?decision, "phase 2 failed: {e}"),
                }
                r.map(Answer::Settled)
            }
            Call::CommitOnePhase {
                coordinator,
                txid,
                ops,
                submitted_by,
                may_wait,
                ..
            } => {
                let cx = OnePhaseContext {
                    submitted_by: submitted_by.as_deref(),
                    may_wait: *may_wait,
                };
                let r = self
                    .resource
                    .commit_one_phase(coordinator, txid, ops, cx)
                    .await;
                if let Err(e) = &r {
                    warn!(%txid, "one-phase commit failed: {e}");
                }
                r.map(|a| match a {
                    OnePhaseAnswer::Decided(o) => Answer::OnePhase(o),
                    OnePhaseAnswer::Blocked(b) => Answer::OnePhaseBlocked(b),
                })
            }
            Call::ListWaits => {
                let r = self.resource.waits().await;
                if let Err(e) = &r {
                    warn!("cannot list lock waits: {e}");
                }
                r.map(Answer::Waits)
            }
            Call::ListPrepared => {
                let r = self.resource.list_prepared().await;
                if let Err(e) = &r {
                    warn!("cannot list prepared transactions: {e}");
                }
                r.map(Answer::Listed)
            }
        };
        result.map_err(|e| ResourceFailed(e.to_string()))
    }
}
