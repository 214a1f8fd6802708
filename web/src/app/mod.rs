//! The Yew app (wasm32 only): state wrapper, side effects, and the page layout.
//!
//! State lives in one [`Model`] behind [`AppState`], a `Reducible` whose `reduce` runs
//! [`Model::reduce`]. The model holds up to 20k events, so it is shared (`Rc<RefCell<_>>`)
//! rather than cloned per action; a version counter tells Yew that something changed.
//! Side effects (HTTP, the event socket, timers, the keyboard) live here and only ever talk
//! to the model through `Action`s.
//!
//! # Layout
//!
//! * this file: the side-effect context ([`Ctx`]: submit, faults, scenarios, polling, keys)
//!   and the `App` component that lays the page out.
//! * [`state`]: the reducer state [`AppState`] (`Reducible`, its `Action` is the model's).
//! * [`components`]: one file per component, each with its `Props`.
//! * [`net`]: HTTP and the event-stream socket.

mod components;
mod net;
mod state;

use crate::keys::{key_command, KeyCommand};
use crate::model::{Action, Level, Model, SocketState};
use crate::scenarios::{cond_met, transaction_body, tx_id, Scenario, Step, SubmitKind};
use components::*;
pub use state::AppState;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use twopc_protocol::api::{FaultRequest, FaultResponse, TransactionResponse};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

/// The stylesheet, injected at startup (the build copies only index.html).
const STYLE: &str = include_str!("../../style.css");

/// Everything the side effects need: the model (read-only outside the reducer), a dispatcher,
/// a counter for transaction ids and the scenario generation.
#[derive(Clone)]
pub struct Ctx {
    model: Rc<RefCell<Model>>,
    dispatch: Callback<Action>,
    counter: Rc<Cell<u64>>,
    generation: Rc<Cell<u64>>,
}

impl PartialEq for Ctx {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.model, &other.model)
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

impl Ctx {
    /// Submits a sample transaction; the answer arrives as an action. Returns its id.
    pub fn submit(&self, kind: SubmitKind) -> Option<String> {
        let cfg = self.model.borrow().config.clone();
        let Some(cfg) = cfg else {
            self.dispatch.emit(Action::Notify(
                Level::Error,
                "the configuration is not loaded yet (GET /v1/config)".into(),
            ));
            return None;
        };
        self.counter.set(self.counter.get() + 1);
        let id = tx_id(now_ms() as u64, self.counter.get());
        let body = match transaction_body(&cfg, kind, &id) {
            Ok(b) => b,
            Err(e) => {
                self.dispatch.emit(Action::Notify(Level::Error, e));
                return None;
            }
        };
        self.dispatch.emit(Action::Submitted {
            id: id.clone(),
            label: kind.label().into(),
        });
        let dispatch = self.dispatch.clone();
        let ret = id.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = match net::post_json("/v1/transactions", &body).await {
                Ok((_, text)) => serde_json::from_str::<TransactionResponse>(&text)
                    .map_err(|e| format!("{id}: unexpected answer: {e}")),
                Err(e) => Err(format!("{id}: {e}")),
            };
            dispatch.emit(Action::SubmitAnswered(result));
        });
        Some(ret)
    }

    /// Posts a fault request and waits for the answer.
    pub async fn fault_async(&self, body: FaultRequest) {
        let json = serde_json::to_value(&body).unwrap_or_default();
        let result = match net::post_json("/v1/faults", &body).await {
            Ok((_, text)) => Ok(serde_json::from_str::<FaultResponse>(&text)
                .map(|r| r.fault)
                .unwrap_or_else(|_| json.to_string())),
            Err(e) => Err(format!(
                "fault {}: {e}",
                json["fault"].as_str().unwrap_or("?")
            )),
        };
        self.dispatch.emit(Action::FaultAnswered(result));
    }

    /// Posts a fault request in the background.
    pub fn fault(&self, body: FaultRequest) {
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move { me.fault_async(body).await });
    }

    /// Runs a scenario step by step; a newer run (or stop) cancels it.
    pub fn run_scenario(&self, sc: Scenario) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.dispatch.emit(Action::ScenarioStart {
            name: sc.slug.into(),
            title: sc.title.into(),
            total: sc.steps.len(),
            generation,
        });
        let me = self.clone();
        let run_at_start = self.model.borrow().live.run.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let mut txid: Option<String> = None;
            for step in sc.steps {
                if me.generation.get() != generation {
                    return;
                }
                let text = match step {
                    Step::Say(s) => s,
                    Step::Submit(kind) => {
                        txid = me.submit(kind);
                        String::new()
                    }
                    Step::WaitFor(cond, max_ms) => {
                        let start = now_ms();
                        loop {
                            let met = {
                                let m = me.model.borrow();
                                cond_met(
                                    &cond,
                                    &m.live,
                                    txid.as_deref(),
                                    run_at_start.as_deref(),
                                    m.socket == SocketState::Open,
                                )
                            };
                            if met {
                                break String::new();
                            }
                            if now_ms() - start > f64::from(max_ms)
                                || me.generation.get() != generation
                            {
                                break format!(
                                    "(gave up waiting for {} after {} s)",
                                    cond.describe(),
                                    max_ms / 1000
                                );
                            }
                            gloo_timers::future::TimeoutFuture::new(5).await;
                        }
                    }
                    Step::Fault(body) => {
                        me.fault_async(body).await;
                        String::new()
                    }
                    Step::Wait(ms) => {
                        gloo_timers::future::TimeoutFuture::new(ms).await;
                        String::new()
                    }
                };
                if me.generation.get() != generation {
                    return;
                }
                me.dispatch.emit(Action::ScenarioStep { generation, text });
            }
            me.dispatch.emit(Action::ScenarioEnd { generation });
        });
    }

    /// Stops the running scenario.
    pub fn stop_scenario(&self) {
        let g = self.generation.get();
        self.generation.set(g + 1);
        self.dispatch.emit(Action::ScenarioEnd { generation: g });
    }

    fn load_config(&self) {
        let d = self.dispatch.clone();
        wasm_bindgen_futures::spawn_local(async move {
            // A coordinator with clients configured answers 401 without a (good) token: the
            // page then asks for one.
            match net::http("GET", "/v1/whoami", None).await {
                Ok((401, text)) => {
                    d.emit(Action::TokenNeeded(crate::model::error_text(401, &text)));
                    return;
                }
                Ok((200, text)) => match serde_json::from_str(&text) {
                    Ok(who) => d.emit(Action::IdentityLoaded(who)),
                    Err(e) => d.emit(Action::Notify(Level::Error, format!("GET /v1/whoami: {e}"))),
                },
                Ok((status, text)) => d.emit(Action::Notify(
                    Level::Error,
                    format!(
                        "GET /v1/whoami: {}",
                        crate::model::error_text(status, &text)
                    ),
                )),
                Err(e) => d.emit(Action::Notify(Level::Error, format!("GET /v1/whoami: {e}"))),
            }
            match net::get_json("/v1/config").await {
                Ok(c) => d.emit(Action::ConfigLoaded(c)),
                Err(e) => d.emit(Action::Notify(Level::Error, format!("GET /v1/config: {e}"))),
            }
        });
    }

    fn load_participants(&self) {
        let d = self.dispatch.clone();
        // Unfinished transactions that have been quiet for a while: their last events may
        // have happened while the page was disconnected (a coordinator restart recovers them
        // before the page reconnects). Ask the coordinator for their outcome.
        let stale = {
            let m = self.model.borrow();
            if m.socket == SocketState::Open {
                m.live.stale_unfinished(now_ms() as u64, 2_000, 20)
            } else {
                Vec::new()
            }
        };
        wasm_bindgen_futures::spawn_local(async move {
            if let Ok(list) = net::get_json("/v1/participants").await {
                d.emit(Action::ParticipantsLoaded(list));
            }
            for id in stale {
                match net::http("GET", &format!("/v1/transactions/{id}"), None).await {
                    Ok((200, text)) => {
                        if let Ok(resp) = serde_json::from_str::<TransactionResponse>(&text) {
                            d.emit(Action::TxLookedUp(resp));
                        }
                    }
                    Ok((400..=499, _)) => d.emit(Action::TxUnknown(id)),
                    _ => {}
                }
            }
        });
    }

    fn on_key(&self, cmd: KeyCommand) {
        let d = &self.dispatch;
        match cmd {
            KeyCommand::TogglePlay => d.emit(Action::TogglePlay),
            KeyCommand::StepBack => d.emit(Action::Step(-1)),
            KeyCommand::StepForward => d.emit(Action::Step(1)),
            KeyCommand::Faster => d.emit(Action::SpeedUp),
            KeyCommand::Slower => d.emit(Action::SpeedDown),
            KeyCommand::Live => d.emit(Action::GoLive),
            KeyCommand::Submit => {
                self.submit(SubmitKind::Transfer);
            }
            KeyCommand::Fail => {
                self.submit(SubmitKind::Failing);
            }
            KeyCommand::Help => d.emit(Action::ToggleHelp),
            KeyCommand::Escape => {
                if self.model.borrow().help {
                    d.emit(Action::Escape);
                } else {
                    d.emit(Action::Select(None));
                }
            }
        }
    }
}

fn inject_style() {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if doc.get_element_by_id("twopc-style").is_some() {
        return;
    }
    if let (Ok(style), Some(head)) = (doc.create_element("style"), doc.head()) {
        style.set_id("twopc-style");
        style.set_text_content(Some(STYLE));
        let _ = head.append_child(&style);
    }
}

fn install_keys(ctx: Ctx) -> Option<Closure<dyn FnMut(web_sys::KeyboardEvent)>> {
    let doc = web_sys::window()?.document()?;
    let cb = Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |e: web_sys::KeyboardEvent| {
        if e.ctrl_key() || e.meta_key() || e.alt_key() {
            return;
        }
        // Typing in a field is not a shortcut.
        if let Some(t) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        {
            let tag = t.tag_name().to_ascii_lowercase();
            let is_range = t.get_attribute("type").as_deref() == Some("range");
            if (tag == "input" && !is_range) || tag == "textarea" || tag == "select" {
                return;
            }
        }
        if let Some(cmd) = key_command(&e.key()) {
            e.prevent_default();
            ctx.on_key(cmd);
        }
    });
    doc.add_event_listener_with_callback("keydown", cb.as_ref().unchecked_ref())
        .ok()?;
    Some(cb)
}

#[function_component(App)]
fn app() -> Html {
    let state = use_reducer(AppState::default);
    let ctx = {
        let dispatcher = state.dispatcher();
        let model = state.model.clone();
        use_memo((), move |_| Ctx {
            model,
            dispatch: Callback::from(move |a| dispatcher.dispatch(a)),
            counter: Rc::new(Cell::new(0)),
            generation: Rc::new(Cell::new(0)),
        })
    };
    let ctx: Ctx = (*ctx).clone();

    // Start-up: style, config, event stream, participant polling, keyboard.
    {
        let ctx = ctx.clone();
        use_effect_with((), move |_| {
            inject_style();
            ctx.load_config();
            ctx.load_participants();
            let on_open = {
                let ctx = ctx.clone();
                // A (re)connection may be a restarted coordinator: reload its configuration.
                Callback::from(move |_| ctx.load_config())
            };
            let stream = net::EventStream::start(ctx.dispatch.clone(), on_open);
            let poll = {
                let ctx = ctx.clone();
                gloo_timers::callback::Interval::new(1_000, move || ctx.load_participants())
            };
            let keys = install_keys(ctx.clone());
            move || {
                drop(poll);
                drop(keys);
                drop(stream);
            }
        });
    }

    let model = state.model.borrow();
    // Ticker: replay while playing, and paced live mode while it catches up with the tail.
    {
        let ticker = model.ticker();
        let d = ctx.dispatch.clone();
        use_effect_with(ticker, move |ticker| {
            let iv = ticker
                .map(|ms| gloo_timers::callback::Interval::new(ms, move || d.emit(Action::Tick)));
            move || drop(iv)
        });
    }
    let config = model.config.clone();
    let statuses = model.statuses.clone();
    let scenario = model.scenario.clone();
    let help = model.help;
    let fault_error = model.fault_error.clone();
    let notices: Vec<_> = model.notices.iter().cloned().collect();
    let token_needed = model.token_needed.clone();
    let identity = model.identity.clone();
    drop(model);

    let toggle_help = {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(Action::ToggleHelp))
    };

    html! {
        <div class="app" id="app" data-testid="app">
            <header class="topbar">
                <h1>{ "twopc" }<span class="sub">{ " two-phase commit, live" }</span></h1>
                <StatusBar state={(*state).clone()} />
                <button class="help-btn" data-testid="help-button" title="Keyboard shortcuts (?)"
                    onclick={toggle_help}>{ "?" }</button>
            </header>
            <main class="layout">
                <section class="col-main">
                    <Timeline state={(*state).clone()} dispatch={ctx.dispatch.clone()} />
                    <DiagramView state={(*state).clone()} dispatch={ctx.dispatch.clone()} />
                    <Legend />
                    <TxList state={(*state).clone()} dispatch={ctx.dispatch.clone()} />
                </section>
                <aside class="col-side">
                    <Controls ctx={ctx.clone()} config={config.clone()} statuses={statuses.clone()}
                        fault_error={fault_error} identity={identity} />
                    <ScenarioPanel ctx={ctx.clone()} config={config.clone()} scenario={scenario} />
                    <InDoubtPanel state={(*state).clone()} />
                    <Notices notices={notices} />
                </aside>
            </main>
            if help {
                <HelpOverlay dispatch={ctx.dispatch.clone()} />
            }
            if let Some(why) = token_needed {
                <TokenPrompt why={why} />
            }
        </div>
    }
}

/// Mounts the app on the page's body.
pub fn run() {
    yew::Renderer::<App>::new().render();
}
