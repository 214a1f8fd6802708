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
//! * **A lost connection.** One that the server or the network ended (a restart, an
//!   administrator ending the role's sessions) is dropped with every idle one, and the work
//!   settled on a new connection: a decision or a read is simply made again; a prepare is
//!   looked up by its gid once the lost session is surely gone (found prepared: YES; never
//!   started: run again; rolled back with the session: a retryable NO, the gid staying
//!   refused as after any failed prepare). A client sees an error only when the database
//!   stays unreachable.
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
//!
//! # Layout
//!
//! * this file: [`PgConfig`], [`PgResource`] (the [`Resource`] implementation) and [`run`].
//! * `pool`: connections, their session settings and prepared-statement caches.
//! * `screen`: the fast early refusal of obvious transaction control ([`refuse_statement`]).
//! * `tombstones`: txids voted NO or aborted unknown (what PostgreSQL has no record of).
//! * `pg_error`: how Postgres's errors become NO reasons and error replies.

mod pg_error;
mod pool;
mod screen;
mod tombstones;

pub use screen::refuse_statement;

use pg_error::{class, connection_lost, describe, reason};
use pool::{Conn, Pool, Use};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use tombstones::Tombstones;
use twopc_participant::{
    OnePhaseAnswer, OnePhaseContext, OnePhaseOutcome, ParticipantError, PrepareOutcome, Resource,
    Server, ServerConfig, Wait,
};
use twopc_protocol::gid::{format_gid, parse_gid};
use twopc_protocol::{
    AckResult, CoordinatorId, Decision, NoClass, Operations, ParticipantKind, PreparedTx,
    SqlStatement, TxId,
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
    /// A configuration with sensible timeouts (lock 1 s, the participant's default lock-wait
    /// bound; statement 10 s).
    pub fn new(conninfo: impl Into<String>, client_role: impl Into<String>) -> Self {
        PgConfig {
            conninfo: conninfo.into(),
            client_role: client_role.into(),
            lock_timeout: Duration::from_secs(1),
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

/// [`RUN_AND_PREPARE`] that also records who submitted the transaction (the coordinator's API
/// client; extension 0.3.0 and later).
const RUN_AND_PREPARE_SUBMITTED: &str =
    "SELECT twopc.run_and_prepare($1, $2, $3, $4, $5::text[], $6::int4[], $7::text[], $8)";

/// How long a connection that found the extension's schema too old to record submitters
/// waits before it looks again (`ALTER EXTENSION pg_twopc_ext UPDATE` may have run since).
const SCHEMA_RECHECK: Duration = Duration::from_secs(30);

/// Whether the schema has [`RUN_AND_PREPARE_SUBMITTED`]'s function, and whether this role may
/// call it (asked without raising an error, which the server would log).
const HAS_SUBMITTERS: &str = "SELECT p IS NOT NULL, \
     coalesce(pg_catalog.has_function_privilege(p, 'EXECUTE'), false) \
     FROM (SELECT pg_catalog.to_regprocedure('twopc.run_and_prepare(text, text, text, text, \
     text[], integer[], text[], text)') AS p) f";

/// SQLSTATE class 26, "invalid SQL statement name": a statement this connection prepared is
/// gone. Nothing a client sends can do that any more, but a connection it happens on is
/// replaced rather than reused.
const LOST_STATEMENT_CLASS: &str = "26";

/// The participant's view of one PostgreSQL database.
pub struct PgResource {
    cfg: PgConfig,
    pool: Pool,
    /// See [`tombstones`].
    tombstones: Tombstones,
    /// The prepares running now, by txid: their backend (to find their lock waits) and how to
    /// cancel them (to give way to an older transaction).
    running: std::sync::Mutex<HashMap<TxId, Running>>,
}

/// What a prepare whose connection was lost turned out to have done.
enum LostPrepare {
    /// Prepared (or even committed since): a YES.
    Prepared,
    /// Ran and was rolled back with the session: the gid is used up.
    RolledBack,
    /// Never started: it can be made again.
    NothingRan,
}

/// A prepare running on a pooled connection.
struct Running {
    backend_pid: i32,
    cancel: tokio_postgres::CancelToken,
    /// A cancel request went to its backend: the connection is not reused afterwards, since
    /// the request could arrive after the prepare ended and hit the next statement.
    cancelled: bool,
}

/// The lock waits of the given backends, each with the holder of the lock: a backend, or
/// a prepared transaction (pid NULL in `pg_locks`, named by its gid). Matching an ungranted
/// lock with the granted ones on the same object over-approximates (it ignores lock modes):
/// at worst a waiter gives way when it did not have to. `pg_locks` is read once (it takes
/// every lock-manager partition lock) and only this participant's waiters are joined with it.
const LOCK_WAITS: &str = "\
WITH l AS MATERIALIZED (SELECT * FROM pg_locks), \
     w AS (SELECT * FROM l WHERE NOT granted AND pid = ANY($1)) \
SELECT w.pid, h.pid, p.gid, \
       (extract(epoch FROM clock_timestamp() - w.waitstart) * 1000)::bigint \
FROM w \
JOIN l h ON h.granted AND h.locktype = w.locktype \
  AND h.database IS NOT DISTINCT FROM w.database AND h.relation IS NOT DISTINCT FROM w.relation \
  AND h.page IS NOT DISTINCT FROM w.page AND h.tuple IS NOT DISTINCT FROM w.tuple \
  AND h.virtualxid IS NOT DISTINCT FROM w.virtualxid \
  AND h.transactionid IS NOT DISTINCT FROM w.transactionid \
  AND h.classid IS NOT DISTINCT FROM w.classid AND h.objid IS NOT DISTINCT FROM w.objid \
  AND h.objsubid IS NOT DISTINCT FROM w.objsubid AND h.pid IS DISTINCT FROM w.pid \
LEFT JOIN pg_prepared_xacts p ON h.pid IS NULL AND p.transaction = h.transactionid";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl PgResource {
    /// A resource for the database `cfg.conninfo` points at. Connects lazily.
    pub fn new(cfg: PgConfig) -> Self {
        PgResource {
            pool: Pool::new(cfg.clone()),
            cfg,
            tombstones: Tombstones::default(),
            running: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Checks that the database is reachable and the extension installed.
    pub async fn ping(&self) -> Result<(), ParticipantError> {
        for attempt in 0.. {
            let mut c = self.pool.checkout(Use::Other).await?;
            let r = match c
                .client
                .query_one("SELECT twopc.protocol_version()", &[])
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    c.failed(&e);
                    Err(ParticipantError::resource(format!(
                        "pg_twopc_ext not usable: {}",
                        describe(&e)
                    )))
                }
            };
            let again = c.lost && attempt == 0;
            self.pool.checkin(c).await;
            if !again {
                return r;
            }
        }
        unreachable!("the loop returns on its second attempt at the latest")
    }

    /// BEGIN and `twopc.run_and_prepare()`, pipelined (one round trip), bounded by `timeout`:
    /// past it the running statement is cancelled and the call waited for, so it ends either
    /// prepared or rolled back, never unknown. `Ok(Err((reason, class)))` is a NO vote.
    async fn run_and_prepare(
        &self,
        c: &mut Conn,
        gid: &str,
        (coordinator, txid): (&CoordinatorId, &TxId),
        stmts: &[SqlStatement],
        cx: twopc_participant::PrepareContext<'_>,
    ) -> Result<Result<(), (String, NoClass)>, ParticipantError> {
        let timeout = cx.timeout;
        let submitted_by = match cx.submitted_by {
            Some(name) if self.records_submitters(c).await? => Some(name),
            _ => None,
        };
        let run = c
            .statement(if submitted_by.is_some() {
                RUN_AND_PREPARE_SUBMITTED
            } else {
                RUN_AND_PREPARE
            })
            .await;
        let (begin, run) = match (c.statement("BEGIN").await, run) {
            (Ok(b), Ok(r)) => (b, r),
            (Err(e), _) | (_, Err(e)) => {
                c.broken = true;
                return Err(c.failed(&e));
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
        let all: [&(dyn ToSql + Sync); 8] = [
            &gid,
            &coordinator,
            &txid,
            &role,
            &queries,
            &counts,
            &params,
            &submitted_by,
        ];
        let args = if submitted_by.is_some() {
            &all[..]
        } else {
            &all[..7]
        };
        let (began, ran) = {
            let client = &c.client;
            // BEGIN is polled first, so it is written first; if it failed, run_and_prepare()
            // finds no transaction block and refuses to run anything (never in autocommit).
            let work = async {
                futures_util::join!(client.execute(&begin, &[]), client.query_one(&run, args))
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
            return Err(c.failed(&e));
        }
        let outcome = match ran {
            Ok(row) => row.get::<_, String>(0),
            // Nothing to roll back: the server ends a lost session's transaction itself (or,
            // had PREPARE already run, keeps it under the gid, which the retry then finds).
            Err(e) if connection_lost(&e) => return Err(c.failed(&e)),
            Err(e) => {
                self.rollback(c).await;
                if e.as_db_error().is_none()
                    || e.code()
                        .is_some_and(|code| code.code().starts_with(LOST_STATEMENT_CLASS))
                {
                    c.broken = true;
                }
                return Ok(Err((reason(&e), class(&e))));
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
                Ok(Err((
                    format!("transaction {txid} was already rolled back here"),
                    NoClass::Final,
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

    /// Whether this connection can record who submitted a transaction (the schema has the
    /// eight-argument function and the role may call it): asked on the first transaction that
    /// names its client and, while the answer is no, again after [`SCHEMA_RECHECK`]. A no is a
    /// warning, not a refusal: the transaction runs unnamed.
    async fn records_submitters(&self, c: &mut Conn) -> Result<bool, ParticipantError> {
        if let Some((known, at)) = c.records_submitters {
            if known || at.elapsed() < SCHEMA_RECHECK {
                return Ok(known);
            }
        }
        let row = c.client.query_one(HAS_SUBMITTERS, &[]).await.map_err(|e| {
            c.broken = true;
            c.failed(&e)
        })?;
        let (exists, allowed): (bool, bool) = (row.get(0), row.get(1));
        if !allowed && c.records_submitters.is_none() {
            if exists {
                tracing::warn!(
                    "the participant's role may not execute the eight-argument \
                     twopc.run_and_prepare(): client names are not recorded in twopc.history \
                     until it is granted EXECUTE"
                );
            } else {
                tracing::warn!(
                    "pg_twopc_ext's SQL is older than its library: client names are not \
                     recorded in twopc.history until ALTER EXTENSION pg_twopc_ext UPDATE"
                );
            }
        }
        c.records_submitters = Some((allowed, std::time::Instant::now()));
        Ok(allowed)
    }

    /// What became of the prepare of `gid` whose connection was lost, asked on another
    /// connection `c`. The lost session is ended first if it is still there (a dropped network
    /// connection can leave it running, able to prepare later): with it gone, the extension's
    /// own record of the gid is final. That record starts with the call (its tracking row is
    /// written first), so no record means the call never ran, and the prepare can simply be
    /// made again; a dead one means it ran and was rolled back, and the gid stays refused (a
    /// late repeat of a failed Prepare must never prepare), so the vote is a retryable NO.
    async fn settle_lost_prepare(
        &self,
        c: &mut Conn,
        gid: &str,
        (pid, started_us): (i32, i64),
    ) -> Result<LostPrepare, ParticipantError> {
        c.query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE pid = $1 AND (extract(epoch FROM backend_start) * 1000000)::bigint = $2",
            &[&pid, &started_us],
        )
        .await
        .map_err(|e| c.failed(&e))?;
        let outcome: String = c
            .query_opt("SELECT twopc.outcome($1)", &[&gid])
            .await
            .map_err(|e| c.failed(&e))?
            .map(|r| r.get(0))
            .unwrap_or_default();
        Ok(match outcome.as_str() {
            "in_doubt" | "committed" => LostPrepare::Prepared,
            "unknown" => LostPrepare::NothingRan,
            _ => LostPrepare::RolledBack,
        })
    }

    /// A read-only query on a pooled connection, asked once more on a new one when the
    /// connection was lost under it.
    async fn read_retrying(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, ParticipantError> {
        for attempt in 0.. {
            let mut c = self.pool.checkout(Use::Other).await?;
            let rows = match c.query(sql, params).await {
                Ok(rows) => Ok(rows),
                Err(e) => Err(c.failed(&e)),
            };
            let again = c.lost && attempt == 0;
            self.pool.checkin(c).await;
            if !again {
                return rows;
            }
        }
        unreachable!("the loop returns on its second attempt at the latest")
    }

    /// Ends an open (or failed) transaction block; a connection where even that fails is not
    /// reused.
    async fn rollback(&self, c: &mut Conn) {
        if c.client.batch_execute("ROLLBACK").await.is_err() {
            c.broken = true;
        }
    }

    /// The gid under which `txid` is prepared in this database (for `coordinator`, when
    /// given), if it is.
    async fn prepared_gid(
        &self,
        c: &mut Conn,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<Option<String>, ParticipantError> {
        let rows = c
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                &[],
            )
            .await
            .map_err(|e| c.failed(&e))?;
        let mut found: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|g| {
                parse_gid(g)
                    .is_some_and(|(co, t)| &t == txid && coordinator.is_none_or(|w| &co == w))
            })
            .collect();
        if found.len() > 1 {
            return Err(ParticipantError::resource(format!(
                "transaction id {txid} is prepared under several coordinators ({}); refusing to guess",
                found.join(", ")
            )));
        }
        Ok(found.pop())
    }

    /// What became of `txid` here, once it is no longer prepared: the extension's
    /// `twopc.outcome()` answers (it owns the rules: a visible tracking row is a commit, a dead
    /// one or a finish-log abort is an abort; see its `outcome` module), `None` when it has no
    /// evidence. With the gid known that is one index probe; without it (after a restart, for
    /// a txid this process did not prepare) the gids recorded for the txid in `twopc.history`
    /// are asked, a commit under any of them winning.
    async fn settled_decision(
        &self,
        c: &mut Conn,
        txid: &TxId,
        gid: Option<&str>,
    ) -> Result<Option<Decision>, ParticipantError> {
        let answers = match gid {
            Some(g) => c.query("SELECT twopc.outcome($1)", &[&g]).await,
            None => {
                c.query(
                    "SELECT twopc.outcome(gid) \
                     FROM (SELECT DISTINCT gid FROM twopc.history WHERE global_id = $1) g",
                    &[&txid.as_str()],
                )
                .await
            }
        }
        .map_err(|e| c.failed(&e))?;
        let answers: Vec<String> = answers.iter().map(|r| r.get(0)).collect();
        Ok(if answers.iter().any(|a| a == "committed") {
            Some(Decision::Commit)
        } else if answers.iter().any(|a| a == "aborted") {
            Some(Decision::Abort)
        } else {
            None
        })
    }

    /// Phase 2: applies the coordinator's decision for `txid` on a pooled connection.
    async fn apply_decision(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
        decision: Decision,
    ) -> Result<AckResult, ParticipantError> {
        // A decision is idempotent here (a repeat answers AlreadyApplied), so a lost
        // connection's attempt, whatever became of it, can be made again.
        for attempt in 0.. {
            let mut c = self.pool.checkout(Use::Other).await?;
            let result = self
                .apply_decision_on(&mut c, coordinator, txid, decision)
                .await;
            let again = c.lost && attempt == 0;
            self.pool.checkin(c).await;
            if !again {
                return result;
            }
        }
        unreachable!("the loop returns on its second attempt at the latest")
    }

    async fn apply_decision_on(
        &self,
        c: &mut Conn,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
        decision: Decision,
    ) -> Result<AckResult, ParticipantError> {
        let (word, sql) = match decision {
            Decision::Commit => ("commit", "SELECT twopc.commit_prepared($1, 'coordinator')"),
            Decision::Abort => ("abort", "SELECT twopc.rollback_prepared($1, 'coordinator')"),
        };
        // The coordinator names the gid exactly; a message from a coordinator that names
        // none (an older one) costs a scan of pg_prepared_xacts, which refuses to guess when
        // two coordinators' transactions of this txid are prepared.
        let known_gid = coordinator.map(|co| format_gid(co, txid));
        if let Some(gid) = &known_gid {
            // Fast path for a transaction this process prepared: finish it at once. Only when
            // that fails is the decision recorded (below), so in_doubt can show it while the
            // transaction stays prepared; a decision row for a finished gid would only be
            // bookkeeping to purge later.
            let finished = match c.statement(sql).await {
                Ok(finish) => {
                    let finish_params: [&(dyn ToSql + Sync); 1] = [gid];
                    c.client
                        .query_opt(&finish, &finish_params)
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            match finished {
                Ok(()) => return Ok(AckResult::Applied),
                Err(e) if connection_lost(&e) => return Err(c.failed(&e)),
                Err(_) => {}
            }
        }
        if let Some(gid) = self.prepared_gid(c, coordinator, txid).await? {
            c.query_opt("SELECT twopc.record_decision($1, $2)", &[&gid, &word])
                .await
                .map_err(|e| c.failed(&e))?;
            return match c.query_opt(sql, &[&gid]).await {
                Ok(_) => Ok(AckResult::Applied),
                Err(e) => {
                    // Finished concurrently by someone else (a resolver, a duplicate request)?
                    match self.settled_decision(c, txid, Some(&gid)).await? {
                        Some(d) if d == decision => Ok(AckResult::AlreadyApplied),
                        Some(_) => Ok(AckResult::Conflict),
                        None => Err(c.failed(&e)),
                    }
                }
            };
        }
        let result = match self.settled_decision(c, txid, known_gid.as_deref()).await? {
            Some(d) if d == decision => AckResult::AlreadyApplied,
            Some(_) => AckResult::Conflict,
            None => AckResult::NotPrepared,
        };
        if decision == Decision::Abort && result == AckResult::NotPrepared {
            self.tombstones.insert(txid);
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
        cx: twopc_participant::PrepareContext<'_>,
    ) -> Result<PrepareOutcome, ParticipantError> {
        let Operations::Sql(stmts) = ops else {
            return Ok(PrepareOutcome::No {
                reason: "a Postgres participant takes \"sql\" operations".into(),
                class: NoClass::Final,
            });
        };
        if stmts.is_empty() {
            return Ok(PrepareOutcome::ReadOnly);
        }
        if self.tombstones.contains(txid) {
            return Ok(PrepareOutcome::No {
                reason: format!(
                    "transaction {txid} was already aborted here (late or repeated prepare)"
                ),
                class: NoClass::Final,
            });
        }
        // A fast, early error for the obvious cases only: what a statement may do is decided
        // inside PostgreSQL (run_and_prepare), not by reading its text.
        for (i, s) in stmts.iter().enumerate() {
            if let Some(why) = refuse_statement(&s.query) {
                self.tombstones.insert(txid);
                return Ok(PrepareOutcome::No {
                    reason: format!("statement {} refused: {why}", i + 1),
                    class: NoClass::Final,
                });
            }
        }
        let gid = format_gid(coordinator, txid);
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let r = loop {
            let mut c = self.pool.checkout(Use::Prepare).await?;
            self.running.lock().expect("running prepares").insert(
                txid.clone(),
                Running {
                    backend_pid: c.backend_pid,
                    cancel: c.client.cancel_token(),
                    cancelled: false,
                },
            );
            let cx = twopc_participant::PrepareContext {
                timeout: cx.timeout.map(|t| t.saturating_sub(started.elapsed())),
                ..cx
            };
            let r = self
                .run_and_prepare(&mut c, &gid, (coordinator, txid), stmts, cx)
                .await;
            let running = self.running.lock().expect("running prepares").remove(txid);
            let cancelled = running.is_some_and(|r| r.cancelled);
            if cancelled {
                c.broken = true;
            }
            let lost = c.lost.then_some((c.backend_pid, c.backend_start_us));
            self.pool.checkin(c).await;
            let Some(session) = lost else { break r };
            if cancelled || attempt > 0 || cx.timeout.is_some_and(|t| t.is_zero()) {
                break r;
            }
            attempt += 1;
            let why = r.err().map(|e| e.to_string()).unwrap_or_default();
            let mut c = self.pool.checkout(Use::Other).await?;
            let settled = self.settle_lost_prepare(&mut c, &gid, session).await;
            self.pool.checkin(c).await;
            match settled? {
                LostPrepare::Prepared => break Ok(Ok(())),
                LostPrepare::RolledBack => {
                    break Ok(Err((
                        format!(
                            "the connection to PostgreSQL was lost while the statements ran \
                             ({why}); they were rolled back"
                        ),
                        NoClass::Conflict,
                    )))
                }
                LostPrepare::NothingRan => continue,
            }
        };
        match r? {
            Ok(()) => Ok(PrepareOutcome::Yes),
            Err((reason, class)) => {
                self.tombstones.insert(txid);
                Ok(PrepareOutcome::No { reason, class })
            }
        }
    }

    async fn commit(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        self.apply_decision(coordinator, txid, Decision::Commit)
            .await
    }

    async fn abort(
        &self,
        coordinator: Option<&CoordinatorId>,
        txid: &TxId,
    ) -> Result<AckResult, ParticipantError> {
        self.apply_decision(coordinator, txid, Decision::Abort)
            .await
    }

    async fn commit_one_phase(
        &self,
        coordinator: &CoordinatorId,
        txid: &TxId,
        ops: &Operations,
        cx: OnePhaseContext<'_>,
    ) -> Result<OnePhaseAnswer, ParticipantError> {
        // PostgreSQL waits for its locks itself (up to lock_timeout): `may_wait` changes
        // nothing here, and the answer is always an outcome.
        let cx = twopc_participant::PrepareContext {
            timeout: None,
            submitted_by: cx.submitted_by,
        };
        let outcome = match self.prepare(coordinator, txid, ops, cx).await? {
            PrepareOutcome::Yes => {
                let result = self
                    .apply_decision(Some(coordinator), txid, Decision::Commit)
                    .await?;
                let result = if result == AckResult::Applied {
                    AckResult::Applied
                } else {
                    AckResult::AlreadyApplied
                };
                OnePhaseOutcome {
                    decision: Decision::Commit,
                    result,
                    reason: None,
                }
            }
            PrepareOutcome::ReadOnly => OnePhaseOutcome {
                decision: Decision::Commit,
                result: AckResult::Applied,
                reason: None,
            },
            PrepareOutcome::No { reason, .. } => OnePhaseOutcome {
                decision: Decision::Abort,
                result: AckResult::Applied,
                reason: Some(reason),
            },
            PrepareOutcome::Blocked(b) => OnePhaseOutcome {
                decision: Decision::Abort,
                result: AckResult::Applied,
                reason: Some(format!("{} is locked by {}", b.what, b.holder)),
            },
        };
        Ok(OnePhaseAnswer::Decided(outcome))
    }

    fn waits_inside(&self) -> bool {
        true
    }

    async fn waits(&self) -> Result<Vec<Wait>, ParticipantError> {
        let by_pid: HashMap<i32, TxId> = self
            .running
            .lock()
            .expect("running prepares")
            .iter()
            .map(|(t, r)| (r.backend_pid, t.clone()))
            .collect();
        if by_pid.is_empty() {
            return Ok(Vec::new());
        }
        let pids: Vec<i32> = by_pid.keys().copied().collect();
        let rows = self.read_retrying(LOCK_WAITS, &[&pids]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let waiter = by_pid.get(&r.get::<_, i32>(0))?.clone();
                let holder = match (r.get::<_, Option<i32>>(1), r.get::<_, Option<String>>(2)) {
                    (Some(pid), _) => by_pid.get(&pid)?.clone(),
                    (None, Some(gid)) => parse_gid(&gid)?.1,
                    (None, None) => return None,
                };
                let waited_ms = r.get::<_, Option<i64>>(3).unwrap_or(0).max(0) as u64;
                Some(Wait {
                    waiter,
                    holder,
                    waited_ms,
                })
            })
            .collect())
    }

    async fn cancel(&self, txid: &TxId) {
        let token = {
            let mut running = self.running.lock().expect("running prepares");
            let Some(r) = running.get_mut(txid) else {
                return;
            };
            r.cancelled = true;
            r.cancel.clone()
        };
        let _ = token.cancel_query(NoTls).await;
    }

    async fn list_prepared(&self) -> Result<Vec<PreparedTx>, ParticipantError> {
        let rows = self
            .read_retrying(
                "SELECT gid, (extract(epoch FROM prepared) * 1000)::bigint \
                 FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared",
                &[],
            )
            .await?;
        let now = now_ms();
        Ok(rows
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
