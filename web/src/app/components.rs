//! The page's components. Each takes what it draws as props and reports user intent through
//! `Callback<Action>` (or the side-effect context for API calls).

use super::{AppState, Ctx};
use crate::keys::SHORTCUTS;
use crate::layout::{
    diagram, human_ms, recent_txs, DiagramInput, ItemKind, Shape, Stagger, MAX_ROWS, SLANT,
};
use crate::model::{
    held_prepared, Action, Badge, Level, Notice, ParticipantStatus, PublicConfig, ScenarioRun,
    SocketState, SPEEDS,
};
use crate::scenarios::{crash, delay_next, drop_next, heal, partition, scenarios, SubmitKind};
use twopc_protocol::api::FaultRequest;
use twopc_protocol::{MessageType, ParticipantName};
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// Transactions listed at most.
pub const LIST_LIMIT: usize = 60;
/// With more events than this in one batch, the diagram draws without animations.
pub const CALM_BATCH: u64 = 40;

/// Props of the components that draw from the whole state.
#[derive(Properties, PartialEq)]
pub struct StateProps {
    /// The state.
    pub state: AppState,
    /// Dispatches actions.
    pub dispatch: Callback<Action>,
}

/// Props of the status bar.
#[derive(Properties, PartialEq)]
pub struct StatusProps {
    /// The state.
    pub state: AppState,
}

/// Connection state and counts.
#[function_component(StatusBar)]
pub fn status_bar(p: &StatusProps) -> Html {
    let m = p.state.model.borrow();
    let live = &m.live;
    let sock_class = match m.socket {
        SocketState::Open => "pill ok",
        SocketState::Connecting => "pill warn",
        SocketState::Retrying(_) => "pill bad",
    };
    let run = live.run.clone().unwrap_or_else(|| "—".into());
    html! {
        <div class="status">
            <span class={sock_class} id="socket-status" data-testid="socket-status"
                data-state={match m.socket { SocketState::Open => "open", SocketState::Connecting => "connecting", SocketState::Retrying(_) => "retrying" }}>
                { m.socket.label() }
            </span>
            <span class="counts" id="counts" data-testid="counts" title={format!("coordinator run {run}")}>
                <span data-testid="count-events" data-value={m.log.end().to_string()}>
                    { format!("{} events", m.log.end()) }</span>
                { format!(" ({} kept, {} evicted, {} skipped by server, {} heartbeats not kept)", m.log.len(), m.log.evicted(), m.lagged, m.heartbeats) }
                <span class="sep">{ " · " }</span>
                <span data-testid="count-txs" data-value={live.counts.txs.to_string()}>
                    { format!("{} txs", live.counts.txs) }</span>
                { format!(": {} committed, {} aborted, {} in flight", live.counts.committed, live.counts.aborted, live.in_flight()) }
                if live.counts.heuristic > 0 {
                    <span class="count-heuristic" data-testid="count-heuristic" data-value={live.counts.heuristic.to_string()}>
                        { format!(", {} HEURISTIC", live.counts.heuristic) }</span>
                }
                <span class="sep">{ " · " }</span>
                { format!("{} messages", live.counts.messages) }
                if live.counts.coordinator_starts > 0 {
                    <span class="sep">{ " · " }</span>
                    { format!("{} coordinator start(s)", live.counts.coordinator_starts) }
                }
            </span>
        </div>
    }
}

/// Pause, step, speed and the scrubber.
#[function_component(Timeline)]
pub fn timeline(p: &StateProps) -> Html {
    let m = p.state.model.borrow();
    let d = p.dispatch.clone();
    let (base, end, pos) = (m.log.base(), m.log.end(), m.position());
    let mode = if m.is_live() {
        "live"
    } else if m.playing {
        "replaying"
    } else {
        "paused"
    };
    let emit = |a: Action| {
        let d = d.clone();
        Callback::from(move |_: MouseEvent| d.emit(a.clone()))
    };
    let on_scrub = {
        let d = d.clone();
        Callback::from(move |e: InputEvent| {
            let v = e.target_unchecked_into::<HtmlInputElement>().value();
            if let Ok(i) = v.parse::<u64>() {
                d.emit(Action::Seek(i));
            }
        })
    };
    let at = m
        .log
        .get(pos.saturating_sub(1))
        .map(|e| format!("#{} {}", e.seq, kind_name(&e.kind)))
        .unwrap_or_default();
    html! {
        <div class="timeline" data-testid="timeline">
            <div class="tl-buttons">
                <button data-testid="timeline-back" title="Step back (←)" onclick={emit(Action::Step(-1))}>{ "‹ step" }</button>
                <button data-testid="timeline-play" class="primary" title="Pause / play (space)"
                    onclick={emit(Action::TogglePlay)}>
                    { if mode == "paused" { "▶ play" } else { "❚❚ pause" } }
                </button>
                <button data-testid="timeline-forward" title="Step forward (→)" onclick={emit(Action::Step(1))}>{ "step ›" }</button>
                <button data-testid="timeline-live" class={classes!((mode == "live").then_some("on"))}
                    title="Follow the live tail (L)" onclick={emit(Action::GoLive)}>{ "● live" }</button>
                <span class="speed">
                    <button data-testid="timeline-slower" title="Slower (-)" onclick={emit(Action::SpeedDown)}>{ "−" }</button>
                    <span data-testid="timeline-speed" data-value={m.speed_factor().to_string()}>
                        { format!("{}×", m.speed_factor()) }</span>
                    <button data-testid="timeline-faster" title="Faster (+)" onclick={emit(Action::SpeedUp)}>{ "+" }</button>
                </span>
                <span class="tl-pos" data-testid="timeline-position" data-position={pos.to_string()} data-end={end.to_string()}>
                    { format!("event {} / {}", pos, end) }
                    <span class="muted">{ format!("  {at}") }</span>
                </span>
                <span class={classes!("mode", mode)} data-testid="timeline-mode" data-mode={mode}>{ mode }</span>
            </div>
            <input type="range" id="timeline-scrubber" data-testid="timeline-scrubber" aria-label="replay position"
                min={base.to_string()} max={end.to_string()} value={pos.to_string()} oninput={on_scrub} />
        </div>
    }
}

fn kind_name(k: &twopc_protocol::EventKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The message diagram.
#[function_component(DiagramView)]
pub fn diagram_view(p: &StateProps) -> Html {
    let hover = use_state(|| None::<(u64, i32, i32)>);
    let stagger = use_mut_ref(Stagger::default);
    let m = p.state.model.borrow();
    let selected = m.selected.clone();
    let dg = diagram(DiagramInput {
        log: &m.log,
        view: m.view(),
        config: m.config.as_ref(),
        position: m.position(),
        selected: selected.as_deref(),
        batch_start: m.is_live().then_some(m.batch_start),
        coordinator_up: m.socket == SocketState::Open,
        max_rows: MAX_ROWS,
    });
    let speed = m.speed_factor();
    // Under load (big batches) the diagram skips its animations: the page stays responsive.
    let busy = m.is_live() && m.batch_len > CALM_BATCH;
    drop(m);
    let dur_ms = 450.0 / speed;
    let indices: Vec<u64> = dg.items.iter().map(|i| i.index).collect();
    let delays = stagger
        .borrow_mut()
        .assign(&indices, js_sys::Date::now(), 120.0 / speed);
    let d = p.dispatch.clone();
    let clear = {
        let d = d.clone();
        Callback::from(move |_: MouseEvent| d.emit(Action::Select(None)))
    };
    let hovered_tip = hover.as_ref().and_then(|(idx, x, y)| {
        dg.items
            .iter()
            .find(|it| it.index == *idx)
            .map(|it| (it.tooltip.clone(), *x, *y))
    });
    let lanes = dg.lanes.iter().map(|l| {
        let b = &l.badge;
        html! {
            <g class={classes!("lane", (!l.up).then_some("lane-down"))} key={l.name.clone()}
               data-testid={format!("lane-{}", l.name)}>
                <line class="lane-line" x1={l.x.to_string()} x2={l.x.to_string()} y1="70"
                    y2={dg.height.to_string()} />
                <text class="lane-title" x={l.x.to_string()} y="16">{ &l.title }</text>
                <g class={classes!("badge", format!("badge-{}", b.badge.class()))}
                   data-testid={format!("badge-{}", l.name)} data-state={b.badge.class()}>
                    <rect x={(l.x - 75.0).to_string()} y="24" width="150" height="20" rx="10" />
                    <text x={l.x.to_string()} y="38">{ b.badge.label() }</text>
                    <title>{ format!("{}: {}", l.name, b.text) }</title>
                </g>
                <text class="badge-note" x={l.x.to_string()} y="60">
                    { if l.up { b.text.clone() } else { format!("{} · DOWN", b.text) } }
                </text>
            </g>
        }
    });
    let items = dg.items.iter().zip(delays).map(|(it, delay)| {
        let style = format!("transform: translate(0px, {:.1}px); --d: {:.0}ms", it.y, delay);
        let testid = match it.kind {
            ItemKind::Message | ItemKind::Client => "arrow",
            ItemKind::LogWrite => "log-write",
            ItemKind::Mark => "mark",
            ItemKind::Banner => "banner",
        };
        let idx = it.index;
        let onenter = {
            let hover = hover.clone();
            Callback::from(move |e: MouseEvent| hover.set(Some((idx, e.client_x(), e.client_y()))))
        };
        let onleave = {
            let hover = hover.clone();
            Callback::from(move |_: MouseEvent| hover.set(None))
        };
        let onclick = {
            let d = d.clone();
            let tx = it.txid.clone();
            Callback::from(move |_: MouseEvent| {
                if tx.is_some() {
                    d.emit(Action::Select(tx.clone()))
                }
            })
        };
        let body = match &it.shape {
            Shape::Arrow { x1, x2, y2, head, .. } => {
                let pts = head
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mid = (x1 + x2) / 2.0;
                let dot = format!("--dx: {:.1}px; --dy: {:.1}px", x2 - x1, y2);
                html! {
                    <>
                        <line class="hit" x1={x1.to_string()} y1="0" x2={x2.to_string()} y2={y2.to_string()} />
                        <line class="arrow-line" x1={x1.to_string()} y1="0" x2={x2.to_string()} y2={y2.to_string()} pathLength="1" />
                        <polygon class="arrow-head" points={pts} />
                        <circle class="arrow-dot" cx={x1.to_string()} cy="0" r="3.5" style={dot} />
                        <text class="arrow-label" x={mid.to_string()} y={(y2 / 2.0 - 3.0).to_string()}>{ &it.label }</text>
                    </>
                }
            }
            Shape::Mark { x, .. } => html! {
                <>
                    <rect class="mark-box" x={(x - 5.0).to_string()} y={(SLANT / 2.0 - 5.0).to_string()} width="10" height="10" rx="2" />
                    <text class="mark-label" x={(x + 9.0).to_string()} y={(SLANT / 2.0 + 4.0).to_string()}>{ &it.label }</text>
                </>
            },
            Shape::Banner => html! {
                <>
                    <line class="banner-line" x1="50" x2={(dg.width - 10.0).to_string()} y1={(SLANT / 2.0).to_string()} y2={(SLANT / 2.0).to_string()} />
                    <text class="banner-label" x={(dg.width / 2.0).to_string()} y={(SLANT / 2.0 - 3.0).to_string()}>{ &it.label }</text>
                </>
            },
        };
        html! {
            <g key={it.index.to_string()} class={classes!("item", it.class.clone())} style={style}
               data-testid={testid} data-label={it.label.clone()} data-tx={it.txid.clone().unwrap_or_default()}
               data-index={it.index.to_string()}
               onmouseenter={onenter} onmouseleave={onleave} onclick={onclick}>
                <text class="row-time" x="4" y={(SLANT / 2.0 + 4.0).to_string()}>{ format!("+{} ms", it.rel_ms) }</text>
                { body }
                <title>{ &it.tooltip }</title>
            </g>
        }
    });
    let caption = match (&selected, &dg.focus) {
        (Some(s), _) => format!("transaction {s}"),
        (None, Some(f)) => format!("all transactions (badges: latest, {f})"),
        (None, None) => "all transactions".to_string(),
    };
    html! {
        <div class="diagram-wrap">
            <div class="diagram-caption">
                <span data-testid="diagram-focus" data-focus={selected.clone().unwrap_or_default()}>
                    { format!("Showing {caption}") }</span>
                <span class="muted">{ format!(" · {} rows drawn (max {MAX_ROWS})", dg.items.len()) }
                    { if dg.hidden_before > 0 { ", older scrolled out".to_string() } else { String::new() } }</span>
                if selected.is_some() {
                    <button class="small" data-testid="clear-selection" onclick={clear}>{ "show all" }</button>
                }
            </div>
            <div class="diagram-scroll">
            <svg id="diagram" data-testid="diagram" class={classes!("diagram", busy.then_some("busy"))}
                data-busy={busy.to_string()}
                viewBox={format!("0 0 {} {}", dg.width, dg.height)}
                preserveAspectRatio="xMidYMin meet"
                style={format!("--dur: {dur_ms:.0}ms")}>
                <g class="lanes">{ for lanes }</g>
                <g class="rows">{ for items }</g>
                if dg.items.is_empty() {
                    <text class="empty" x={(dg.width / 2.0).to_string()} y="200">
                        { if selected.is_some() { "no events for this transaction at this position" }
                          else { "waiting for events — submit a transaction (S)" } }
                    </text>
                }
            </svg>
            </div>
            if let Some((tip, x, y)) = hovered_tip {
                <div class="tooltip" data-testid="tooltip" style={format!("left: {}px; top: {}px", x + 14, y + 14)}>{ tip }</div>
            }
        </div>
    }
}

/// Colour legend.
#[function_component(Legend)]
pub fn legend() -> Html {
    let msgs = [
        ("msg-prepare", "PREPARE"),
        ("msg-vote-yes", "VOTE YES"),
        ("msg-vote-no", "VOTE NO"),
        ("msg-commit", "COMMIT"),
        ("msg-abort", "ABORT"),
        ("msg-ack-commit", "ACK"),
        ("msg-decision-request", "DECISION? / answer"),
        ("log-write", "log append"),
    ];
    html! {
        <div class="legend" data-testid="legend">
            <span class="legend-title">{ "States:" }</span>
            { for Badge::ALL.iter().map(|b| html! {
                <span class={classes!("chip", format!("badge-{}", b.class()))}>{ b.label() }</span>
            }) }
            <span class="legend-title">{ "Messages:" }</span>
            { for msgs.iter().map(|(c, l)| html! {
                <span class={classes!("swatch", *c)}><svg width="22" height="8"><line x1="0" y1="4" x2="22" y2="4" /></svg>{ *l }</span>
            }) }
        </div>
    }
}

/// The transaction list.
#[function_component(TxList)]
pub fn tx_list(p: &StateProps) -> Html {
    let m = p.state.model.borrow();
    let view = m.view();
    let rows = recent_txs(view, LIST_LIMIT);
    let sel = m.selected.clone();
    let fmt = |v: f64| format!("{v:.1}");
    html! {
        <div class="panel txs">
            <h2>{ "Transactions" }
                <span class="muted" data-testid="tx-count">
                    { format!(" showing {} of {} kept ({} seen)", rows.len(), view.tx_count(), view.counts.txs) }
                </span>
            </h2>
            <div class="table-wrap">
            <table data-testid="tx-list">
                <thead><tr>
                    <th>{ "id" }</th><th>{ "outcome" }</th><th>{ "participants" }</th>
                    <th title="phase 1: prepare and votes">{ "prepare ms" }</th>
                    <th title="forcing the decision to the log">{ "decide ms" }</th>
                    <th title="phase 2: until every ack">{ "commit ms" }</th>
                    <th>{ "total ms" }</th>
                    <th title="prepare / decide / commit, proportionally">{ "phases" }</th>
                </tr></thead>
                <tbody>
                { for rows.iter().map(|t| {
                    let o = t.outcome();
                    let id = t.id.clone();
                    let is_sel = sel.as_deref() == Some(t.id.as_str());
                    let onclick = {
                        let d = p.dispatch.clone();
                        let id = id.clone();
                        Callback::from(move |_: MouseEvent| d.emit(Action::Select(if is_sel { None } else { Some(id.clone()) })))
                    };
                    let tm = t.timings;
                    html! {
                        <tr key={id.clone()} class={classes!("tx-row", is_sel.then_some("selected"))}
                            data-testid="tx-row" data-tx={id.clone()} data-outcome={o.badge().class()} onclick={onclick}
                            title={t.reason.clone().unwrap_or_default()}>
                            <td class="mono">{ &t.id }</td>
                            <td><span class={classes!("chip", format!("badge-{}", o.badge().class()))}>{ o.label() }</span></td>
                            <td class="parts">{ for t.participants.iter().map(|n| {
                                let b = t.badge_of(n);
                                html! {
                                    <span class={classes!("chip", "part-chip", format!("badge-{}", b.badge.class()))}
                                        data-testid={format!("tx-part-{n}")} data-state={b.badge.class()}
                                        title={format!("{n}: {} ({})", b.badge.label(), b.text)}>{ n }</span>
                                }
                            }) }</td>
                            <td class="num">{ tm.map(|x| fmt(x.prepare_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.map(|x| fmt(x.decide_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.map(|x| fmt(x.commit_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.and_then(|x| x.total_ms).or_else(|| m.answered_ms.get(&t.id).copied()).map(fmt).unwrap_or_default() }</td>
                            <td>{ phase_bar(tm) }</td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
            </div>
        </div>
    }
}

/// A small stacked bar of the three phases.
fn phase_bar(tm: Option<crate::model::Timings>) -> Html {
    let Some(t) = tm else {
        return html! {};
    };
    let sum = t.prepare_ms + t.decide_ms + t.commit_ms;
    if sum <= 0.0 {
        return html! {};
    }
    let pct = |v: f64| format!("width: {:.1}%", 100.0 * v / sum);
    html! {
        <span class="phasebar" title={format!("prepare {:.1} ms · decide {:.1} ms · commit {:.1} ms", t.prepare_ms, t.decide_ms, t.commit_ms)}>
            <i class="ph-prepare" style={pct(t.prepare_ms)} />
            <i class="ph-decide" style={pct(t.decide_ms)} />
            <i class="ph-commit" style={pct(t.commit_ms)} />
        </span>
    }
}

/// Props of the controls.
#[derive(Properties, PartialEq)]
pub struct ControlsProps {
    /// Side effects.
    pub ctx: Ctx,
    /// The configuration.
    pub config: Option<PublicConfig>,
    /// Participant statuses.
    pub statuses: Vec<ParticipantStatus>,
    /// The latest fault-API error.
    pub fault_error: Option<String>,
}

/// Submit buttons and fault injection.
#[function_component(Controls)]
pub fn controls(p: &ControlsProps) -> Html {
    let msg_type = use_state(|| Some(MessageType::Commit));
    let delay_ms = use_state(|| 3000u64);
    let ctx = p.ctx.clone();
    let submit = |k: SubmitKind| {
        let ctx = ctx.clone();
        Callback::from(move |_: MouseEvent| {
            ctx.submit(k);
        })
    };
    let fault = |body: FaultRequest| {
        let ctx = ctx.clone();
        Callback::from(move |_: MouseEvent| ctx.fault(body.clone()))
    };
    let on_type = {
        let msg_type = msg_type.clone();
        Callback::from(move |e: Event| {
            // The "any" option has the empty value, which names no message type.
            msg_type.set(MessageType::from_wire(
                &e.target_unchecked_into::<web_sys::HtmlSelectElement>()
                    .value(),
            ))
        })
    };
    let on_ms = {
        let delay_ms = delay_ms.clone();
        Callback::from(move |e: InputEvent| {
            if let Ok(v) = e
                .target_unchecked_into::<HtmlInputElement>()
                .value()
                .parse()
            {
                delay_ms.set(v)
            }
        })
    };
    let mt = *msg_type;
    let enabled = p.config.as_ref().map(|c| c.fault_injection);
    let parts: Vec<ParticipantName> = p
        .config
        .as_ref()
        .map(|c| c.participants.iter().map(|x| x.name.clone()).collect())
        .unwrap_or_default();
    html! {
        <div class="panel controls">
            <h2>{ "Submit" }</h2>
            <div class="row">
                <button class="primary" id="submit-transfer" data-testid="submit-transfer" title="S"
                    onclick={submit(SubmitKind::Transfer)}>{ "Transfer 10 (S)" }</button>
                <button class="danger" id="submit-failing" data-testid="submit-failing" title="F"
                    onclick={submit(SubmitKind::Failing)}>{ "Transfer that fails a guard (F)" }</button>
            </div>
            <h2>{ "Faults" }</h2>
            if enabled == Some(false) {
                <p class="warn-text" data-testid="faults-disabled">
                    { "Fault injection is disabled on this coordinator: POST /v1/faults answers 403 (start it with fault_injection = true)." }
                </p>
            }
            <div class="row fault-opts">
                <label>{ "next message: " }
                    <select id="fault-msg-type" data-testid="fault-msg-type" onchange={on_type}>
                        { for [("commit", "COMMIT"), ("prepare", "PREPARE"), ("abort", "ABORT"), ("", "any")].iter().map(|(v, l)| html! {
                            <option value={*v} selected={*msg_type == MessageType::from_wire(v)}>{ *l }</option>
                        }) }
                    </select>
                </label>
                <label>{ "delay ms " }
                    <input type="number" id="fault-delay-ms" data-testid="fault-delay-ms" min="0" max="60000" step="500"
                        value={delay_ms.to_string()} oninput={on_ms} />
                </label>
            </div>
            <table class="faults">
                <tbody>
                { for parts.iter().map(|name| {
                    let st = p.statuses.iter().find(|s| &s.name == name);
                    let up = st.map(|s| s.connected);
                    html! {
                        <tr key={name.to_string()} data-testid={format!("fault-row-{name}")}>
                            <td>
                                <span class={classes!("dot", match up { Some(true) => "ok", Some(false) => "bad", None => "unknown" })}
                                    title={match up { Some(true) => "connected", Some(false) => "disconnected", None => "unknown" }} />
                                { name.as_str() }
                            </td>
                            <td>
                                <button data-testid={format!("fault-partition-{name}")} title="cut the coordinator's connection to it"
                                    onclick={fault(partition(name))}>{ "cut" }</button>
                                <button data-testid={format!("fault-heal-{name}")} title="restore the connection"
                                    onclick={fault(heal(name))}>{ "restore" }</button>
                                <button data-testid={format!("fault-drop-{name}")} title="lose the next message of the chosen type"
                                    onclick={fault(drop_next(name, mt))}>{ "drop next" }</button>
                                <button data-testid={format!("fault-delay-{name}")} title="delay the next message of the chosen type"
                                    onclick={fault(delay_next(name, *delay_ms, mt))}>{ "delay next" }</button>
                            </td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
            if parts.is_empty() {
                <p class="muted">{ "No participants configured." }</p>
            }
            <div class="row">
                <button class="danger" data-testid="fault-crash" title="the coordinator exits; its supervisor restarts it"
                    onclick={fault(crash())}>{ "Crash the coordinator" }</button>
            </div>
            if let Some(e) = &p.fault_error {
                <p class="error-text" id="fault-error" data-testid="fault-error">{ e }</p>
            }
        </div>
    }
}

/// Props of the scenario panel.
#[derive(Properties, PartialEq)]
pub struct ScenarioProps {
    /// Side effects.
    pub ctx: Ctx,
    /// The configuration.
    pub config: Option<PublicConfig>,
    /// The running or last scenario.
    pub scenario: Option<ScenarioRun>,
}

/// Preset scenarios and their narration.
#[function_component(ScenarioPanel)]
pub fn scenario_panel(p: &ScenarioProps) -> Html {
    let Some(cfg) = &p.config else {
        return html! { <div class="panel"><h2>{ "Scenarios" }</h2><p class="muted">{ "loading configuration…" }</p></div> };
    };
    let all = scenarios(cfg);
    let running = p.scenario.as_ref().filter(|s| !s.finished).is_some();
    let stop = {
        let ctx = p.ctx.clone();
        Callback::from(move |_: MouseEvent| ctx.stop_scenario())
    };
    html! {
        <div class="panel scenarios">
            <h2>{ "Scenarios" }</h2>
            <div class="scenario-buttons">
            { for all.into_iter().map(|sc| {
                let ctx = p.ctx.clone();
                let slug = sc.slug;
                let title = sc.title;
                let blurb = sc.blurb.clone();
                let needs = sc.needs_faults && !cfg.fault_injection;
                let onclick = Callback::from(move |_: MouseEvent| ctx.run_scenario(sc.clone()));
                html! {
                    <button key={slug} data-testid={format!("scenario-{slug}")} id={format!("scenario-{slug}")}
                        title={if needs { format!("{blurb} (needs fault injection, which is disabled)") } else { blurb.clone() }}
                        class={classes!(needs.then_some("needs-faults"))} onclick={onclick}>{ title }</button>
                }
            }) }
            </div>
            if let Some(s) = &p.scenario {
                <div class="narration" data-testid="scenario-narration" data-scenario={s.name.clone()}
                    data-finished={s.finished.to_string()}>
                    <div class="narration-head">
                        <strong>{ &s.title }</strong>
                        <span class="muted" data-testid="scenario-progress">
                            { format!(" step {}/{}{}", s.step, s.total, if s.finished { " · done" } else { "" }) }
                        </span>
                        if running {
                            <button class="small" data-testid="scenario-stop" onclick={stop}>{ "stop" }</button>
                        }
                    </div>
                    <ol>
                        { for s.narration.iter().map(|n| html! { <li>{ n }</li> }) }
                    </ol>
                </div>
            }
        </div>
    }
}

/// Props of the in-doubt panel.
#[derive(Properties, PartialEq)]
pub struct InDoubtProps {
    /// The state.
    pub state: AppState,
}

/// What each participant holds prepared, and for how long.
#[function_component(InDoubtPanel)]
pub fn in_doubt_panel(p: &InDoubtProps) -> Html {
    let m = p.state.model.borrow();
    let now = js_sys::Date::now() as u64;
    let held = held_prepared(&m.live, now);
    let names: Vec<String> = match &m.config {
        Some(c) => c.participants.iter().map(|x| x.name.to_string()).collect(),
        None => m.statuses.iter().map(|s| s.name.to_string()).collect(),
    };
    html! {
        <div class="panel indoubt" data-testid="indoubt-panel" id="indoubt-panel">
            <h2>{ "In doubt" }</h2>
            <table>
                <thead><tr><th>{ "participant" }</th><th>{ "link" }</th>
                    <th title="prepared transactions it reported when it last connected (all coordinators)">{ "prepared at connect" }</th>
                    <th title="of those, other coordinators' transactions">{ "foreign" }</th>
                    <th title="transactions of this coordinator waiting for its ack">{ "awaiting ack" }</th></tr></thead>
                <tbody>
                { for names.iter().map(|n| {
                    let s = m.statuses.iter().find(|s| s.name.as_str() == n);
                    html! {
                        <tr key={n.clone()} data-testid={format!("indoubt-{n}")}
                            data-connected={s.map(|s| s.connected.to_string()).unwrap_or_default()}
                            data-awaiting={s.map(|s| s.awaiting_ack.to_string()).unwrap_or_default()}>
                            <td>{ n }</td>
                            <td>{ match s.map(|s| s.connected) { Some(true) => "up", Some(false) => "DOWN", None => "?" } }</td>
                            <td class="num">{ s.map(|s| s.reported_prepared.to_string()).unwrap_or_default() }</td>
                            <td class="num">{ s.map(|s| s.foreign_prepared.to_string()).unwrap_or_default() }</td>
                            <td class="num">{ s.map(|s| s.awaiting_ack.to_string()).unwrap_or_default() }</td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
            if held.is_empty() {
                <p class="muted" data-testid="held-none">{ "No participant holds a transaction prepared (as seen in the events)." }</p>
            } else {
                <ul class="held">
                { for held.iter().take(20).map(|h| html! {
                    <li data-testid="held-row" data-tx={h.txid.clone()} data-participant={h.participant.clone()}>
                        <span class={classes!("chip", format!("badge-{}", h.badge.class()))}>{ h.badge.label() }</span>
                        { format!(" {} holds {} ", h.participant, h.txid) }
                        <span class="muted">{ format!("for {} · {}", h.held_ms.map(human_ms).unwrap_or_else(|| "?".into()), h.note) }</span>
                    </li>
                }) }
                </ul>
                if held.len() > 20 {
                    <p class="muted">{ format!("… and {} more", held.len() - 20) }</p>
                }
            }
        </div>
    }
}

/// Props of the notices.
#[derive(Properties, PartialEq)]
pub struct NoticesProps {
    /// Notices, newest last.
    pub notices: Vec<Notice>,
}

/// API answers and errors.
#[function_component(Notices)]
pub fn notices(p: &NoticesProps) -> Html {
    html! {
        <div class="panel notices" data-testid="notices">
            <h2>{ "Messages" }</h2>
            <ul>
            { for p.notices.iter().rev().map(|n| html! {
                <li key={n.id.to_string()} data-testid="notice"
                    class={classes!(if n.level == Level::Error { "error-text" } else { "info-text" })}>{ &n.text }</li>
            }) }
            </ul>
        </div>
    }
}

/// Props of the help overlay.
#[derive(Properties, PartialEq)]
pub struct HelpProps {
    /// Dispatches actions.
    pub dispatch: Callback<Action>,
}

/// Keyboard shortcuts.
#[function_component(HelpOverlay)]
pub fn help_overlay(p: &HelpProps) -> Html {
    let close = {
        let d = p.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(Action::Escape))
    };
    let speeds = SPEEDS
        .iter()
        .map(|s| format!("{s}×"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        <div class="overlay" data-testid="help-overlay" id="help-overlay" onclick={close.clone()}>
            <div class="overlay-box" onclick={Callback::from(|e: MouseEvent| e.stop_propagation())}>
                <h2>{ "Keyboard shortcuts" }</h2>
                <table>
                    { for SHORTCUTS.iter().map(|(k, v)| html! { <tr><td><kbd>{ *k }</kbd></td><td>{ *v }</td></tr> }) }
                </table>
                <p class="muted">{ format!("Speeds: {speeds}. Live mode animates arrivals in order at the chosen speed; replay steps one event per tick.") }</p>
                <button data-testid="help-close" onclick={close}>{ "close" }</button>
            </div>
        </div>
    }
}
