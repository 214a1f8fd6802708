//! The client-token prompt: shown when the coordinator answers 401 (it has clients configured
//! and this tab has no token, or a wrong one).

use super::*;

/// Props of the token prompt.
#[derive(Properties, PartialEq)]
pub struct TokenProps {
    /// What the coordinator said.
    pub why: String,
}

/// Asks for a client token, keeps it for this tab and starts the page over with it.
#[function_component(TokenPrompt)]
pub fn token_prompt(p: &TokenProps) -> Html {
    let input = use_node_ref();
    let use_it = {
        let input = input.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(i) = input.cast::<HtmlInputElement>() {
                crate::app::net::set_token(i.value().trim());
                crate::app::net::reload();
            }
        })
    };
    html! {
        <div class="overlay" data-testid="token-prompt">
            <div class="overlay-box">
                <h2>{ "This coordinator wants a client token" }</h2>
                <p class="muted" data-testid="token-why">{ &p.why }</p>
                <p>{ "The token is kept for this tab only (session storage) and sent with every request and the event stream." }</p>
                <input type="password" autocomplete="off" data-testid="token-input" ref={input}
                    placeholder="client token" />
                <button data-testid="token-submit" onclick={use_it}>{ "use this token" }</button>
            </div>
        </div>
    }
}
