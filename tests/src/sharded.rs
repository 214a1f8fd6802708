//! A sharded stack (issue 18): `bank` on several PostgreSQL clusters, each with the
//! extension's worker as its participant endpoint, and `ledger` on several redis-servers, each
//! with a Redis participant; one coordinator whose configuration lists them as the shards of
//! two logical participants.
//!
//! Accounts `1..=N` are seeded where the coordinator will look for them: each `accounts` row
//! on the bank shard its id routes to, each `balance:<id>` key on the ledger shard that key
//! routes to ([`twopc_protocol::shard`], the same function the coordinator routes with).

use crate::coordinator_config::CoordinatorConfig;
use crate::stack::{
    bank_worker_settings, http_get, http_get_as, seed_balances, seed_bank, Binaries, Proc,
};
use crate::{util, PgCluster, PgOptions, RedisServer, Result};
use std::time::Duration;
use twopc_protocol::shard::{Ring, RouteKey};

/// One bank shard: a PostgreSQL cluster and its worker's address.
pub struct BankShard {
    /// The shard's name (`pg1`, ...).
    pub name: String,
    /// The cluster.
    pub pg: PgCluster,
    /// The worker's `host:port`.
    pub addr: String,
    token: String,
}

/// One ledger shard: a redis-server and the Redis participant in front of it.
pub struct LedgerShard {
    /// The shard's name (`r1`, ...).
    pub name: String,
    /// The redis-server.
    pub redis: RedisServer,
    /// The Redis participant process.
    pub participant: Proc,
    /// The participant's `host:port`.
    pub addr: String,
    token: String,
}

/// The whole sharded stack; dropping it stops everything.
pub struct ShardedStack {
    /// The bank's shards.
    pub bank: Vec<BankShard>,
    /// The ledger's shards.
    pub ledger: Vec<LedgerShard>,
    /// Where the bank's rows live.
    pub bank_ring: Ring,
    /// Where the ledger's keys live.
    pub ledger_ring: Ring,
    /// The coordinator.
    pub coordinator: Proc,
    /// Its base URL.
    pub coordinator_url: String,
    /// Its configuration file.
    pub config_path: std::path::PathBuf,
    /// Accounts `1..=accounts`.
    pub accounts: u32,
    /// Every account's starting balance.
    pub initial_balance: i64,
    api_token: Option<String>,
    _dir: tempfile::TempDir,
}

/// What [`ShardedStack::start_with`] starts beyond the shards (the demo's needs).
#[derive(Debug, Clone, Default)]
pub struct ShardedOptions {
    /// The coordinator's port (0: any free one).
    pub coordinator_port: u16,
    /// The web app the coordinator serves.
    pub web_dir: Option<std::path::PathBuf>,
    /// Extra TOML tables for the coordinator (`[[client]]`, ...).
    pub coordinator_tables: String,
    /// The API token the stack's own requests send (with clients configured).
    pub api_token: Option<String>,
}

impl ShardedStack {
    /// Starts `bank_shards` PostgreSQL clusters, `ledger_shards` redis-servers with their
    /// participants, and the coordinator, with `accounts` accounts of 100 each; returns once
    /// the coordinator has every shard connected.
    pub fn start(
        bins: &Binaries,
        bank_shards: usize,
        ledger_shards: usize,
        accounts: u32,
    ) -> Result<ShardedStack> {
        Self::start_with(
            bins,
            (bank_shards, ledger_shards, accounts),
            ShardedOptions::default(),
        )
    }

    /// [`ShardedStack::start`] with options.
    pub fn start_with(
        bins: &Binaries,
        (bank_shards, ledger_shards, accounts): (usize, usize, u32),
        opts: ShardedOptions,
    ) -> Result<ShardedStack> {
        let dir = tempfile::Builder::new()
            .prefix("twopc-sharded-")
            .tempdir_in("/tmp")?;
        let initial_balance = 100;
        let bank_names: Vec<String> = (1..=bank_shards).map(|i| format!("pg{i}")).collect();
        let ledger_names: Vec<String> = (1..=ledger_shards).map(|i| format!("r{i}")).collect();
        let bank_ring = Ring::new(&bank_names).expect("valid shard names");
        let ledger_ring = Ring::new(&ledger_names).expect("valid shard names");

        let mut bank = Vec::new();
        for name in &bank_names {
            let addr = format!("127.0.0.1:{}", util::free_port()?);
            let token = crate::secrets::new_token();
            let pg = PgCluster::start(PgOptions {
                shared_preload_libraries: Some("pg_twopc_ext".into()),
                settings: bank_worker_settings(&addr, &token, &format!("bank-{name}"), 60_000),
                databases: vec!["bank".into()],
                ..PgOptions::default()
            })?;
            let ids: Vec<String> = (1..=accounts)
                .filter(|id| Self::shard_of_row(&bank_ring, *id) == name)
                .map(|id| id.to_string())
                .collect();
            seed_bank(
                &pg,
                &format!("unnest('{{{}}}'::int[])", ids.join(",")),
                initial_balance,
            )?;
            bank.push(BankShard {
                name: name.clone(),
                pg,
                addr,
                token,
            });
        }

        let mut ledger = Vec::new();
        for name in &ledger_names {
            let redis = RedisServer::start_new()?;
            let ids: Vec<u32> = (1..=accounts)
                .filter(|id| ledger_ring.route_redis(&format!("balance:{id}")) == name)
                .collect();
            seed_balances(redis.port(), ids, initial_balance)?;
            let addr = format!("127.0.0.1:{}", util::free_port()?);
            let token = crate::secrets::new_token();
            let participant = Proc::spawn(
                vec![
                    bins.redis_participant.display().to_string(),
                    "--listen".into(),
                    addr.clone(),
                    "--name".into(),
                    format!("ledger-{name}"),
                    "--log".into(),
                    "warn".into(),
                ],
                vec![
                    ("TWOPC_REDIS_TOKEN".into(), token.clone()),
                    ("TWOPC_REDIS_URL".into(), redis.url()),
                ],
            )?;
            ledger.push(LedgerShard {
                name: name.clone(),
                redis,
                participant,
                addr,
                token,
            });
        }

        let data = dir.path().join("coordinator");
        let mut cfg = CoordinatorConfig::new(&data, Vec::new())
            .set("prepare_timeout_ms", 5000)
            .set("ack_wait_ms", 2000)
            .set("client_timeout_ms", 30000)
            .set("retry_base_ms", 100)
            .set("retry_max_ms", 1000)
            .set("heartbeat_ms", 1000)
            .set("fault_injection", true);
        cfg.listen = format!("127.0.0.1:{}", opts.coordinator_port);
        if let Some(w) = &opts.web_dir {
            cfg = cfg.set("web_dir", format!("\"{}\"", w.display()));
        }
        let shard_list = |shards: Vec<(&str, &str, &str)>| -> String {
            let entries: Vec<String> = shards
                .into_iter()
                .map(|(name, addr, token)| {
                    format!("{{ name = \"{name}\", url = \"ws://{addr}/\", token = \"{token}\" }}")
                })
                .collect();
            format!("[{}]", entries.join(", "))
        };
        cfg.extra = format!(
            "\n[[participant]]\nname = \"bank\"\nkind = \"postgres\"\nshards = {}\n\
             \n[[participant]]\nname = \"ledger\"\nkind = \"redis\"\nshards = {}\n",
            shard_list(
                bank.iter()
                    .map(|s| (s.name.as_str(), s.addr.as_str(), s.token.as_str()))
                    .collect()
            ),
            shard_list(
                ledger
                    .iter()
                    .map(|s| (s.name.as_str(), s.addr.as_str(), s.token.as_str()))
                    .collect()
            ),
        ) + &opts.coordinator_tables;
        let path = dir.path().join("coordinator.toml");
        cfg.write(&path)?;
        let coordinator = Proc::spawn(
            vec![
                bins.coordinator.display().to_string(),
                "serve".into(),
                "--config".into(),
                path.display().to_string(),
            ],
            vec![("TWOPC_LOG".into(), "warn".into())],
        )?;
        let coordinator_url = coordinator
            .first_line
            .trim_start_matches("listening on ")
            .to_owned();
        let stack = ShardedStack {
            bank,
            ledger,
            bank_ring,
            ledger_ring,
            coordinator,
            coordinator_url,
            config_path: path,
            accounts,
            initial_balance,
            api_token: opts.api_token,
            _dir: dir,
        };
        stack.wait_connected(bank_shards + ledger_shards, Duration::from_secs(30))?;
        Ok(stack)
    }

    /// The bank shard an account's row lives on.
    pub fn shard_of_row(ring: &Ring, id: u32) -> &str {
        ring.route(RouteKey::ShardKey(&serde_json::json!(id)))
            .expect("a number is a scalar")
    }

    /// Waits until the coordinator reports `n` participants connected.
    pub fn wait_connected(&self, n: usize, within: Duration) -> Result<()> {
        let ok = util::wait_until(within, || self.connected() == n);
        if ok {
            Ok(())
        } else {
            Err(crate::HarnessError::NotReady {
                what: format!("coordinator with {n} shards connected"),
                log: http_get(&self.coordinator_url, "/v1/participants").unwrap_or_default(),
            })
        }
    }

    /// How many participants (shards) the coordinator reports connected.
    pub fn connected(&self) -> usize {
        http_get_as(
            &self.coordinator_url,
            "/v1/participants",
            self.api_token.as_deref(),
        )
        .map(|body| body.matches("\"connected\":true").count())
        .unwrap_or(0)
    }

    /// Every account's balance in PostgreSQL, from whichever shard holds its row, and on
    /// which shard; an account found on no shard or on two is an error.
    pub fn pg_balances(&self) -> Result<Vec<(u32, i64, String)>> {
        let mut out = Vec::new();
        for shard in &self.bank {
            let rows = shard.pg.psql_ok(
                "bank",
                "SELECT id || '=' || balance FROM accounts ORDER BY id",
            )?;
            for line in rows.lines() {
                if let Some((id, bal)) = line.split_once('=') {
                    out.push((
                        id.parse().unwrap_or(0),
                        bal.parse().unwrap_or(i64::MIN),
                        shard.name.clone(),
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// `balance:<id>` on the ledger shard its key routes to (`None`: missing there).
    pub fn redis_balance(&self, id: u32) -> Result<Option<i64>> {
        let key = format!("balance:{id}");
        let shard = self.ledger_ring.route_redis(&key);
        let s = self
            .ledger
            .iter()
            .find(|l| l.name == shard)
            .expect("every ring shard is started");
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &s.redis.port().to_string(), "GET", &key])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(text.parse().ok())
    }
}
