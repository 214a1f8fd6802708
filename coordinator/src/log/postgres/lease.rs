//! Owning a coordinator id: a lease row in the log database.
//!
//! A coordinator may write decisions for an id only while it holds that id's lease: the row
//! `twopc_log.lease(coordinator_id)` names it as `holder` at `epoch`, and `expires_at` lies in
//! the future *by the database's clock*. Every claim of an id by a new holder raises the epoch,
//! so (id, epoch) names one holder for all time, and a holder that lost its lease can never
//! win it back under the same epoch. The holder name is unique to one process run, so a
//! restarted coordinator is a new holder too: it waits until the old run's lease has expired
//! (or was released by a clean shutdown) before it claims the id.
//!
//! The fencing itself is not here but in every decision write ([`super::writer`]): the write
//! and a `FOR SHARE` check of this row at the holder's epoch are one statement, and a claim
//! is an `UPDATE` of the same row, so PostgreSQL orders the two: a decision either commits
//! before the claim (and the claimant, reading the log after its claim, sees it) or finds the
//! row changed and writes nothing.

use tokio_postgres::Client;
use twopc_protocol::CoordinatorId;

/// A lease this process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The coordinator id it is for.
    pub coordinator: String,
    /// This process run's holder name.
    pub holder: String,
    /// The epoch it was claimed at.
    pub epoch: i64,
}

/// Who holds an id's lease now, as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The holder's name.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
    /// Milliseconds until it expires (0: expired).
    pub expires_in_ms: i64,
}

/// Claims `coordinator`'s lease for `holder` if nobody holds it (no row yet, or the row's
/// lease expired): `Ok(Ok(lease))`; otherwise `Ok(Err(state))` with the current holder.
pub(super) async fn claim(
    client: &Client,
    coordinator: &str,
    holder: &str,
    ttl_ms: u64,
    address: &str,
) -> Result<Result<Lease, LeaseState>, tokio_postgres::Error> {
    let ttl = ttl_ms as i64;
    let row = client
        .query_opt(
            "INSERT INTO twopc_log.lease AS l (coordinator_id, holder, epoch, expires_at, address)
             VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond', $4)
             ON CONFLICT (coordinator_id) DO UPDATE
                SET holder = EXCLUDED.holder, epoch = l.epoch + 1,
                    expires_at = EXCLUDED.expires_at, acquired_at = now(),
                    address = EXCLUDED.address, released = false
                WHERE l.expires_at <= now()
             RETURNING epoch",
            &[&coordinator, &holder, &ttl, &address],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Ok(Lease {
            coordinator: coordinator.to_owned(),
            holder: holder.to_owned(),
            epoch: row.get(0),
        }));
    }
    let row = client
        .query_opt(
            "SELECT holder, epoch,
                    greatest(0, (extract(epoch FROM expires_at - now()) * 1000)::bigint)
             FROM twopc_log.lease WHERE coordinator_id = $1",
            &[&coordinator],
        )
        .await?;
    Ok(Err(match row {
        Some(r) => LeaseState {
            holder: r.get(0),
            epoch: r.get(1),
            expires_in_ms: r.get(2),
        },
        // Released and deleted in between: the next claim will find no row.
        None => LeaseState {
            holder: String::new(),
            epoch: 0,
            expires_in_ms: 0,
        },
    }))
}

/// Extends `lease` by `ttl_ms` from now (database clock). `Ok(false)`: the id has another
/// holder or epoch now; the lease is lost for good. Renewing a lease that expired but was not
/// claimed by anyone succeeds: nobody else can have written under it.
pub(super) async fn renew(
    client: &Client,
    lease: &Lease,
    ttl_ms: u64,
) -> Result<bool, tokio_postgres::Error> {
    let ttl = ttl_ms as i64;
    let n = client
        .execute(
            "UPDATE twopc_log.lease SET expires_at = now() + $4::bigint * interval '1 millisecond'
             WHERE coordinator_id = $1 AND holder = $2 AND epoch = $3",
            &[&lease.coordinator, &lease.holder, &lease.epoch, &ttl],
        )
        .await?;
    Ok(n == 1)
}

/// Gives the lease up at once (clean shutdown), so a successor need not wait for it to
/// expire. The row stays, with its epoch, so the next claim raises it.
pub(super) async fn release(client: &Client, lease: &Lease) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE twopc_log.lease SET expires_at = now(), released = true
             WHERE coordinator_id = $1 AND holder = $2 AND epoch = $3",
            &[&lease.coordinator, &lease.holder, &lease.epoch],
        )
        .await?;
    Ok(())
}

/// One row of the lease table, as `GET /v1/coordinators` and the takeover watcher see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    /// The coordinator id.
    pub coordinator: CoordinatorId,
    /// Its current (or last) holder.
    pub holder: String,
    /// The holder's epoch.
    pub epoch: i64,
    /// Milliseconds until the lease expires (negative: expired that long ago).
    pub expires_in_ms: i64,
    /// The holder's API address, as it recorded it.
    pub address: Option<String>,
    /// The holder gave the id up cleanly.
    pub released: bool,
}

impl LeaseRow {
    /// Held by a live holder: not expired (by the database's clock when it was read).
    pub fn live(&self) -> bool {
        self.expires_in_ms > 0
    }
}

/// Every coordinator id's lease (a row whose id is not a valid coordinator id, which no
/// coordinator could have written, is left out).
pub(super) async fn list(client: &Client) -> Result<Vec<LeaseRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT coordinator_id, holder, epoch,
                    (extract(epoch FROM expires_at - now()) * 1000)::bigint, address, released
             FROM twopc_log.lease ORDER BY coordinator_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(LeaseRow {
                coordinator: CoordinatorId::new(r.get::<_, String>(0)).ok()?,
                holder: r.get(1),
                epoch: r.get(2),
                expires_in_ms: r.get(3),
                address: r.get(4),
                released: r.get(5),
            })
        })
        .collect())
}
