//! The twopc browser app.
//!
//! A Yew (client-side rendered) app served by the coordinator at `/`. It subscribes to the
//! coordinator's event stream and animates every protocol phase; the diagram, timeline and
//! fault-injection controls arrive with the Web issue. It shares its types with the rest of
//! the system through [`twopc_protocol`].

use yew::prelude::*;

#[function_component(App)]
fn app() -> Html {
    html! {
        <main class="twopc">
            <h1>{ "twopc" }</h1>
            <p>{ format!("Two-phase commit across PostgreSQL and Redis (wire protocol v{})",
                twopc_protocol::PROTOCOL_VERSION) }</p>
        </main>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
