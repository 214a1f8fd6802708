//! HTTP calls and the event stream (browser only).

use crate::model::{batch_interval_ms, parse_incoming, Action, Incoming, SocketState, MAX_EVENTS};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CloseEvent, MessageEvent, Request, RequestInit, Response, WebSocket};
use yew::Callback;

fn js_err(v: JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string()
        .or_else(|| js_sys::JSON::stringify(&v).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// Where the page keeps its client token: the tab's session storage (gone with the tab, never
/// shared with other tabs or written to disk by the page).
const TOKEN_KEY: &str = "twopc-client-token";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

/// The client token this tab was given, if any.
pub fn token() -> Option<String> {
    session_storage()?
        .get_item(TOKEN_KEY)
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
}

/// Keeps `token` for this tab (an empty one forgets it).
pub fn set_token(token: &str) {
    if let Some(s) = session_storage() {
        let _ = if token.is_empty() {
            s.remove_item(TOKEN_KEY)
        } else {
            s.set_item(TOKEN_KEY, token)
        };
    }
}

/// Reloads the page (after the token changed: every request and the socket start over).
pub fn reload() {
    if let Some(w) = web_sys::window() {
        let _ = w.location().reload();
    }
}

/// One HTTP request on the page's origin, with the tab's client token: (status, body text).
pub async fn http(method: &str, path: &str, body: Option<String>) -> Result<(u16, String), String> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(b) = &body {
        init.set_body(&JsValue::from_str(b));
    }
    let req = Request::new_with_str_and_init(path, &init).map_err(js_err)?;
    if let Some(t) = token() {
        req.headers()
            .set("authorization", &format!("Bearer {t}"))
            .map_err(js_err)?;
    }
    if body.is_some() {
        req.headers()
            .set("content-type", "application/json")
            .map_err(js_err)?;
    }
    let window = web_sys::window().ok_or("no window")?;
    let resp: Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|e| format!("{method} {path} failed: {}", js_err(e)))?
        .dyn_into()
        .map_err(js_err)?;
    let text = JsFuture::from(resp.text().map_err(js_err)?)
        .await
        .map_err(js_err)?
        .as_string()
        .unwrap_or_default();
    Ok((resp.status(), text))
}

use crate::model::error_text;

/// GET a JSON document.
pub async fn get_json<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, String> {
    let (status, text) = http("GET", path, None).await?;
    if !(200..300).contains(&status) {
        return Err(error_text(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

/// POST a JSON body; Ok((status, body)) for 2xx, Err(text) otherwise.
pub async fn post_json<T: serde::Serialize>(path: &str, body: &T) -> Result<(u16, String), String> {
    let body = serde_json::to_string(body).map_err(|e| format!("{path}: {e}"))?;
    let (status, text) = http("POST", path, Some(body)).await?;
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(error_text(status, &text))
    }
}

/// The `/v1/events` URL on the page's origin.
pub fn events_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let (proto, host) = loc
        .map(|l| {
            (
                l.protocol().unwrap_or_else(|_| "http:".into()),
                l.host().unwrap_or_default(),
            )
        })
        .unwrap_or_else(|| ("http:".into(), String::new()));
    let ws = if proto == "https:" { "wss:" } else { "ws:" };
    // A browser's WebSocket cannot send an Authorization header: the token goes as a query
    // parameter, which the coordinator accepts on this path only.
    match token() {
        Some(t) => format!(
            "{ws}//{host}/v1/events?access_token={}",
            String::from(js_sys::encode_uri_component(&t))
        ),
        None => format!("{ws}//{host}/v1/events"),
    }
}

const BACKOFF_MIN_MS: u32 = 250;
const BACKOFF_MAX_MS: u32 = 5_000;

struct Inner {
    url: String,
    ws: Option<WebSocket>,
    backoff_ms: u32,
    buffer: Vec<Incoming>,
    dropped: u64,
    frame_scheduled: bool,
    last_batch: usize,
    dispatch: Callback<Action>,
    on_open: Callback<()>,
    handlers: Option<Handlers>,
}

struct Handlers {
    message: Closure<dyn FnMut(MessageEvent)>,
    open: Closure<dyn FnMut(JsValue)>,
    close: Closure<dyn FnMut(CloseEvent)>,
    frame: Closure<dyn FnMut(JsValue)>,
    delayed_frame: Closure<dyn FnMut()>,
    reconnect: Closure<dyn FnMut()>,
}

/// The event stream: one WebSocket at a time, reconnected with exponential backoff. Frames
/// are parsed as they arrive and handed to the app once per animation frame, as one batch.
#[derive(Clone)]
pub struct EventStream {
    inner: Rc<RefCell<Inner>>,
}

impl EventStream {
    /// Connects and keeps reconnecting; `on_open` runs on every (re)connection.
    pub fn start(dispatch: Callback<Action>, on_open: Callback<()>) -> EventStream {
        let inner = Rc::new(RefCell::new(Inner {
            url: events_url(),
            ws: None,
            backoff_ms: BACKOFF_MIN_MS,
            buffer: Vec::new(),
            dropped: 0,
            frame_scheduled: false,
            last_batch: 0,
            dispatch,
            on_open,
            handlers: None,
        }));
        let s = EventStream { inner };
        s.install_handlers();
        s.connect();
        s
    }

    fn install_handlers(&self) {
        let me = self.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            me.on_message(&text);
        });
        let me = self.clone();
        let open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let (dispatch, on_open) = {
                let mut i = me.inner.borrow_mut();
                i.backoff_ms = BACKOFF_MIN_MS;
                (i.dispatch.clone(), i.on_open.clone())
            };
            dispatch.emit(Action::Socket(SocketState::Open));
            on_open.emit(());
        });
        let me = self.clone();
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |_| me.on_close());
        let me = self.clone();
        let frame = Closure::<dyn FnMut(JsValue)>::new(move |_| me.flush());
        let me2 = self.clone();
        let delayed_frame = Closure::<dyn FnMut()>::new(move || {
            let i = me2.inner.borrow();
            if let (Some(w), Some(h)) = (web_sys::window(), &i.handlers) {
                let _ = w.request_animation_frame(h.frame.as_ref().unchecked_ref());
            }
        });
        let me = self.clone();
        let reconnect = Closure::<dyn FnMut()>::new(move || me.connect());
        self.inner.borrow_mut().handlers = Some(Handlers {
            message,
            open,
            close,
            frame,
            delayed_frame,
            reconnect,
        });
    }

    fn connect(&self) {
        let mut i = self.inner.borrow_mut();
        let ws = match WebSocket::new(&i.url) {
            Ok(ws) => ws,
            Err(_) => {
                drop(i);
                self.on_close();
                return;
            }
        };
        if let Some(h) = &i.handlers {
            ws.set_onmessage(Some(h.message.as_ref().unchecked_ref()));
            ws.set_onopen(Some(h.open.as_ref().unchecked_ref()));
            ws.set_onclose(Some(h.close.as_ref().unchecked_ref()));
        }
        i.ws = Some(ws);
        let d = i.dispatch.clone();
        drop(i);
        d.emit(Action::Socket(SocketState::Connecting));
    }

    fn on_close(&self) {
        let mut i = self.inner.borrow_mut();
        if let Some(ws) = i.ws.take() {
            ws.set_onmessage(None);
            ws.set_onopen(None);
            ws.set_onclose(None);
        }
        let wait = i.backoff_ms;
        i.backoff_ms = (i.backoff_ms * 2).min(BACKOFF_MAX_MS);
        if let (Some(w), Some(h)) = (web_sys::window(), &i.handlers) {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                h.reconnect.as_ref().unchecked_ref(),
                wait as i32,
            );
        }
        let d = i.dispatch.clone();
        drop(i);
        d.emit(Action::Socket(SocketState::Retrying(wait)));
    }

    fn on_message(&self, text: &str) {
        let parsed = parse_incoming(text);
        let mut i = self.inner.borrow_mut();
        match parsed {
            Ok(inc) => i.buffer.push(inc),
            Err(_) => return,
        }
        // A hidden tab gets no animation frames: keep only what the log would keep anyway.
        if i.buffer.len() > MAX_EVENTS + 1_000 {
            let extra = i.buffer.len() - MAX_EVENTS;
            i.buffer.drain(..extra);
            i.dropped += extra as u64;
        }
        if !i.frame_scheduled {
            if let (Some(w), Some(h)) = (web_sys::window(), &i.handlers) {
                // Light traffic: next frame. Heavy traffic: wait a little, then the next frame.
                let wait = batch_interval_ms(i.last_batch);
                let ok = if wait == 0 {
                    w.request_animation_frame(h.frame.as_ref().unchecked_ref())
                        .is_ok()
                } else {
                    w.set_timeout_with_callback_and_timeout_and_arguments_0(
                        h.delayed_frame.as_ref().unchecked_ref(),
                        wait as i32,
                    )
                    .is_ok()
                };
                i.frame_scheduled = ok;
            }
        }
    }

    fn flush(&self) {
        let (mut batch, dropped, dispatch) = {
            let mut i = self.inner.borrow_mut();
            i.frame_scheduled = false;
            i.last_batch = i.buffer.len();
            (
                std::mem::take(&mut i.buffer),
                std::mem::take(&mut i.dropped),
                i.dispatch.clone(),
            )
        };
        if dropped > 0 {
            batch.insert(0, Incoming::Lagged(dropped));
        }
        if !batch.is_empty() {
            dispatch.emit(Action::Ingest(batch));
        }
    }
}
