//! The keyboard-shortcut overlay.

use super::*;

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
