//! The Redis participant binary, built inside the test crate so that integration tests can
//! spawn it via `CARGO_BIN_EXE_twopc-redis-participant-under-test` (cargo only provides that
//! for binaries of the package under test). It runs exactly the code of the
//! `twopc-redis-participant` binary, whose `main.rs` is the same one line.

fn main() -> std::process::ExitCode {
    twopc_redis_participant::cli::main()
}
