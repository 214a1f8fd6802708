//! `twopc-demo`: starts the whole twopc stack locally and keeps it running until Ctrl-C.
//!
//! Run through `scripts/demo.sh`, which first builds everything. It starts PostgreSQL 15 with
//! pg_twopc_ext preloaded (its background worker is the `bank` participant), redis-server with
//! the Redis participant (`ledger`), and the coordinator serving the web app, all on fixed
//! ports so the printed psql / redis-cli / curl lines can be pasted as they are. It seeds a
//! bank-transfer example (accounts in Postgres, balances mirrored in Redis), writes the
//! addresses to `.demo/connections.env`, and supervises the coordinator: if it dies (the web
//! app's "crash the coordinator" button does exactly that) it is started again on the same
//! data directory, which is crash recovery. Ctrl-C stops everything and removes the data.
//!
//! `--ha`: three coordinators instead of one (ids c1, c2, c3 on ports 7700, 7701, 7702, each
//! supervised the same way), their decision log in a PostgreSQL cluster of its own with a
//! synchronous streaming standby, reached through a multi-host URL that follows a promoted
//! standby. A coordinator that dies has its id taken over by a survivor, which finishes its
//! transactions; the restarted one claims its id back.
//!
//! `--sharded`: `bank` on two PostgreSQL clusters and `ledger` on three redis-servers, as the
//! shards of two logical participants (issue 18), on ports the system picks; every account's
//! row and key seeded on the shard it routes to; `PG_URLS` and `REDIS_URLS` in
//! `connections.env`.

use std::fmt::Write as _;
use std::time::Duration;
use twopc_tests::stack::{Binaries, Stack, StackOptions};

const PG_PORT: u16 = 54329;
const REDIS_PORT: u16 = 63799;
const BANK_PORT: u16 = 7801;
const LEDGER_PORT: u16 = 7802;
const COORDINATOR_PORT: u16 = 7700;
/// `--ha`: the further coordinators' ids and ports.
const MORE_COORDINATORS: [(&str, u16); 2] = [("c2", 7701), ("c3", 7702)];

fn main() {
    if let Err(e) = run() {
        eprintln!("twopc-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (ha, sharded) = match std::env::args().nth(1).as_deref() {
        None => (false, false),
        Some("--ha") => (true, false),
        Some("--sharded") => (false, true),
        Some(other) => {
            return Err(
                format!("unknown argument {other:?} (the options are --ha and --sharded)").into(),
            )
        }
    };
    let root = twopc_tests::repo_root();
    let demo_dir = root.join(".demo");
    std::fs::create_dir_all(&demo_dir)?;
    let coordinator_data = demo_dir.join("coordinator");
    // A fresh demo every time: the seeded balances and the decision log start together.
    let _ = std::fs::remove_dir_all(&coordinator_data);
    // One API client with every scope: its token is printed and written to connections.env;
    // the configuration holds only its digest.
    let token = twopc_coordinator::clients::random_token()?;
    let client = format!(
        "\n# The demo's client (its token is COORDINATOR_TOKEN in .demo/connections.env).\n\
         [[client]]\nname = \"demo\"\ntoken_sha256 = [\"{}\"]\n\
         scopes = [\"submit\", \"read\", \"events\", \"faults\"]\n\
         requests_per_sec = 0\nmax_in_flight = 4096\n",
        twopc_coordinator::clients::token_digest_hex(&token)
    );
    if sharded {
        return run_sharded(&root, &demo_dir, &token, &client);
    }
    // The documented example configuration with that client added.
    let example = std::fs::read_to_string(root.join("coordinator/example.toml"))?;
    let demo_config = demo_dir.join("coordinator.toml");
    std::fs::write(&demo_config, format!("{example}{client}"))?;
    eprintln!("starting PostgreSQL, Redis, both participants and the coordinator ...");
    let mut stack = Stack::start(
        &Binaries::next_to_current_exe(),
        StackOptions {
            pg_port: Some(PG_PORT),
            redis_port: Some(REDIS_PORT),
            bank_port: Some(BANK_PORT),
            ledger_port: Some(LEDGER_PORT),
            coordinator_port: COORDINATOR_PORT,
            coordinator_data: Some(coordinator_data),
            web_dir: Some(root.join("web/dist")),
            accounts: 2,
            initial_balance: 100,
            prepare_timeout_ms: 5000,
            decision_timeout_ms: 10_000,
            fault_injection: true,
            // The documented example configuration (its ports are the ones above); with
            // --ha a generated one, which adds the shared decision log.
            coordinator_config_file: (!ha).then(|| demo_config.clone()),
            coordinator_settings: Vec::new(),
            postgres_decision_log: ha.then_some(3000),
            log_standby: ha,
            coordinator_tables: if ha { client.clone() } else { String::new() },
            api_token: Some(token.clone()),
            tls: false,
        },
    )?;
    let mut more = Vec::new();
    // Their configurations hold the participant tokens: in a directory removed at exit.
    let more_dir = tempfile::Builder::new().prefix("twopc-demo-").tempdir()?;
    if ha {
        for (id, port) in MORE_COORDINATORS {
            let (p, url) = stack.spawn_coordinator_on(
                &Binaries::next_to_current_exe(),
                id,
                port,
                more_dir.path(),
            )?;
            more.push((id, p, url));
        }
    }
    let pg_url = stack.pg.url("bank");
    let redis_url = stack.redis.url();
    let coordinator_url = stack.coordinator_url.clone();
    let mut env = String::new();
    writeln!(env, "PG_URL={pg_url}")?;
    writeln!(env, "REDIS_URL={redis_url}")?;
    writeln!(env, "COORDINATOR_URL={coordinator_url}")?;
    writeln!(env, "COORDINATOR_TOKEN={token}")?;
    if ha {
        let urls: Vec<&str> = std::iter::once(coordinator_url.as_str())
            .chain(more.iter().map(|(_, _, u)| u.as_str()))
            .collect();
        writeln!(env, "COORDINATOR_URLS={}", urls.join(","))?;
        if let (Some(log), Some(standby)) = (&stack.log_pg, &stack.log_standby) {
            writeln!(env, "LOG_PG_URL={}", log.url("twopc_log"))?;
            writeln!(env, "LOG_STANDBY_URL={}", standby.url("twopc_log"))?;
        }
    }
    let env_file = demo_dir.join("connections.env");
    std::fs::write(&env_file, &env)?;
    print_banner(
        &pg_url,
        &redis_url,
        &coordinator_url,
        &env_file.display().to_string(),
        &token,
    );
    if ha {
        print_ha_banner(&stack, &more);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = term.recv() => return Ok(()),
                _ = check.tick() => {
                    if !stack.coordinator.is_running() {
                        eprintln!("[supervisor] the coordinator exited; restarting it (crash recovery from its decision log)");
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if let Err(e) = stack.restart_coordinator(&[]) {
                            eprintln!("[supervisor] restart failed: {e}; retrying");
                        }
                    }
                    for (id, p, _) in more.iter_mut() {
                        if !p.is_running() {
                            eprintln!("[supervisor] coordinator {id} exited; restarting it (it claims its id back once a survivor has finished its transactions)");
                            if let Err(e) = p.start() {
                                eprintln!("[supervisor] restart failed: {e}; retrying");
                            }
                        }
                    }
                    if !stack.ledger.is_running() {
                        eprintln!("[supervisor] the Redis participant exited; restarting it");
                        if let Err(e) = stack.ledger.start() {
                            eprintln!("[supervisor] restart failed: {e}; retrying");
                        }
                    }
                }
            }
        }
    })?;
    eprintln!("\nstopping ...");
    stack.coordinator.terminate();
    for (_, p, _) in more.iter_mut() {
        p.terminate();
    }
    stack.ledger.terminate();
    let _ = std::fs::remove_file(&env_file);
    drop(stack);
    eprintln!("stopped; all demo data removed");
    Ok(())
}

fn print_banner(pg_url: &str, redis_url: &str, coordinator_url: &str, env_file: &str, token: &str) {
    println!(
        r#"
twopc demo is running. Ctrl-C stops everything.

  web app        {coordinator_url}/
  coordinator    {coordinator_url}   (participants: bank = Postgres, ledger = Redis)
  PostgreSQL 15  {pg_url}   (pg_twopc_ext preloaded; table accounts)
  Redis          {redis_url}   (appendonly yes, appendfsync always; keys balance:1, balance:2)
  addresses      {env_file}
  client token   {token}
                 (every scope; the web app asks for it once per tab)

The lines below read the token from the environment; load it first:
  set -a; . {env_file}; set +a

A transfer of 10 from account 1 to account 2, atomically in both stores:
  curl -s {coordinator_url}/v1/transactions -H "authorization: Bearer $COORDINATOR_TOKEN" -H 'content-type: application/json' -d '{{
    "participants": {{
      "bank":   {{"sql": [{{"query": "UPDATE accounts SET balance = balance - $1 WHERE id = $2", "params": [10, 1]}},
                          {{"query": "UPDATE accounts SET balance = balance + $1 WHERE id = $2", "params": [10, 2]}}]}},
      "ledger": {{"redis": [{{"op": "incrby", "key": "balance:1", "by": -10, "min": 0}},
                           {{"op": "incrby", "key": "balance:2", "by": 10}}]}}}}}}'

One that fails a guard (the ledger votes NO, nothing changes anywhere):
  curl -s {coordinator_url}/v1/transactions -H "authorization: Bearer $COORDINATOR_TOKEN" -H 'content-type: application/json' -d '{{
    "participants": {{"bank": {{"sql": [{{"query": "UPDATE accounts SET balance = balance - 1 WHERE id = 1"}}]}},
                      "ledger": {{"redis": [{{"op": "incrby", "key": "balance:1", "by": -1000, "min": 0}}]}}}}}}'

Look at both stores:
  psql '{pg_url}' -c 'SELECT * FROM accounts ORDER BY id' -c 'SELECT * FROM twopc.in_doubt' -c 'SELECT * FROM twopc.history'
  redis-cli -u {redis_url} MGET balance:1 balance:2
  curl -s {coordinator_url}/v1/participants -H "authorization: Bearer $COORDINATOR_TOKEN"
  curl -s {coordinator_url}/metrics -H "authorization: Bearer $COORDINATOR_TOKEN" | grep ^twopc_

Load: TWOPC_TOKEN=$COORDINATOR_TOKEN target/debug/twopc-coordinator load --url {coordinator_url} -n 2000 -c 16 --accounts 2
"#
    );
}

fn print_ha_banner(stack: &Stack, more: &[(&str, twopc_tests::stack::Proc, String)]) {
    let c1 = &stack.coordinator_url;
    let log = stack
        .log_pg
        .as_ref()
        .map(|p| p.url("twopc_log"))
        .unwrap_or_default();
    let standby = stack
        .log_standby
        .as_ref()
        .map(|p| p.url("twopc_log"))
        .unwrap_or_default();
    println!("High availability (--ha): three coordinators on one decision log.");
    println!("  coordinator c1 {c1}");
    for (id, _, url) in more {
        println!("  coordinator {id} {url}");
    }
    println!("  decision log   {log}   (synchronous standby: {standby})");
    println!();
    println!("Who holds which coordinator id (holder, epoch, lease):");
    println!("  curl -s {c1}/v1/coordinators -H \"authorization: Bearer $COORDINATOR_TOKEN\"");
    println!("Kill one (its id is taken over by a survivor, then given back when it restarts):");
    println!("  kill -9 $(pgrep -f 'coordinator-c2.toml')");
    println!("  psql '{log}' -c 'SELECT coordinator_id, holder, epoch, expires_at, released FROM twopc_log.lease'");
    println!();
}

/// `--sharded`: the sharded stack, until Ctrl-C.
fn run_sharded(
    root: &std::path::Path,
    demo_dir: &std::path::Path,
    token: &str,
    client: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use twopc_tests::sharded::{ShardedOptions, ShardedStack};
    const ACCOUNTS: u32 = 10;
    eprintln!("starting 2 PostgreSQL shards, 3 Redis shards with their participants, and the coordinator ...");
    let stack = ShardedStack::start_with(
        &Binaries::next_to_current_exe(),
        (2, 3, ACCOUNTS),
        ShardedOptions {
            coordinator_port: COORDINATOR_PORT,
            web_dir: Some(root.join("web/dist")),
            coordinator_tables: client.to_owned(),
            api_token: Some(token.to_owned()),
        },
    )?;
    let pg_urls: Vec<String> = stack.bank.iter().map(|b| b.pg.url("bank")).collect();
    let redis_urls: Vec<String> = stack.ledger.iter().map(|l| l.redis.url()).collect();
    let url = stack.coordinator_url.clone();
    let mut env = String::new();
    writeln!(env, "PG_URLS={}", pg_urls.join(","))?;
    writeln!(env, "REDIS_URLS={}", redis_urls.join(","))?;
    writeln!(env, "COORDINATOR_URL={url}")?;
    writeln!(env, "COORDINATOR_TOKEN={token}")?;
    let env_file = demo_dir.join("connections.env");
    std::fs::write(&env_file, &env)?;
    // Two accounts whose rows and keys sit on different shards, for the printed transfer.
    let row = |id: u32| ShardedStack::shard_of_row(&stack.bank_ring, id).to_owned();
    let key = |id: u32| {
        stack
            .ledger_ring
            .route_redis(&format!("balance:{id}"))
            .to_owned()
    };
    let (a, b) = (1..=ACCOUNTS)
        .flat_map(|a| (1..=ACCOUNTS).map(move |b| (a, b)))
        .find(|&(a, b)| row(a) != row(b) && key(a) != key(b))
        .ok_or("no two accounts on different shards")?;
    println!("\ntwopc demo (sharded) is running. Ctrl-C stops everything.\n");
    println!("  web app        {url}/");
    println!("  coordinator    {url}   (bank = 2 PostgreSQL shards, ledger = 3 Redis shards)");
    for (b, u) in stack.bank.iter().zip(&pg_urls) {
        println!("  bank/{}       {u}", b.name);
    }
    for (l, u) in stack.ledger.iter().zip(&redis_urls) {
        println!("  ledger/{}      {u}", l.name);
    }
    println!("  addresses      {}", env_file.display());
    println!("  client token   {token}");
    println!("\nAccounts 1..{ACCOUNTS}: each row and each balance:<id> on the shard it routes to.");
    println!("The lines below read the token from the environment; load it first:");
    println!("  set -a; . {}; set +a", env_file.display());
    println!(
        "\nA transfer of 10 from account {a} (bank/{}, ledger/{}) to account {b} (bank/{}, ledger/{}):",
        row(a),
        key(a),
        row(b),
        key(b)
    );
    println!(
        "  curl -s {url}/v1/transactions -H \"authorization: Bearer $COORDINATOR_TOKEN\" -H 'content-type: application/json' -d '{{
    \"participants\": {{
      \"bank\":   {{\"sql\": [{{\"query\": \"UPDATE accounts SET balance = balance - $1 WHERE id = $2\", \"params\": [10, {a}], \"shard_key\": {a}}},
                          {{\"query\": \"UPDATE accounts SET balance = balance + $1 WHERE id = $2\", \"params\": [10, {b}], \"shard_key\": {b}}}]}},
      \"ledger\": {{\"redis\": [{{\"op\": \"incrby\", \"key\": \"balance:{a}\", \"by\": -10, \"min\": 0}},
                           {{\"op\": \"incrby\", \"key\": \"balance:{b}\", \"by\": 10}}]}}}}}}'"
    );
    println!("\nWhere each shard stands:");
    println!("  curl -s {url}/v1/participants -H \"authorization: Bearer $COORDINATOR_TOKEN\"");
    println!(
        "\nLoad: TWOPC_TOKEN=$COORDINATOR_TOKEN target/debug/twopc-coordinator load --url {url} -n 2000 -c 16 --accounts {ACCOUNTS}"
    );
    let data: Vec<String> = stack
        .ledger
        .iter()
        .zip(&redis_urls)
        .map(|(l, u)| format!("--data {}={u}", l.name))
        .collect();
    println!(
        "What a fourth ledger shard would take (README, Sharded participants):\n  target/debug/twopc-coordinator reshard --plan --config {} --participant ledger --add r4 {}\n",
        stack.config_path.display(),
        data.join(" ")
    );
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
    let _ = std::fs::remove_file(&env_file);
    drop(stack);
    eprintln!("stopped; all demo data removed");
    Ok(())
}
