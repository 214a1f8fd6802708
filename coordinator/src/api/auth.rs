//! Who is calling: the bearer-token check in front of every endpoint ([`crate::clients`]).
//!
//! With no `[[client]]` configured the API is open, as it always was (the configuration
//! refuses that on a listener other than loopback). With clients, every request but
//! `/healthz` and the web app's files is authenticated before any handler runs:
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization: Bearer` (or `?access_token=` on `/v1/events`), and no client certificate that names a client | 401 `unauthorized`, `WWW-Authenticate: Bearer` |
//! | a token no client has | 401 `unauthorized` (the same words: which part was wrong is not said) |
//! | the endpoint is outside the client's scopes | 403 `forbidden`, naming the scope it lacks |
//! | `/v1/whoami` | any client's token will do: it says who the client is and what it may do |
//! | over its request rate | 429 `rate_limited`, `Retry-After` in whole seconds |
//!
//! A client known by its certificate (`certificate_cn`) needs no token: the connection's
//! verified client certificate ([`ApiPeer`]) says who it is. A request that carries a token is
//! judged by the token alone, so a shared machine certificate never widens what a token may do.
//!
//! The handler then finds the [`Client`] in the request's extensions: the submit handler
//! refuses participants outside its list (403) and transactions beyond its `max_in_flight`
//! (429 `too_many_in_flight`). The token itself is never logged, echoed or stored: what the
//! coordinator keeps is the client's name.

use super::tls_listener::ApiPeer;
use super::{error, AppState};
use crate::clients::{Client, Scope};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twopc_protocol::api::ApiErrorCode;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: the health check, the web app's files.
    Nobody,
    /// A client, whatever its scopes (`/v1/whoami`).
    AnyClient,
    /// A client with this scope.
    Scope(Scope),
}

fn need_for(method: &Method, path: &str) -> Need {
    match path {
        "/healthz" => Need::Nobody,
        "/v1/whoami" => Need::AnyClient,
        "/v1/transactions" if method == Method::POST => Need::Scope(Scope::Submit),
        "/v1/events" => Need::Scope(Scope::Events),
        "/v1/faults" => Need::Scope(Scope::Faults),
        "/metrics" => Need::Scope(Scope::Read),
        // Every other API path reads (an unknown one still wants a client: no probing).
        p if p == "/v1" || p.starts_with("/v1/") => Need::Scope(Scope::Read),
        _ => Need::Nobody,
    }
}

/// The bearer token of the request: the `Authorization` header, or for the event stream an
/// `access_token` query parameter (a browser cannot set headers on a WebSocket).
fn presented_token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if req.uri().path() == "/v1/events" {
        #[derive(serde::Deserialize)]
        struct EventsQuery {
            access_token: Option<String>,
        }
        let q = axum::extract::Query::<EventsQuery>::try_from_uri(req.uri()).ok()?;
        return q.0.access_token;
    }
    None
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        ApiErrorCode::Unauthorized,
        message,
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A 429 with `Retry-After` (whole seconds, at least 1, as HTTP wants).
pub(super) fn too_many(code: ApiErrorCode, wait: Duration, message: String) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, code, message);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The middleware: authenticates, checks the scope and the rate, and hands the client to the
/// handler.
pub(super) async fn authenticate(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if !st.clients.enabled() {
        return next.run(req).await;
    }
    let need = need_for(req.method(), req.uri().path());
    if need == Need::Nobody {
        return next.run(req).await;
    }
    let client = match presented_token(&req) {
        Some(token) => match st.clients.authenticate(&token) {
            Some(client) => client,
            None => return unauthorized("the token is not one of this coordinator's clients"),
        },
        None => {
            let peer = req.extensions().get::<ConnectInfo<ApiPeer>>().map(|c| &c.0);
            match peer.and_then(|p| Some((p.addr, p.certificate_cn.as_deref()?))) {
                Some((addr, cn)) => match st.clients.authenticate_certificate(cn) {
                    Some(client) => client,
                    None => {
                        // The CA signed it, so whoever runs the CA may want to know.
                        tracing::info!(%addr, certificate_cn = cn, "client certificate names no client");
                        return unauthorized(
                            "the client certificate names none of this coordinator's clients",
                        );
                    }
                },
                None => {
                    return unauthorized(if st.clients.want_certificates() {
                        "this coordinator wants a client token or certificate: send \
                         Authorization: Bearer <token>, or connect with a client certificate"
                    } else {
                        "this coordinator wants a client token: send Authorization: Bearer <token>"
                    })
                }
            }
        }
    };
    if let Need::Scope(scope) = need {
        if !client.allows(scope) {
            return error(
                StatusCode::FORBIDDEN,
                ApiErrorCode::Forbidden,
                format!(
                    "client {} may not do this: it needs the {:?} scope",
                    client.name,
                    scope.as_str()
                ),
            );
        }
    }
    if let Err(wait) = client.take_request(Instant::now()) {
        return too_many(
            ApiErrorCode::RateLimited,
            wait,
            format!(
                "client {} is over its request rate; retry after the Retry-After seconds",
                client.name
            ),
        );
    }
    req.extensions_mut().insert::<Arc<Client>>(client);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_wants_its_scope() {
        let get = Method::GET;
        let post = Method::POST;
        let scope = |m: &Method, p: &str| need_for(m, p);
        assert_eq!(scope(&post, "/v1/transactions"), Need::Scope(Scope::Submit));
        assert_eq!(scope(&get, "/v1/transactions/t1"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/v1/participants"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/v1/coordinators"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/v1/config"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/metrics"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/v1/events"), Need::Scope(Scope::Events));
        assert_eq!(scope(&post, "/v1/faults"), Need::Scope(Scope::Faults));
        assert_eq!(scope(&get, "/v1/nope"), Need::Scope(Scope::Read));
        assert_eq!(scope(&get, "/v1/whoami"), Need::AnyClient);
        assert_eq!(scope(&get, "/healthz"), Need::Nobody);
        assert_eq!(scope(&get, "/"), Need::Nobody);
        assert_eq!(scope(&get, "/index.html"), Need::Nobody);
    }

    #[test]
    fn the_event_stream_takes_its_token_from_the_header_or_the_query() {
        let token = |uri: &str, header: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(h) = header {
                b = b.header(header::AUTHORIZATION, h);
            }
            presented_token(&b.body(axum::body::Body::empty()).unwrap())
        };
        assert_eq!(
            token("/v1/events?access_token=a%2Bb%20c+d", None).as_deref(),
            Some("a+b c d")
        );
        assert_eq!(
            token("/v1/events?access_token=100%", None).as_deref(),
            Some("100%")
        );
        assert_eq!(
            token("/v1/events?access_token=%zz", None).as_deref(),
            Some("%zz")
        );
        assert_eq!(token("/v1/events?x=1", None), None);
        assert_eq!(
            token("/v1/events?access_token=t", Some("Bearer h")).as_deref(),
            Some("h")
        );
        assert_eq!(
            token("/v1/events", Some("bearer  h ")).as_deref(),
            Some("h")
        );
        assert_eq!(token("/v1/events", Some("Basic h")), None);
        // Only the event stream takes a query token.
        assert_eq!(token("/v1/participants?access_token=t", None), None);
    }
}
