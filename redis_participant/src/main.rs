fn main() -> std::process::ExitCode {
    twopc_redis_participant::cli::main()
}
