//! Reading what the coordinator sends: event-stream frames and API error bodies.

use super::*;

/// One text frame from `/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A protocol step.
    Event(Box<Event>),
    /// The browser fell behind and the coordinator skipped this many events.
    Lagged(u64),
}

/// The text of a non-2xx API answer, e.g.
/// `403 faults_disabled: fault injection is disabled; start the coordinator with ...`.
pub fn error_text(status: u16, body: &str) -> String {
    match serde_json::from_str::<twopc_protocol::api::ApiError>(body) {
        Ok(e) => format!("{status} {}: {}", e.error.as_str(), e.message),
        Err(_) if body.is_empty() => format!("HTTP {status}"),
        Err(_) => format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
    }
}

/// Connection heartbeats (ping/pong messages): not recorded, only counted.
pub fn is_heartbeat(ev: &Event) -> bool {
    matches!(&ev.kind,
        EventKind::MessageSent { msg_type, .. } | EventKind::MessageReceived { msg_type, .. }
            if msg_type.is_heartbeat())
}

/// Parses one text frame of the event stream.
pub fn parse_incoming(text: &str) -> Result<Incoming, String> {
    // Events are by far the most frequent frame: decode them directly (no Value detour).
    match serde_json::from_str::<Event>(text) {
        Ok(e) => Ok(Incoming::Event(Box::new(e))),
        Err(err) => serde_json::from_str::<Lagged>(text)
            .map(|l| Incoming::Lagged(l.lagged))
            .map_err(|_| err.to_string()),
    }
}

/// How long to wait before handing the next batch to the app, given the size of the last
/// one: every animation frame while traffic is light, less often under load so that the page
/// spends its time drawing rather than re-rendering per frame.
pub fn batch_interval_ms(last_batch: usize) -> u32 {
    match last_batch {
        0..=20 => 0,
        21..=100 => 100,
        101..=500 => 200,
        _ => 400,
    }
}
