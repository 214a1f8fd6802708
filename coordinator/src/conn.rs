//! One long-lived WebSocket connection per participant, kept up forever.
//!
//! The task dials the participant with its bearer token (over TLS for a `wss://` URL: the
//! participant's certificate verified against `[participant_tls] ca_file` and the URL's host,
//! the coordinator's own certificate presented when one is configured), reports `Connected`,
//! then forwards
//! frames both ways: messages from the driver's outbox go out as frames with fresh request
//! ids; frames that arrive are decoded and handed to the driver as `Received`. A frame that
//! does not decode is answered with an error frame and the connection stays up. Heartbeats:
//! a protocol Ping every `heartbeat` interval; a connection that stays silent for three
//! intervals is dropped and re-dialled. Reconnects back off exponentially (100 ms to 2 s).
//!
//! A message whose frame would be over [`MAX_FRAME_BYTES`] is not sent (the participant would
//! have to close the connection); its transaction is told through [`Input::Unsendable`].
//!
//! Messages queued while the connection is down are discarded on reconnect: the core re-sends
//! whatever still matters once the participant's InDoubtReport arrives, and a stale Prepare
//! must not reach a participant after its transaction was aborted for want of a vote.

use crate::core::Input;
use crate::driver::Command;
use crate::faults::Faults;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use twopc_protocol::event::EventKind;
use twopc_protocol::{
    decode_frame, encode_frame, Frame, Message, ParticipantName, MAX_FRAME_BYTES,
};

/// Why a dial failed. The text is what the event stream and the log show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The configured URL is not a WebSocket request tungstenite can make.
    #[error("{0}")]
    BadUrl(String),
    /// The token cannot travel in an HTTP header (a control character, say).
    #[error("token is not a valid header value")]
    BadToken,
    /// No handshake within 5 s.
    #[error("timed out")]
    TimedOut,
    /// The participant answered the upgrade with an HTTP error (a wrong token: 401).
    #[error("HTTP {status} {body}")]
    Refused {
        /// The HTTP status line's code and reason.
        status: String,
        /// The response body, trimmed.
        body: String,
    },
    /// Any other WebSocket or network failure, as tungstenite describes it.
    #[error("{0}")]
    Failed(String),
}

/// Why a live connection ended. The text is the `reason` of `Input::Disconnected` (and so of
/// the abort it may cause and of the event stream), unchanged from when these were strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionEnd {
    /// The coordinator is stopping (or the driver is gone): no reconnect.
    #[error("shutdown")]
    Shutdown,
    /// Writing a frame failed.
    #[error("send failed: {0}")]
    SendFailed(String),
    /// Reading a frame failed.
    #[error("read failed: {0}")]
    ReadFailed(String),
    /// The participant closed the connection (a Close frame or end of stream).
    #[error("closed by participant")]
    ClosedByParticipant,
    /// Nothing arrived for three heartbeat intervals.
    #[error("no frames for {silent_ms} ms (heartbeat)")]
    HeartbeatLost {
        /// How long the connection had been silent.
        silent_ms: u128,
    },
    /// Fault injection partitioned the participant away.
    #[error("partitioned by fault injection")]
    Partitioned,
}

/// Where and how to reach one participant.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The participant's configured name.
    pub name: ParticipantName,
    /// `ws://host:port/`.
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// For a `wss://` URL: how the participant's certificate is checked (and ours presented).
    pub tls: Option<Arc<twopc_tls::rustls::ClientConfig>>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

/// Why each participant's connection is down, while it is: the last dial failure or the
/// reason the last connection ended (`GET /v1/participants` shows it as `last_error`, so an
/// operator sees "certificate not signed by the configured CA" without reading logs).
#[derive(Debug, Default)]
pub struct DialErrors(std::sync::Mutex<std::collections::HashMap<ParticipantName, String>>);

impl DialErrors {
    fn set(&self, name: &ParticipantName, why: Option<String>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(w) => m.insert(name.clone(), w),
            None => m.remove(name),
        };
    }

    /// The reason `name` is not connected, if it failed.
    pub fn get(&self, name: &ParticipantName) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// Runs the connection loop until shutdown.
pub async fn run(
    dial: Dial,
    mut outbox: mpsc::Receiver<Message>,
    driver: mpsc::Sender<Command>,
    faults: Arc<Faults>,
    errors: Arc<DialErrors>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut partitions = faults.watch_partitions();
    // Repeated failures of the same kind are reported once, not every backoff.
    let mut last_error: Option<ConnectError> = None;
    loop {
        if faults.is_partitioned(&dial.name) {
            tokio::select! {
                _ = partitions.changed() => continue,
                _ = shutdown.recv() => return,
            }
        }
        let attempt = tokio::select! {
            r = connect(&dial) => r,
            _ = shutdown.recv() => return,
        };
        let ws = match attempt {
            Ok(ws) => ws,
            Err(e) => {
                errors.set(&dial.name, Some(format!("connect failed: {e}")));
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(participant = %dial.name, "cannot connect: {e}");
                    let _ = driver
                        .send(Command::Event {
                            txid: None,
                            kind: EventKind::ParticipantDisconnected {
                                participant: dial.name.to_string(),
                                reason: format!("connect failed: {e}"),
                            },
                        })
                        .await;
                    last_error = Some(e);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.recv() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        last_error = None;
        errors.set(&dial.name, None);
        // Stale messages from before this connection are not sent (see module docs).
        while outbox.try_recv().is_ok() {}
        tracing::info!(participant = %dial.name, "connected");
        if driver
            .send(Command::Input(Input::Connected {
                participant: dial.name.clone(),
            }))
            .await
            .is_err()
        {
            return;
        }
        let connected_at = Instant::now();
        let reason = serve(
            &dial,
            ws,
            &mut outbox,
            &driver,
            &faults,
            &mut partitions,
            &mut shutdown,
        )
        .await;
        tracing::info!(participant = %dial.name, "disconnected: {reason}");
        errors.set(&dial.name, Some(format!("disconnected: {reason}")));
        let _ = driver
            .send(Command::Input(Input::Disconnected {
                participant: dial.name.clone(),
                reason: reason.to_string(),
            }))
            .await;
        if reason == ConnectionEnd::Shutdown {
            return;
        }
        // A connection that dies right after it was accepted (a participant shutting down, a
        // proxy) must not turn into a tight reconnect loop: back off as after a failed dial.
        if connected_at.elapsed() < Duration::from_secs(1) {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.recv() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<twopc_tls::Stream>;

async fn connect(dial: &Dial) -> Result<Ws, ConnectError> {
    let mut req = dial
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
    let uri = req.uri().clone();
    let wss = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::BadUrl(format!("{}: no host", dial.url)))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if wss { 443 } else { 80 });
    let tls = match (wss, &dial.tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls),
        // The configuration check refuses this; never fall back to an unverified connection.
        (true, None) => {
            return Err(ConnectError::BadUrl(format!(
                "{}: wss:// needs [participant_tls] ca_file",
                dial.url
            )))
        }
    };
    let value = format!("Bearer {}", dial.token)
        .parse()
        .map_err(|_| ConnectError::BadToken)?;
    req.headers_mut().insert("authorization", value);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connect = async {
        let stream = twopc_tls::connect(&host, port, tls)
            .await
            .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
        tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Err(_) => Err(ConnectError::TimedOut),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(ConnectError::Refused {
                status: resp.status().to_string(),
                body: body.trim().to_string(),
            })
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Io(e))) => Err(ConnectError::Failed(
            twopc_tls::explain_if_tls(&e).unwrap_or_else(|| e.to_string()),
        )),
        Ok(Err(e)) => Err(ConnectError::Failed(e.to_string())),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

async fn serve(
    dial: &Dial,
    ws: Ws,
    outbox: &mut mpsc::Receiver<Message>,
    driver: &mpsc::Sender<Command>,
    faults: &Faults,
    partitions: &mut tokio::sync::watch::Receiver<u64>,
    shutdown: &mut broadcast::Receiver<()>,
) -> ConnectionEnd {
    let (mut sink, mut stream) = ws.split();
    let mut next_id: u64 = 1;
    let mut heartbeat = tokio::time::interval(dial.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            msg = outbox.recv() => {
                let Some(msg) = msg else { return ConnectionEnd::Shutdown };
                // Write everything already queued, then flush once: under load many frames
                // share one write instead of a syscall each.
                let mut next = Some(msg);
                while let Some(msg) = next.take() {
                    next = outbox.try_recv().ok();
                    let txid = msg.txid().cloned();
                    let frame = Frame::new(next_id, msg);
                    next_id += 1;
                    let text = encode_frame(&frame);
                    if text.len() > MAX_FRAME_BYTES {
                        // The participant would close the connection on it (it cannot skip
                        // an oversized frame), taking every transaction waiting for its vote
                        // down too. Keep the connection; fail just this transaction.
                        let reason = format!(
                            "a {} frame of {} bytes is over the participants' limit of \
                             {MAX_FRAME_BYTES} bytes",
                            frame.msg.type_name(),
                            text.len()
                        );
                        tracing::error!(participant = %dial.name, "not sent: {reason}");
                        if let Some(txid) = txid {
                            let input = Input::Unsendable { to: dial.name.clone(), txid, reason };
                            if driver.send(Command::Input(input)).await.is_err() {
                                return ConnectionEnd::Shutdown;
                            }
                        }
                        continue;
                    }
                    if let Err(e) = sink.feed(WsMessage::text(text)).await {
                        return ConnectionEnd::SendFailed(e.to_string());
                    }
                }
                if let Err(e) = sink.flush().await {
                    return ConnectionEnd::SendFailed(e.to_string());
                }
            }
            incoming = stream.next() => {
                let Some(incoming) = incoming else { return ConnectionEnd::ClosedByParticipant };
                let incoming = match incoming {
                    Ok(m) => m,
                    Err(e) => return ConnectionEnd::ReadFailed(e.to_string()),
                };
                last_heard = Instant::now();
                match incoming {
                    WsMessage::Text(text) => match decode_frame(text.as_str()) {
                        Ok(frame) => {
                            let input = Input::Received { from: dial.name.clone(), msg: frame.msg };
                            if driver.send(Command::Input(input)).await.is_err() {
                                return ConnectionEnd::Shutdown;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(participant = %dial.name, "bad frame: {e}");
                            let reply = encode_frame(&e.reply());
                            if let Err(e) = sink.send(WsMessage::text(reply)).await {
                                return ConnectionEnd::SendFailed(e.to_string());
                            }
                        }
                    },
                    WsMessage::Close(_) => return ConnectionEnd::ClosedByParticipant,
                    // Binary frames are not part of the protocol; pings are answered by
                    // tungstenite itself.
                    WsMessage::Binary(_) => {
                        let err = Frame::new(0, Message::Error {
                            code: twopc_protocol::ErrorCode::Malformed,
                            message: "binary frames are not part of the protocol; send JSON text".into(),
                        });
                        let _ = sink.send(WsMessage::text(encode_frame(&err))).await;
                    }
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > dial.heartbeat * 3 {
                    return ConnectionEnd::HeartbeatLost { silent_ms: last_heard.elapsed().as_millis() };
                }
                let ping = Frame::new(next_id, Message::Ping { nonce: next_id });
                next_id += 1;
                if let Err(e) = sink.send(WsMessage::text(encode_frame(&ping))).await {
                    return ConnectionEnd::SendFailed(e.to_string());
                }
            }
            _ = partitions.changed() => {
                if faults.is_partitioned(&dial.name) {
                    let _ = sink.close().await;
                    return ConnectionEnd::Partitioned;
                }
            }
            _ = shutdown.recv() => {
                let _ = sink.close().await;
                return ConnectionEnd::Shutdown;
            }
        }
    }
}
