//! The status bar: event-stream state and counts.

use super::*;

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
    // Every transaction on this stream is run by the coordinator that serves it (its run id
    // is `<coordinator id>-<start ms>`); other coordinators' are on their own streams.
    let coordinator = m
        .config
        .as_ref()
        .map(|c| c.coordinator_id.to_string())
        .or_else(|| {
            live.run
                .as_ref()
                .and_then(|r| r.rsplit_once('-'))
                .map(|(id, _)| id.to_string())
        });
    html! {
        <div class="status">
            <span class={sock_class} id="socket-status" data-testid="socket-status"
                data-state={match m.socket { SocketState::Open => "open", SocketState::Connecting => "connecting", SocketState::Retrying(_) => "retrying" }}>
                { m.socket.label() }
            </span>
            if let Some(id) = coordinator {
                <span class="pill" data-testid="coordinator-id" data-value={id.clone()}
                    title="the coordinator that runs the transactions on this page (with several coordinators, each shows its own)">
                    { format!("coordinator {id}") }</span>
            }
            if let Some(who) = m.identity.as_ref().filter(|w| w.authenticated) {
                <span class="pill" data-testid="client-identity"
                    data-value={who.client.clone().unwrap_or_default()}
                    data-scopes={who.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")}
                    title={format!("this tab's client token: may {}{}",
                        who.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        who.participants.as_ref().map(|ps| format!("; participants {}", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))).unwrap_or_default())}>
                    { format!("client {} · {}", who.client.as_deref().unwrap_or("?"),
                        who.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }</span>
            }
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
                if live.counts.takeovers > 0 {
                    <span class="sep">{ " · " }</span>
                    <span class="count-takeovers" data-testid="count-takeovers" data-value={live.counts.takeovers.to_string()}>
                        { format!("{} takeover(s)", live.counts.takeovers) }</span>
                }
            </span>
        </div>
    }
}
