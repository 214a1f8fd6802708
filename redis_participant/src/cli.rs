//! The `twopc-redis-participant` binary's entry point (kept in the library so the test crate
//! can run exactly the same code; `src/main.rs` is one line).

use crate::config::{read_token_file, redact_url, Cli, Settings};
use crate::resource::RedisResource;
use crate::RedisParticipantError;
use clap::{CommandFactory, FromArgMatches};
use std::io::Write;
use std::process::ExitCode;
use twopc_participant::Server;

/// Parses the command line and runs the participant until SIGINT or SIGTERM.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli.read_token_env();
    let settings = match Settings::resolve(&cli, Some(&matches)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("twopc-redis-participant: {e}");
            return ExitCode::from(2);
        }
    };
    let level = match settings.log.parse::<tracing::Level>() {
        Ok(l) => l,
        Err(_) => {
            eprintln!(
                "twopc-redis-participant: unknown log level {:?} (error, warn, info, debug, trace)",
                settings.log
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One worker unless TOKIO_WORKER_THREADS says otherwise: the process only relays frames
    // to one Redis connection, and a second worker costs cross-thread wake-ups (measured: the
    // process's CPU per transfer 20 % lower at 8 clients and 13 % at 64, throughput unchanged;
    // coordinator/bench/README.md).
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twopc-redis-participant: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twopc-redis-participant: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the participant with resolved settings until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), RedisParticipantError> {
    let resource = RedisResource::new(
        &settings.redis_url,
        settings.redis_tls.as_ref(),
        settings.retention,
    )?
    .allow_unsafe_durability(settings.allow_unsafe_durability);
    if settings.allow_unsafe_durability {
        tracing::warn!(
            "--allow-unsafe-durability: redis-server's persistence settings are not checked; \
             a crash of redis-server can lose prepared transactions after their YES vote"
        );
    }
    match resource.ping().await {
        Ok(()) => {
            tracing::info!(url = %redact_url(&settings.redis_url), "Redis reachable");
            // Refuse to start on a server that would lose acknowledged writes in a crash.
            // While Redis is unreachable the same check runs before the first request that
            // writes (and again every second: the server can be reconfigured under us).
            resource.check_durability().await?;
        }
        Err(e) => tracing::warn!(url = %redact_url(&settings.redis_url),
            "Redis not reachable yet ({e}); requests fail until it is"),
    }
    // The handlers are installed before the listener accepts anybody: a SIGHUP that arrives
    // once a client could have connected must reload the tokens, never take SIGHUP's default
    // action (the process ends).
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let tokens = settings.server.tokens.clone();
    let running = Server::new(resource, settings.server)?
        .bind(settings.listen)
        .await?;
    // The one line on stdout: scripts and tests read the actual port from it.
    println!(
        "twopc-redis-participant listening on {}",
        running.local_addr()
    );
    let _ = std::io::stdout().flush();

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => reload_tokens(settings.token_file.as_deref(), &tokens),
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await?;
    Ok(())
}

/// SIGHUP: re-reads the token file (one token, or two during a rotation) and makes the new
/// upgrades check against it; a file that cannot be read or holds no valid tokens changes
/// nothing. Connections already up stay up.
fn reload_tokens(file: Option<&std::path::Path>, tokens: &twopc_participant::Tokens) {
    let Some(file) = file else {
        tracing::warn!(
            "SIGHUP: the token did not come from a token file, so there is nothing to reload"
        );
        return;
    };
    match read_token_file(file).and_then(|list| {
        let n = list.len();
        tokens.set(list).map(|()| n).map_err(Into::into)
    }) {
        Ok(n) => tracing::info!(tokens = n, file = %file.display(), "SIGHUP: tokens reloaded"),
        Err(e) => tracing::warn!(file = %file.display(), "SIGHUP: tokens not reloaded: {e}"),
    }
}
