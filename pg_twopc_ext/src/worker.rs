//! The Postgres participant endpoint: a background worker that lets a twopc coordinator use
//! this PostgreSQL server as a participant.
//!
//! With `shared_preload_libraries = 'pg_twopc_ext'` and `twopc.listen_addr` set, the
//! postmaster starts one worker. Its main thread is a plain Postgres process thread: it waits on
//! its latch, handles SIGTERM, and is the only thread that ever calls into PostgreSQL (logging
//! included). The participant itself — WebSocket server, protocol, termination — runs on a
//! tokio runtime in other threads, all signals blocked, and talks to this server like any
//! client would: tokio-postgres over the unix socket, logged in as `twopc.role`, issuing
//! `twopc.prepare()` / `twopc.commit_prepared()` as top-level SQL (SPI cannot run them). That
//! code lives in the `twopc-pg-participant` crate, which does not link pgrx at all.
//!
//! If the endpoint fails (its port is taken, say), the worker exits with code 1 and the
//! postmaster starts it again after `RESTART_SECONDS`; if it is killed, the postmaster's crash
//! handling restarts everything and the prepared transactions come back from the WAL, to be
//! reported to the coordinator on its next connection.
//!
//! GUCs (all superuser-only; `twopc.auth_token` is never shown to other roles):
//!
//! | name | meaning |
//! |---|---|
//! | `twopc.listen_addr` | `host:port` of the WebSocket endpoint; empty = no worker |
//! | `twopc.database` | the database transactions run in (and the retention worker purges, see `retention`) |
//! | `twopc.role` | the (non-superuser) role the participant logs in as; needs EXECUTE on the `twopc` functions |
//! | `twopc.client_role` | the role clients' statements run as (not a superuser, not `twopc.role`, no EXECUTE on the writing `twopc` functions; `twopc.role` must be a member of it) |
//! | `twopc.auth_token` | the bearer token the coordinator must present (read at start) |
//! | `twopc.auth_token_file` | instead: a file (readable by the server's user) holding the token, or two while it is rotated; re-read on every configuration reload (`pg_reload_conf()`), so a token is rotated without a restart. Set, it replaces `twopc.auth_token` |
//! | `twopc.tls_cert_file`, `twopc.tls_key_file` | PEM certificate and key of the endpoint: set, the coordinator must connect with `wss://` |
//! | `twopc.tls_client_ca_file` | PEM CA certificates a coordinator's client certificate must chain to (mutual TLS) |
//! | `twopc.participant_name` | the name reported to the coordinator |
//! | `twopc.decision_timeout` | ms a transaction may stay prepared before the worker asks for the decision |

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};
use std::sync::mpsc;
use std::time::Duration;

/// Seconds the postmaster waits before restarting a failed worker.
const RESTART_SECONDS: u64 = 5;

static LISTEN_ADDR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static CLIENT_ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static AUTH_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static AUTH_TOKEN_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static PARTICIPANT_NAME: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static DECISION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static TLS_CERT_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TLS_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TLS_CLIENT_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Defines the GUCs and, when loaded from `shared_preload_libraries` with a listen address,
/// registers the worker. Called from `_PG_init`.
pub fn init() {
    // SAFETY: reading a postmaster global during _PG_init, on the main thread.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if !preloading {
        // Loaded by CREATE EXTENSION or a function call in a running server: there is no
        // worker to configure, and PGC_POSTMASTER variables cannot be created after start-up
        // (Postgres raises FATAL), so none are defined.
        return;
    }
    let su = GucFlags::SUPERUSER_ONLY;
    GucRegistry::define_string_guc(
        c"twopc.listen_addr",
        c"host:port of the twopc participant endpoint (empty: no endpoint)",
        c"Needs shared_preload_libraries = 'pg_twopc_ext'.",
        &LISTEN_ADDR,
        GucContext::Postmaster,
        su,
    );
    GucRegistry::define_string_guc(
        c"twopc.database",
        c"Database the twopc participant runs transactions in, and the retention worker purges",
        c"",
        &DATABASE,
        GucContext::Postmaster,
        su,
    );
    GucRegistry::define_string_guc(
        c"twopc.role",
        c"Role the twopc participant runs transactions as (should not be a superuser)",
        c"The worker logs in as this role over the unix socket; pg_hba.conf must allow that.",
        &ROLE,
        GucContext::Postmaster,
        su,
    );
    GucRegistry::define_string_guc(
        c"twopc.client_role",
        c"Role the statements of a twopc transaction run as",
        c"Not a superuser, not twopc.role, without EXECUTE on the writing twopc functions; twopc.role must be a member of it.",
        &CLIENT_ROLE,
        GucContext::Postmaster,
        su,
    );
    // A reload logs every changed value of a reloadable parameter ("parameter ... changed to
    // ..."): the token itself is therefore fixed at start, and what a reload re-reads is a
    // file, whose name is all the log can show.
    GucRegistry::define_string_guc(
        c"twopc.auth_token",
        c"Bearer token the coordinator must present",
        c"Fixed at start; use twopc.auth_token_file to rotate it without a restart.",
        &AUTH_TOKEN,
        GucContext::Postmaster,
        su | GucFlags::NO_SHOW_ALL,
    );
    GucRegistry::define_string_guc(
        c"twopc.auth_token_file",
        c"File holding the bearer token(s) the coordinator must present",
        c"One token, or two (whitespace-separated) while it is rotated; re-read on every configuration reload. Set, it replaces twopc.auth_token.",
        &AUTH_TOKEN_FILE,
        GucContext::Sighup,
        su,
    );
    for (name, short, setting) in [
        (
            c"twopc.tls_cert_file",
            c"PEM certificate of the twopc participant endpoint (set: wss:// only)",
            &TLS_CERT_FILE,
        ),
        (
            c"twopc.tls_key_file",
            c"PEM private key of twopc.tls_cert_file",
            &TLS_KEY_FILE,
        ),
        (
            c"twopc.tls_client_ca_file",
            c"PEM CA certificates a coordinator's client certificate must chain to (mutual TLS)",
            &TLS_CLIENT_CA_FILE,
        ),
    ] {
        GucRegistry::define_string_guc(name, short, c"", setting, GucContext::Postmaster, su);
    }
    GucRegistry::define_string_guc(
        c"twopc.participant_name",
        c"Name this participant reports to the coordinator",
        c"",
        &PARTICIPANT_NAME,
        GucContext::Postmaster,
        su,
    );
    GucRegistry::define_int_guc(
        c"twopc.decision_timeout",
        c"Milliseconds a transaction may stay prepared before the participant asks for the decision",
        c"",
        &DECISION_TIMEOUT_MS,
        100,
        i32::MAX,
        GucContext::Postmaster,
        su | GucFlags::UNIT_MS,
    );
    let listen = guc_string(&LISTEN_ADDR);
    if !listen.is_empty() {
        BackgroundWorkerBuilder::new("twopc participant")
            .set_type("twopc participant")
            .set_function("twopc_participant_main")
            .set_library("pg_twopc_ext")
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(RESTART_SECONDS)))
            .load();
    }
}

/// `twopc.database`: the database the participant and the retention worker work in.
pub(crate) fn database() -> String {
    guc_string(&DATABASE)
}

fn guc_string(g: &'static GucSetting<Option<CString>>) -> String {
    g.get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn config_option(name: &CStr) -> String {
    // SAFETY: main thread; GetConfigOption returns a pointer into GUC storage or NULL.
    unsafe {
        let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Values read on the main thread and handed to the tokio side (which may not read GUCs).
struct Settings {
    listen: std::net::SocketAddr,
    conninfo: String,
    client_role: String,
    name: String,
    tokens: Vec<String>,
    tls: Option<twopc_tls::ServerTlsFiles>,
    decision_timeout: Duration,
}

/// Where the tokens come from, for the log (a file name, never a token).
fn token_source() -> String {
    match guc_string(&AUTH_TOKEN_FILE) {
        f if f.is_empty() => "twopc.auth_token".into(),
        f => format!("twopc.auth_token_file {f}"),
    }
}

/// The tokens from `twopc.auth_token_file` when it is set, else `twopc.auth_token`.
fn auth_tokens() -> Result<Vec<String>, String> {
    let file = guc_string(&AUTH_TOKEN_FILE);
    let (what, tokens) = if file.is_empty() {
        (
            "twopc.auth_token",
            twopc_participant::Tokens::parse(&guc_string(&AUTH_TOKEN)),
        )
    } else {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("twopc.auth_token_file {file}: {e}"))?;
        (
            "twopc.auth_token_file",
            twopc_participant::Tokens::parse(&text),
        )
    };
    if tokens.is_empty() {
        return Err(format!(
            "{what} is not set or empty: refusing to serve without authentication"
        ));
    }
    twopc_participant::Tokens::check(&tokens).map_err(|e| format!("{what}: {e}"))?;
    Ok(tokens)
}

/// The endpoint's TLS files from their GUCs; `None` when neither certificate nor key is set.
fn tls_files() -> Result<Option<twopc_tls::ServerTlsFiles>, String> {
    let opt = |g| {
        Some(guc_string(g))
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from)
    };
    match (
        opt(&TLS_CERT_FILE),
        opt(&TLS_KEY_FILE),
        opt(&TLS_CLIENT_CA_FILE),
    ) {
        (None, None, None) => Ok(None),
        (Some(cert_file), Some(key_file), client_ca_file) => Ok(Some(twopc_tls::ServerTlsFiles {
            cert_file,
            key_file,
            client_ca_file,
        })),
        _ => Err("TLS needs both twopc.tls_cert_file and twopc.tls_key_file \
                  (twopc.tls_client_ca_file adds mutual TLS)"
            .into()),
    }
}

fn read_settings() -> Result<Settings, String> {
    let listen_text = guc_string(&LISTEN_ADDR);
    let listen = listen_text
        .parse()
        .map_err(|e| format!("twopc.listen_addr {listen_text:?} is not host:port: {e}"))?;
    let role = guc_string(&ROLE);
    if role.is_empty() {
        return Err(
            "twopc.role is not set: the participant needs a role to run transactions as".into(),
        );
    }
    let client_role = guc_string(&CLIENT_ROLE);
    if client_role.is_empty() {
        return Err(
            "twopc.client_role is not set: clients' statements need a role of their own to run as"
                .into(),
        );
    }
    if client_role == role {
        return Err(format!(
            "twopc.client_role is {client_role:?}, the same as twopc.role: clients' statements need a role of their own, without the participant's rights"
        ));
    }
    let tokens = auth_tokens()?;
    let tls = tls_files()?;
    let socket_dir = config_option(c"unix_socket_directories")
        .split(',')
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .ok_or("unix_socket_directories is empty: the participant connects over the unix socket")?;
    let port = config_option(c"port");
    let database = guc_string(&DATABASE);
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let conninfo = format!(
        "host={} port={} user={} dbname={} application_name='twopc participant'",
        quote(&socket_dir),
        quote(&port),
        quote(&role),
        quote(&database)
    );
    Ok(Settings {
        listen,
        conninfo,
        client_role,
        name: guc_string(&PARTICIPANT_NAME),
        tokens,
        tls,
        decision_timeout: Duration::from_millis(DECISION_TIMEOUT_MS.get().max(100) as u64),
    })
}

enum Status {
    Listening(std::net::SocketAddr),
    Failed(String),
    Stopped,
}

/// The worker's entry point (registered by name in [`init`]).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn twopc_participant_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let settings = match read_settings() {
        Ok(s) => s,
        Err(e) => {
            // A configuration error does not fix itself: log it and stay down until restart.
            log!("twopc participant: {e}; endpoint not started");
            // SAFETY: main thread; ends the worker process with a code that means "restart".
            unsafe { pg_sys::proc_exit(1) };
        }
    };
    // Shared with the server: a configuration reload replaces them (a token rotation).
    let tokens = match twopc_participant::Tokens::new(settings.tokens.clone()) {
        Ok(t) => t,
        Err(e) => {
            log!("twopc participant: twopc.auth_token: {e}; endpoint not started");
            // SAFETY: main thread; ends the worker process with a code that means "restart".
            unsafe { pg_sys::proc_exit(1) };
        }
    };
    let tokens_for_server = tokens.clone();
    let scheme = if settings.tls.is_some() { "wss" } else { "ws" };
    let (status_tx, status_rx) = mpsc::channel::<Status>();
    let warnings = crate::participant_log::install();
    let (stop_tx, stop_rx) = tokio_oneshot();
    let thread = std::thread::Builder::new()
        .name("twopc-participant".into())
        .spawn(move || {
            block_all_signals();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = status_tx.send(Status::Failed(format!(
                        "cannot start the tokio runtime: {e}"
                    )));
                    return;
                }
            };
            let result = rt.block_on(async {
                let name = settings
                    .name
                    .parse()
                    .map_err(|e| format!("twopc.participant_name: {e}"))?;
                let mut server = twopc_participant::ServerConfig::new(name, String::new());
                server.tokens = tokens_for_server;
                server.tls = settings.tls.clone();
                server.decision_timeout = settings.decision_timeout;
                // One coordinator connection carries every transaction; each needs a Prepare and a
                // Commit in flight at some point, so the default of 64 would throttle a busy
                // coordinator into `busy` errors.
                server.max_in_flight = 1024;
                let mut pg =
                    twopc_pg_participant::PgConfig::new(settings.conninfo, settings.client_role);
                // PostgreSQL's lock timeout is the participant's lock-wait bound: a prepare
                // waiting that long for a row lock fails with 55P03 and votes NO (conflict).
                pg.lock_timeout = server.lock_wait;
                let resource = twopc_pg_participant::PgResource::new(pg);
                let ready_tx = status_tx.clone();
                twopc_pg_participant::run(
                    resource,
                    server,
                    settings.listen,
                    async move {
                        let _ = stop_rx.await;
                    },
                    move |addr| {
                        let _ = ready_tx.send(Status::Listening(addr));
                    },
                )
                .await
                .map_err(|e| e.to_string())
            });
            let _ = status_tx.send(match result {
                Ok(()) => Status::Stopped,
                Err(e) => Status::Failed(e),
            });
        });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            log!("twopc participant: cannot start its thread: {e}");
            // SAFETY: main thread.
            unsafe { pg_sys::proc_exit(1) };
        }
    };

    let mut exit_code = 0;
    // The tokio side cannot set our latch (no Postgres calls off the main thread), so status
    // is polled; 100 ms keeps start-up and failure reports prompt.
    let mut report = |status: Result<Status, mpsc::TryRecvError>| -> bool {
        match status {
            Ok(Status::Listening(addr)) => {
                log!("twopc participant listening on {scheme}://{addr}/");
                true
            }
            Ok(Status::Failed(e)) => {
                log!("twopc participant failed: {e}; restarting in {RESTART_SECONDS} s");
                exit_code = 1;
                false
            }
            Ok(Status::Stopped) | Err(mpsc::TryRecvError::Disconnected) => {
                exit_code = 1;
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
        }
    };
    let log_warnings =
        || crate::participant_log::drain(&warnings, |line| log!("twopc participant: {line}"));
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(100))) {
        if BackgroundWorker::sighup_received() {
            reload_tokens(&tokens);
        }
        log_warnings();
        if !report(status_rx.try_recv()) {
            break;
        }
    }
    // Report what arrived since the last poll (a SIGTERM right after start-up, say).
    while let Ok(s) = status_rx.try_recv() {
        if matches!(s, Status::Stopped) {
            break;
        }
        report(Ok(s));
    }
    let _ = stop_tx.send(());
    // Give in-flight requests a moment; the tokio threads never touch Postgres state, so
    // leaving them behind at process exit is safe if they do not stop in time.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    log_warnings();
    if exit_code == 0 {
        log!("twopc participant stopped");
    }
    // SAFETY: main thread. Exit code 1 asks the postmaster to restart the worker; on SIGTERM
    // (shutdown) it will not be restarted anyway.
    unsafe { pg_sys::proc_exit(exit_code) };
}

/// A configuration reload: re-reads `twopc.auth_token_file` and hands the tokens to the server
/// (new connections are checked against them; connections already up stay up). A value the
/// server would refuse is logged and changes nothing.
fn reload_tokens(tokens: &twopc_participant::Tokens) {
    // SAFETY: main thread, in the worker's main loop (not inside a transaction), which is
    // where PostgreSQL's own processes handle a SIGHUP.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    match auth_tokens().and_then(|list| {
        let n = list.len();
        tokens.set(list).map(|()| n).map_err(|e| e.to_string())
    }) {
        Ok(n) => log!(
            "twopc participant: configuration reloaded, {n} token(s) accepted from {}",
            token_source()
        ),
        Err(e) => log!("twopc participant: configuration reloaded, tokens kept: {e}"),
    }
}

fn tokio_oneshot() -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    tokio::sync::oneshot::channel()
}

/// Signals belong to the main thread (Postgres's handlers set its latch); tokio threads,
/// which inherit this thread's mask, must never run them.
fn block_all_signals() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
