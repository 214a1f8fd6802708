//! The notices: API answers and errors.

use super::*;

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
