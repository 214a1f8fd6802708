//! The data directory: segment files (naming, listing, creation), the directory lock, and the
//! scan that reads every segment back at open (torn tails, corruption, checkpoints; the rules
//! are in the module docs of [`super`]).

use super::codec::{self, Entry};
use super::state::{Checkpoint, LiveState};
use super::{LogError, Lsn, TornTail};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub(super) const LOCK_FILE: &str = "LOCK";

/// How long [`FileLog::open`] waits for a busy directory lock.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// The path of segment `seq`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:020}.seg"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment numbers in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes file creations and removals in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io("fsync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub(super) fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io("open", &path, e))?;
    // A lock that is busy for a moment is not a second coordinator: a predecessor process may
    // still be exiting, and a child process forked by this one holds a copy of every
    // descriptor (the lock included) until it execs. So wait briefly before giving up.
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(LogError::io("lock", &path, e)),
        }
    }
}

/// Creates an empty segment and makes its existence durable.
pub(super) fn create_segment(dir: &Path, seq: u64, contents: &[u8]) -> Result<File, LogError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::io("create", &path, e))?;
    file.write_all(contents)
        .map_err(|e| LogError::io("write", &path, e))?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The segment's first frame, if it is a complete, valid checkpoint: (lsn, checkpoint, frame
/// length). Anything else (a record, a torn or corrupt frame, an empty file) gives `None`.
fn read_first_checkpoint(path: &Path) -> Result<Option<(Lsn, Checkpoint, u64)>, LogError> {
    let mut file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len();
    if size < codec::HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; codec::HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|e| LogError::io("read", path, e))?;
    let len = u64::from(u32::from_le_bytes(
        header[0..4].try_into().expect("4 bytes"),
    ));
    if len == 0 || len > codec::MAX_PAYLOAD as u64 || size < codec::HEADER_LEN as u64 + len {
        return Ok(None);
    }
    let mut buf = header.to_vec();
    buf.resize(codec::HEADER_LEN + len as usize, 0);
    file.read_exact(&mut buf[codec::HEADER_LEN..])
        .map_err(|e| LogError::io("read", path, e))?;
    let Ok(Some((payload, end))) = codec::read_frame(&buf, 0) else {
        return Ok(None);
    };
    match codec::decode_entry(payload) {
        Ok(Entry::Checkpoint(lsn, cp)) => Ok(Some((lsn, cp, end as u64))),
        _ => Ok(None),
    }
}

/// The outcome of scanning a data directory.
pub(super) struct Scanned {
    pub(super) state: LiveState,
    pub(super) next_lsn: Lsn,
    pub(super) segments: Vec<u64>,
    pub(super) active_len: u64,
    pub(super) active_base: u64,
    pub(super) torn_tail: Option<TornTail>,
}

fn inconsistent(dir: &Path, detail: String) -> LogError {
    LogError::Inconsistent {
        dir: dir.to_path_buf(),
        detail,
    }
}

/// Recovery: find the base checkpoint, drop obsolete segments, replay, cut a torn tail.
pub(super) fn scan(dir: &Path) -> Result<Scanned, LogError> {
    let mut seqs = list_segments(dir)?;
    if seqs.is_empty() {
        create_segment(dir, 1, &[])?;
        return Ok(Scanned {
            state: LiveState::default(),
            next_lsn: 1,
            segments: vec![1],
            active_len: 0,
            active_base: 0,
            torn_tail: None,
        });
    }

    // The newest segment that starts with a complete checkpoint makes every older one obsolete.
    let mut base = None;
    for i in (0..seqs.len()).rev() {
        if let Some(found) = read_first_checkpoint(&segment_path(dir, seqs[i]))? {
            base = Some((i, found));
            break;
        }
    }
    let (mut state, mut expected, start_off) = match base {
        Some((i, (lsn, cp, frame_len))) => {
            if i > 0 {
                // A compaction that crashed after its checkpoint was durable: finish it.
                for &seq in &seqs[..i] {
                    let path = segment_path(dir, seq);
                    fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
                }
                sync_dir(dir)?;
                seqs.drain(..i);
            }
            (LiveState::from_checkpoint(cp), Some(lsn + 1), frame_len)
        }
        None => {
            if seqs[0] != 1 {
                // Every segment but the first is created with a checkpoint, and older ones are
                // only deleted once it is durable; a bad first frame here is corruption, never
                // a torn write (treating it as one would throw the whole history away).
                let path = segment_path(dir, seqs[0]);
                let buf = fs::read(&path).map_err(|e| LogError::io("read", &path, e))?;
                if let Err(bad) = codec::read_frame(&buf, 0) {
                    return Err(LogError::Corrupt {
                        path,
                        offset: 0,
                        detail: format!("{bad}; this segment must start with a checkpoint"),
                    });
                }
                return Err(inconsistent(
                    dir,
                    format!(
                        "no segment starts with a checkpoint and the oldest is segment {}, \
                         not 1: earlier segments are missing",
                        seqs[0]
                    ),
                ));
            }
            (LiveState::default(), None, 0)
        }
    };
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(inconsistent(
                dir,
                format!(
                    "segment {} follows segment {}: segments are missing",
                    w[1], w[0]
                ),
            ));
        }
    }

    let last = seqs.len() - 1;
    let mut torn_tail = None;
    let mut active_len = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let buf = fs::read(&path).map_err(|e| LogError::io("read", &path, e))?;
        let mut off = if i == 0 { start_off as usize } else { 0 };
        loop {
            match codec::read_frame(&buf, off) {
                Ok(None) => break,
                Ok(Some((payload, next))) => {
                    let entry =
                        codec::decode_entry(payload).map_err(|detail| LogError::BadRecord {
                            path: path.clone(),
                            offset: off as u64,
                            detail,
                        })?;
                    let lsn = entry.lsn();
                    let want = expected.unwrap_or(1);
                    if lsn != want {
                        return Err(inconsistent(
                            dir,
                            format!(
                                "{} at byte {off}: LSN {lsn} where {want} was expected",
                                path.display()
                            ),
                        ));
                    }
                    match entry {
                        Entry::Record(lsn, record) => state.apply(lsn, &record),
                        Entry::Checkpoint(..) => {
                            return Err(inconsistent(
                                dir,
                                format!(
                                    "{} at byte {off}: a checkpoint that does not start the \
                                     newest checkpointed segment",
                                    path.display()
                                ),
                            ))
                        }
                    }
                    expected = Some(lsn + 1);
                    off = next;
                }
                Err(bad) if i == last => {
                    // A torn write from a crash: nothing from here on was ever acknowledged.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| LogError::io("open", &path, e))?;
                    file.set_len(off as u64)
                        .map_err(|e| LogError::io("truncate", &path, e))?;
                    file.sync_all()
                        .map_err(|e| LogError::io("fsync", &path, e))?;
                    torn_tail = Some(TornTail {
                        segment: path.clone(),
                        offset: off as u64,
                        discarded_bytes: (buf.len() - off) as u64,
                        reason: bad.to_string(),
                    });
                    break;
                }
                Err(bad) => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: off as u64,
                        detail: bad.to_string(),
                    })
                }
            }
        }
        if i == last {
            active_len = off as u64;
        }
    }
    Ok(Scanned {
        state,
        next_lsn: expected.unwrap_or(1),
        active_base: if last == 0 { start_off } else { 0 },
        segments: seqs,
        active_len,
        torn_tail,
    })
}
