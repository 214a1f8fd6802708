//! `twopc-demo`: starts the whole twopc stack locally and keeps it running until Ctrl-C.
//!
//! Run through `scripts/demo.sh`, which first builds everything. Services get fixed ports so
//! the printed psql / redis-cli / curl lines can be pasted as they are, and their addresses
//! are written to `.demo/connections.env` for scripts. Everything runs in throwaway
//! directories that are removed again on Ctrl-C.

use std::fmt::Write as _;
use std::path::Path;
use twopc_tests::{PgCluster, PgOptions, RedisServer};

const PG_PORT: u16 = 54329;
const REDIS_PORT: u16 = 63799;

fn main() {
    if let Err(e) = run() {
        eprintln!("twopc-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let root = twopc_tests::repo_root();
    eprintln!("starting PostgreSQL 15 on 127.0.0.1:{PG_PORT} ...");
    let pg = PgCluster::start(PgOptions {
        port: Some(PG_PORT),
        databases: vec!["bank".into()],
        ..PgOptions::default()
    })?;
    eprintln!("starting redis-server on 127.0.0.1:{REDIS_PORT} (appendfsync always) ...");
    let redis = RedisServer::start_on(Some(REDIS_PORT))?;

    pg.psql_ok(
        "bank",
        "CREATE EXTENSION IF NOT EXISTS pg_twopc_ext;
         CREATE TABLE IF NOT EXISTS accounts(id int PRIMARY KEY, owner text NOT NULL,
                                             balance bigint NOT NULL CHECK (balance >= 0));
         INSERT INTO accounts VALUES (1, 'alice', 100), (2, 'bob', 100)
         ON CONFLICT (id) DO NOTHING;",
    )?;

    let pg_url = pg.url("bank");
    let redis_url = redis.url();
    let env_dir = root.join(".demo");
    std::fs::create_dir_all(&env_dir)?;
    let mut env = String::new();
    writeln!(env, "PG_URL={pg_url}")?;
    writeln!(env, "REDIS_URL={redis_url}")?;
    std::fs::write(env_dir.join("connections.env"), &env)?;

    print_banner(&pg_url, &redis_url, &env_dir.join("connections.env"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    eprintln!("\nstopping ...");
    let _ = std::fs::remove_file(env_dir.join("connections.env"));
    drop(redis);
    drop(pg);
    eprintln!("stopped; all demo data removed");
    Ok(())
}

fn print_banner(pg_url: &str, redis_url: &str, env_file: &Path) {
    println!(
        "
twopc demo is running. Ctrl-C stops everything.

  PostgreSQL 15  {pg_url}   (extension pg_twopc_ext installed, table accounts seeded)
  Redis          {redis_url}   (appendonly yes, appendfsync always)
  addresses      {env}

Try a prepared transaction by hand (two terminals):
  psql '{pg_url}' -c \"BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;\" \\
                  -c \"SELECT twopc.prepare('demo-1');\"
  psql '{pg_url}' -c 'SELECT * FROM twopc.in_doubt;'
  psql '{pg_url}' -c \"SELECT twopc.commit_prepared('demo-1');\"
  redis-cli -u {redis_url} INCRBY balance:1 -10
",
        env = env_file.display()
    );
}
