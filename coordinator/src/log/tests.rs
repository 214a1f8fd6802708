//! Tests of the decision log: format, recovery, torn writes, compaction, group commit.

use super::codec::{self, Entry};
use super::segments::{list_segments, segment_path};
use super::state::LiveState;
use super::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twopc_protocol::{Decision, ParticipantName, TxId};

fn tx(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn parts() -> Vec<ParticipantName> {
    vec![
        ParticipantName::new("bank").unwrap(),
        ParticipantName::new("cache").unwrap(),
    ]
}

fn commit(i: u64) -> LogRecord {
    LogRecord::Commit {
        txid: tx(&format!("t{i}")),
        participants: parts(),
        body_hash: i * 31 + 7,
        at_ms: 1_700_000_000_000 + i,
        client: None,
    }
}

fn abort(i: u64) -> LogRecord {
    LogRecord::Abort {
        txid: tx(&format!("t{i}")),
        body_hash: i * 31 + 7,
        reason: Some(format!("participant bank voted no on t{i}")),
        at_ms: 1_700_000_000_000 + i,
        client: None,
    }
}

fn end(i: u64) -> LogRecord {
    LogRecord::End {
        txid: tx(&format!("t{i}")),
        heuristics: Vec::new(),
    }
}

/// A mix: commits (most ended two steps later, every fifth left pending) and aborts (every
/// third transaction), ids `from..from + n`.
fn workload(from: u64, n: u64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for i in from..from + n {
        if i % 3 == 0 {
            out.push(abort(i));
        } else {
            out.push(commit(i));
        }
        if i >= from + 2 {
            let j = i - 2;
            if j % 3 != 0 && j % 5 != 0 {
                out.push(end(j));
            }
        }
    }
    out
}

/// Commits are forced, aborts and ends lazy: the log's own contract allows either for any
/// record (the coordinator now forces a client's ABORT too; these tests are about the log).
fn forced(record: &LogRecord) -> bool {
    matches!(record, LogRecord::Commit { .. })
}

fn cfg() -> FileLogConfig {
    FileLogConfig {
        lazy_flush_interval: None,
        ..FileLogConfig::default()
    }
}

fn small_segments(bytes: u64) -> FileLogConfig {
    FileLogConfig {
        segment_bytes: bytes,
        ..cfg()
    }
}

/// Appends like the coordinator (forced commits, lazy rest) and flushes at the end.
fn write_all(log: &dyn DecisionLog, records: &[LogRecord]) {
    for r in records {
        if forced(r) {
            log.append_durable(r.clone()).wait_blocking().unwrap();
        } else {
            log.append_lazy(r.clone()).unwrap();
        }
    }
    log.flush().wait_blocking().unwrap();
}

type PendingView = Vec<(TxId, Vec<ParticipantName>, u64, u64)>;

/// The state without LSNs (a checkpoint takes an LSN, so LSNs differ between histories).
fn view(s: &RecoveredState) -> (PendingView, HashMap<TxId, LoggedOutcome>) {
    (
        s.pending
            .iter()
            .map(|p| (p.txid.clone(), p.participants.clone(), p.body_hash, p.at_ms))
            .collect(),
        s.outcomes.clone(),
    )
}

/// The state the full history gives: replayed by the in-memory log.
fn model(records: &[LogRecord]) -> RecoveredState {
    let mem = MemLog::new();
    write_all(&mem, records);
    mem.restart().recover().unwrap()
}

fn open(dir: &Path, config: FileLogConfig) -> FileLog {
    FileLog::open(dir, config).unwrap()
}

fn reopen_state(dir: &Path, config: FileLogConfig) -> RecoveredState {
    open(dir, config).recover().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Frame start offsets in a segment file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offs = Vec::new();
    let mut off = 0;
    while let Some((_, next)) = codec::read_frame(bytes, off).unwrap() {
        offs.push(off);
        off = next;
    }
    offs
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Format

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(codec::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(codec::crc32c(b""), 0);
    let whole = codec::crc32c(b"hello, world");
    assert_eq!(
        codec::crc32c_update(codec::crc32c(b"hello, "), b"world"),
        whole
    );
}

#[test]
fn frames_round_trip_and_every_damage_is_detected() {
    let record = commit(1);
    let frame = codec::encode_record(42, &record).unwrap();
    let (payload, next) = codec::read_frame(&frame, 0).unwrap().unwrap();
    assert_eq!(next, frame.len());
    assert_eq!(
        codec::decode_entry(payload).unwrap(),
        Entry::Record(42, record)
    );
    // Any single damaged byte, anywhere in the frame, is caught.
    for at in 0..frame.len() {
        let mut bad = frame.clone();
        bad[at] ^= 0x01;
        assert!(
            codec::read_frame(&bad, 0).is_err(),
            "flip at {at} undetected"
        );
    }
    // Any cut is caught.
    for cut in 1..frame.len() {
        assert!(codec::read_frame(&frame[..cut], 0).is_err(), "cut at {cut}");
    }
    // A zero-filled tail is not a frame.
    assert_eq!(
        codec::read_frame(&[0u8; 64], 0),
        Err(codec::FrameError::BadLength(0))
    );
    assert_eq!(codec::read_frame(&frame, frame.len()), Ok(None));
}

#[test]
fn records_serialize_readably() {
    let json = serde_json::to_value(abort(3)).unwrap();
    assert_eq!(json["type"], "abort");
    assert_eq!(json["txid"], "t3");
    let ev = LogEvent::Fsync {
        records: 12,
        micros: 80,
    };
    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["event"], "fsync");
    assert_eq!(RecordKind::Commit.as_str(), "commit");
}

// ---------------------------------------------------------------------------------------------
// FileLog: round trip and recovery

#[test]
fn round_trip_and_recovery_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let records = workload(0, 60);
    {
        let log = open(dir.path(), cfg());
        assert_eq!(
            log.recover().unwrap(),
            RecoveredState {
                next_lsn: 1,
                ..RecoveredState::default()
            }
        );
        write_all(&log, &records);
        let stats = log.stats();
        assert_eq!(stats.records, records.len() as u64);
        assert_eq!(stats.segments, 1);
        assert!(stats.bytes > 0);
        log.close().unwrap();
    }
    let state = reopen_state(dir.path(), cfg());
    let want = model(&records);
    assert_eq!(view(&state), view(&want));
    assert_eq!(state.next_lsn, records.len() as u64 + 1);
    assert_eq!(state.torn_tail, None);

    // What recovery must act on: commits without End, with their participants.
    let pending: Vec<&str> = state.pending.iter().map(|p| p.txid.as_str()).collect();
    assert!(pending.contains(&"t5"), "{pending:?}"); // never ended
    assert!(pending.contains(&"t59"), "{pending:?}"); // too recent to have ended
    assert!(!pending.contains(&"t1"), "{pending:?}");
    assert!(state.pending.iter().all(|p| p.participants == parts()));
    let t1 = &state.outcomes[&tx("t1")];
    assert_eq!(
        (t1.decision, t1.ended, t1.body_hash),
        (Decision::Commit, true, 38)
    );
    let t3 = &state.outcomes[&tx("t3")];
    assert_eq!(t3.decision, Decision::Abort);
    assert_eq!(
        t3.reason.as_deref(),
        Some("participant bank voted no on t3")
    );
}

#[test]
fn lsns_continue_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for round in 0..4u64 {
        let log = open(dir.path(), cfg());
        assert_eq!(log.recover().unwrap().next_lsn, round * 10 + 1);
        for i in 0..10 {
            let r = commit(round * 10 + i);
            let lsn = log.append_durable(r.clone()).wait_blocking().unwrap();
            assert_eq!(lsn, round * 10 + i + 1);
            all.push(r);
        }
        drop(log);
        assert_eq!(view(&reopen_state(dir.path(), cfg())), view(&model(&all)));
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), cfg());
    let err = FileLog::open(dir.path(), cfg()).err().unwrap();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another coordinator"), "{err}");
    drop(log);
    open(dir.path(), cfg());
}

#[test]
fn first_decision_wins() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), cfg());
    write_all(&log, &[commit(1), abort(1), abort(2), commit(2)]);
    drop(log);
    let state = reopen_state(dir.path(), cfg());
    assert_eq!(state.outcomes[&tx("t1")].decision, Decision::Commit);
    assert_eq!(state.outcomes[&tx("t2")].decision, Decision::Abort);
    assert_eq!(state.pending.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Torn writes and corruption

/// Writes `records` into a fresh directory and returns the segment's bytes.
fn single_segment(records: &[LogRecord]) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), cfg());
    write_all(&log, records);
    log.close().unwrap();
    let bytes = std::fs::read(segment_path(dir.path(), 1)).unwrap();
    (dir, bytes)
}

#[test]
fn a_tail_cut_at_any_byte_recovers_everything_before_it() {
    let records = vec![commit(1), commit(2), abort(3), end(1), commit(4)];
    let (_orig, bytes) = single_segment(&records);
    let last = *frame_offsets(&bytes).last().unwrap();
    let before = model(&records[..4]);
    for cut in last..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 1), &bytes[..cut]).unwrap();
        let log = open(dir.path(), cfg());
        let state = log.recover().unwrap();
        assert_eq!(view(&state), view(&before), "cut at {cut}");
        assert_eq!(state.next_lsn, 5);
        if cut == last {
            assert_eq!(state.torn_tail, None);
        } else {
            let torn = state.torn_tail.clone().unwrap();
            assert_eq!(torn.offset, last as u64);
            assert_eq!(torn.discarded_bytes, (cut - last) as u64);
        }
        // The truncation is durable and the log goes on from there.
        assert_eq!(log.append_durable(commit(9)).wait_blocking().unwrap(), 5);
        drop(log);
        let again = reopen_state(dir.path(), cfg());
        let mut want = records[..4].to_vec();
        want.push(commit(9));
        assert_eq!(view(&again), view(&model(&want)), "cut at {cut}");
        assert_eq!(again.torn_tail, None);
    }
}

#[test]
fn damaged_bytes_in_the_last_record_are_a_torn_tail() {
    let records = vec![commit(1), abort(2), commit(3), end(1), commit(4)];
    let (_orig, bytes) = single_segment(&records);
    let last = *frame_offsets(&bytes).last().unwrap();
    let before = model(&records[..4]);
    // The length field, the checksum, the payload's first, middle and last bytes.
    for at in [
        last,
        last + 3,
        last + 5,
        last + 8,
        (last + bytes.len()) / 2,
        bytes.len() - 1,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xFF;
        std::fs::write(segment_path(dir.path(), 1), &damaged).unwrap();
        let state = reopen_state(dir.path(), cfg());
        assert_eq!(view(&state), view(&before), "damage at {at}");
        assert!(state.torn_tail.is_some(), "damage at {at}");
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 1))
                .unwrap()
                .len(),
            last as u64
        );
    }
}

#[test]
fn a_zero_filled_tail_is_cut_off() {
    let records = workload(0, 10);
    let (dir, mut bytes) = single_segment(&records);
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let state = reopen_state(dir.path(), cfg());
    assert_eq!(view(&state), view(&model(&records)));
    assert_eq!(state.torn_tail.unwrap().discarded_bytes, 4096);
}

/// Two segments without a checkpoint: the first written, then an empty second one created (as
/// a crash right after a roll started leaves it), then more records in the second.
fn two_segments() -> (tempfile::TempDir, Vec<LogRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let first = workload(0, 6);
    let (_, bytes) = single_segment(&first);
    std::fs::write(segment_path(dir.path(), 1), bytes).unwrap();
    std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
    let second = workload(100, 4);
    let log = open(dir.path(), cfg());
    assert_eq!(view(&log.recover().unwrap()), view(&model(&first)));
    write_all(&log, &second);
    drop(log);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
    let mut all = first;
    all.extend(second);
    (dir, all)
}

#[test]
fn history_spans_segments() {
    let (dir, all) = two_segments();
    let state = reopen_state(dir.path(), cfg());
    assert_eq!(view(&state), view(&model(&all)));
    assert_eq!(state.next_lsn, all.len() as u64 + 1);
}

#[test]
fn corruption_in_an_earlier_segment_refuses_to_start() {
    let (dir, _) = two_segments();
    let seg1 = segment_path(dir.path(), 1);
    let bytes = std::fs::read(&seg1).unwrap();
    let offs = frame_offsets(&bytes);
    flip(&seg1, offs[2] + 12);
    let err = FileLog::open(dir.path(), cfg()).err().unwrap();
    match &err {
        LogError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &seg1);
            assert_eq!(*offset, offs[2] as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(err.to_string().contains("refusing to start"), "{err}");
    // Nothing was truncated.
    assert_eq!(std::fs::read(&seg1).unwrap().len(), bytes.len());
}

#[test]
fn missing_segments_are_detected() {
    let (dir, _) = two_segments();
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let err = FileLog::open(dir.path(), cfg()).err().unwrap();
    assert!(matches!(err, LogError::Inconsistent { .. }), "{err}");

    let (dir, _) = two_segments();
    std::fs::rename(segment_path(dir.path(), 2), segment_path(dir.path(), 3)).unwrap();
    let err = FileLog::open(dir.path(), cfg()).err().unwrap();
    assert!(err.to_string().contains("segments are missing"), "{err}");
}

#[test]
fn a_valid_checksum_over_an_undecodable_payload_is_an_error() {
    let records = vec![commit(1)];
    let (dir, mut bytes) = single_segment(&records);
    let payload = br#"{"lsn":2,"record":{"type":"launch"}}"#;
    let len = (payload.len() as u32).to_le_bytes();
    let crc = codec::crc32c_update(codec::crc32c(&len), payload);
    bytes.extend_from_slice(&len);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let err = FileLog::open(dir.path(), cfg()).err().unwrap();
    assert!(matches!(err, LogError::BadRecord { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Compaction

#[test]
fn compaction_keeps_live_state_and_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let records = workload(0, 400);
    let log = open(dir.path(), small_segments(4096));
    let mut events = log.subscribe();
    write_all(&log, &records);
    let stats = log.stats();
    assert!(stats.checkpoints >= 5, "{stats:?}");
    assert_eq!(stats.segments, 1, "{stats:?}");
    drop(log);
    let mut saw_checkpoint = false;
    while let Ok(ev) = events.try_recv() {
        if let LogEvent::Checkpoint {
            deleted_segments, ..
        } = ev
        {
            assert_eq!(deleted_segments, 1);
            saw_checkpoint = true;
        }
    }
    assert!(saw_checkpoint);

    let segs = list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(segs[0] > 5, "{segs:?}");
    let state = reopen_state(dir.path(), small_segments(4096));
    assert_eq!(view(&state), view(&model(&records)));
}

#[test]
fn compaction_under_repeated_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for round in 0..6u64 {
        let log = open(dir.path(), small_segments(2048));
        assert_eq!(view(&log.recover().unwrap()), view(&model(&all)));
        let chunk = workload(round * 1000, 50);
        write_all(&log, &chunk);
        all.extend(chunk);
        drop(log);
        assert!(list_segments(dir.path()).unwrap().len() <= 2);
    }
    let state = reopen_state(dir.path(), small_segments(2048));
    assert_eq!(view(&state), view(&model(&all)));
    // A pending commit from the first round survived every checkpoint.
    assert!(state.pending.iter().any(|p| p.txid.as_str() == "t5"));
}

#[test]
fn the_outcome_window_bounds_what_checkpoints_keep() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileLogConfig {
        max_outcomes: 20,
        ..small_segments(1024)
    };
    let log = open(dir.path(), config.clone());
    let mut records = vec![commit(0), commit(1), commit(2)];
    records.extend((10..300).map(abort));
    // Forced one by one so that every record is its own batch (rolls happen between batches).
    for r in &records {
        log.append_durable(r.clone()).wait_blocking().unwrap();
    }
    assert!(log.stats().checkpoints > 3, "{:?}", log.stats());
    drop(log);
    let state = reopen_state(dir.path(), config);
    // Pending commits are never dropped, however old.
    assert_eq!(state.pending.len(), 3);
    // Old aborts left the window; the newest are there.
    assert!(!state.outcomes.contains_key(&tx("t10")));
    assert!(state.outcomes.contains_key(&tx("t299")));
    // At most the window plus what was appended since the last checkpoint.
    assert!(
        state.outcomes.len() < 3 + 20 + 20,
        "{}",
        state.outcomes.len()
    );
    let all = model(&records);
    for (txid, outcome) in &state.outcomes {
        assert_eq!(&all.outcomes[txid], outcome);
    }
}

#[test]
fn the_outcome_window_has_an_age_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileLogConfig {
        max_outcome_age_ms: 50,
        ..small_segments(1024)
    };
    let log = open(dir.path(), config.clone());
    let mut records = vec![commit(0)];
    records.extend((10..300).map(abort)); // at_ms one apart
    for r in &records {
        log.append_durable(r.clone()).wait_blocking().unwrap();
    }
    assert!(log.stats().checkpoints > 3, "{:?}", log.stats());
    drop(log);
    let state = reopen_state(dir.path(), config);
    assert_eq!(state.pending.len(), 1);
    assert!(!state.outcomes.contains_key(&tx("t100")));
    assert!(state.outcomes.contains_key(&tx("t299")));
}

#[test]
fn a_damaged_checkpoint_in_the_only_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(1024));
    write_all(&log, &workload(0, 100));
    assert!(log.stats().checkpoints > 0);
    drop(log);
    let segs = list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 1);
    let seg = segment_path(dir.path(), segs[0]);
    let len = std::fs::metadata(&seg).unwrap().len();
    flip(&seg, 20);
    let err = FileLog::open(dir.path(), small_segments(1024))
        .err()
        .unwrap();
    assert!(matches!(err, LogError::Corrupt { offset: 0, .. }), "{err}");
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len,
        "nothing truncated"
    );
}

/// The checkpoint frame a roll after `records` (LSNs 1..=n) would write.
fn checkpoint_frame(records: &[LogRecord]) -> Vec<u8> {
    let mut state = LiveState::default();
    for (i, r) in records.iter().enumerate() {
        state.apply(i as u64 + 1, r);
    }
    codec::encode_checkpoint(records.len() as u64 + 1, &state.checkpoint()).unwrap()
}

#[test]
fn a_crash_while_writing_the_checkpoint_segment_recovers_from_the_old_one() {
    let records = workload(0, 40);
    let (orig, _) = single_segment(&records);
    let frame = checkpoint_frame(&records);
    let want = model(&records);
    for cut in [0, 1, 7, 8, 9, frame.len() / 2, frame.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(orig.path(), dir.path());
        std::fs::write(segment_path(dir.path(), 2), &frame[..cut]).unwrap();
        let log = open(dir.path(), cfg());
        let state = log.recover().unwrap();
        assert_eq!(view(&state), view(&want), "cut at {cut}");
        assert_eq!(state.next_lsn, records.len() as u64 + 1, "cut at {cut}");
        assert_eq!(state.torn_tail.is_some(), cut > 0, "cut at {cut}");
        log.append_durable(commit(77)).wait_blocking().unwrap();
        drop(log);
        // The old segment is still needed and still there; the log goes on in segment 2.
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
        let mut more = records.clone();
        more.push(commit(77));
        assert_eq!(
            view(&reopen_state(dir.path(), cfg())),
            view(&model(&more)),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_crash_before_old_segments_are_deleted_finishes_the_compaction() {
    let records = workload(0, 40);
    let (dir, _) = single_segment(&records);
    std::fs::write(segment_path(dir.path(), 2), checkpoint_frame(&records)).unwrap();
    let log = open(dir.path(), cfg());
    let state = log.recover().unwrap();
    assert_eq!(view(&state), view(&model(&records)));
    assert_eq!(state.next_lsn, records.len() as u64 + 2);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
    assert_eq!(log.stats().segments, 1);
    log.append_durable(commit(77)).wait_blocking().unwrap();
    drop(log);
    let mut more = records.clone();
    more.push(commit(77));
    assert_eq!(view(&reopen_state(dir.path(), cfg())), view(&model(&more)));
}

#[test]
fn a_crash_mid_compaction_with_later_records_in_the_new_segment() {
    // Old segment 1, new checkpointed segment 2 with records after the checkpoint, a torn tail,
    // and segment 1 not yet deleted.
    let records = workload(0, 30);
    let (dir, _) = single_segment(&records);
    let mut seg2 = checkpoint_frame(&records);
    let extra = [commit(500), end(500), abort(501)];
    for (i, r) in extra.iter().enumerate() {
        seg2.extend(codec::encode_record(records.len() as u64 + 2 + i as u64, r).unwrap());
    }
    seg2.extend_from_slice(&codec::encode_record(999, &commit(502)).unwrap()[..20]);
    std::fs::write(segment_path(dir.path(), 2), &seg2).unwrap();
    let state = reopen_state(dir.path(), cfg());
    let mut all = records.clone();
    all.extend(extra);
    assert_eq!(view(&state), view(&model(&all)));
    assert!(state.torn_tail.is_some());
    assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
}

// ---------------------------------------------------------------------------------------------
// Group commit and presumed abort

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_among_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn DecisionLog> = Arc::new(open(dir.path(), cfg()));
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append_durable(commit(i)).await })
        })
        .collect();
    let mut lsns = Vec::new();
    for t in tasks {
        lsns.push(t.await.unwrap().unwrap());
    }
    lsns.sort_unstable();
    assert_eq!(lsns, (1..=1000).collect::<Vec<_>>());
    let stats = log.stats();
    eprintln!(
        "group commit: {} records in {} fsyncs ({:.1} per fsync)",
        stats.records,
        stats.fsyncs,
        stats.records as f64 / stats.fsyncs as f64
    );
    assert_eq!(stats.records, 1000);
    assert!(stats.fsyncs >= 1);
    assert!(
        stats.fsyncs < stats.records,
        "no group commit: {} fsyncs for {} records",
        stats.fsyncs,
        stats.records
    );
    drop(log);
    let state = reopen_state(dir.path(), cfg());
    assert_eq!(state.pending.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_under_a_closed_loop_load() {
    // 50 clients, each committing 20 transactions one after the other.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), cfg()));
    let clients: Vec<_> = (0..50u64)
        .map(|c| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    log.append_durable(commit(c * 100 + i)).await.unwrap();
                    log.append_lazy(end(c * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    log.flush().await.unwrap();
    let stats = log.stats();
    eprintln!(
        "closed loop: {} records in {} fsyncs",
        stats.records, stats.fsyncs
    );
    assert_eq!(stats.records, 2000);
    assert!(stats.fsyncs < 1000, "{stats:?}");
    drop(log);
    let state = reopen_state(dir.path(), cfg());
    assert!(state.pending.is_empty());
    assert_eq!(state.outcomes.len(), 1000);
}

#[tokio::test]
async fn lazy_records_are_not_forced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), cfg());
    let mut events = log.subscribe();
    log.append_lazy(abort(1)).unwrap();
    log.append_lazy(end(1)).unwrap();
    // Wait until the writer has handled both; the batch's fsync, if any, comes before events.
    for want in [RecordKind::Abort, RecordKind::End] {
        match events.recv().await.unwrap() {
            LogEvent::Write { kind, .. } => assert_eq!(kind, want),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(log.stats().records, 2);
    assert_eq!(log.stats().fsyncs, 0, "a lazy record was forced");

    // The next forced record makes them durable with the same fsync.
    let lsn = log.append_durable(commit(2)).await.unwrap();
    assert_eq!(lsn, 3);
    assert_eq!(log.stats().fsyncs, 1);
    assert!(matches!(
        events.recv().await.unwrap(),
        LogEvent::Write {
            kind: RecordKind::Commit,
            lsn: 3,
            ..
        }
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        LogEvent::Fsync { records: 3, .. }
    ));
    drop(log);
    let state = reopen_state(dir.path(), cfg());
    assert_eq!(state.outcomes.len(), 2);
    assert_eq!(state.outcomes[&tx("t1")].decision, Decision::Abort);
}

#[tokio::test]
async fn lazy_records_are_synced_by_the_periodic_flush() {
    let dir = tempfile::tempdir().unwrap();
    let config = FileLogConfig {
        lazy_flush_interval: Some(Duration::from_millis(5)),
        ..cfg()
    };
    let log = open(dir.path(), config);
    let mut events = log.subscribe();
    log.append_lazy(abort(1)).unwrap();
    let fsync = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let LogEvent::Fsync { records, .. } = events.recv().await.unwrap() {
                return records;
            }
        }
    })
    .await
    .expect("no periodic fsync");
    assert_eq!(fsync, 1);
}

#[tokio::test]
async fn flush_resolves_with_the_last_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), cfg());
    assert_eq!(log.flush().await.unwrap(), 0);
    log.append_lazy(abort(1)).unwrap();
    log.append_lazy(abort(2)).unwrap();
    assert_eq!(log.flush().await.unwrap(), 2);
    assert_eq!(log.stats().fsyncs, 1);
    assert_eq!(log.flush().await.unwrap(), 2);
    assert_eq!(log.stats().fsyncs, 1, "nothing new, no fsync");
}

// ---------------------------------------------------------------------------------------------
// MemLog

#[test]
fn mem_log_crash_loses_exactly_the_unforced_records() {
    let mem = MemLog::new();
    mem.append_durable(commit(1)).wait_blocking().unwrap();
    mem.append_lazy(abort(2)).unwrap();
    mem.append_lazy(end(1)).unwrap();
    assert_eq!(mem.stats().fsyncs, 1);
    assert_eq!(mem.records().len(), 3);
    assert_eq!(mem.durable_records().len(), 1);

    let crashed = mem.crash().recover().unwrap();
    assert_eq!(
        crashed.pending.len(),
        1,
        "the commit survives, its End does not"
    );
    assert!(
        !crashed.outcomes.contains_key(&tx("t2")),
        "the abort is lost: presumed abort"
    );
    assert_eq!(crashed.next_lsn, 2);

    let restarted = mem.restart().recover().unwrap();
    assert!(restarted.pending.is_empty());
    assert_eq!(restarted.outcomes[&tx("t2")].decision, Decision::Abort);
    assert_eq!(restarted.next_lsn, 4);

    // A forced record makes the earlier lazy ones durable too.
    mem.append_durable(commit(3)).wait_blocking().unwrap();
    assert_eq!(mem.durable_records().len(), 4);
}

#[test]
fn mem_log_and_file_log_agree() {
    let records = workload(0, 80);
    let dir = tempfile::tempdir().unwrap();
    let file = open(dir.path(), cfg());
    let mem = MemLog::new();
    write_all(&file, &records);
    write_all(&mem, &records);
    assert_eq!(file.stats().records, mem.stats().records);
    assert_eq!(file.stats().bytes, mem.stats().bytes);
    drop(file);
    assert_eq!(
        reopen_state(dir.path(), cfg()),
        mem.restart().recover().unwrap()
    );
}

#[tokio::test]
async fn mem_log_failure_injection() {
    let mem = MemLog::new();
    let mut events = mem.subscribe();
    mem.append_durable(commit(1)).await.unwrap();
    assert!(matches!(
        events.recv().await.unwrap(),
        LogEvent::Write { lsn: 1, .. }
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        LogEvent::Fsync { records: 1, .. }
    ));
    mem.fail("disk on fire");
    let err = mem.append_durable(commit(2)).await.unwrap_err();
    assert!(matches!(err, LogError::Failed { .. }), "{err}");
    assert!(mem.append_lazy(end(1)).is_err());
    assert!(mem.flush().await.is_err());
}

/// The heuristic acknowledgements of an End record come back on recovery, from the segment
/// and from a checkpoint alike; an End without them (or written before they were kept) reads
/// as none.
#[test]
fn heuristics_of_an_end_record_survive_reopen_and_checkpoints() {
    use twopc_protocol::api::{HeuristicKind, HeuristicReport};
    let hz = vec![HeuristicReport {
        participant: ParticipantName::new("ledger").unwrap(),
        result: HeuristicKind::Conflict,
    }];
    let end_with = |i: u64| LogRecord::End {
        txid: tx(&format!("t{i}")),
        heuristics: hz.clone(),
    };
    // An End as it was written before the field existed.
    let old = serde_json::from_str::<LogRecord>(r#"{"type":"end","txid":"t0"}"#).unwrap();
    assert_eq!(old, end(0));
    for config in [cfg(), small_segments(1024)] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config.clone());
        let mut records = vec![commit(1), end_with(1), commit(2), end(2)];
        records.extend((10..120).map(abort)); // enough to roll segments and checkpoint
        for r in &records {
            log.append_durable(r.clone()).wait_blocking().unwrap();
        }
        let checkpoints = log.stats().checkpoints;
        drop(log);
        let state = reopen_state(dir.path(), config);
        assert_eq!(
            state.outcomes[&tx("t1")].heuristics,
            hz,
            "{checkpoints} checkpoints"
        );
        assert!(state.outcomes[&tx("t2")].heuristics.is_empty());
    }
}
