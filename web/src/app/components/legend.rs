//! The colour legend.

use super::*;

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
