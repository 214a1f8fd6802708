//! The shared server over the in-memory resource: the protocol loop on its own, without any
//! real backend. (The Redis participant's tests in `twopc-tests` cover the same paths, and
//! more, against real servers.)

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use twopc_participant::memory::MemoryResource;
use twopc_participant::{Server, ServerConfig};
use twopc_protocol::{
    decode_frame, encode_frame, AckResult, CoordinatorId, Decision, DecisionStatus, Frame, Message,
    Operations, ParticipantKind, RedisGuard, RedisOp, TxId, Vote,
};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn dial(addr: SocketAddr, token: &str) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn recv(ws: &mut Ws) -> Frame {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("no error");
        if let WsMessage::Text(t) = m {
            return decode_frame(t.as_str()).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, id: u64, msg: Message) {
    ws.send(WsMessage::text(encode_frame(&Frame::new(id, msg))))
        .await
        .unwrap();
}

fn t(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn ops() -> Operations {
    Operations::Redis(vec![RedisOp::Del {
        key: "k".into(),
        guard: RedisGuard::default(),
    }])
}

fn prepare(txid: &str) -> Message {
    Message::Prepare {
        submitted_by: None,
        txid: t(txid),
        coordinator: "c1".parse().unwrap(),
        ops: ops(),
        timeout_ms: None,
        priority: None,
        epoch: None,
    }
}

/// Answers the participant's DecisionRequest `req_id` for `txid` with abort, and waits until
/// the resource has rolled it back.
async fn answer_abort_and_await(ws: &mut Ws, req_id: u64, resource: &MemoryResource, txid: &str) {
    send(
        ws,
        req_id,
        Message::DecisionAnswer {
            txid: t(txid),
            status: DecisionStatus::Abort,
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while resource.outcome(&t(txid)).is_none() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(resource.outcome(&t(txid)), Some(Decision::Abort));
}

#[tokio::test]
async fn auth_report_two_phase_and_termination_over_the_memory_resource() {
    let resource = MemoryResource::new(ParticipantKind::Postgres);
    let mut cfg = ServerConfig::new("mem".parse().unwrap(), "tok");
    cfg.decision_timeout = Duration::from_millis(50);
    cfg.scan_interval = Duration::from_millis(10);
    cfg.decision_retry_initial = Duration::from_millis(50);
    let server = Server::new(resource.clone(), cfg)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();

    match dial(addr, "wrong").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }

    let mut ws = dial(addr, "tok").await.unwrap();
    let report = recv(&mut ws).await;
    assert!(
        matches!(report.msg, Message::InDoubtReport { ref prepared, .. } if prepared.is_empty())
    );

    send(&mut ws, 1, prepare("a")).await;
    let f = recv(&mut ws).await;
    assert_eq!(f.id, 1);
    assert!(matches!(
        f.msg,
        Message::Vote {
            vote: Vote::Yes,
            ..
        }
    ));
    send(
        &mut ws,
        2,
        Message::Commit {
            txid: t("a"),
            coordinator: None,
            epoch: None,
        },
    )
    .await;
    let f = recv(&mut ws).await;
    assert_eq!(
        f.msg,
        Message::Ack {
            txid: t("a"),
            decision: Decision::Commit,
            result: AckResult::Applied,
            reason: None
        }
    );

    // "b" is left prepared: the participant asks, and applies the answer.
    send(&mut ws, 3, prepare("b")).await;
    let req = loop {
        let f = recv(&mut ws).await;
        if let Message::DecisionRequest { .. } = f.msg {
            break f;
        }
    };
    assert_eq!(
        req.msg,
        Message::DecisionRequest {
            txid: t("b"),
            coordinator: Some(CoordinatorId::new("c1").unwrap())
        }
    );
    answer_abort_and_await(&mut ws, req.id, &resource, "b").await;
    server.shutdown().await.unwrap();
}

/// A Prepare still running when its connection closes: the coordinator has given up on it and
/// may have reconnected already, reading an in-doubt report that could not list it yet. The
/// YES that can no longer be sent turns into an immediate DecisionRequest on the live
/// connection, long before `decision_timeout`.
#[tokio::test]
async fn a_vote_whose_connection_closed_asks_for_the_decision_at_once() {
    let (resource, gate) = MemoryResource::new(ParticipantKind::Postgres).gate();
    let mut cfg = ServerConfig::new("mem".parse().unwrap(), "tok");
    cfg.decision_timeout = Duration::from_secs(3600);
    let server = Server::new(resource.clone(), cfg)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();

    let mut first = dial(addr, "tok").await.unwrap();
    recv(&mut first).await; // in-doubt report
    send(&mut first, 1, prepare("orphan")).await;
    first.close(None).await.unwrap();
    drop(first);
    let mut second = dial(addr, "tok").await.unwrap();
    let report = recv(&mut second).await;
    assert!(
        matches!(report.msg, Message::InDoubtReport { ref prepared, .. } if prepared.is_empty()),
        "the prepare is still running: {report:?}"
    );
    // Give the server time to notice that the first connection is gone, then let the prepare
    // finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(1);
    // recv's own timeout is per frame, and heartbeat pings keep arriving: bound the whole wait.
    let req = tokio::time::timeout(Duration::from_secs(10), recv(&mut second))
        .await
        .expect("a DecisionRequest long before decision_timeout");
    assert_eq!(
        req.msg,
        Message::DecisionRequest {
            txid: t("orphan"),
            coordinator: Some(CoordinatorId::new("c1").unwrap())
        }
    );
    answer_abort_and_await(&mut second, req.id, &resource, "orphan").await;
    server.shutdown().await.unwrap();
}
