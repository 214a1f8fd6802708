//! `twopc-coordinator`: the coordinator service and its command-line client.

fn main() -> std::process::ExitCode {
    twopc_coordinator::command_line::main()
}
