//! The in-doubt panel: what participants hold prepared.

use super::*;

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
