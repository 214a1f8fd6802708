//! One coordinator connection: the WebSocket upgrade and its bearer-token check, the in-doubt
//! report first, then one loop that reads frames, writes replies and queued frames, pings and
//! notices silence. What a frame means is the core's business ([`super::driver`]); what is
//! handled here is only what is about the wire (oversized, non-UTF-8, binary or undecodable
//! frames).

use super::{close, text, Shared};
use crate::auth;
use crate::resource::Resource;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message as WsMessage};
use tracing::{debug, info, warn};
use twopc_protocol::{decode_frame, ErrorCode, Frame, Message, MAX_FRAME_BYTES};

/// How long the last frames of a closing connection may take to send (and the peer to answer
/// the close), so shutdown never waits long for a peer that stopped reading.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Runs the TLS handshake (when configured), then upgrades, authenticates and serves one
/// connection. The handshake timeout covers TLS and the WebSocket upgrade together.
#[allow(clippy::result_large_err)] // the callback's error *is* the HTTP response tungstenite sends
pub(super) async fn serve<R: Resource>(
    shared: Arc<Shared<R>>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let tokens = shared.config.tokens.clone();
    let callback =
        move |req: &Request, resp: Response| auth::check_bearer(req, &tokens).map(|()| resp);
    let acceptor = shared.tls.clone();
    let upgrade = async move {
        let stream = twopc_tls::accept(stream, acceptor.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(super::websocket_config()),
        )
        .await
        .map_err(|e| e.to_string())
    };
    let ws = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(shared.config.handshake_timeout, upgrade) => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                info!(%peer, "WebSocket upgrade refused or failed: {e}");
                return;
            }
            Err(_) => {
                info!(%peer, "WebSocket upgrade timed out");
                return;
            }
        }
    };
    let (mut sink, mut stream) = ws.split();

    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel::<WsMessage>(shared.config.max_in_flight + 16);
    let driver = shared.driver.clone();
    driver.connected(conn_id, out_tx);
    // Nothing else is queued before the in-doubt report (or the close that replaces it).
    let first = tokio::select! {
        _ = shared.shutdown.cancelled() => None,
        m = out_rx.recv() => m,
    };
    match first {
        Some(report @ WsMessage::Text(_)) => {
            if !send_within(&mut sink, report, shared.config.idle_timeout).await {
                driver.disconnected(conn_id);
                return;
            }
        }
        Some(refusal @ WsMessage::Close(_)) => {
            warn!(%peer, "cannot list prepared transactions for a new connection");
            driver.disconnected(conn_id);
            send_within(&mut sink, refusal, CLOSE_LIMIT).await;
            drain(&mut stream).await;
            return;
        }
        _ => {
            driver.disconnected(conn_id);
            return;
        }
    }
    info!(%peer, conn_id, "coordinator connected");

    let mut last_seen = Instant::now();
    let hb = shared.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + hb, hb);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // A peer that stops reading must not stall this loop (and with it the heartbeat check)
    // in a send that never completes: every send gets the idle timeout.
    let limit = shared.config.idle_timeout;
    let closing: Option<CloseFrame> = 'serve: loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {
                break Some(close(CloseCode::Away, "participant shutting down"));
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > shared.config.idle_timeout {
                    info!(%peer, conn_id, "no traffic within the idle timeout; closing");
                    break Some(close(CloseCode::Away, "heartbeat timeout: nothing received within the idle timeout"));
                }
                if !send_within(&mut sink, WsMessage::Ping(Bytes::from_static(b"twopc")), limit).await {
                    break None;
                }
            }
            Some(out) = out_rx.recv() => {
                if !send_within(&mut sink, out, limit).await {
                    break None;
                }
            }
            inbound = stream.next() => {
                let msg = match inbound {
                    None => break None,
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(e))) => {
                        info!(%peer, conn_id, "oversized frame: {e}");
                        let reply = Frame::new(0, Message::Error {
                            code: ErrorCode::TooLarge,
                            message: format!(
                                "{e}; frames are limited to {MAX_FRAME_BYTES} bytes; closing the \
                                 connection because the rest of the frame cannot be skipped"
                            ),
                        });
                        send_within(&mut sink, text(&reply), limit).await;
                        break Some(close(CloseCode::Size, "frame exceeds the 1 MiB limit"));
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        let reply = Frame::new(0, Message::Error {
                            code: ErrorCode::Malformed,
                            message: format!("text frame is not valid UTF-8: {e}"),
                        });
                        send_within(&mut sink, text(&reply), limit).await;
                        break Some(close(CloseCode::Invalid, "text frame is not valid UTF-8"));
                    }
                    Some(Err(e)) => {
                        debug!(%peer, conn_id, "connection ended: {e}");
                        break None;
                    }
                };
                last_seen = Instant::now();
                let replies = match msg {
                    WsMessage::Text(t) => match decode_frame(t.as_str()) {
                        Ok(frame) => driver.received(conn_id, frame),
                        Err(e) => {
                            debug!(%peer, conn_id, "bad frame: {e}");
                            vec![e.reply()]
                        }
                    },
                    WsMessage::Binary(_) => vec![Frame::new(0, Message::Error {
                        code: ErrorCode::Malformed,
                        message: "binary frames are not part of the protocol; send JSON text frames".into(),
                    })],
                    // Pings are answered by tungstenite; pongs and close frames only prove
                    // the peer is alive (a close is answered and then ends the stream).
                    _ => vec![],
                };
                for reply in replies {
                    if !send_within(&mut sink, text(&reply), limit).await {
                        break 'serve None;
                    }
                }
            }
        }
    };
    // From here on a frame for this connection can no longer be written: make the core see
    // that (a YES vote then asks for the decision on another connection) instead of queueing it.
    driver.disconnected(conn_id);
    drop(out_rx);
    if let Some(frame) = closing {
        send_within(&mut sink, WsMessage::Close(Some(frame)), CLOSE_LIMIT).await;
        drain(&mut stream).await;
    }
    info!(%peer, conn_id, "coordinator disconnected");
}

/// Sends one message; false when the connection failed or the send took longer than `limit`.
async fn send_within<S>(sink: &mut S, msg: WsMessage, limit: Duration) -> bool
where
    S: futures_util::Sink<WsMessage, Error = WsError> + Unpin,
{
    matches!(
        tokio::time::timeout(limit, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Reads what the peer still sends (its close reply) for a moment, so our last frames are
/// not lost to a TCP reset caused by unread data.
async fn drain<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_LIMIT, async {
        let mut errors = 0;
        while let Some(r) = stream.next().await {
            if r.is_err() {
                errors += 1;
                if errors > 16 {
                    break;
                }
            }
        }
    })
    .await;
}
