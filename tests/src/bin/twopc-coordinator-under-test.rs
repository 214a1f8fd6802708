//! The coordinator's real entry point, built inside this crate so the end-to-end tests can
//! spawn it through `CARGO_BIN_EXE_*` (kill -9 and failpoints need a real process).

fn main() -> std::process::ExitCode {
    twopc_coordinator::command_line::main()
}
