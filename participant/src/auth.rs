//! Authentication of the WebSocket upgrade request.
//!
//! The coordinator sends `Authorization: Bearer <token>`, a secret shared per participant.
//! Anything else is refused with HTTP 401 and a plain-text body saying what was wrong, before
//! any WebSocket frame is exchanged.

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::{header, StatusCode};

/// Compares two byte strings in time that depends only on their lengths, so the token cannot
/// be guessed byte by byte from response timings (the `subtle` crate's comparison, written to
/// resist the optimiser turning it into an early exit). The length itself is not secret
/// enough to matter: tokens are random and long.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Checks the upgrade request's bearer token; `Err` is the 401 response to send.
#[allow(clippy::result_large_err)] // the error *is* the HTTP response tungstenite sends
pub fn check_bearer(req: &Request, token: &str) -> Result<(), ErrorResponse> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing Authorization header: send `Authorization: Bearer <token>`",
        ));
    };
    let Some(given) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return Err(unauthorized(
            "malformed Authorization header: expected `Bearer <token>`",
        ));
    };
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("invalid token"))
    }
}

fn unauthorized(reason: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(format!("401 Unauthorized: {reason}\n")));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"twopc-participant\""),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/");
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn bearer_token_is_checked() {
        assert!(check_bearer(&req(Some("Bearer s3cret")), "s3cret").is_ok());
        let missing = check_bearer(&req(None), "s3cret").unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(missing.body().as_deref().unwrap().contains("missing"));
        let wrong = check_bearer(&req(Some("Bearer nope")), "s3cret").unwrap_err();
        assert!(wrong.body().as_deref().unwrap().contains("invalid token"));
        let basic = check_bearer(&req(Some("Basic abc")), "s3cret").unwrap_err();
        assert!(basic.body().as_deref().unwrap().contains("malformed"));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
