//! The extension's own tables, written and read below SQL.
//!
//! # Why a row inside the prepared transaction
//!
//! `twopc.prepare()` inserts one row into `twopc.tracking` *inside the transaction it is about
//! to prepare*. That row costs no extra disk flush: it is WAL-logged with the transaction's
//! other changes and made durable by the flush PREPARE TRANSACTION does anyway. It then
//! behaves exactly like the transaction:
//!
//! * while the transaction is prepared (in doubt) the row exists on disk but is invisible to
//!   every MVCC snapshot; it survives `pg_ctl stop -m immediate` because it is all WAL;
//! * when the transaction commits, the row becomes visible: a visible tracking row *is* the
//!   commit marker (the technique Citus uses for `pg_dist_transaction`);
//! * when it aborts, the row is dead: an aborted xmin, found by a non-MVCC scan, is positive
//!   evidence of the abort, and no row at all is read as abort (presumed abort).
//!
//! When `twopc.commit_prepared()` commits it, the row also gets the finish stamp (who, when,
//! via which path) in place, which is what `twopc.history` shows for it ([`stamp_commit`]).
//!
//! # Why below SQL
//!
//! Reading in-doubt rows needs a scan with `SnapshotAny` and a look at each tuple's raw xmin,
//! which SQL cannot express. Writing is a heap insert plus index maintenance ([`insert::insert_row`])
//! rather than SPI: there is no parse/plan per call on the hot path, and the
//! bookkeeping does not depend on the caller holding INSERT privileges on the twopc tables,
//! so `EXECUTE` on the functions is the only capability a role needs (see the README's
//! security section). All SQL-visible reads (views, `outcome`) use normal privileges.
//!
//! Both scans use `systable_beginscan` with `SnapshotAny`: with an index (`tracking_gid_idx`)
//! to look up one gid, without one for the full scan behind `twopc.tracking_in_doubt()`.
//! With a non-MVCC snapshot the heap scan runs tuple at a time and returns every tuple that has
//! not been pruned away, whatever its visibility.
//!
//! # Layout
//!
//! * `tables`: the table definitions (the extension script's `CREATE TABLE`s) beside the
//!   column numbers the code below SQL uses, and the per-backend cache of their oids.
//! * `insert`: one heap + index insert for all four tables, and a writer per table.
//! * `stamp`: the in-place finish stamp on a committed tracking row.
//! * `recent`: where this backend put the tracking rows of the transactions it prepared, so
//!   that finishing one on the same session reads its row without an index scan.
//! * `scan`: `SnapshotAny` and MVCC scans by gid, and how a tuple's xmin is classified.

mod insert;
mod recent;
mod scan;
mod stamp;
mod tables;

pub use insert::{insert_decision, insert_finish_log, insert_submitter, insert_tracking};
pub use scan::{history_decision, scan, submitter_in_progress, TrackedTuple, XminStatus};
pub use stamp::{prepared_rows, stamp_commit, PreparedRow};
pub use tables::{relid, schema_generation, SCHEMA};
