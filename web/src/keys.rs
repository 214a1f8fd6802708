//! Keyboard shortcuts.

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCommand {
    /// Space: pause / play.
    TogglePlay,
    /// ←: one event back.
    StepBack,
    /// →: one event forward.
    StepForward,
    /// +: faster replay.
    Faster,
    /// -: slower replay.
    Slower,
    /// s: submit a sample transfer.
    Submit,
    /// f: submit a transfer that fails a guard.
    Fail,
    /// l: follow the live tail.
    Live,
    /// ?: help overlay.
    Help,
    /// Escape: close the overlay, clear the focus.
    Escape,
}

/// The command for a `KeyboardEvent.key` value (no modifiers).
pub fn key_command(key: &str) -> Option<KeyCommand> {
    Some(match key {
        " " | "Spacebar" => KeyCommand::TogglePlay,
        "ArrowLeft" => KeyCommand::StepBack,
        "ArrowRight" => KeyCommand::StepForward,
        "+" | "=" => KeyCommand::Faster,
        "-" | "_" => KeyCommand::Slower,
        "s" | "S" => KeyCommand::Submit,
        "f" | "F" => KeyCommand::Fail,
        "l" | "L" => KeyCommand::Live,
        "?" => KeyCommand::Help,
        "Escape" => KeyCommand::Escape,
        _ => return None,
    })
}

/// The shortcuts, for the help overlay.
pub const SHORTCUTS: [(&str, &str); 9] = [
    ("Space", "pause / play"),
    ("← / →", "step one event back / forward"),
    ("+ / -", "replay faster / slower"),
    ("L", "back to live (follow the tail)"),
    ("S", "submit a sample transfer"),
    ("F", "submit a transfer that fails a guard (NO vote)"),
    ("click a transaction", "focus the diagram on it"),
    ("?", "this help"),
    ("Esc", "close help / show all transactions"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map() {
        assert_eq!(key_command(" "), Some(KeyCommand::TogglePlay));
        assert_eq!(key_command("ArrowLeft"), Some(KeyCommand::StepBack));
        assert_eq!(key_command("ArrowRight"), Some(KeyCommand::StepForward));
        assert_eq!(key_command("+"), Some(KeyCommand::Faster));
        assert_eq!(key_command("="), Some(KeyCommand::Faster));
        assert_eq!(key_command("-"), Some(KeyCommand::Slower));
        assert_eq!(key_command("s"), Some(KeyCommand::Submit));
        assert_eq!(key_command("F"), Some(KeyCommand::Fail));
        assert_eq!(key_command("?"), Some(KeyCommand::Help));
        assert_eq!(key_command("Escape"), Some(KeyCommand::Escape));
        assert_eq!(key_command("x"), None);
    }
}
