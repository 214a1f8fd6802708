//! Laying the selected events out into a [`Diagram`], and the arrival stagger.

use super::*;

/// Lays out the diagram.
pub fn diagram(input: DiagramInput<'_>) -> Diagram {
    let names = lane_names(input.config, input.view);
    let lane_of = |n: &str| -> Option<usize> {
        // Fixed lanes first; participants by name after them.
        match n {
            "client" => Some(0),
            "log" => Some(1),
            "coordinator" => Some(2),
            _ => names
                .iter()
                .skip(3)
                .position(|(name, _)| name == n)
                .map(|i| i + 3),
        }
    };
    let focus_tx = input.selected.and_then(|s| input.view.tx(s));
    let (indices, hidden_before) = select_events(
        input.log,
        input.position,
        focus_tx,
        input.selected,
        input.max_rows,
    );
    let indices = causal_order(input.log, indices);
    let mut items = Vec::with_capacity(indices.len());
    let first_ms = indices
        .first()
        .and_then(|i| input.log.get(*i))
        .map(|e| e.at_ms)
        .unwrap_or(0);
    let mut new_rank = 0usize;
    for i in indices {
        let Some(ev) = input.log.get(i) else { continue };
        let Some((shape, kind, label, class, tooltip)) = item_for(ev, &lane_of) else {
            continue;
        };
        let row = items.len();
        let rank = match input.batch_start {
            Some(b) if i >= b => {
                new_rank += 1;
                Some(new_rank - 1)
            }
            _ => None,
        };
        items.push(Item {
            index: i,
            row,
            y: row_y(row),
            shape,
            kind,
            label,
            class,
            tooltip,
            txid: crate::model::tx_key(ev),
            rel_ms: ev.at_ms.saturating_sub(first_ms),
            new_rank: rank,
        });
    }
    if new_rank > MAX_STAGGER {
        for it in &mut items {
            it.new_rank = it.new_rank.map(|_| 0);
        }
    }
    // Badges: the selected transaction, else the latest drawn one.
    let focus = input.selected.map(str::to_string).or_else(|| {
        items
            .iter()
            .rev()
            .find_map(|it| it.txid.clone())
            .filter(|t| input.view.tx(t).is_some())
    });
    let focus_view = focus.as_deref().and_then(|f| input.view.tx(f));
    let lanes = names
        .iter()
        .enumerate()
        .map(|(i, (name, role))| {
            let badge = focus_view
                .map(|t| t.badge_of(name))
                .unwrap_or_else(|| NodeBadge {
                    badge: crate::model::Badge::Idle,
                    text: "—".into(),
                });
            let up = match role {
                Role::Coordinator | Role::Log => input.coordinator_up,
                Role::Client => true,
                Role::Participant => input
                    .view
                    .nodes
                    .get(name)
                    .and_then(|n| n.connected)
                    .unwrap_or(true),
            };
            let title = match role {
                Role::Log => "decision log".to_string(),
                _ => name.clone(),
            };
            Lane {
                name: name.clone(),
                title,
                role: *role,
                x: lane_x(i),
                badge,
                up,
            }
        })
        .collect::<Vec<_>>();
    Diagram {
        width: diagram_width(lanes.len()),
        height: diagram_height(),
        groups: lane_groups(&lanes),
        lanes,
        items,
        focus,
        hidden_before,
    }
}

/// Queues the draw-in animations of newly drawn items, so that messages that arrive together
/// (a whole 2PC often takes a few milliseconds) are drawn one after another, in order, like a
/// slowed-down replay. Each item gets its delay once, when first seen; the queue never runs
/// more than [`Stagger::MAX_BACKLOG_MS`] behind (under load, new items then animate at once).
#[derive(Debug, Clone, Default)]
pub struct Stagger {
    pub(super) delays: std::collections::HashMap<u64, (f64, f64)>,
    pub(super) next_start: f64,
}

impl Stagger {
    /// Longest queue of pending animations.
    pub const MAX_BACKLOG_MS: f64 = 2_000.0;

    /// The animation delay (ms) of each drawn item, by absolute index. `now_ms` is a clock,
    /// `step_ms` the gap between two queued animations. Items not drawn any more are forgotten.
    pub fn assign(&mut self, drawn: &[u64], now_ms: f64, step_ms: f64) -> Vec<f64> {
        let fresh = drawn
            .iter()
            .filter(|i| !self.delays.contains_key(i))
            .count();
        let jump = fresh > MAX_STAGGER;
        // Many at once: squeeze them into the backlog limit rather than dropping the order.
        let step_ms = if fresh > 0 {
            step_ms.min(Self::MAX_BACKLOG_MS / fresh as f64)
        } else {
            step_ms
        };
        self.delays.retain(|i, _| drawn.contains(i));
        if self.next_start < now_ms {
            self.next_start = now_ms;
        }
        drawn
            .iter()
            .map(|i| {
                if let Some((created, delay)) = self.delays.get(i) {
                    // Keep the original start time: the delay is relative to first render.
                    return (created + delay - now_ms).max(0.0).min(*delay);
                }
                let delay = if jump || self.next_start - now_ms > Self::MAX_BACKLOG_MS {
                    0.0
                } else {
                    let d = self.next_start - now_ms;
                    self.next_start += step_ms;
                    d
                };
                self.delays.insert(*i, (now_ms, delay));
                delay
            })
            .collect()
    }
}
