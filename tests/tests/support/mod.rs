//! The shared harness of the coordinator end-to-end suites (coordinator_e2e.rs,
//! api_limits.rs): two Redis participants, `ledger` and `vault`, each over its own real
//! redis-server and served in-process by the real participant server, and the real
//! coordinator binary as a child process, so it can be killed and restarted.
//!
//! Not every suite uses every helper; each test binary compiles this module on its own.
#![allow(dead_code)]

use redis::AsyncCommands;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use twopc_participant::{RunningServer, Server, ServerConfig};
use twopc_redis_participant::{RedisResource, Retention};
use twopc_tests::coordinator_config::{CoordinatorConfig, ParticipantEntry};
use twopc_tests::stack::Proc;
use twopc_tests::RedisServer;

pub const TOKEN_LEDGER: &str = "ledger-token-0123456789";
pub const TOKEN_VAULT: &str = "vault-token-0123456789";

pub struct Participant {
    pub name: &'static str,
    pub token: &'static str,
    pub redis: RedisServer,
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
}

impl Participant {
    pub async fn start(name: &'static str, token: &'static str) -> Participant {
        let redis = RedisServer::start_new().expect("redis-server");
        let server = serve(&redis, name, token, "127.0.0.1:0".parse().unwrap()).await;
        let addr = server.local_addr();
        Participant {
            name,
            token,
            redis,
            server: Some(server),
            addr,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(serve(&self.redis, self.name, self.token, self.addr).await);
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        self.conn().await.get(key).await.unwrap()
    }

    /// Every key in the participant's own namespace: staged writes, locks, prepared records.
    pub async fn prepared_state(&self) -> Vec<String> {
        let keys: Vec<String> = self.conn().await.keys("twopc:*").await.unwrap();
        keys.into_iter()
            .filter(|k| {
                k.starts_with("twopc:tx:") || k.starts_with("twopc:lock:") || k == "twopc:prepared"
            })
            .collect()
    }
}

pub async fn serve(
    redis: &RedisServer,
    name: &str,
    token: &str,
    addr: SocketAddr,
) -> RunningServer {
    let mut cfg = ServerConfig::new(name.parse().unwrap(), token);
    cfg.decision_timeout = Duration::from_millis(500);
    let resource = RedisResource::new(&redis.url(), None, Retention::default()).unwrap();
    let mut last = None;
    for _ in 0..50 {
        match Server::new(resource.clone(), cfg.clone())
            .unwrap()
            .bind(addr)
            .await
        {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind participant {name} on {addr}: {last:?}");
}

pub struct Coordinator {
    pub process: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Coordinator {
    pub fn start(ledger: &Participant, vault: &Participant, extra: &str) -> Coordinator {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("coordinator.toml");
        let mut settings = CoordinatorConfig::new(
            &dir.path().join("data"),
            vec![
                ParticipantEntry::redis("ledger", ledger.addr, ledger.token),
                ParticipantEntry::redis("vault", vault.addr, vault.token),
            ],
        )
        .set("prepare_timeout_ms", 1500)
        .set("ack_wait_ms", 1000)
        .set("client_timeout_ms", 20000)
        .set("retry_base_ms", 100)
        .set("retry_max_ms", 500)
        .set("heartbeat_ms", 500)
        .set("fault_injection", true);
        settings.extra = format!("{extra}\n");
        settings.write(&config).unwrap();
        let exe = env!("CARGO_BIN_EXE_twopc-coordinator-under-test");
        let process = Proc::spawn(
            vec![
                exe.into(),
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            vec![("TWOPC_LOG".into(), "warn".into())],
        )
        .expect("spawn the coordinator");
        let mut c = Coordinator {
            process,
            url: String::new(),
            _dir: dir,
        };
        c.read_url();
        c
    }

    /// Restarts the process with `failpoints` armed (none: a plain restart).
    pub fn spawn(&mut self, failpoints: &[&str]) {
        self.process.kill9();
        let fp = failpoints.join(",");
        self.process
            .start_with_env(&[("TWOPC_FAILPOINTS", &fp)])
            .expect("spawn the coordinator");
        self.read_url();
    }

    pub fn read_url(&mut self) {
        let line = &self.process.first_line;
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        self.url = url.to_owned();
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Waits for the process to die on its own (a failpoint), returning whether it did.
    pub fn wait_crash(&mut self, within: Duration) -> bool {
        self.process.wait_exit(within)
    }

    pub async fn wait_connected(&self) {
        eventually(20, "both participants connected", || async {
            let v: Value = match reqwest::get(format!("{}/v1/participants", self.url)).await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => return false,
            };
            v.as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["connected"] == true))
        })
        .await;
    }

    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/transactions", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/transactions", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn fault(&self, body: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/faults", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    }
}

pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn transfer(id: &str, amount: i64, vault_guard: Option<&str>) -> Value {
    let mut vault_op = json!({"op": "incrby", "key": "vault:b", "by": amount});
    if let Some(g) = vault_guard {
        vault_op = json!({"op": "set", "key": "vault:flag", "value": "x", "guard": {"expect": g}});
    }
    json!({
        "id": id,
        "participants": {
            "ledger": {"redis": [{"op": "incrby", "key": "ledger:a", "by": -amount}]},
            "vault": {"redis": [vault_op]},
        }
    })
}

pub async fn setup() -> (Participant, Participant, Coordinator) {
    let ledger = Participant::start("ledger", TOKEN_LEDGER).await;
    let vault = Participant::start("vault", TOKEN_VAULT).await;
    let coord = Coordinator::start(&ledger, &vault, "");
    coord.wait_connected().await;
    (ledger, vault, coord)
}
