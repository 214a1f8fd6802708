//! The transaction list.

use super::*;

/// The transaction list.
#[function_component(TxList)]
pub fn tx_list(p: &StateProps) -> Html {
    let m = p.state.model.borrow();
    let view = m.view();
    let rows = recent_txs(view, LIST_LIMIT);
    let sel = m.selected.clone();
    let fmt = |v: f64| format!("{v:.1}");
    html! {
        <div class="panel txs">
            <h2>{ "Transactions" }
                <span class="muted" data-testid="tx-count">
                    { format!(" showing {} of {} kept ({} seen)", rows.len(), view.tx_count(), view.counts.txs) }
                </span>
            </h2>
            <div class="table-wrap">
            <table data-testid="tx-list">
                <thead><tr>
                    <th>{ "id" }</th><th>{ "outcome" }</th><th>{ "participants" }</th>
                    <th title="phase 1: prepare and votes">{ "prepare ms" }</th>
                    <th title="forcing the decision to the log">{ "decide ms" }</th>
                    <th title="phase 2: until every ack">{ "commit ms" }</th>
                    <th>{ "total ms" }</th>
                    <th title="prepare / decide / commit, proportionally">{ "phases" }</th>
                </tr></thead>
                <tbody>
                { for rows.iter().map(|t| {
                    let o = t.outcome();
                    let id = t.id.clone();
                    let is_sel = sel.as_deref() == Some(t.id.as_str());
                    let onclick = {
                        let d = p.dispatch.clone();
                        let id = id.clone();
                        Callback::from(move |_: MouseEvent| d.emit(Action::Select(if is_sel { None } else { Some(id.clone()) })))
                    };
                    let tm = t.timings;
                    html! {
                        <tr key={id.clone()} class={classes!("tx-row", is_sel.then_some("selected"))}
                            data-testid="tx-row" data-tx={id.clone()} data-outcome={o.badge().class()} onclick={onclick}
                            title={t.reason.clone().unwrap_or_default()}>
                            <td class="mono">{ &t.id }
                                { if let Some(c) = &t.taken_over_from {
                                    // Run by another coordinator whose id this one took over.
                                    html! { <span class="chip taken-over" data-testid="tx-taken-over"
                                        data-coordinator={c.clone()}
                                        title={format!("run by coordinator {c}; this coordinator took its id over and finished it")}>
                                        { format!("taken over from {c}") }</span> }
                                } else { html! {} } }
                            </td>
                            <td><span class={classes!("chip", format!("badge-{}", o.badge().class()))}>{ o.label() }</span>
                                { if t.attempt_count() > 1 {
                                    // A retried transaction: one row, its attempts on the chip.
                                    html! { <span class="chip attempts" data-testid="tx-attempts"
                                        data-attempts={t.attempt_count().to_string()}
                                        title={t.attempts_summary()}>{ format!("×{}", t.attempt_count()) }</span> }
                                } else { html! {} } }
                            </td>
                            <td class="parts">{ for t.participants.iter().map(|n| {
                                let b = t.badge_of(n);
                                html! {
                                    <span class={classes!("chip", "part-chip", format!("badge-{}", b.badge.class()))}
                                        data-testid={format!("tx-part-{n}")} data-state={b.badge.class()}
                                        title={format!("{n}: {} ({})", b.badge.label(), b.text)}>{ n }</span>
                                }
                            }) }</td>
                            <td class="num">{ tm.map(|x| fmt(x.prepare_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.map(|x| fmt(x.decide_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.map(|x| fmt(x.commit_ms)).unwrap_or_default() }</td>
                            <td class="num">{ tm.and_then(|x| x.total_ms).or_else(|| m.answered_ms.get(&t.id).copied()).map(fmt).unwrap_or_default() }</td>
                            <td>{ phase_bar(tm) }</td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
            </div>
        </div>
    }
}

/// A small stacked bar of the three phases.
fn phase_bar(tm: Option<crate::model::Timings>) -> Html {
    let Some(t) = tm else {
        return html! {};
    };
    let sum = t.prepare_ms + t.decide_ms + t.commit_ms;
    if sum <= 0.0 {
        return html! {};
    }
    let pct = |v: f64| format!("width: {:.1}%", 100.0 * v / sum);
    html! {
        <span class="phasebar" title={format!("prepare {:.1} ms · decide {:.1} ms · commit {:.1} ms", t.prepare_ms, t.decide_ms, t.commit_ms)}>
            <i class="ph-prepare" style={pct(t.prepare_ms)} />
            <i class="ph-decide" style={pct(t.decide_ms)} />
            <i class="ph-commit" style={pct(t.commit_ms)} />
        </span>
    }
}
