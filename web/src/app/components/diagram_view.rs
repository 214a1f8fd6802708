//! The message diagram, drawn as SVG from [`crate::layout::diagram`].

use super::*;

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
    let groups = dg.groups.iter().map(|g| {
        let (x, width) = (g.x_from - 82.0, g.x_to - g.x_from + 164.0);
        html! {
            <g class="lane-group" key={g.name.clone()} data-testid={format!("lane-group-{}", g.name)}
               data-shards={g.shards.to_string()}>
                <rect x={x.to_string()} y="0" width={width.to_string()} height="66" rx="10" />
                <title>{ format!("{}: {} shards (the coordinator routes each key to one)", g.name, g.shards) }</title>
            </g>
        }
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
                <g class="lane-groups">{ for groups }</g>
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
