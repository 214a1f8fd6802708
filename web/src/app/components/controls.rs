//! The controls: submit buttons and fault injection.

use super::*;

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
    /// The client this tab's token stands for (`None` until known).
    pub identity: Option<ClientIdentity>,
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
    // What the tab's client may do (every scope until the coordinator said otherwise: an open
    // API allows everything, and an answer outside the scope is a 403 notice anyway).
    let may = |s: Scope| p.identity.as_ref().is_none_or(|w| w.scopes.contains(&s));
    let (may_submit, may_fault) = (may(Scope::Submit), may(Scope::Faults));
    let enabled = p.config.as_ref().map(|c| c.fault_injection);
    let parts: Vec<ParticipantName> = p
        .config
        .as_ref()
        .map(|c| c.participants.iter().map(|x| x.name.clone()).collect())
        .unwrap_or_default();
    html! {
        <div class="panel controls">
            <h2>{ "Submit" }</h2>
            if !may_submit {
                <p class="warn-text" data-testid="submit-out-of-scope">
                    { "This tab's client token has no submit scope." }</p>
            }
            <fieldset class="plain" disabled={!may_submit}>
            <div class="row">
                <button class="primary" id="submit-transfer" data-testid="submit-transfer" title="S"
                    onclick={submit(SubmitKind::Transfer)}>{ "Transfer 10 (S)" }</button>
                <button class="danger" id="submit-failing" data-testid="submit-failing" title="F"
                    onclick={submit(SubmitKind::Failing)}>{ "Transfer that fails a guard (F)" }</button>
            </div>
            </fieldset>
            <h2>{ "Faults" }</h2>
            if !may_fault {
                <p class="warn-text" data-testid="faults-out-of-scope">
                    { "This tab's client token has no faults scope." }</p>
            }
            <fieldset class="plain" disabled={!may_fault}>
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
            </fieldset>
            if let Some(e) = &p.fault_error {
                <p class="error-text" id="fault-error" data-testid="fault-error">{ e }</p>
            }
        </div>
    }
}
