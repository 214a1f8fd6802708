//! The page's components. Each takes what it draws as props and reports user intent through
//! `Callback<Action>` (or the side-effect context for API calls).
//!
//! # Layout
//!
//! One file per component, with its `Props`:
//!
//! * [`status_bar`]: the status bar: event-stream state and counts.
//! * [`timeline`]: the timeline: pause, step, speed and the scrubber.
//! * [`diagram_view`]: the message diagram, drawn as SVG from [`crate::layout::diagram`].
//! * [`legend`]: the colour legend.
//! * [`tx_list`]: the transaction list.
//! * [`controls`]: the controls: submit buttons and fault injection.
//! * [`scenario_panel`]: the scenario panel: the preset scenarios and the running one's narration.
//! * [`in_doubt_panel`]: the in-doubt panel: what participants hold prepared.
//! * [`notices`]: the notices: API answers and errors.
//! * [`help_overlay`]: the keyboard-shortcut overlay.
//! * [`token_prompt`]: the client-token prompt (a coordinator with clients configured).

use super::{AppState, Ctx};
use crate::keys::SHORTCUTS;
use crate::layout::{
    diagram, human_ms, recent_txs, DiagramInput, ItemKind, Shape, Stagger, MAX_ROWS, SLANT,
};
use crate::model::{
    held_prepared, Action, Badge, ClientIdentity, Level, Notice, ParticipantStatus, PublicConfig,
    ScenarioRun, SocketState, SPEEDS,
};
use crate::scenarios::{crash, delay_next, drop_next, heal, partition, scenarios, SubmitKind};
use twopc_protocol::api::{FaultRequest, Scope};
use twopc_protocol::{MessageType, ParticipantName};
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// Transactions listed at most.
pub const LIST_LIMIT: usize = 60;
/// With more events than this in one batch, the diagram draws without animations.
pub const CALM_BATCH: u64 = 40;

/// Props of the components that draw from the whole state.
#[derive(Properties, PartialEq)]
pub struct StateProps {
    /// The state.
    pub state: AppState,
    /// Dispatches actions.
    pub dispatch: Callback<Action>,
}

mod controls;
mod diagram_view;
mod help_overlay;
mod in_doubt_panel;
mod legend;
mod notices;
mod scenario_panel;
mod status_bar;
mod timeline;
mod token_prompt;
mod tx_list;

pub use controls::*;
pub use diagram_view::*;
pub use help_overlay::*;
pub use in_doubt_panel::*;
pub use legend::*;
pub use notices::*;
pub use scenario_panel::*;
pub use status_bar::*;
pub use timeline::*;
pub use token_prompt::*;
pub use tx_list::*;
