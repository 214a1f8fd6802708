//! `POST /v1/faults`: fault injection ([`FaultRequest`] in, [`FaultResponse`] out), refused
//! unless the coordinator runs with `fault_injection = true`.

use super::{error, AppState};
use crate::driver::Command;
use crate::faults::Intercept;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;
use twopc_protocol::api::{ApiErrorCode, FaultRequest, FaultResponse};
use twopc_protocol::event::EventKind;

pub(super) async fn inject_fault(State(st): State<AppState>, body: axum::body::Body) -> Response {
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorCode::PayloadTooLarge,
            "fault requests are small",
        );
    };
    if !st.faults.enabled() {
        return error(
            StatusCode::FORBIDDEN,
            ApiErrorCode::FaultsDisabled,
            "fault injection is disabled; start the coordinator with fault_injection = true",
        );
    }
    // Every way the body is wrong (a repeated key included) is `invalid_request` here.
    let parsed = crate::strict_json::from_slice(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value::<FaultRequest>(v).map_err(|e| e.to_string()));
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidRequest, e),
    };
    if let Some(n) = req.participant() {
        if st.config.participant(n).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::UnknownParticipant,
                format!("no participant named {n:?}"),
            );
        }
    }
    let description = match req {
        FaultRequest::DropNext {
            participant,
            msg_type,
        } => {
            let what = msg_type.map_or("message", |t| t.as_str());
            st.faults
                .arm(participant.clone(), Intercept::Drop, msg_type);
            format!("armed: drop the next {what} to {participant}")
        }
        FaultRequest::DelayNext {
            participant,
            ms,
            msg_type,
        } => {
            let what = msg_type.map_or("message", |t| t.as_str());
            let ms = ms.min(60_000);
            st.faults.arm(
                participant.clone(),
                Intercept::Delay(Duration::from_millis(ms)),
                msg_type,
            );
            format!("armed: delay the next {what} to {participant} by {ms} ms")
        }
        FaultRequest::Partition { participant } => {
            st.faults.set_partitioned(participant.clone(), true);
            format!("partitioned {participant}")
        }
        FaultRequest::Heal { participant } => {
            st.faults.set_partitioned(participant.clone(), false);
            format!("healed {participant}")
        }
        FaultRequest::Crash => {
            let _ = st
                .handle
                .send(Command::Event {
                    txid: None,
                    kind: EventKind::FaultInjected {
                        fault: "coordinator crash".into(),
                    },
                })
                .await;
            tokio::spawn(async {
                // Let the response and the event leave first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::process::exit(137);
            });
            "crashing the coordinator".to_string()
        }
    };
    let _ = st
        .handle
        .send(Command::Event {
            txid: None,
            kind: EventKind::FaultInjected {
                fault: description.clone(),
            },
        })
        .await;
    Json(FaultResponse {
        fault: description,
        ok: true,
    })
    .into_response()
}
