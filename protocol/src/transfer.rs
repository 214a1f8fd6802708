//! The bank transfer: the sample workload of the CLI's load generator and the web app.
//!
//! Accounts live in both stores: a row `accounts(id, balance)` in Postgres and a key
//! `balance:<id>` in Redis. A transfer moves `amount` from one account to the other in each;
//! the Redis side is guarded (`min 0` on the source), so a transfer larger than the balance
//! makes the Redis participant vote NO and the whole transaction abort.

use crate::ops::{Operations, RedisGuard, RedisOp, SqlStatement};

/// The Postgres side: two bound `UPDATE`s of `accounts`, the lower account id first, as any
/// careful transfer does: two transfers over the same pair of accounts then lock the rows in
/// the same order and cannot deadlock inside PostgreSQL. Each carries its account id as its
/// `shard_key`, so the same transfer works against a sharded bank.
pub fn sql_transfer(from: u64, to: u64, amount: i64) -> Operations {
    let update = |sign: char, id: u64| SqlStatement {
        query: format!("UPDATE accounts SET balance = balance {sign} $1 WHERE id = $2"),
        params: vec![amount.into(), id.into()],
        // The account: where its row lives when the participant is sharded.
        shard_key: Some(id.into()),
    };
    let mut updates = vec![update('-', from), update('+', to)];
    if to < from {
        updates.reverse();
    }
    Operations::Sql(updates)
}

/// The Redis side: `INCRBY balance:<from> -amount` (never below 0), `INCRBY balance:<to> amount`.
pub fn redis_transfer(from: u64, to: u64, amount: i64) -> Operations {
    let incrby = |id: u64, by: i64, min: Option<i64>| RedisOp::Incrby {
        key: format!("balance:{id}"),
        by,
        min,
        max: None,
        guard: RedisGuard::default(),
    };
    Operations::Redis(vec![
        incrby(from, -amount, Some(0)),
        incrby(to, amount, None),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_pin_their_json() {
        assert_eq!(
            serde_json::to_string(&sql_transfer(1, 2, 10)).unwrap(),
            r#"{"sql":[{"query":"UPDATE accounts SET balance = balance - $1 WHERE id = $2","params":[10,1],"shard_key":1},{"query":"UPDATE accounts SET balance = balance + $1 WHERE id = $2","params":[10,2],"shard_key":2}]}"#
        );
        assert_eq!(
            serde_json::to_string(&redis_transfer(3, 4, 5)).unwrap(),
            r#"{"redis":[{"op":"incrby","key":"balance:3","by":-5,"min":0},{"op":"incrby","key":"balance:4","by":5}]}"#
        );
    }
}
