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
//! * **Prepare.** A pooled connection, logged in as the configured non-superuser role (so a
//!   statement cannot `RESET ROLE` its way to superuser, and with `lock_timeout` and
//!   `statement_timeout` set for the session), runs `BEGIN` together with
//!   `twopc.gid_state(gid)`: a gid already prepared or committed here votes YES without running
//!   anything again, one already rolled back here (a dead tracking row or a finish-log row) votes
//!   NO. Then the transaction's statements one by one with their parameters
//!   bound (each JSON value is sent in text format and parsed by Postgres for the type it
//!   infers; nothing is spliced into SQL), then `SELECT twopc.prepare(gid, coordinator, txid)`,
//!   the extension's tracked prepare. The gid is derived from (coordinator, txid) by
//!   [`twopc_protocol::gid::format_gid`]. YES is sent only after that statement returned: the
//!   prepared transaction is then in the WAL, flushed. Any SQL error, lock timeout or constraint
//!   violation rolls back and votes NO with Postgres's own message. Statements that would end
//!   or split the transaction (`COMMIT`, `ROLLBACK`, `SAVEPOINT`, `PREPARE TRANSACTION`, ...)
//!   are refused before they run.
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

use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
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
    /// `lock_timeout` for transaction statements: a lock wait past it votes NO.
    pub lock_timeout: Duration,
    /// `statement_timeout` for transaction statements.
    pub statement_timeout: Duration,
    /// Idle connections kept for reuse.
    pub pool_size: usize,
}

impl PgConfig {
    /// A configuration with sensible timeouts (lock 2 s, statement 10 s).
    pub fn new(conninfo: impl Into<String>) -> Self {
        PgConfig {
            conninfo: conninfo.into(),
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
            pool_size: 64,
        }
    }
}

/// "Already prepared / committed / rolled back here?" for one gid: `twopc.gid_state()` answers
/// from shared memory and two index probes, where the same question as SQL over
/// `pg_prepared_xacts` materialised every prepared transaction of the cluster on each Prepare.
const PRECHECK: &str = "SELECT twopc.gid_state($1)";

/// Most prepared statements cached per connection before the cache is cleared.
const STATEMENT_CACHE: usize = 256;

/// A pooled connection with its prepared-statement cache: after the first use, a statement
/// costs one round trip instead of two (no Parse/Describe).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
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

/// A parameter sent in text format, whatever type Postgres inferred for its placeholder.
#[derive(Debug)]
struct TextParam(Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
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

/// The first keyword of a statement, skipping whitespace and comments, upper-cased.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map(|(_, after)| after).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map(|(_, after)| after).unwrap_or("");
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
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
        if c.client.is_closed() {
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

    /// Runs the statements and prepares; `Ok(Err(reason))` is a NO vote.
    async fn run_and_prepare(
        &self,
        c: &mut Conn,
        gid: &str,
        coordinator: &CoordinatorId,
        txid: &TxId,
        stmts: &[SqlStatement],
    ) -> Result<Result<(), String>, ParticipantError> {
        for s in stmts {
            if let Some(why) = refuse_statement(&s.query) {
                return Ok(Err(why));
            }
        }
        // The caller has opened the transaction block (see `prepare`).
        // Parse every statement first (a round trip each the first time on this connection,
        // none once cached), then send all executions and the tracked prepare back to back and
        // read the answers in order: one round trip for the whole transaction. tokio-postgres
        // writes a request when its future is first polled, and `join_all` polls in order, so
        // the statements reach Postgres in the order the client gave. After the first failure
        // Postgres refuses the rest ("current transaction is aborted"); the first error is the
        // reason for the NO.
        let mut handles = Vec::with_capacity(stmts.len());
        for (i, s) in stmts.iter().enumerate() {
            match c.statement(s.query.as_str()).await {
                Ok(st) => handles.push(st),
                Err(e) => {
                    let _ = c.client.batch_execute("ROLLBACK").await;
                    return Ok(Err(format!("statement {} failed: {}", i + 1, describe(&e))));
                }
            }
        }
        let prepare = match c.statement("SELECT twopc.prepare($1, $2, $3)").await {
            Ok(st) => st,
            Err(e) => {
                let _ = c.client.batch_execute("ROLLBACK").await;
                return Ok(Err(format!("prepare failed: {}", describe(&e))));
            }
        };
        let params: Vec<Vec<TextParam>> = stmts
            .iter()
            .map(|s| {
                (0..s.params.len())
                    .map(|j| TextParam(s.param_text(j)))
                    .collect()
            })
            .collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = params
            .iter()
            .map(|ps| ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
            .collect();
        let client = &c.client;
        let executions = handles
            .iter()
            .zip(refs.iter())
            .map(|(st, r)| client.execute(st, r));
        let (coordinator, txid) = (coordinator.as_str(), txid.as_str());
        let prepare_params: [&(dyn ToSql + Sync); 3] = [&gid, &coordinator, &txid];
        let (results, prepared) = futures_util::join!(
            futures_util::future::join_all(executions),
            client.query_opt(&prepare, &prepare_params)
        );
        for (i, r) in results.iter().enumerate() {
            if let Err(e) = r {
                let _ = c.client.batch_execute("ROLLBACK").await;
                return Ok(Err(format!("statement {} failed: {}", i + 1, describe(e))));
            }
        }
        match prepared {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                let _ = c.client.batch_execute("ROLLBACK").await;
                Ok(Err(format!("prepare failed: {}", describe(&e))))
            }
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
        let gid = format_gid(coordinator, txid);
        let mut c = self.checkout().await?;
        // Idempotent: a duplicated Prepare must not run the statements twice. BEGIN and the
        // check "already prepared / committed / rolled back?" (by the exact gid) go out
        // together, one round trip. The statements follow only once BEGIN is known to have
        // succeeded: sent blindly behind a failed BEGIN they would commit one by one.
        let (begin, check) = match (c.statement("BEGIN").await, c.statement(PRECHECK).await) {
            (Ok(b), Ok(p)) => (b, p),
            (Err(e), _) | (_, Err(e)) => {
                self.checkin(c).await;
                return Err(ParticipantError::resource(describe(&e)));
            }
        };
        let check_params: [&(dyn ToSql + Sync); 1] = [&gid];
        let (began, seen) = futures_util::join!(
            c.client.execute(&begin, &[]),
            c.client.query_opt(&check, &check_params)
        );
        let state = match (began, seen) {
            (Ok(_), Ok(row)) => row.and_then(|r| r.get::<_, Option<String>>(0)),
            (Err(e), _) | (_, Err(e)) => {
                let _ = c.client.batch_execute("ROLLBACK").await;
                self.checkin(c).await;
                return Err(ParticipantError::resource(describe(&e)));
            }
        };
        let early = match state.as_deref() {
            Some("prepared") | Some("committed") => Some(PrepareOutcome::Yes),
            Some("aborted") => Some(PrepareOutcome::No {
                reason: format!("transaction {txid} was already rolled back here"),
            }),
            _ => None,
        };
        if let Some(outcome) = early {
            let _ = c.client.batch_execute("ROLLBACK").await;
            self.checkin(c).await;
            return Ok(outcome);
        }
        let r = self
            .run_and_prepare(&mut c, &gid, coordinator, txid, stmts)
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
        match self.prepare(coordinator, txid, ops).await? {
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
