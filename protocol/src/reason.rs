//! Reasons that reach a client: why a participant voted NO, why a transaction aborted.
//!
//! A reason is text a participant, a store or the coordinator wrote, and it travels on to the
//! client in the API response, the event stream and the decision log's abort records. A
//! store's error can be as long as the statement that caused it, and nothing guarantees that
//! a participant keeps it short. So every reason is bounded at both ends: the participant
//! bounds what it sends, the coordinator bounds what it takes in (a participant is a peer, not
//! trusted to have done so).

/// The most bytes a reason keeps, marker included.
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] bytes on a character boundary with a marker
/// saying how much was left out; unchanged when it is short enough.
pub fn bounded(reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    // The marker's length depends on the number it prints; the widest possible number keeps
    // the total within the bound whatever is cut.
    let widest = format!(" … [{} more bytes]", reason.len());
    let mut keep = MAX_REASON_BYTES - widest.len();
    while !reason.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{} … [{} more bytes]", &reason[..keep], reason.len() - keep)
}

/// [`bounded`] for an optional reason.
pub fn bounded_opt(reason: Option<String>) -> Option<String> {
    reason.map(bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reasons_are_unchanged() {
        assert_eq!(bounded("lock timeout".into()), "lock timeout");
        let exact = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(bounded(exact.clone()), exact);
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary_with_a_marker() {
        for filler in ["x", "é", "語", "🦀"] {
            let long = filler.repeat(5000);
            let cut = bounded(long.clone());
            assert!(
                cut.len() <= MAX_REASON_BYTES,
                "{filler}: {} bytes",
                cut.len()
            );
            let (kept, marker) = cut.rsplit_once(" … [").unwrap();
            assert!(long.starts_with(kept));
            let left_out: usize = marker.trim_end_matches(" more bytes]").parse().unwrap();
            assert_eq!(kept.len() + left_out, long.len());
        }
    }
}
