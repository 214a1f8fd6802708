//! The reducer's vocabulary: every [`Action`] and the small state types it carries.

use super::*;

/// State of the `/v1/events` connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SocketState {
    /// Opening.
    #[default]
    Connecting,
    /// Receiving events.
    Open,
    /// Dropped; reconnecting after this many ms.
    Retrying(u32),
}

impl SocketState {
    /// Short text for the status bar.
    pub fn label(&self) -> String {
        match self {
            SocketState::Connecting => "connecting…".into(),
            SocketState::Open => "live".into(),
            SocketState::Retrying(ms) => {
                format!("disconnected, retrying in {:.1} s", *ms as f64 / 1000.0)
            }
        }
    }
}

/// Severity of a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Informational.
    Info,
    /// Something the user asked for failed.
    Error,
}

/// A line in the notices area.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Unique id (a key for rendering).
    pub id: u64,
    /// Severity.
    pub level: Level,
    /// Text.
    pub text: String,
}

/// A running (or finished) preset scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRun {
    /// The scenario's slug.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Steps done so far.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Narration lines so far.
    pub narration: Vec<String>,
    /// Finished (or cancelled).
    pub finished: bool,
    /// Generation number (a newer run supersedes an older one).
    pub generation: u64,
}

/// Every way the state changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A batch of frames from the event stream (one animation frame's worth).
    Ingest(Vec<Incoming>),
    /// `GET /v1/config` answered.
    ConfigLoaded(PublicConfig),
    /// The coordinator answered 401: the page needs a client token (what it said).
    TokenNeeded(String),
    /// `GET /v1/whoami` answered.
    IdentityLoaded(ClientIdentity),
    /// `GET /v1/participants` answered.
    ParticipantsLoaded(Vec<ParticipantStatus>),
    /// The event socket changed state.
    Socket(SocketState),
    /// Space: pause when live or playing; play when paused.
    TogglePlay,
    /// Step the cursor by this many events (pauses).
    Step(i64),
    /// Move the cursor to an absolute index (pauses).
    Seek(u64),
    /// Follow the tail again.
    GoLive,
    /// One replay tick (while playing).
    Tick,
    /// Faster replay.
    SpeedUp,
    /// Slower replay.
    SpeedDown,
    /// Focus the diagram on a transaction (None: everything).
    Select(Option<String>),
    /// The page submitted a transaction.
    Submitted {
        /// Its id.
        id: String,
        /// What it was ("transfer", "failing transfer").
        label: String,
    },
    /// The answer to a submitted transaction.
    SubmitAnswered(Result<TransactionResponse, String>),
    /// `GET /v1/transactions/{id}` for an unfinished transaction whose events were missed.
    TxLookedUp(TransactionResponse),
    /// That lookup failed with 4xx: the coordinator does not know the transaction.
    TxUnknown(String),
    /// The answer to a fault request (its description, or the API's error text).
    FaultAnswered(Result<String, String>),
    /// Show a notice.
    Notify(Level, String),
    /// A scenario starts.
    ScenarioStart {
        /// Slug.
        name: String,
        /// Title.
        title: String,
        /// Steps.
        total: usize,
        /// Generation.
        generation: u64,
    },
    /// A scenario step ran, with its narration.
    ScenarioStep {
        /// Generation of the run.
        generation: u64,
        /// Narration (empty: none).
        text: String,
    },
    /// A scenario finished or was stopped.
    ScenarioEnd {
        /// Generation of the run.
        generation: u64,
    },
    /// Open or close the help overlay.
    ToggleHelp,
    /// Close overlays.
    Escape,
}
