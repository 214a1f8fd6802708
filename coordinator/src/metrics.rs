//! Coordinator metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! The protocol core owns the figures (it is the only place that knows when a transaction
//! ended and how long each phase took) as plain numbers: the model checker clones the core to
//! branch and resets its metrics, so they must be data that clones deeply, not a registry of
//! shared atomics. At scrape time [`encode`] hands a snapshot of them, with what the driver
//! knows (connections, in-flight work, the decision log's counters), to `prometheus-client`,
//! the Prometheus project's crate, which writes the exposition: HELP/TYPE/UNIT lines, the
//! `_total` suffix of counters, cumulative histogram buckets and the closing `# EOF`.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use twopc_protocol::api::PhaseTimings;
use twopc_protocol::{Decision, NoClass};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (milliseconds) of the latency histogram buckets.
pub const BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// A latency histogram over [`BUCKETS_MS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); those above the last bound are only in
    /// `count` (the `+Inf` bucket).
    counts: [u64; BUCKETS_MS.len()],
    count: u64,
    sum_ms: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ms += ms;
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.counts[i] += 1;
        }
    }

    /// (upper bound in seconds, observations in that bucket alone), `+Inf` last.
    fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        let bounded: u64 = self.counts.iter().sum();
        BUCKETS_MS
            .iter()
            .zip(self.counts)
            .map(|(b, n)| (b / 1000.0, n))
            .chain([(f64::INFINITY, self.count - bounded)])
            .collect()
    }
}

/// Upper bounds of the attempts-per-commit histogram buckets.
pub const ATTEMPT_BUCKETS: [u32; 5] = [1, 2, 3, 5, 10];

/// Committed transactions by attempts taken, over [`ATTEMPT_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct AttemptHistogram {
    /// Observations per bucket (not cumulative); those above the last bound only in `count`.
    counts: [u64; ATTEMPT_BUCKETS.len()],
    count: u64,
    sum: u64,
}

impl AttemptHistogram {
    /// Records one committed transaction that took `attempts` attempts.
    pub fn observe(&mut self, attempts: u32) {
        self.count += 1;
        self.sum += u64::from(attempts);
        if let Some(i) = ATTEMPT_BUCKETS.iter().position(|b| attempts <= *b) {
            self.counts[i] += 1;
        }
    }
}

impl EncodeMetric for AttemptHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounded: u64 = self.counts.iter().sum();
        let buckets: Vec<(f64, u64)> = ATTEMPT_BUCKETS
            .iter()
            .zip(self.counts)
            .map(|(b, n)| (f64::from(*b), n))
            .chain([(f64::INFINITY, self.count - bounded)])
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.sum as f64, self.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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
    /// NO votes whose class is `conflict` (another attempt could succeed).
    pub no_votes_conflict: u64,
    /// NO votes whose class is `final`.
    pub no_votes_final: u64,
    /// Attempts scheduled after an abort by `conflict` NO votes (transactions run again).
    pub tx_retries: u64,
    /// Committed transactions by the number of attempts they took.
    pub attempts_per_commit: AttemptHistogram,
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
    /// Records a NO vote of `class`.
    pub fn observe_no(&mut self, class: NoClass) {
        match class {
            NoClass::Conflict => self.no_votes_conflict += 1,
            NoClass::Final => self.no_votes_final += 1,
        }
    }

    /// Records the number of attempts a committed transaction took.
    pub fn observe_attempts(&mut self, attempts: u32) {
        self.attempts_per_commit.observe(attempts);
    }

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
}

/// What the driver knows at scrape time, beyond the core's [`Metrics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverFigures {
    /// Transactions not yet finished.
    pub in_flight: usize,
    /// Prepared transactions the participants reported on their last InDoubtReport.
    pub in_doubt_reported: usize,
    /// Participant connections up.
    pub participants_connected: usize,
    /// Decision log records appended since it was opened.
    pub log_records: u64,
    /// Decision log fsyncs since it was opened.
    pub log_fsyncs: u64,
    /// The epoch of this coordinator's lease on its id (0: the file log, no lease).
    pub lease_epoch: u64,
    /// Lease renewals that succeeded.
    pub lease_renewals: u64,
    /// Decision writes refused because the lease was gone.
    pub fenced_writes: u64,
    /// Other coordinators' ids this process took over since it started.
    pub takeovers: u64,
    /// Of those, the ones it still holds.
    pub takeovers_active: u64,
}

/// `twopc_phase_seconds`: one histogram family, one series per phase.
#[derive(Debug)]
struct PhaseLatency([(&'static str, Histogram); 4]);

impl EncodeMetric for PhaseLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (phase, h) in &self.0 {
            let labels = [("phase", *phase)];
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    h.sum_ms / 1000.0,
                    h.count,
                    &h.buckets_seconds(),
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `twopc_no_votes`: one counter family, one series per class.
#[derive(Debug)]
struct NoVotes([(NoClass, u64); 2]);

impl EncodeMetric for NoVotes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (class, n) in &self.0 {
            let labels = [("class", class.as_str())];
            encoder
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The OpenMetrics text of the core's metrics and the driver's figures. Counter names get
/// their `_total` from the encoder (`twopc_transactions_started` → `..._started_total`), the
/// histogram its `_seconds` from its unit, and every help text its closing full stop.
pub fn encode(m: &Metrics, d: &DriverFigures) -> String {
    let mut r = Registry::default();
    let counters = [
        ("twopc_transactions_started", "Transactions submitted", m.started),
        ("twopc_transactions_committed", "Transactions committed", m.committed),
        ("twopc_transactions_aborted", "Transactions aborted", m.aborted),
        ("twopc_retries", "Protocol messages re-sent", m.retries),
        (
            "twopc_transaction_retries",
            "Transactions run again after an abort by conflict NO votes",
            m.tx_retries,
        ),
        ("twopc_prepare_timeouts", "Prepare phases that timed out", m.timeouts),
        (
            "twopc_presumed_aborts",
            "Abort answers given by presumption",
            m.presumed_aborts,
        ),
        (
            "twopc_heuristic_hazards",
            "Decisions acknowledged with conflict, or commits with not_prepared (heuristic outcomes)",
            m.heuristic_hazards,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v));
    }
    r.register(
        "twopc_no_votes",
        "NO votes by class (conflict: another attempt could succeed; final: it cannot)",
        NoVotes([
            (NoClass::Conflict, m.no_votes_conflict),
            (NoClass::Final, m.no_votes_final),
        ]),
    );
    r.register(
        "twopc_attempts_per_commit",
        "Attempts a committed transaction took (1: not retried)",
        m.attempts_per_commit.clone(),
    );
    r.register_with_unit(
        "twopc_phase",
        "Latency per protocol phase",
        Unit::Seconds,
        PhaseLatency([
            ("prepare", m.prepare.clone()),
            ("decide", m.decide.clone()),
            ("commit", m.commit.clone()),
            ("total", m.total.clone()),
        ]),
    );
    let gauges = [
        (
            "twopc_transactions_in_flight",
            "Transactions not yet finished",
            d.in_flight,
        ),
        (
            "twopc_in_doubt_reported",
            "Prepared transactions reported by participants on their last report",
            d.in_doubt_reported,
        ),
        (
            "twopc_participants_connected",
            "Participant connections up",
            d.participants_connected,
        ),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, ConstGauge::new(v as i64));
    }
    r.register(
        "twopc_log_records",
        "Decision log records appended",
        ConstCounter::new(d.log_records),
    );
    r.register(
        "twopc_log_fsyncs",
        "Decision log fsyncs",
        ConstCounter::new(d.log_fsyncs),
    );
    r.register(
        "twopc_lease_epoch",
        "Epoch of this coordinator's lease on its id (0: file log, no lease)",
        ConstGauge::new(d.lease_epoch as i64),
    );
    r.register(
        "twopc_lease_renewals",
        "Lease renewals that succeeded",
        ConstCounter::new(d.lease_renewals),
    );
    r.register(
        "twopc_fenced_writes",
        "Decision writes refused because the lease was gone",
        ConstCounter::new(d.fenced_writes),
    );
    r.register(
        "twopc_takeovers",
        "Other coordinators' ids taken over by this process",
        ConstCounter::new(d.takeovers),
    );
    r.register(
        "twopc_takeovers_active",
        "Other coordinators' ids this process holds now",
        ConstGauge::new(d.takeovers_active as i64),
    );
    let mut text = String::new();
    // Writing into a String cannot fail, and every name above is valid.
    prometheus_client::encoding::text::encode(&mut text, &r).expect("metrics encode");
    text
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
        let text = encode(
            &m,
            &DriverFigures {
                in_doubt_reported: 2,
                ..DriverFigures::default()
            },
        );
        assert!(text.contains("twopc_transactions_committed_total 1"));
        assert!(text.contains("twopc_phase_seconds_bucket{le=\"0.002\",phase=\"prepare\"} 1"));
        assert!(text.contains("twopc_phase_seconds_bucket{le=\"0.001\",phase=\"prepare\"} 0"));
        assert!(text.contains("twopc_phase_seconds_bucket{le=\"+Inf\",phase=\"prepare\"} 1"));
        assert!(text.contains("twopc_phase_seconds_count{phase=\"total\"} 1"));
        assert!(text.contains("twopc_in_doubt_reported 2"));
        assert!(text.contains("twopc_transaction_retries_total 0"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn an_observation_past_the_last_bound_is_only_in_inf() {
        let mut h = Histogram::default();
        h.observe(60_000.0);
        h.observe(1.0);
        let b = h.buckets_seconds();
        assert_eq!(b.len(), BUCKETS_MS.len() + 1);
        assert_eq!(b[1], (0.001, 1));
        assert_eq!(*b.last().unwrap(), (f64::INFINITY, 1));
    }
}
