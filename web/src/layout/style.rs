//! What each event looks like: whether it is drawn, its shape, label, class and tooltip.

use super::*;

fn upper(msg_type: MessageType) -> String {
    msg_type.as_str().replace('_', " ").to_uppercase()
}

/// The label and CSS class of a protocol message arrow.
pub fn message_style(msg_type: MessageType, summary: &str) -> (String, String) {
    match msg_type {
        MessageType::Prepare => ("PREPARE".into(), "msg-prepare".into()),
        MessageType::Commit => ("COMMIT".into(), "msg-commit".into()),
        MessageType::Abort => ("ABORT".into(), "msg-abort".into()),
        MessageType::CommitOnePhase => ("COMMIT 1PC".into(), "msg-commit".into()),
        MessageType::Vote => {
            if summary.contains("VOTE NO") {
                ("VOTE NO".into(), "msg-vote-no".into())
            } else if summary.contains("READ-ONLY") {
                ("VOTE READ-ONLY".into(), "msg-vote-yes".into())
            } else {
                ("VOTE YES".into(), "msg-vote-yes".into())
            }
        }
        MessageType::Ack => {
            if summary.contains("Abort") {
                ("ACK ABORT".into(), "msg-ack-abort".into())
            } else {
                ("ACK COMMIT".into(), "msg-ack-commit".into())
            }
        }
        MessageType::DecisionRequest => ("DECISION?".into(), "msg-decision-request".into()),
        MessageType::DecisionAnswer => {
            let l = summary
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let l = if l.is_empty() {
                "DECISION".into()
            } else {
                l.to_uppercase()
            };
            (l, "msg-decision-answer".into())
        }
        other => (upper(other), "msg-other".into()),
    }
}

fn result_word(r: HeuristicKind) -> &'static str {
    match r {
        HeuristicKind::Conflict => "conflict",
        HeuristicKind::NotPrepared => "no record",
    }
}

/// Whether an event is drawn at all (pings and votes/acks already drawn as arrows are not).
pub fn drawable(ev: &Event) -> bool {
    match &ev.kind {
        EventKind::MessageSent { msg_type, .. } | EventKind::MessageReceived { msg_type, .. } => {
            !msg_type.is_heartbeat()
        }
        EventKind::Vote { .. } | EventKind::Ack { .. } | EventKind::DecisionRequested { .. } => {
            false
        }
        _ => true,
    }
}

/// The shape, kind, label, class and tooltip of one event, given lane indices.
pub fn item_for(
    ev: &Event,
    lane_of: &dyn Fn(&str) -> Option<usize>,
) -> Option<(Shape, ItemKind, String, String, String)> {
    if !drawable(ev) {
        return None;
    }
    let client = lane_of("client")?;
    let log = lane_of("log")?;
    let coord = lane_of("coordinator")?;
    let key = crate::model::tx_key(ev);
    let txid = key.as_deref().unwrap_or("");
    let arrow = |from: usize, to: usize| {
        let (x1, x2) = (lane_x(from), lane_x(to));
        Shape::Arrow {
            from,
            to,
            x1,
            x2,
            y2: SLANT,
            head: arrow_head(x1, 0.0, x2, SLANT),
        }
    };
    let mark = |lane: usize| Shape::Mark {
        lane,
        x: lane_x(lane),
    };
    Some(match &ev.kind {
        EventKind::TxBegin {
            participants,
            attempt: 1,
            submitted_by,
            ..
        } => (
            arrow(client, coord),
            ItemKind::Client,
            "BEGIN".into(),
            "msg-begin".into(),
            match submitted_by {
                Some(name) => format!(
                    "client {name} submits {txid} to {}",
                    participants.join(", ")
                ),
                None => format!("client submits {txid} to {}", participants.join(", ")),
            },
        ),
        EventKind::TxBegin {
            participants,
            attempt,
            client: c,
            ..
        } => (
            mark(coord),
            ItemKind::Mark,
            format!("ATTEMPT {attempt}"),
            "mark-attempt".into(),
            format!(
                "attempt {attempt} of {} starts as {txid}, to {}",
                c.as_ref().map(|c| c.as_str()).unwrap_or("?"),
                participants.join(", ")
            ),
        ),
        EventKind::RetryScheduled {
            client: c,
            next_attempt,
            backoff_ms,
            reason,
        } => (
            mark(coord),
            ItemKind::Mark,
            format!("RETRY in {backoff_ms} ms"),
            "mark-retry".into(),
            format!(
                "{txid} aborted by a conflict ({reason}); {c} runs again as attempt \
                 {next_attempt} after {backoff_ms} ms, with the same priority"
            ),
        ),
        EventKind::MessageSent {
            to,
            msg_type,
            summary,
        } => {
            let p = lane_of(to)?;
            let (label, class) = message_style(*msg_type, summary);
            (
                arrow(coord, p),
                ItemKind::Message,
                label,
                class,
                format!("coordinator → {to}: {summary}"),
            )
        }
        EventKind::MessageReceived {
            from,
            msg_type,
            summary,
        } => {
            let p = lane_of(from)?;
            let (label, class) = message_style(*msg_type, summary);
            (
                arrow(p, coord),
                ItemKind::Message,
                label,
                class,
                format!("{from} → coordinator: {summary}"),
            )
        }
        EventKind::LogWrite { record, lsn } => (
            arrow(coord, log),
            ItemKind::LogWrite,
            format!("append {}", record.as_str().to_uppercase()),
            format!("log-write log-{}", record.as_str()),
            format!("decision log: append {} record for {txid} at lsn {lsn} (not yet durable)", record.as_str().to_uppercase()),
        ),
        EventKind::LogFsync { records, micros } => (
            mark(log),
            ItemKind::Mark,
            format!("fsync ×{records} ({micros} µs)"),
            "mark-fsync".into(),
            format!("decision log fsync: {records} record(s) made durable in {micros} µs (group commit)"),
        ),
        EventKind::Decision { decision, reason } => {
            let (label, class) = match decision {
                Decision::Commit => ("DECIDE COMMIT", "mark-decide-commit"),
                Decision::Abort => ("DECIDE ABORT", "mark-decide-abort"),
            };
            (
                mark(coord),
                ItemKind::Mark,
                label.into(),
                class.into(),
                format!(
                    "coordinator decides {:?} for {txid}{}",
                    decision,
                    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
            )
        }
        EventKind::Timeout { participant, phase } => (
            mark(coord),
            ItemKind::Mark,
            format!("timeout {participant}"),
            "mark-timeout".into(),
            format!("no answer from {participant} in phase {phase:?} for {txid}"),
        ),
        EventKind::Retry {
            participant,
            attempt,
        } => (
            mark(coord),
            ItemKind::Mark,
            format!("retry → {participant} #{attempt}"),
            "mark-retry".into(),
            format!("re-sending the decision for {txid} to {participant} (attempt {attempt})"),
        ),
        EventKind::Heuristic {
            participant,
            decision,
            result,
        } => {
            let said = match result {
                HeuristicKind::Conflict => "had finished it the other way",
                HeuristicKind::NotPrepared => "had no record of it",
            };
            (
                // On the coordinator's lane, which found it (a label on the rightmost
                // participant's lane would run off the diagram).
                mark(coord),
                ItemKind::Mark,
                format!("HEURISTIC: {participant} {}", result_word(*result)),
                "mark-heuristic".into(),
                format!(
                    "{participant} acknowledged the {decision:?} of {txid} but {said}: a \
                     heuristic outcome, the stores may disagree"
                ),
            )
        }
        EventKind::TxEnd {
            decision,
            prepare_ms,
            decide_ms,
            commit_ms,
            heuristic,
            retried,
            ..
        } => {
            let (label, class) = match decision {
                // Not the client's answer: the attempt's abort is delivered, another runs.
                _ if *retried => ("ATTEMPT ABORTED", "msg-end-retried"),
                _ if *heuristic => ("HEURISTIC", "msg-end-heuristic"),
                Decision::Commit => ("COMMITTED", "msg-end-commit"),
                Decision::Abort => ("ABORTED", "msg-end-abort"),
            };
            if let Some(c) = &ev.on_behalf_of {
                // A taken-over id's transaction: its client was the old holder's, so the end
                // is a mark where this coordinator finished it, not an answer.
                return Some((
                    mark(coord),
                    ItemKind::Mark,
                    format!("{label} (for {c})"),
                    class.replace("msg-end", "mark-end"),
                    format!(
                        "{txid} finished {label} by this coordinator, which holds the id of {c} now"
                    ),
                ));
            }
            (
                arrow(coord, client),
                ItemKind::Client,
                label.into(),
                class.into(),
                format!(
                    "{txid} finished {label}: prepare {prepare_ms:.1} ms, decide {decide_ms:.1} ms, commit {commit_ms:.1} ms"
                ),
            )
        }
        EventKind::ParticipantConnected {
            participant,
            in_doubt,
        } => (
            mark(lane_of(participant)?),
            ItemKind::Mark,
            format!("connected ({in_doubt} in doubt)"),
            "mark-connected".into(),
            format!("{participant} connected and reported {in_doubt} prepared transaction(s)"),
        ),
        EventKind::ParticipantDisconnected {
            participant,
            reason,
        } => (
            mark(lane_of(participant)?),
            ItemKind::Mark,
            "disconnected".into(),
            "mark-disconnected".into(),
            format!("{participant} disconnected: {reason}"),
        ),
        EventKind::FaultInjected { fault } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("⚡ {fault}"),
            "banner-fault".into(),
            format!("fault injected: {fault}"),
        ),
        EventKind::CoordinatorStarted {
            coordinator,
            recovering,
        } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("coordinator {coordinator} started, recovering {recovering}"),
            "banner-start".into(),
            format!(
                "coordinator {coordinator} started (run {}); {recovering} committed transaction(s) to finish from its log",
                ev.run
            ),
        ),
        EventKind::Takeover {
            coordinator,
            epoch,
            recovering,
        } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("⇄ took over {coordinator} (epoch {epoch}), finishing {recovering}"),
            "banner-takeover".into(),
            format!(
                "the lease of coordinator {coordinator} expired: this coordinator holds its id now (epoch {epoch}) and finishes its transactions, committing the {recovering} it logged COMMIT for and aborting any other it left prepared"
            ),
        ),
        EventKind::TakeoverEnded { coordinator, epoch } => (
            Shape::Banner,
            ItemKind::Banner,
            format!("⇄ {coordinator} handed back (epoch {epoch})"),
            "banner-takeover".into(),
            format!(
                "coordinator {coordinator} has nothing left to do: its id is released (epoch {epoch}), and it claims the id back when it restarts"
            ),
        ),
        EventKind::Vote { .. } | EventKind::Ack { .. } | EventKind::DecisionRequested { .. } => {
            return None
        }
    })
}
