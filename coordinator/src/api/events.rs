//! `GET /v1/events`: the event stream, one WebSocket per subscriber, bounded in number, in
//! what a client may send, and in how far a subscriber may fall behind (it is then told
//! `{"lagged": n}`, a [`Lagged`] note).

use super::{error, AppState};
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use twopc_protocol::api::ApiErrorCode;
use twopc_protocol::event::Lagged;
use twopc_protocol::MAX_FRAME_BYTES;

/// Counts `/v1/events` subscribers against `max_event_subscribers`.
#[derive(Debug, Default)]
pub struct Subscribers {
    now: AtomicUsize,
}

/// One subscriber's place; giving it back (on drop) lets the next one in.
#[derive(Debug)]
pub struct SubscriberSlot(Arc<Subscribers>);

impl Subscribers {
    /// A place for one more subscriber, if fewer than `max` are connected.
    pub fn try_take(self: &Arc<Self>, max: usize) -> Option<SubscriberSlot> {
        self.now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SubscriberSlot(self.clone()))
    }

    /// Subscribers connected now.
    pub fn count(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Largest message (and frame) an event-stream client may send. The stream is one-way; a
/// client has nothing to say beyond a close or a ping, so anything bigger is refused at the
/// frame header instead of being buffered (an unfinished 60 MiB message used to cost 61 MB).
pub const EVENTS_MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Bytes of events queued for one subscriber's socket before a send waits for it to drain;
/// what a slow reader misses meanwhile is dropped and counted for it (`{"lagged": n}`).
pub const EVENTS_WRITE_BUFFER: usize = 16 * 1024;

/// A subscriber that cannot take a single event for this long is disconnected, freeing its
/// place (a dead peer behind a full socket would otherwise hold one for ever).
pub const EVENTS_SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn events(
    State(st): State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::WebsocketRequired,
                format!("/v1/events is a WebSocket endpoint: {e}"),
            )
        }
    };
    let max = st.config.max_event_subscribers;
    let Some(slot) = st.subscribers.try_take(max) else {
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::TooManySubscribers,
            format!(
                "the event stream already has {max} subscribers (max_event_subscribers); \
                 try again later"
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return resp;
    };
    ws.read_buffer_size(EVENTS_MAX_CLIENT_MESSAGE)
        .max_message_size(EVENTS_MAX_CLIENT_MESSAGE)
        .max_frame_size(EVENTS_MAX_CLIENT_MESSAGE)
        .write_buffer_size(EVENTS_WRITE_BUFFER)
        // Never reached in practice: a send waits (and the reader lags) once the write
        // buffer is full, so at most one event more than it is held.
        .max_write_buffer_size(EVENTS_WRITE_BUFFER + MAX_FRAME_BYTES)
        .on_upgrade(move |socket| stream_events(st, socket, slot))
}

/// Events written to one subscriber before one flush: a transaction's events come in bursts
/// (one protocol step publishes several), and one write per burst instead of one per event
/// keeps the per-subscriber cost down.
const EVENTS_PER_FLUSH: usize = 64;

async fn stream_events(st: AppState, mut socket: WebSocket, _slot: SubscriberSlot) {
    use futures_util::SinkExt;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    // A slow subscriber misses events rather than slowing the coordinator down, and is told
    // how many (the web app counts them as "skipped by server").
    let lagged = |n: u64| -> Arc<str> {
        serde_json::to_string(&Lagged { lagged: n })
            .unwrap_or_default()
            .into()
    };
    let mut rx = st.handle.subscribe();
    loop {
        let first: Arc<str> = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(text) => text,
                Err(RecvError::Lagged(n)) => lagged(n),
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Over EVENTS_MAX_CLIENT_MESSAGE, a read error, or a close: done.
                Some(Ok(AxMessage::Close(_))) | None | Some(Err(_)) => return,
                _ => continue,
            },
        };
        let mut batch = vec![first];
        while batch.len() < EVENTS_PER_FLUSH {
            match rx.try_recv() {
                Ok(text) => batch.push(text),
                Err(TryRecvError::Lagged(n)) => batch.push(lagged(n)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        let send = async {
            for text in batch {
                socket.feed(AxMessage::Text(text.as_ref().into())).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(EVENTS_SEND_TIMEOUT, send).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
