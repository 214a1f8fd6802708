//! Coordinator metrics, rendered in the Prometheus text format at `GET /metrics`.
//!
//! The protocol core owns the counters (it is the only place that knows when a transaction
//! ended and how long each phase took); the driver adds gauges it knows (connections, log
//! fsyncs) when rendering.

use std::fmt::Write as _;
use twopc_protocol::api::PhaseTimings;
use twopc_protocol::Decision;

/// Upper bounds (milliseconds) of the latency histogram buckets.
pub const BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// A cumulative latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS_MS.len()],
    count: u64,
    sum_ms: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.counts[i] += 1;
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}le=\"{}\"}} {}",
                b / 1000.0,
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            labels.trim_end_matches(','),
            self.sum_ms / 1000.0
        );
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {}",
            labels.trim_end_matches(','),
            self.count
        );
    }
}

/// Counters and histograms maintained by the protocol core.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Transactions started.
    pub started: u64,
    /// Transactions committed.
    pub committed: u64,
    /// Transactions aborted.
    pub aborted: u64,
    /// Messages re-sent (phase 2 and one-phase retries).
    pub retries: u64,
    /// Prepare timeouts.
    pub timeouts: u64,
    /// Abort answers given by presumption (no record of the transaction).
    pub presumed_aborts: u64,
    /// Decisions acknowledged with something other than "applied": a `conflict` (finished
    /// the other way) after either decision, or `not_prepared` after a COMMIT (work the
    /// participant cannot find).
    pub heuristic_hazards: u64,
    /// Phase 1 latency.
    pub prepare: Histogram,
    /// Decision (log force) latency.
    pub decide: Histogram,
    /// Phase 2 latency.
    pub commit: Histogram,
    /// Whole-transaction latency.
    pub total: Histogram,
}

impl Metrics {
    /// Records a finished transaction.
    pub fn observe_end(&mut self, d: Decision, t: &PhaseTimings) {
        match d {
            Decision::Commit => self.committed += 1,
            Decision::Abort => self.aborted += 1,
        }
        self.prepare.observe(t.prepare_ms);
        self.decide.observe(t.decide_ms);
        self.commit.observe(t.commit_ms);
        self.total.observe(t.total_ms);
    }

    /// Renders the core's metrics plus the given gauges as Prometheus text.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut s = String::new();
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut s,
            "twopc_transactions_started_total",
            "Transactions submitted.",
            self.started,
        );
        counter(
            &mut s,
            "twopc_transactions_committed_total",
            "Transactions committed.",
            self.committed,
        );
        counter(
            &mut s,
            "twopc_transactions_aborted_total",
            "Transactions aborted.",
            self.aborted,
        );
        counter(
            &mut s,
            "twopc_retries_total",
            "Protocol messages re-sent.",
            self.retries,
        );
        counter(
            &mut s,
            "twopc_prepare_timeouts_total",
            "Prepare phases that timed out.",
            self.timeouts,
        );
        counter(
            &mut s,
            "twopc_presumed_aborts_total",
            "Abort answers given by presumption.",
            self.presumed_aborts,
        );
        counter(
            &mut s,
            "twopc_heuristic_hazards_total",
            "Decisions acknowledged with conflict, or commits with not_prepared (heuristic outcomes).",
            self.heuristic_hazards,
        );
        let _ = writeln!(
            s,
            "# HELP twopc_phase_seconds Latency per protocol phase.\n# TYPE twopc_phase_seconds histogram"
        );
        self.prepare
            .render(&mut s, "twopc_phase_seconds", "phase=\"prepare\",");
        self.decide
            .render(&mut s, "twopc_phase_seconds", "phase=\"decide\",");
        self.commit
            .render(&mut s, "twopc_phase_seconds", "phase=\"commit\",");
        self.total
            .render(&mut s, "twopc_phase_seconds", "phase=\"total\",");
        for (name, help, v) in gauges {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_renders() {
        let mut m = Metrics::default();
        m.observe_end(
            Decision::Commit,
            &PhaseTimings {
                prepare_ms: 1.5,
                decide_ms: 0.2,
                commit_ms: 3.0,
                total_ms: 4.7,
            },
        );
        let text = m.render(&[("twopc_in_doubt", "In doubt.", 2.0)]);
        assert!(text.contains("twopc_transactions_committed_total 1"));
        assert!(text.contains("twopc_phase_seconds_bucket{phase=\"prepare\",le=\"0.002\"} 1"));
        assert!(text.contains("twopc_phase_seconds_bucket{phase=\"prepare\",le=\"0.001\"} 0"));
        assert!(text.contains("twopc_phase_seconds_count{phase=\"total\"} 1"));
        assert!(text.contains("twopc_in_doubt 2"));
    }
}
