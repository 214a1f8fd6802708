//! The `twopc-coordinator` command line: argument parsing, `serve`, and the dispatch to the
//! client subcommands ([`crate::client`]) and the load generator ([`crate::load`]).

use crate::config::Config;
use crate::{client, load};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "twopc-coordinator",
    version,
    about = "Two-phase commit across PostgreSQL and Redis: the coordinator"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the coordinator service.
    Serve(ServeArgs),
    /// Submit a transaction (from a JSON file, or built from flags).
    Submit(client::SubmitArgs),
    /// Show a transaction's outcome.
    Show(client::ShowArgs),
    /// List what participants hold prepared (in doubt), and connection state.
    InDoubt(client::ClientArgs),
    /// Generate bank-transfer load: N transactions at concurrency C, then a summary table.
    Load(load::LoadArgs),
    /// Print the SHA-256 of a client token read from standard input (its first line), for a
    /// `[[client]]`'s `token_sha256`; with `--new`, make a random token first and print both.
    HashToken(HashTokenArgs),
    /// Plan adding a shard to a sharded participant: print which keys would move to it.
    Reshard(crate::reshard::ReshardArgs),
}

#[derive(Args, Debug)]
struct HashTokenArgs {
    /// Generate a new random token (32 bytes, hex) instead of reading one.
    #[arg(long)]
    new: bool,
}

fn hash_token(a: HashTokenArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let token = if a.new {
        let t =
            crate::clients::random_token().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        println!("token        {t}");
        t
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let t = line.trim().to_string();
        if t.is_empty() {
            return Err("no token on standard input".into());
        }
        t
    };
    let digest = crate::clients::token_digest_hex(&token);
    if a.new {
        println!("token_sha256 {digest}");
    } else {
        println!("{digest}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The TOML configuration file.
    #[arg(long, short, env = "TWOPC_CONFIG")]
    config: PathBuf,
    /// Override `listen`.
    #[arg(long, env = "TWOPC_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Override `data_dir`.
    #[arg(long, env = "TWOPC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Override `web_dir`.
    #[arg(long, env = "TWOPC_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Override `coordinator_id`.
    #[arg(long, env = "TWOPC_COORDINATOR_ID")]
    coordinator_id: Option<twopc_protocol::CoordinatorId>,
    /// Override `prepare_timeout_ms`.
    #[arg(long, env = "TWOPC_PREPARE_TIMEOUT_MS")]
    prepare_timeout_ms: Option<u64>,
    /// Override `fault_injection`.
    #[arg(long, env = "TWOPC_FAULT_INJECTION")]
    fault_injection: Option<bool>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "TWOPC_LOG", default_value = "info")]
    log: tracing::Level,
}

/// Parses the command line and runs it; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Serve(a) => serve(a).await,
            Cmd::Submit(a) => client::submit(a).await,
            Cmd::Show(a) => client::show(a).await,
            Cmd::InDoubt(a) => client::in_doubt(a).await,
            Cmd::Reshard(a) => crate::reshard::reshard(a).await,
            Cmd::Load(a) => load::load(a).await,
            Cmd::HashToken(a) => hash_token(a),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twopc-coordinator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(a: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(a.log)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let mut config = Config::from_file(&a.config)?;
    if let Some(v) = a.listen {
        config.listen = v;
    }
    if let Some(v) = a.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = a.web_dir {
        config.web_dir = Some(v);
    }
    if let Some(v) = a.coordinator_id {
        config.coordinator_id = v;
    }
    if let Some(v) = a.prepare_timeout_ms {
        config.prepare_timeout_ms = v;
    }
    if let Some(v) = a.fault_injection {
        config.fault_injection = v;
    }
    let scheme = if config.api_tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Installed before anybody can reach the API, so a SIGTERM is always a graceful shutdown.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = crate::server::start(config).await?;
    crate::failpoint::announce();
    // Scripts wait for this line to learn the bound address.
    println!("listening on {scheme}://{}", running.local_addr());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
