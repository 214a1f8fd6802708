//! Authentication of the WebSocket upgrade request.
//!
//! The coordinator sends `Authorization: Bearer <token>`, a secret shared per participant.
//! Anything else is refused with HTTP 401 and a plain-text body saying what was wrong, before
//! any WebSocket frame is exchanged.
//!
//! # Rotation
//!
//! A participant accepts one token, or two while the token is being changed: give it the old
//! and the new one ([`Tokens::set`], which the Redis participant calls on SIGHUP after
//! re-reading its token file, and the PostgreSQL worker after a configuration reload), switch
//! the coordinators to the new one, then drop the old. Connections already up stay up; each
//! new upgrade is checked against the tokens of that moment.

use crate::ParticipantError;
use std::sync::{Arc, RwLock};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::{header, StatusCode};

/// Compares two byte strings in time that depends only on their lengths, so the token cannot
/// be guessed byte by byte from response timings (the `subtle` crate's comparison, written to
/// resist the optimiser turning it into an early exit). The length itself is not secret
/// enough to matter: tokens are random and long.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The tokens a participant accepts. Cloning shares them. `Debug` never shows them.
#[derive(Clone)]
pub struct Tokens(Arc<RwLock<Vec<String>>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} set)", self.current().len())
    }
}

impl Tokens {
    /// The most tokens accepted at once: the current one and the one replacing it.
    pub const MAX: usize = 2;

    /// Tokens from a list, checked ([`Tokens::check`]).
    pub fn new(tokens: Vec<String>) -> Result<Tokens, ParticipantError> {
        Self::check(&tokens)?;
        Ok(Tokens(Arc::new(RwLock::new(tokens))))
    }

    /// Tokens from a list, checked when the server starts (`ServerConfig::validate`).
    pub(crate) fn unchecked(tokens: Vec<String>) -> Tokens {
        Tokens(Arc::new(RwLock::new(tokens)))
    }

    /// The tokens in `text`, separated by whitespace or commas (a token file with one per line,
    /// a GUC with two for a rotation).
    pub fn parse(text: &str) -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// One or two tokens, none empty, none with whitespace or control characters.
    pub fn check(tokens: &[String]) -> Result<(), ParticipantError> {
        let bad = |m: &str| Err(ParticipantError::Config(m.to_string()));
        if tokens.is_empty() || tokens.iter().any(|t| t.trim().is_empty()) {
            return bad("the token must not be empty");
        }
        if tokens.len() > Self::MAX {
            return bad(
                "at most two tokens (the current one and its replacement) are accepted at once",
            );
        }
        if tokens
            .iter()
            .any(|t| t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad("the token must not contain whitespace or control characters");
        }
        Ok(())
    }

    /// Replaces the tokens for every later upgrade; a refused list changes nothing.
    pub fn set(&self, tokens: Vec<String>) -> Result<(), ParticipantError> {
        Self::check(&tokens)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = tokens;
        Ok(())
    }

    /// A copy of the tokens accepted now.
    pub fn current(&self) -> Vec<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `given` is one of them; every token is compared, each in constant time.
    pub fn accepts(&self, given: &str) -> bool {
        let tokens = self.0.read().unwrap_or_else(|p| p.into_inner());
        tokens.iter().fold(false, |ok, t| {
            constant_time_eq(given.as_bytes(), t.as_bytes()) | ok
        })
    }
}

/// Checks the upgrade request's bearer token; `Err` is the 401 response to send.
#[allow(clippy::result_large_err)] // the error *is* the HTTP response tungstenite sends
pub fn check_bearer(req: &Request, tokens: &Tokens) -> Result<(), ErrorResponse> {
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
    if tokens.accepts(given.trim()) {
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
        let t = Tokens::new(vec!["s3cret".into()]).unwrap();
        assert!(check_bearer(&req(Some("Bearer s3cret")), &t).is_ok());
        let missing = check_bearer(&req(None), &t).unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(missing.body().as_deref().unwrap().contains("missing"));
        let wrong = check_bearer(&req(Some("Bearer nope")), &t).unwrap_err();
        assert!(wrong.body().as_deref().unwrap().contains("invalid token"));
        let basic = check_bearer(&req(Some("Basic abc")), &t).unwrap_err();
        assert!(basic.body().as_deref().unwrap().contains("malformed"));
    }

    #[test]
    fn a_rotation_accepts_both_tokens_then_only_the_new_one() {
        let t = Tokens::new(vec!["old".into()]).unwrap();
        let shared = t.clone();
        shared.set(Tokens::parse("old\nnew\n")).unwrap();
        assert!(t.accepts("old") && t.accepts("new") && !t.accepts("ne"));
        shared.set(Tokens::parse("new")).unwrap();
        assert!(!t.accepts("old") && t.accepts("new"));
        // A refused list leaves the tokens as they were.
        assert!(shared.set(vec![]).is_err());
        assert!(shared.set(Tokens::parse("a,b,c")).is_err());
        assert!(t.accepts("new"));
        assert_eq!(format!("{t:?}"), "Tokens(1 set)");
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
