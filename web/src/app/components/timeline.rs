//! The timeline: pause, step, speed and the scrubber.

use super::*;

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
