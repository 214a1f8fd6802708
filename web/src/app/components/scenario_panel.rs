//! The scenario panel: the preset scenarios and the running one's narration.

use super::*;

/// Props of the scenario panel.
#[derive(Properties, PartialEq)]
pub struct ScenarioProps {
    /// Side effects.
    pub ctx: Ctx,
    /// The configuration.
    pub config: Option<PublicConfig>,
    /// The running or last scenario.
    pub scenario: Option<ScenarioRun>,
}

/// Preset scenarios and their narration.
#[function_component(ScenarioPanel)]
pub fn scenario_panel(p: &ScenarioProps) -> Html {
    let Some(cfg) = &p.config else {
        return html! { <div class="panel"><h2>{ "Scenarios" }</h2><p class="muted">{ "loading configuration…" }</p></div> };
    };
    let all = scenarios(cfg);
    let running = p.scenario.as_ref().filter(|s| !s.finished).is_some();
    let stop = {
        let ctx = p.ctx.clone();
        Callback::from(move |_: MouseEvent| ctx.stop_scenario())
    };
    html! {
        <div class="panel scenarios">
            <h2>{ "Scenarios" }</h2>
            <div class="scenario-buttons">
            { for all.into_iter().map(|sc| {
                let ctx = p.ctx.clone();
                let slug = sc.slug;
                let title = sc.title;
                let blurb = sc.blurb.clone();
                let needs = sc.needs_faults && !cfg.fault_injection;
                let onclick = Callback::from(move |_: MouseEvent| ctx.run_scenario(sc.clone()));
                html! {
                    <button key={slug} data-testid={format!("scenario-{slug}")} id={format!("scenario-{slug}")}
                        title={if needs { format!("{blurb} (needs fault injection, which is disabled)") } else { blurb.clone() }}
                        class={classes!(needs.then_some("needs-faults"))} onclick={onclick}>{ title }</button>
                }
            }) }
            </div>
            if let Some(s) = &p.scenario {
                <div class="narration" data-testid="scenario-narration" data-scenario={s.name.clone()}
                    data-finished={s.finished.to_string()}>
                    <div class="narration-head">
                        <strong>{ &s.title }</strong>
                        <span class="muted" data-testid="scenario-progress">
                            { format!(" step {}/{}{}", s.step, s.total, if s.finished { " · done" } else { "" }) }
                        </span>
                        if running {
                            <button class="small" data-testid="scenario-stop" onclick={stop}>{ "stop" }</button>
                        }
                    </div>
                    <ol>
                        { for s.narration.iter().map(|n| html! { <li>{ n }</li> }) }
                    </ol>
                </div>
            }
        </div>
    }
}
