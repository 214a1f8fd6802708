//! The recorded event stream: capped, with absolute indices.

use super::*;

/// The recorded event stream, capped. Indices are absolute: the first event ever received is
/// 0, and an index stays valid (or becomes "evicted") as the log rolls.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub(super) events: VecDeque<Event>,
    pub(super) base: u64,
    pub(super) cap: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_cap(MAX_EVENTS)
    }
}

impl EventLog {
    /// An empty log keeping at most `cap` events.
    pub fn with_cap(cap: usize) -> Self {
        EventLog {
            events: VecDeque::new(),
            base: 0,
            cap: cap.max(1),
        }
    }

    /// Appends an event, evicting the oldest beyond the cap; returns its absolute index.
    pub fn push(&mut self, ev: Event) -> u64 {
        let idx = self.end();
        self.events.push_back(ev);
        while self.events.len() > self.cap {
            self.events.pop_front();
            self.base += 1;
        }
        idx
    }

    /// Absolute index of the oldest retained event.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the absolute index of the newest event (= events ever received).
    pub fn end(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// Events retained.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events evicted so far.
    pub fn evicted(&self) -> u64 {
        self.base
    }

    /// The event at an absolute index, if retained.
    pub fn get(&self, idx: u64) -> Option<&Event> {
        idx.checked_sub(self.base)
            .and_then(|i| self.events.get(usize::try_from(i).ok()?))
    }

    /// Retained events in `[from, to)` (absolute, clamped), with their indices.
    pub fn range(&self, from: u64, to: u64) -> impl DoubleEndedIterator<Item = (u64, &Event)> {
        let from = from.clamp(self.base, self.end());
        let to = to.clamp(from, self.end());
        let (a, b) = ((from - self.base) as usize, (to - self.base) as usize);
        self.events
            .range(a..b)
            .enumerate()
            .map(move |(i, e)| (from + i as u64, e))
    }
}
