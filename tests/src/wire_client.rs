//! A small WebSocket client that speaks the twopc wire protocol, for tests that drive a
//! participant the way the coordinator does.

use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use twopc_protocol::{
    decode_frame, encode_frame, AckResult, Decision, Frame, Message, NoClass, Vote,
};

/// How long [`WireClient::recv`] waits before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// What arrived on the connection.
#[derive(Debug)]
pub enum Incoming {
    /// A protocol frame.
    Frame(Frame),
    /// The server closed the connection (with its close frame, if it sent one).
    Closed(Option<CloseFrame>),
}

/// A connected protocol client.
pub struct WireClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    buffered: VecDeque<Frame>,
}

/// The refusal of an upgrade: HTTP status and body.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status code.
    pub status: u16,
    /// The response body as text.
    pub body: String,
}

async fn open(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, WsError> {
    let mut req = format!("ws://{addr}/").into_client_request()?;
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).expect("token is a header value"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

impl WireClient {
    /// Connects with `Authorization: Bearer <token>` (none when `token` is `None`).
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Self, WsError> {
        Ok(WireClient {
            ws: open(addr, token).await?,
            next_id: 100,
            buffered: VecDeque::new(),
        })
    }

    /// Tries to connect and returns how the upgrade was refused (panics if it was accepted
    /// or failed another way).
    pub async fn refused(addr: SocketAddr, token: Option<&str>) -> Refused {
        match open(addr, token).await {
            Ok(_) => panic!("upgrade unexpectedly accepted"),
            Err(WsError::Http(resp)) => Refused {
                status: resp.status().as_u16(),
                body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned(),
            },
            Err(e) => panic!("upgrade failed in an unexpected way: {e}"),
        }
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `msg` with a fresh request id and returns the id.
    pub async fn send(&mut self, msg: Message) -> u64 {
        let id = self.next_id();
        self.send_frame(Frame::new(id, msg)).await;
        id
    }

    /// Sends a frame as is.
    pub async fn send_frame(&mut self, frame: Frame) {
        self.send_raw(encode_frame(&frame)).await;
    }

    /// Sends arbitrary text (for malformed-frame tests).
    pub async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws
            .send(WsMessage::text(text.into()))
            .await
            .expect("send to participant");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_ws(&mut self, msg: WsMessage) -> Result<(), WsError> {
        self.ws.send(msg).await
    }

    /// The next protocol frame or the close, within `timeout` (`None` on timeout).
    pub async fn next_incoming(&mut self, timeout: Duration) -> Option<Incoming> {
        if let Some(f) = self.buffered.pop_front() {
            return Some(Incoming::Frame(f));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                None => return Some(Incoming::Closed(None)),
                Some(Err(_)) => return Some(Incoming::Closed(None)),
                Some(Ok(WsMessage::Text(t))) => {
                    let frame = decode_frame(t.as_str())
                        .unwrap_or_else(|e| panic!("participant sent a bad frame ({e}): {t}"));
                    return Some(Incoming::Frame(frame));
                }
                Some(Ok(WsMessage::Close(c))) => return Some(Incoming::Closed(c)),
                Some(Ok(_)) => continue, // pings (answered by tungstenite), pongs
            }
        }
    }

    /// The next protocol frame; panics on timeout or close.
    pub async fn recv(&mut self) -> Frame {
        match self.next_incoming(RECV_TIMEOUT).await {
            Some(Incoming::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Waits for the first frame matching `pred`, keeping the others for later `recv`s.
    pub async fn recv_matching(&mut self, mut pred: impl FnMut(&Frame) -> bool) -> Frame {
        if let Some(i) = self.buffered.iter().position(&mut pred) {
            return self.buffered.remove(i).expect("index is valid");
        }
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_incoming(left).await {
                Some(Incoming::Frame(f)) if pred(&f) => break f,
                Some(Incoming::Frame(f)) => skipped.push(f),
                other => panic!("no matching frame (got {other:?}; skipped {skipped:?})"),
            }
        };
        self.buffered.extend(skipped);
        found
    }

    /// Sends `msg` and waits for the reply with the same request id.
    pub async fn request(&mut self, msg: Message) -> Message {
        let id = self.send(msg).await;
        self.recv_matching(|f| f.id == id).await.msg
    }

    /// Sends a Prepare (or any request answered by a vote) and returns the vote, checking it
    /// is for the same transaction.
    pub async fn vote(&mut self, prepare: Message) -> (Vote, Option<String>) {
        let (vote, reason, _) = self.vote_with_class(prepare).await;
        (vote, reason)
    }

    /// [`vote`](Self::vote) with the NO's class; checks that every NO carries one and nothing
    /// else does.
    pub async fn vote_with_class(
        &mut self,
        prepare: Message,
    ) -> (Vote, Option<String>, Option<NoClass>) {
        let txid = prepare.txid().cloned();
        match self.request(prepare).await {
            Message::Vote {
                txid: t,
                vote,
                reason,
                class,
            } => {
                assert_eq!(Some(&t), txid.as_ref(), "vote for another transaction");
                assert_eq!(
                    class.is_some(),
                    vote == Vote::No,
                    "a NO carries its class and nothing else does: {vote:?} {class:?}"
                );
                (vote, reason, class)
            }
            other => panic!("expected a vote, got {other:?}"),
        }
    }

    /// Sends Commit, Abort or CommitOnePhase and returns the ack's (decision, result).
    pub async fn ack(&mut self, msg: Message) -> (Decision, AckResult) {
        match self.request(msg).await {
            Message::Ack {
                decision, result, ..
            } => (decision, result),
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
