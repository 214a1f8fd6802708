//! The app state ([`Model`]) and its reducer: the timeline (live, paced, replaying), notices
//! and scenario runs.

use super::*;

/// The app state.
#[derive(Debug, Clone)]
pub struct Model {
    /// `GET /v1/config`, once loaded.
    pub config: Option<PublicConfig>,
    /// `GET /v1/participants`, last answer.
    pub statuses: Vec<ParticipantStatus>,
    /// The recorded stream.
    pub log: EventLog,
    /// The fold of the whole log (live state).
    pub live: Derived,
    pub(super) replay: Option<Derived>,
    /// None: live (follow the tail). Some(i): showing the state before event i.
    pub cursor: Option<u64>,
    /// Paced live mode: the view walks to the tail one event per tick (so a burst of events,
    /// like a whole 2PC arriving within milliseconds, plays out step by step), and jumps to
    /// the tail when more than [`LIVE_LAG_MAX`] events behind.
    pub paced: bool,
    /// Paced live mode: the position shown.
    pub(super) follow: u64,
    /// Paced live mode: the fold at `follow` while it is behind the tail.
    pub(super) trail: Option<Derived>,
    /// Replaying (the cursor advances on each tick).
    pub playing: bool,
    /// Index into [`SPEEDS`].
    pub speed: usize,
    /// The transaction the diagram focuses on.
    pub selected: Option<String>,
    /// The event socket.
    pub socket: SocketState,
    /// Events the coordinator skipped because the page fell behind.
    pub lagged: u64,
    /// Frames that were not events (or failed to parse).
    pub bad_frames: u64,
    /// Ping/pong events received (not recorded: they carry no protocol state).
    pub heartbeats: u64,
    /// Absolute index of the first event of the latest ingested batch.
    pub batch_start: u64,
    /// Size of the latest ingested batch.
    pub batch_len: u64,
    /// Notices, newest last.
    pub notices: VecDeque<Notice>,
    pub(super) next_notice: u64,
    /// The latest fault-API error (shown next to the fault buttons).
    pub fault_error: Option<String>,
    /// The running or last scenario.
    pub scenario: Option<ScenarioRun>,
    /// Help overlay open.
    pub help: bool,
    /// The coordinator wants a client token this page does not have (or has a wrong one):
    /// what it said. The page then asks for one.
    pub token_needed: Option<String>,
    /// `GET /v1/whoami`: the client the page's token stands for, and what it may do.
    pub identity: Option<ClientIdentity>,
    /// Transactions submitted from this page: id → label.
    pub submitted: HashMap<String, String>,
    /// Total time of the page's transactions as answered by the coordinator (the answer may
    /// arrive before the transaction's events).
    pub answered_ms: HashMap<String, f64>,
}

impl Default for Model {
    fn default() -> Self {
        Model::with_log(EventLog::default())
    }
}

impl Model {
    /// A model around a given (empty) log; tests use small caps.
    pub fn with_log(log: EventLog) -> Self {
        Model {
            config: None,
            token_needed: None,
            identity: None,
            statuses: Vec::new(),
            live: Derived::starting_at(log.base()),
            log,
            replay: None,
            cursor: None,
            paced: false,
            follow: 0,
            trail: None,
            playing: false,
            speed: DEFAULT_SPEED,
            selected: None,
            socket: SocketState::Connecting,
            lagged: 0,
            bad_frames: 0,
            heartbeats: 0,
            batch_start: 0,
            batch_len: 0,
            notices: VecDeque::new(),
            next_notice: 0,
            fault_error: None,
            scenario: None,
            help: false,
            submitted: HashMap::new(),
            answered_ms: HashMap::new(),
        }
    }

    /// True when following the tail.
    pub fn is_live(&self) -> bool {
        self.cursor.is_none()
    }

    /// The absolute index the view shows the state before (the end of the log when live).
    pub fn position(&self) -> u64 {
        self.cursor.unwrap_or_else(|| self.live_position())
    }

    /// The position live mode shows: the tail, or (paced) the step it has walked to.
    pub fn live_position(&self) -> u64 {
        if self.paced {
            self.follow.clamp(self.log.base(), self.log.end())
        } else {
            self.log.end()
        }
    }

    /// Paced live mode is walking towards the tail (live ticks are due).
    pub fn catching_up(&self) -> bool {
        self.cursor.is_none() && self.paced && self.follow < self.log.end()
    }

    /// Milliseconds between live ticks while catching up.
    pub fn live_tick_ms(&self) -> u32 {
        (LIVE_STEP_MS_AT_1X / self.speed_factor()).round().max(1.0) as u32
    }

    /// Whether a tick timer should run, and its period.
    pub fn ticker(&self) -> Option<u32> {
        if self.cursor.is_some() && self.playing {
            Some(self.tick_ms())
        } else if self.catching_up() {
            Some(self.live_tick_ms())
        } else {
            None
        }
    }

    pub(super) fn snap_to_tail(&mut self) {
        self.follow = self.log.end();
        self.trail = None;
    }

    /// The fold the view draws: the live one, or the one at the replay cursor.
    pub fn view(&self) -> &Derived {
        match (&self.cursor, &self.replay, &self.trail) {
            (Some(_), Some(r), _) => r,
            (None, _, Some(t)) if self.catching_up() => t,
            _ => &self.live,
        }
    }

    /// Current replay speed factor.
    pub fn speed_factor(&self) -> f64 {
        SPEEDS[self.speed.min(SPEEDS.len() - 1)]
    }

    /// Milliseconds between replay ticks at the current speed.
    pub fn tick_ms(&self) -> u32 {
        (STEP_MS_AT_1X / self.speed_factor()).round().max(1.0) as u32
    }

    /// Adds a notice.
    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.next_notice += 1;
        self.notices.push_back(Notice {
            id: self.next_notice,
            level,
            text: text.into(),
        });
        while self.notices.len() > MAX_NOTICES {
            self.notices.pop_front();
        }
    }

    pub(super) fn set_cursor(&mut self, to: Option<u64>) {
        match to {
            None => {
                self.cursor = None;
                self.playing = false;
                self.replay = None;
                self.snap_to_tail();
            }
            Some(c) => {
                let c = c.clamp(self.log.base(), self.log.end());
                self.cursor = Some(c);
                // Extend the cached fold forwards when possible, else refold from the base.
                let reuse = matches!(&self.replay, Some(r) if r.position <= c && r.position >= self.log.base());
                if reuse {
                    let r = self.replay.as_mut().expect("checked");
                    let from = r.position;
                    for (i, e) in self.log.range(from, c) {
                        r.apply(i, e);
                    }
                    r.position = c;
                } else {
                    let mut r = Derived::fold(&self.log, c);
                    r.position = c;
                    self.replay = Some(r);
                }
            }
        }
    }

    /// Applies an action.
    pub fn reduce(&mut self, action: Action) {
        match action {
            Action::Ingest(batch) => self.ingest(batch),
            Action::ConfigLoaded(c) => self.config = Some(c),
            Action::TokenNeeded(why) => self.token_needed = Some(why),
            Action::IdentityLoaded(who) => {
                // The stream's refusal (403 on the WebSocket upgrade) is invisible to a page:
                // say why it stays empty.
                if who.authenticated && !who.scopes.contains(&Scope::Events) {
                    self.notify(
                        Level::Error,
                        format!(
                            "client {} has no events scope: the live event stream is refused, \
                             so nothing is drawn",
                            who.client.as_deref().unwrap_or("?")
                        ),
                    );
                }
                self.identity = Some(who);
            }
            Action::ParticipantsLoaded(s) => self.statuses = s,
            Action::Socket(s) => {
                if s == SocketState::Open && self.socket != SocketState::Open {
                    if matches!(self.socket, SocketState::Retrying(_)) {
                        self.notify(Level::Info, "event stream reconnected");
                    }
                } else if matches!(s, SocketState::Retrying(_)) && self.socket == SocketState::Open
                {
                    self.notify(
                        Level::Error,
                        "event stream dropped (coordinator down?); reconnecting",
                    );
                }
                self.socket = s;
            }
            Action::TogglePlay => match self.cursor {
                None => {
                    let at = self.position();
                    self.set_cursor(Some(at));
                    self.playing = false;
                }
                Some(_) if self.playing => self.playing = false,
                Some(c) => {
                    if c >= self.log.end() {
                        self.set_cursor(None);
                    } else {
                        self.playing = true;
                    }
                }
            },
            Action::Step(n) => {
                let pos = self.position() as i64;
                let target = (pos + n).max(0) as u64;
                self.set_cursor(Some(target));
                self.playing = false;
            }
            Action::Seek(i) => {
                self.set_cursor(Some(i));
                self.playing = false;
            }
            Action::GoLive => self.set_cursor(None),
            Action::Tick => {
                if let (Some(c), true) = (self.cursor, self.playing) {
                    if c + 1 >= self.log.end() {
                        self.set_cursor(None);
                    } else {
                        self.set_cursor(Some(c + 1));
                    }
                } else if self.catching_up() {
                    self.live_step();
                }
            }
            Action::SpeedUp => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
            Action::SpeedDown => self.speed = self.speed.saturating_sub(1),
            Action::Select(s) => self.selected = s,
            Action::Submitted { id, label } => {
                self.notify(Level::Info, format!("submitted {label} {id}"));
                self.submitted.insert(id.clone(), label);
                self.selected = Some(id);
            }
            Action::SubmitAnswered(Ok(resp)) => {
                if self.answered_ms.len() >= MAX_TXS {
                    self.answered_ms.clear();
                }
                if resp.timings.total_ms > 0.0 {
                    self.answered_ms
                        .insert(resp.id.to_string(), resp.timings.total_ms);
                }
                self.live.note_response(&resp);
                if let Some(r) = self.replay.as_mut() {
                    r.note_response(&resp);
                }
                let outcome = match resp.outcome {
                    Outcome::Committed => "committed".to_string(),
                    Outcome::Aborted => "aborted".to_string(),
                    Outcome::InProgress => "still in progress".to_string(),
                    Outcome::HeuristicMixed | Outcome::HeuristicHazard => {
                        let who: Vec<String> = resp
                            .heuristics
                            .iter()
                            .map(|h| format!("{} answered {:?}", h.participant, h.result))
                            .collect();
                        format!(
                            "{} ({:?} decided; {}): the stores may disagree",
                            TxOutcome::Heuristic(resp.outcome).label(),
                            resp.decision.unwrap_or(Decision::Commit),
                            who.join(", ")
                        )
                    }
                };
                let level = if resp.heuristics.is_empty() {
                    Level::Info
                } else {
                    Level::Error
                };
                let why = resp
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.notify(
                    level,
                    format!(
                        "{} {outcome} in {:.1} ms{why}",
                        resp.id, resp.timings.total_ms
                    ),
                );
            }
            Action::SubmitAnswered(Err(e)) => self.notify(Level::Error, e),
            Action::TxUnknown(id) => {
                if let Some(t) = self.live.txs.get_mut(&id) {
                    t.unknown_to_coordinator = true;
                }
            }
            Action::TxLookedUp(resp) => {
                if self.live.resolve(&resp, &self.statuses) {
                    if let Some(t) = self.live.tx(resp.id.as_str()).filter(|t| t.ended) {
                        let text = format!(
                            "{} {} (learnt from GET /v1/transactions: its last events \
                             happened while the page was disconnected)",
                            t.id,
                            t.outcome().label()
                        );
                        self.notify(Level::Info, text);
                    }
                }
            }
            Action::FaultAnswered(Ok(desc)) => {
                self.fault_error = None;
                self.notify(Level::Info, format!("fault: {desc}"));
            }
            Action::FaultAnswered(Err(e)) => {
                self.fault_error = Some(e.clone());
                self.notify(Level::Error, e);
            }
            Action::Notify(level, text) => self.notify(level, text),
            Action::ScenarioStart {
                name,
                title,
                total,
                generation,
            } => {
                self.scenario = Some(ScenarioRun {
                    name,
                    title,
                    step: 0,
                    total,
                    narration: Vec::new(),
                    finished: false,
                    generation,
                });
            }
            Action::ScenarioStep { generation, text } => {
                if let Some(s) = self
                    .scenario
                    .as_mut()
                    .filter(|s| s.generation == generation)
                {
                    s.step = (s.step + 1).min(s.total);
                    if !text.is_empty() {
                        s.narration.push(text);
                    }
                }
            }
            Action::ScenarioEnd { generation } => {
                if let Some(s) = self
                    .scenario
                    .as_mut()
                    .filter(|s| s.generation == generation)
                {
                    s.finished = true;
                }
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::Escape => self.help = false,
        }
    }

    /// Paced live mode: one event forward.
    pub(super) fn live_step(&mut self) {
        let next = self.follow + 1;
        if next >= self.log.end() || self.follow < self.log.base() {
            self.snap_to_tail();
            return;
        }
        if let (Some(t), Some(e)) = (self.trail.as_mut(), self.log.get(self.follow)) {
            t.apply(self.follow, e);
            self.follow = next;
        } else {
            self.snap_to_tail();
        }
    }

    pub(super) fn ingest(&mut self, batch: Vec<Incoming>) {
        let events = batch
            .iter()
            .filter(|i| matches!(i, Incoming::Event(_)))
            .count() as u64;
        if self.paced && self.cursor.is_none() && events > 0 {
            let lag = self.log.end() - self.follow.min(self.log.end()) + events;
            if lag > LIVE_LAG_MAX {
                // Too far behind (load): show the tail.
                self.follow = self.log.end() + events;
                self.trail = None;
            } else if self.trail.is_none() {
                // Caught up until now: walk from here, with the fold as it is.
                self.follow = self.log.end();
                self.trail = Some(self.live.clone());
            }
        }
        self.batch_start = self.log.end();
        // The log's write/fsync events reach the stream after the decision they enabled;
        // record them in causal order (within a batch).
        let batch = crate::layout::causal_order_by(batch, |i| match i {
            Incoming::Event(e) => Some(&**e),
            Incoming::Lagged(_) => None,
        });
        let mut n = 0;
        for inc in batch {
            match inc {
                Incoming::Event(ev) if is_heartbeat(&ev) => {
                    self.heartbeats += 1;
                    self.live.observe_run(&ev.run);
                }
                Incoming::Event(ev) => {
                    let ev = *ev;
                    let i = self.log.push(ev);
                    if let Some(e) = self.log.get(i) {
                        self.live.apply(i, e);
                    }
                    n += 1;
                }
                Incoming::Lagged(k) => {
                    self.lagged += k;
                }
            }
        }
        self.batch_len = n;
        if let Some(c) = self.cursor {
            if c < self.log.base() {
                // The replay position was evicted: move to the oldest retained event.
                self.set_cursor(Some(self.log.base()));
            }
        }
    }
}
