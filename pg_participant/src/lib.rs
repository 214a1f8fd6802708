//! The twopc Postgres participant.
//!
//! [`PgResource`] implements the participant side of two-phase commit for one PostgreSQL
//! database, and [`run`] serves it over the shared participant server
//! ([`twopc_participant::Server`]). It is plain Rust on tokio: `pg_twopc_ext`'s background
//! worker runs it on tokio threads, which must never call into PostgreSQL, so it talks back to
//! its own server the way any client does, with tokio-postgres over the unix socket, and runs
//! `PREPARE TRANSACTION` as ordinary top-level SQL (SPI cannot).
//!
//! # How a transaction runs here
//!
//! * **Prepare.** A pooled connection, logged in as the configured non-superuser role (with
//!   `lock_timeout` and `statement_timeout` set for the session), sends `BEGIN` and
//!   `SELECT twopc.run_and_prepare(gid, coordinator, txid, client_role, queries, counts,
//!   params)` back to back: one round trip. The extension answers "seen before?" itself (a gid
//!   already prepared or committed here votes YES without running anything again, one already
//!   rolled back votes NO), then runs the client's statements *nested*, through SPI, as the
//!   client role, behind its trust boundary (see the extension's `boundary` module: they cannot
//!   end, split or prepare the transaction, call the writing `twopc.*` functions or leave
//!   state in the session, whatever their text), with their parameters bound (each JSON value
//!   in text form, parsed by Postgres for the type it infers; nothing is spliced into SQL), and
//!   only when every one of them succeeded marks the transaction for PREPARE. The gid is
//!   derived from (coordinator, txid) by [`twopc_protocol::gid::format_gid`]. YES is sent only
//!   after that statement returned: the prepared transaction is then in the WAL, flushed. Any
//!   SQL error, lock timeout or constraint violation rolls everything back and votes NO with
//!   Postgres's own message and the number of the statement that failed. A Prepare still
//!   running when the coordinator stops waiting (its `timeout_ms`) is cancelled and its real
//!   outcome awaited, so a NO is never left prepared. A connection whose state is in doubt
//!   (an error outside SQL, a lost prepared statement, a failed ROLLBACK) is dropped, never
//!   pooled.
//! * **Commit / Abort.** `twopc.commit_prepared(gid, 'coordinator')` or
//!   `twopc.rollback_prepared(...)`. Only when finishing fails is the decision recorded with
//!   `twopc.record_decision(gid, ...)`, so it shows in `twopc.in_doubt` while the transaction
//!   stays prepared (a decision row for every finished gid would only be bookkeeping to
//!   purge). A repeated Commit finds the committed tracking row and answers "already applied";
//!   a txid never prepared here is answered "not prepared", never invented.
//! * **One-phase.** Prepare and commit back to back: the tracking row makes a retried
//!   one-phase commit idempotent, which a plain `COMMIT` could not.
//! * **In doubt.** `pg_prepared_xacts` is the source of truth: every twopc gid in this database
//!   is reported with the coordinator and txid parsed back out of it, also right after a
//!   crash and restart of PostgreSQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};
use twopc_participant::{
    OnePhaseOutcome, ParticipantError, PrepareOutcome, Resource, Server, ServerConfig,
};
use twopc_protocol::gid::{format_gid, parse_gid};
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, Operations, ParticipantKind, PreparedTx, SqlStatement, TxId,
};

/// How to reach the database and how to run transactions in it.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// tokio-postgres connection string (key=value), logging in as the configured role.
    pub conninfo: String,
    /// The role the client's statements run as (`twopc.client_role`): not a superuser, not the
    /// login role, and without EXECUTE on the extension's writing functions.
    pub client_role: String,
    /// `lock_timeout` for transaction statements: a lock wait past it votes NO.
    pub lock_timeout: Duration,
    /// `statement_timeout` for transaction statements.
    pub statement_timeout: Duration,
    /// Idle connections kept for reuse.
    pub pool_size: usize,
}

impl PgConfig {
    /// A configuration with sensible timeouts (lock 2 s, statement 10 s).
    pub fn new(conninfo: impl Into<String>, client_role: impl Into<String>) -> Self {
        PgConfig {
            conninfo: conninfo.into(),
            client_role: client_role.into(),
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
            pool_size: 64,
        }
    }
}

/// Phase 1 in one statement: `twopc.run_and_prepare()` answers "seen before?" itself (from
/// shared memory and two index probes), runs the client's statements as the client role
/// behind the extension's trust boundary, and marks the transaction for PREPARE only when all
/// of them succeeded (see the extension's `boundary` module).
const RUN_AND_PREPARE: &str =
    "SELECT twopc.run_and_prepare($1, $2, $3, $4, $5::text[], $6::int4[], $7::text[])";

/// SQLSTATE class 26, "invalid SQL statement name": a statement this connection prepared is
/// gone. Nothing a client sends can do that any more, but a connection it happens on is
/// replaced rather than reused.
const LOST_STATEMENT_CLASS: &str = "26";

/// Most prepared statements cached per connection before the cache is cleared.
const STATEMENT_CACHE: usize = 256;

/// A pooled connection with its prepared-statement cache: after the first use, a statement
/// costs one round trip instead of two (no Parse/Describe).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Its session can no longer be trusted to be clean and idle: dropped, not pooled.
    broken: bool,
}

impl Conn {
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query_opt(&st, params).await
    }

    async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let st = self.statement(sql).await?;
        self.client.query(&st, params).await
    }
}

/// The participant's view of one PostgreSQL database.
pub struct PgResource {
    cfg: PgConfig,
    idle: Mutex<Vec<Conn>>,
    /// gids this process prepared, by txid: Commit and Abort carry only the txid, and this
    /// spares them a scan of pg_prepared_xacts. Lost on restart, then the scan is the fallback.
    gids: std::sync::Mutex<HashMap<TxId, String>>,
    /// Txids this process voted NO on or was told to abort: a late or duplicated Prepare for
    /// one of them (a delayed frame, a retransmission) votes NO instead of preparing work the
    /// coordinator has already given up on. Bounded; lost on restart, when the coordinator's
    /// answer to a late YES (abort) still resolves it.
    tombstones: std::sync::Mutex<(
        std::collections::HashSet<TxId>,
        std::collections::VecDeque<TxId>,
    )>,
}

/// Why a NO: Postgres's error, with the number of the client statement that failed first
/// (the extension's message starts with "statement N failed: ").
fn reason(e: &tokio_postgres::Error) -> String {
    let described = describe(e);
    let Some(db) = e.as_db_error() else {
        return described;
    };
    match db.message().split_once(": ") {
        Some((head, rest)) if head.starts_with("statement ") && head.ends_with(" failed") => {
            let mut s = format!("{head}: {} {}: {rest}", db.severity(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        _ => format!("prepare failed: {described}"),
    }
}

/// Postgres's error, the way a NO vote reports it: severity, SQLSTATE, message and detail.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// The first keyword of a statement, skipping whitespace and comments the way PostgreSQL's
/// lexer does (block comments nest; a line comment ends at `\n` or `\r`), upper-cased.
/// Only a fast early error rests on this: what a statement may do is enforced inside
/// PostgreSQL.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find(['\n', '\r']).map_or("", |i| &r[i + 1..]);
        } else if rest.starts_with("/*") {
            rest = skip_block_comment(rest);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// What follows the (nested) block comment `s` starts with; "" when it never ends.
fn skip_block_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &s[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

/// Why a statement may not run inside a participant transaction, if it may not.
pub fn refuse_statement(sql: &str) -> Option<String> {
    let kw = first_keyword(sql);
    const CONTROL: &[&str] = &[
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "PREPARE",
        "VACUUM",
    ];
    if kw.is_empty() {
        return Some("empty statement".into());
    }
    if CONTROL.contains(&kw.as_str()) {
        return Some(format!(
            "{kw} is not allowed in a participant transaction: the coordinator decides how it ends"
        ));
    }
    None
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Most tombstones kept (oldest forgotten first).
const MAX_TOMBSTONES: usize = 100_000;

impl PgResource {
    fn tombstone(&self, txid: &TxId) {
        let mut t = self.tombstones.lock().expect("tombstones");
        if t.0.insert(txid.clone()) {
            t.1.push_back(txid.clone());
            while t.1.len() > MAX_TOMBSTONES {
                if let Some(old) = t.1.pop_front() {
                    t.0.remove(&old);
                }
            }
        }
    }

    fn is_tombstoned(&self, txid: &TxId) -> bool {
        self.tombstones.lock().expect("tombstones").0.contains(txid)
    }

    /// A resource for the database `cfg.conninfo` points at. Connects lazily.
    pub fn new(cfg: PgConfig) -> Self {
        PgResource {
            cfg,
            idle: Mutex::new(Vec::new()),
            gids: std::sync::Mutex::new(HashMap::new()),
            tombstones: std::sync::Mutex::new(Default::default()),
        }
    }

    async fn connect(&self) -> Result<Conn, ParticipantError> {
        let (client, conn) = tokio_postgres::connect(&self.cfg.conninfo, NoTls)
            .await
            .map_err(|e| {
                ParticipantError::resource(format!(
                    "cannot connect to PostgreSQL: {}",
                    describe(&e)
                ))
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // Asynchronous commit only affects this session's *ordinary* commits: the decision
        // and history bookkeeping. PREPARE TRANSACTION and COMMIT PREPARED flush the WAL
        // unconditionally (twophase.c: "nor is there any support for async commit of a
        // prepared xact"), so every YES vote and every acknowledged commit stays durable, and
        // a commit's outcome is recoverable from its tracking row anyway.
        // Timeouts are session settings so that no transaction pays for SET LOCAL statements;
        // they bound the lock waits and statements of every transaction on this connection.
        let settings = format!(
            "SET synchronous_commit = off; SET lock_timeout = {}; SET statement_timeout = {}",
            self.cfg.lock_timeout.as_millis(),
            self.cfg.statement_timeout.as_millis()
        );
        client
            .batch_execute(&settings)
            .await
            .map_err(|e| ParticipantError::resource(describe(&e)))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            broken: false,
        })
    }

    async fn checkout(&self) -> Result<Conn, ParticipantError> {
        while let Some(c) = self.idle.lock().await.pop() {
            if !c.client.is_closed() {
                return Ok(c);
            }
        }
        self.connect().await
    }

    async fn checkin(&self, c: Conn) {
        if c.broken || c.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().await;
        if idle.len() < self.cfg.pool_size {
            idle.push(c);
        }
    }

    /// Checks that the database is reachable and the extension installed.
    pub async fn ping(&self) -> Result<(), ParticipantError> {
        let c = self.checkout().await?;
        c.client
            .query_one("SELECT twopc.protocol_version()", &[])
            .await
            .map_err(|e| {
                ParticipantError::resource(format!("pg_twopc_ext not usable: {}", describe(&e)))
            })?;
        self.checkin(c).await;
        Ok(())
    }

    /// BEGIN and `twopc.run_and_prepare()`, pipelined (one round trip), bounded by `timeout`:
    /// past it the running statement is cancelled and the call waited for, so it ends either
    /// prepared or rolled back, never unknown. `Ok(Err(reason))` is a NO vote.
    async fn run_and_prepare(
        &self,
        c: &mut Conn,
        gid: &str,
        coordinator: &CoordinatorId,
        txid: &TxId,
        stmts: &[SqlStatement],
        timeout: Option<Duration>,
    ) -> Result<Result<(), String>, ParticipantError> {
        let (begin, run) = match (
            c.statement("BEGIN").await,
            c.statement(RUN_AND_PREPARE).await,
        ) {
            (Ok(b), Ok(r)) => (b, r),
            (Err(e), _) | (_, Err(e)) => {
                c.broken = true;
                return Err(ParticipantError::resource(describe(&e)));
            }
        };
        let queries: Vec<&str> = stmts.iter().map(|s| s.query.as_str()).collect();
        let counts: Vec<i32> = stmts
            .iter()
            .map(|s| i32::try_from(s.params.len()).unwrap_or(i32::MAX))
            .collect();
        let params: Vec<Option<String>> = stmts
            .iter()
            .flat_map(|s| (0..s.params.len()).map(move |j| s.param_text(j)))
            .collect();
        let (coordinator, txid) = (coordinator.as_str(), txid.as_str());
        let role = self.cfg.client_role.as_str();
        let args: [&(dyn ToSql + Sync); 7] =
            [&gid, &coordinator, &txid, &role, &queries, &counts, &params];
        let (began, ran) = {
            let client = &c.client;
            // BEGIN is polled first, so it is written first; if it failed, run_and_prepare()
            // finds no transaction block and refuses to run anything (never in autocommit).
            let work = async {
                futures_util::join!(client.execute(&begin, &[]), client.query_one(&run, &args))
            };
            tokio::pin!(work);
            match timeout {
                None => work.await,
                Some(t) => tokio::select! {
                    done = &mut work => done,
                    _ = tokio::time::sleep(t) => {
                        // The coordinator has stopped waiting: stop the statement rather than
                        // hold its locks until it ends by itself, then take the call's real
                        // outcome.
                        let _ = client.cancel_token().cancel_query(NoTls).await;
                        work.await
                    }
                },
            }
        };
        if let Err(e) = began {
            c.broken = true;
            return Err(ParticipantError::resource(describe(&e)));
        }
        let outcome = match ran {
            Ok(row) => row.get::<_, String>(0),
            Err(e) => {
                self.rollback(c).await;
                if e.as_db_error().is_none()
                    || e.code()
                        .is_some_and(|code| code.code().starts_with(LOST_STATEMENT_CLASS))
                {
                    c.broken = true;
                }
                return Ok(Err(reason(&e)));
            }
        };
        match outcome.as_str() {
            "prepared" => Ok(Ok(())),
            "already_prepared" | "already_committed" => {
                self.rollback(c).await;
                Ok(Ok(()))
            }
            "already_aborted" => {
                self.rollback(c).await;
                Ok(Err(format!(
                    "transaction {txid} was already rolled back here"
                )))
            }
            other => {
                self.rollback(c).await;
                c.broken = true;
                Err(ParticipantError::resource(format!(
                    "twopc.run_and_prepare() answered {other:?}"
                )))
            }
        }
    }

    /// Ends an open (or failed) transaction block; a connection where even that fails is not
    /// reused.
    async fn rollback(&self, c: &mut Conn) {
        if c.client.batch_execute("ROLLBACK").await.is_err() {
            c.broken = true;
        }
    }

    /// The gid under which `txid` is prepared in this database, if it is.
    async fn prepared_gid(
        &self,
        c: &mut Conn,
        txid: &TxId,
    ) -> Result<Option<String>, ParticipantError> {
        let rows = c
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                &[],
            )
            .await
            .map_err(|e| ParticipantError::resource(describe(&e)))?;
        let mut found: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|g| parse_gid(g).is_some_and(|(_, t)| &t == txid))
            .collect();
        if found.len() > 1 {
            return Err(ParticipantError::resource(format!(
                "transaction id {txid} is prepared under several coordinators ({}); refusing to guess",
                found.join(", ")
            )));
        }
        Ok(found.pop())
    }

    /// What this database remembers about a finished `txid`: Some(Commit) when its tracking
    /// row is visible (it committed), Some(Abort) when the finish log says it was rolled back.
    /// With the gid known the lookups use the gid indexes; without it (after a restart, for a
    /// txid this process did not prepare) they search by global id.
    async fn finished(
        &self,
        c: &mut Conn,
        txid: &TxId,
        gid: Option<&str>,
    ) -> Result<Option<Decision>, ParticipantError> {
        let row = match gid {
            Some(g) => c
                .query_opt(
                    "SELECT EXISTS (SELECT 1 FROM twopc.tracking WHERE gid = $1), \
                            EXISTS (SELECT 1 FROM twopc.finish_log WHERE gid = $1 AND decision = 'abort')",
                    &[&g],
                )
                .await,
            None => c
                .query_opt(
                    "SELECT EXISTS (SELECT 1 FROM twopc.tracking WHERE global_id = $1), \
                            EXISTS (SELECT 1 FROM twopc.finish_log WHERE global_id = $1 AND decision = 'abort')",
                    &[&txid.as_str()],
                )
                .await,
        }
        .map_err(|e| ParticipantError::resource(describe(&e)))?;
        let Some(row) = row else { return Ok(None) };
        let (committed, aborted): (bool, bool) = (row.get(0), row.get(1));
        Ok(if committed {
            Some(Decision::Commit)
        } else if aborted {
            Some(Decision::Abort)
        } else {
            None
        })
    }

    async fn finish(&self, txid: &TxId, decision: Decision) -> Result<AckResult, ParticipantError> {
        let mut c = self.checkout().await?;
        let result = self.finish_on(&mut c, txid, decision).await;
        self.checkin(c).await;
        if result.is_ok() {
            self.gids.lock().expect("gid cache").remove(txid);
        }
        result
    }

    async fn finish_on(
        &self,
        c: &mut Conn,
        txid: &TxId,
        decision: Decision,
    ) -> Result<AckResult, ParticipantError> {
        let (word, sql) = match decision {
            Decision::Commit => ("commit", "SELECT twopc.commit_prepared($1, 'coordinator')"),
            Decision::Abort => ("abort", "SELECT twopc.rollback_prepared($1, 'coordinator')"),
        };
        let known_gid = self.gids.lock().expect("gid cache").get(txid).cloned();
        if let Some(gid) = &known_gid {
            // Fast path for a transaction this process prepared: finish it at once. Only when
            // that fails is the decision recorded (below), so in_doubt can show it while the
            // transaction stays prepared; a decision row for a finished gid would only be
            // bookkeeping to purge later.
            if let Ok(finish) = c.statement(sql).await {
                let finish_params: [&(dyn ToSql + Sync); 1] = [gid];
                if c.client.query_opt(&finish, &finish_params).await.is_ok() {
                    return Ok(AckResult::Applied);
                }
            }
        }
        if let Some(gid) = self.prepared_gid(c, txid).await? {
            c.query_opt("SELECT twopc.record_decision($1, $2)", &[&gid, &word])
                .await
                .map_err(|e| ParticipantError::resource(describe(&e)))?;
            return match c.query_opt(sql, &[&gid]).await {
                Ok(_) => Ok(AckResult::Applied),
                Err(e) => {
                    // Finished concurrently by someone else (a resolver, a duplicate request)?
                    match self.finished(c, txid, Some(&gid)).await? {
                        Some(d) if d == decision => Ok(AckResult::AlreadyApplied),
                        Some(_) => Ok(AckResult::Conflict),
                        None => Err(ParticipantError::resource(describe(&e))),
                    }
                }
            };
        }
        let result = match self.finished(c, txid, known_gid.as_deref()).await? {
            Some(d) if d == decision => AckResult::AlreadyApplied,
            Some(_) => AckResult::Conflict,
            None => AckResult::NotPrepared,
        };
        if decision == Decision::Abort && result == AckResult::NotPrepared {
            self.tombstone(txid);
        }
        Ok(result)
    }
}

impl Resource for PgResource {
    fn kind(&self) -> ParticipantKind {
        ParticipantKind::Postgres
    }

    async fn prepare(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        timeout: Option<Duration>,
    ) -> Result<PrepareOutcome, ParticipantError> {
        let Operations::Sql(stmts) = ops else {
            return Ok(PrepareOutcome::No {
                reason: "a Postgres participant takes \"sql\" operations".into(),
            });
        };
        if stmts.is_empty() {
            return Ok(PrepareOutcome::ReadOnly);
        }
        if self.is_tombstoned(txid) {
            return Ok(PrepareOutcome::No {
                reason: format!(
                    "transaction {txid} was already aborted here (late or repeated prepare)"
                ),
            });
        }
        // A fast, early error for the obvious cases only: what a statement may do is decided
        // inside PostgreSQL (run_and_prepare), not by reading its text.
        for (i, s) in stmts.iter().enumerate() {
            if let Some(why) = refuse_statement(&s.query) {
                self.tombstone(txid);
                return Ok(PrepareOutcome::No {
                    reason: format!("statement {} refused: {why}", i + 1),
                });
            }
        }
        let gid = format_gid(coordinator, txid);
        let mut c = self.checkout().await?;
        let r = self
            .run_and_prepare(&mut c, &gid, coordinator, txid, stmts, timeout)
            .await;
        self.checkin(c).await;
        match r? {
            Ok(()) => {
                self.gids
                    .lock()
                    .expect("gid cache")
                    .insert(txid.clone(), gid);
                Ok(PrepareOutcome::Yes)
            }
            Err(reason) => {
                self.tombstone(txid);
                Ok(PrepareOutcome::No { reason })
            }
        }
    }

    async fn commit(&self, txid: &TxId) -> Result<AckResult, ParticipantError> {
        self.finish(txid, Decision::Commit).await
    }

    async fn abort(&self, txid: &TxId) -> Result<AckResult, ParticipantError> {
        self.finish(txid, Decision::Abort).await
    }

    async fn commit_one_phase(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
    ) -> Result<OnePhaseOutcome, ParticipantError> {
        match self.prepare(coordinator, txid, ops, None).await? {
            PrepareOutcome::Yes => {
                let result = self.finish(txid, Decision::Commit).await?;
                let result = if result == AckResult::Applied {
                    AckResult::Applied
                } else {
                    AckResult::AlreadyApplied
                };
                Ok(OnePhaseOutcome {
                    decision: Decision::Commit,
                    result,
                    reason: None,
                })
            }
            PrepareOutcome::ReadOnly => Ok(OnePhaseOutcome {
                decision: Decision::Commit,
                result: AckResult::Applied,
                reason: None,
            }),
            PrepareOutcome::No { reason } => Ok(OnePhaseOutcome {
                decision: Decision::Abort,
                result: AckResult::Applied,
                reason: Some(reason),
            }),
        }
    }

    async fn list_prepared(&self) -> Result<Vec<PreparedTx>, ParticipantError> {
        let mut c = self.checkout().await?;
        let rows = c
            .query(
                "SELECT gid, (extract(epoch FROM prepared) * 1000)::bigint \
                 FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared",
                &[],
            )
            .await
            .map_err(|e| ParticipantError::resource(describe(&e)));
        self.checkin(c).await;
        let now = now_ms();
        Ok(rows?
            .iter()
            .filter_map(|r| {
                let gid: String = r.get(0);
                let at: i64 = r.get(1);
                parse_gid(&gid).map(|(coordinator, txid)| PreparedTx {
                    txid,
                    coordinator,
                    prepared_at_ms: u64::try_from(at).unwrap_or(now),
                })
            })
            .collect())
    }
}

/// Serves `resource` on `listen` until `shutdown` resolves.
pub async fn run(
    resource: PgResource,
    server: ServerConfig,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ParticipantError> {
    let running = Server::new(resource, server)?.bind(listen).await?;
    on_ready(running.local_addr());
    shutdown.await;
    running.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_refused() {
        for s in [
            "COMMIT",
            "  commit;",
            "-- c\nROLLBACK",
            "/* x */ savepoint a",
            "/* /* */ SELECT */ COMMIT",
            "-- x\rROLLBACK /*\nSELECT */",
            "-- x\rSAVEPOINT s /*\nSELECT */",
            "prepare transaction 'x'",
            "BEGIN",
            "end",
            "",
        ] {
            assert!(refuse_statement(s).is_some(), "{s:?}");
        }
        for s in [
            "UPDATE t SET a = 1",
            "select 1",
            "insert into x values (1)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
        ] {
            assert_eq!(refuse_statement(s), None, "{s:?}");
        }
    }
}
