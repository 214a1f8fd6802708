//! Frames on disk: `[len u32 LE][crc32c u32 LE][payload]`, the payload one JSON entry.

use super::state::Checkpoint;
use super::{LogError, LogRecord, Lsn};
use serde::{Deserialize, Serialize};

/// Bytes before the payload: length and checksum.
pub(crate) const HEADER_LEN: usize = 8;

/// Largest payload a frame may carry. Generous: a checkpoint of 100k outcomes is ~15 MiB.
pub(crate) const MAX_PAYLOAD: usize = 512 * 1024 * 1024;

/// Continues a CRC-32C over `data` (`crc32c_update(crc32c(a), b) == crc32c(a ++ b)`).
pub(crate) fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

fn frame_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c_update(crc32c(&len_bytes), payload)
}

/// What one frame holds, as written.
#[derive(Serialize)]
struct EntryRef<'a> {
    lsn: Lsn,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a LogRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a Checkpoint>,
}

/// What one frame holds, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryOwned {
    lsn: Lsn,
    #[serde(default)]
    record: Option<LogRecord>,
    #[serde(default)]
    checkpoint: Option<Checkpoint>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// An ordinary record.
    Record(Lsn, LogRecord),
    /// A checkpoint: the state as of `lsn - 1`.
    Checkpoint(Lsn, Checkpoint),
}

impl Entry {
    pub(crate) fn lsn(&self) -> Lsn {
        match self {
            Entry::Record(lsn, _) | Entry::Checkpoint(lsn, _) => *lsn,
        }
    }
}

fn frame(payload: Vec<u8>) -> Result<Vec<u8>, LogError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(LogError::TooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let len_bytes = (payload.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&frame_crc(len_bytes, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn encode_failed(e: serde_json::Error) -> LogError {
    // Cannot happen for these types (string keys, no floats); reported rather than panicking.
    LogError::Failed {
        cause: format!("cannot encode a log record: {e}"),
    }
}

/// Encodes a record as one frame.
pub(crate) fn encode_record(lsn: Lsn, record: &LogRecord) -> Result<Vec<u8>, LogError> {
    let payload = serde_json::to_vec(&EntryRef {
        lsn,
        record: Some(record),
        checkpoint: None,
    })
    .map_err(encode_failed)?;
    frame(payload)
}

/// Encodes a checkpoint as one frame.
pub(crate) fn encode_checkpoint(lsn: Lsn, checkpoint: &Checkpoint) -> Result<Vec<u8>, LogError> {
    let payload = serde_json::to_vec(&EntryRef {
        lsn,
        record: None,
        checkpoint: Some(checkpoint),
    })
    .map_err(encode_failed)?;
    frame(payload)
}

/// Why the bytes at an offset are not a valid frame (a torn write, or corruption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes left than the header or the announced payload needs.
    Short { need: usize, have: usize },
    /// The length field is zero or beyond the limit.
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short { need, have } => {
                write!(f, "frame cut short: needs {need} bytes, {have} left")
            }
            FrameError::BadLength(len) => write!(f, "invalid frame length {len}"),
            FrameError::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// Reads the frame at `off` in `buf`: `Ok(None)` at the exact end, else the payload and the
/// offset of the next frame.
pub(crate) fn read_frame(buf: &[u8], off: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let rest = &buf[off..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < HEADER_LEN {
        return Err(FrameError::Short {
            need: HEADER_LEN,
            have: rest.len(),
        });
    }
    let len_bytes: [u8; 4] = rest[0..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 || len as usize > MAX_PAYLOAD {
        return Err(FrameError::BadLength(len));
    }
    let total = HEADER_LEN + len as usize;
    if rest.len() < total {
        return Err(FrameError::Short {
            need: total,
            have: rest.len(),
        });
    }
    let stored = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let payload = &rest[HEADER_LEN..total];
    let computed = frame_crc(len_bytes, payload);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    Ok(Some((payload, off + total)))
}

/// Decodes a payload whose checksum passed.
pub(crate) fn decode_entry(payload: &[u8]) -> Result<Entry, String> {
    let e: EntryOwned = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    match (e.record, e.checkpoint) {
        (Some(r), None) => Ok(Entry::Record(e.lsn, r)),
        (None, Some(c)) => Ok(Entry::Checkpoint(e.lsn, c)),
        _ => Err("an entry must hold exactly one of `record` and `checkpoint`".into()),
    }
}
