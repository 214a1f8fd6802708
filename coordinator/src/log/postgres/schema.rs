//! The decision log's tables in PostgreSQL, created on first use.
//!
//! Two tables in schema `twopc_log`:
//!
//! * `lease`: one row per coordinator id: who holds it (`holder`, a name unique to one
//!   process run), at which `epoch` (raised by every new holder), until when (`expires_at`, by
//!   the database's clock, never the coordinators'), the holder's API address, and whether the
//!   holder gave it up cleanly (`released`).
//! * `decision`: one row per decided transaction of a coordinator id: its decision and what
//!   recovery and the outcome index need (the columns of [`super::super::LogRecord`]), `ended`
//!   once every participant acknowledged, and the `epoch` it was written at. The first decision
//!   for a txid wins (`ON CONFLICT DO NOTHING` on the primary key), as in the file log.
//!
//! Several coordinators may create the schema at the same moment; `CREATE ... IF NOT EXISTS`
//! is not safe against itself under concurrency (two creators can both miss the catalog entry
//! and one fails on a unique index of the catalog), so creation runs under a transaction-level
//! advisory lock.

/// The advisory lock key that serialises schema creation (an arbitrary constant: "twopclog").
const SCHEMA_LOCK: i64 = 0x7477_6f70_636c_6f67;

/// Creates the schema and tables if they do not exist.
pub(super) async fn ensure(
    client: &mut tokio_postgres::Client,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(DDL).await?;
    tx.commit().await
}

const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS twopc_log;
CREATE TABLE IF NOT EXISTS twopc_log.lease (
    coordinator_id text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL CHECK (epoch > 0),
    expires_at timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    address text
);
-- Set by a holder that gave the id up cleanly (nothing left to do for it); a lease that
-- expired without it was lost to a crash or a pause, and survivors take the id over.
ALTER TABLE twopc_log.lease ADD COLUMN IF NOT EXISTS released boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS twopc_log.decision (
    coordinator_id text NOT NULL,
    txid text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    decision text NOT NULL CHECK (decision IN ('commit', 'abort')),
    participants jsonb NOT NULL DEFAULT '[]',
    body_hash bigint NOT NULL,
    at_ms bigint NOT NULL,
    reason text,
    client text,
    ended boolean NOT NULL DEFAULT false,
    heuristics jsonb NOT NULL DEFAULT '[]',
    epoch bigint NOT NULL,
    PRIMARY KEY (coordinator_id, txid)
);
CREATE INDEX IF NOT EXISTS decision_pending
    ON twopc_log.decision (coordinator_id, seq) WHERE decision = 'commit' AND NOT ended;
-- GET /v1/transactions/{id} on any coordinator finds a decision by txid (or client txid).
CREATE INDEX IF NOT EXISTS decision_txid ON twopc_log.decision (txid);
CREATE INDEX IF NOT EXISTS decision_client
    ON twopc_log.decision (client) WHERE client IS NOT NULL;
CREATE INDEX IF NOT EXISTS decision_at
    ON twopc_log.decision (coordinator_id, at_ms);
CREATE INDEX IF NOT EXISTS decision_finished
    ON twopc_log.decision (coordinator_id, seq) WHERE ended OR decision = 'abort';
";
