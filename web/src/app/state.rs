//! The reducer state: [`AppState`], a `Reducible` whose `Action` is [`crate::model::Action`]
//! and whose `reduce` runs [`Model::reduce`].

use crate::model::{Action, Model};
use std::cell::RefCell;
use std::rc::Rc;
use yew::prelude::*;

/// The reducer state: the shared model plus a version for change detection.
#[derive(Clone)]
pub struct AppState {
    /// The model.
    pub model: Rc<RefCell<Model>>,
    /// Bumped on every action.
    pub version: u64,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            model: Rc::new(RefCell::new({
                let mut m = Model::default();
                // `?pace=off` shows the tail at once (for tests and dashboards).
                let search = web_sys::window()
                    .and_then(|w| w.location().search().ok())
                    .unwrap_or_default();
                m.paced = !search.contains("pace=off");
                m
            })),
            version: 0,
        }
    }
}

impl PartialEq for AppState {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && Rc::ptr_eq(&self.model, &other.model)
    }
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        self.model.borrow_mut().reduce(action);
        Rc::new(AppState {
            model: self.model.clone(),
            version: self.version + 1,
        })
    }
}
