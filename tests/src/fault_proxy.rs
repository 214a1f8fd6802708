//! A WebSocket-frame-aware fault proxy between the coordinator and a participant (no root,
//! no iptables): it listens on a local port, accepts the coordinator's WebSocket upgrade
//! (keeping its `Authorization` header), dials the participant with the same header, and
//! forwards text frames both ways — unless told otherwise.
//!
//! Faults act on whole protocol frames, selected by direction and wire `type` (`prepare`,
//! `vote`, `commit`, `ack`, ...):
//!
//! * [`Action::Drop`]: lose the frame (on a live connection: what TCP never does, which is
//!   exactly why it is a good test of the re-send and timeout paths);
//! * [`Action::Delay`]: deliver it later (later frames overtake it: reordering);
//! * [`Action::Duplicate`]: deliver it twice (idempotency by (txid, kind));
//! * [`Action::Reorder`]: hold it until the next frame in the same direction has gone (or
//!   300 ms passed), then deliver it;
//! * [`FaultProxy::partition`]: cut every connection and refuse new ones until
//!   [`FaultProxy::heal`].
//!
//! One-shot [`Rule`]s give exact control ("hold the next vote from the bank for 2 s"), and
//! [`RandomFaults`] (seeded, reproducible as far as the frame order is) drive the soak.
//! Pings and pongs are never touched by rules or random faults (a partition cuts them too).

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message as WsMsg;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// Coordinator → participant.
    ToParticipant,
    /// Participant → coordinator.
    ToCoordinator,
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Lose it.
    Drop,
    /// Deliver it after this long.
    Delay(Duration),
    /// Deliver it twice.
    Duplicate,
    /// Deliver it after the next frame in the same direction.
    Reorder,
}

/// A fault for the next `times` frames matching `dir` and `msg_type`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Direction.
    pub dir: Dir,
    /// Wire type (`None`: any protocol frame).
    pub msg_type: Option<String>,
    /// The fault.
    pub action: Action,
    /// How many frames it applies to.
    pub times: u32,
}

impl Rule {
    /// A one-shot rule.
    pub fn once(dir: Dir, msg_type: &str, action: Action) -> Rule {
        Rule {
            dir,
            msg_type: Some(msg_type.into()),
            action,
            times: 1,
        }
    }
}

/// Random faults for every protocol frame: each probability is per frame.
#[derive(Debug, Clone)]
pub struct RandomFaults {
    /// Seed of the proxy's generator.
    pub seed: u64,
    /// P(drop).
    pub drop: f64,
    /// P(delay), uniformly up to `max_delay_ms`.
    pub delay: f64,
    /// Largest delay.
    pub max_delay_ms: u64,
    /// P(duplicate).
    pub duplicate: f64,
    /// P(reorder).
    pub reorder: f64,
}

/// Counters.
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused or cut by partitions.
    pub cut: u64,
    /// Frames forwarded (a duplicate counts twice).
    pub forwarded: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames delayed.
    pub delayed: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames reordered.
    pub reordered: u64,
    /// Frames seen, by direction and wire type.
    pub seen: HashMap<(Dir, String), u64>,
}

impl ProxyStats {
    /// Faults injected on frames (drop + delay + duplicate + reorder) plus cuts.
    pub fn faults(&self) -> u64 {
        self.dropped + self.delayed + self.duplicated + self.reordered + self.cut
    }
}

/// A tiny seeded generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n) (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

struct Shared {
    rules: Vec<Rule>,
    random: Option<(RandomFaults, SplitMix)>,
    partitioned: bool,
    stats: ProxyStats,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    cut_tx: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_tx.send_modify(|v| *v += 1);
    }
}

fn wire_type(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

impl FaultProxy {
    /// Starts a proxy on a free local port forwarding to the participant at `upstream`
    /// (`host:port`). Must be called inside a tokio runtime.
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            rules: Vec::new(),
            random: None,
            partitioned: false,
            stats: ProxyStats::default(),
        }));
        let (cut_tx, _) = watch::channel(0u64);
        let upstream = upstream.to_owned();
        let sh = shared.clone();
        let cut = cut_tx.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let up = upstream.clone();
                let sh = sh.clone();
                let cut_rx = cut.subscribe();
                tokio::spawn(async move {
                    let _ = handle(tcp, up, sh, cut_rx).await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            shared,
            cut_tx,
            task,
        })
    }

    /// The address the coordinator should dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a rule (rules apply in the order added).
    pub fn add_rule(&self, rule: Rule) {
        self.shared.lock().unwrap().rules.push(rule);
    }

    /// Removes every pending rule and random fault.
    pub fn clear(&self) {
        let mut s = self.shared.lock().unwrap();
        s.rules.clear();
        s.random = None;
    }

    /// Turns random faults on (`Some`) or off.
    pub fn set_random(&self, r: Option<RandomFaults>) {
        self.shared.lock().unwrap().random = r.map(|r| {
            let g = SplitMix(r.seed);
            (r, g)
        });
    }

    /// Cuts every connection and refuses new ones.
    pub fn partition(&self) {
        self.shared.lock().unwrap().partitioned = true;
        self.cut_tx.send_modify(|v| *v += 1);
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.shared.lock().unwrap().partitioned = false;
    }

    /// Cuts the current connections once (the coordinator reconnects at once).
    pub fn cut_once(&self) {
        self.shared.lock().unwrap().stats.cut += 1;
        self.cut_tx.send_modify(|v| *v += 1);
    }

    /// A copy of the counters.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().unwrap().stats.clone()
    }

    /// Frames of `msg_type` seen travelling in `dir` so far.
    pub fn seen(&self, dir: Dir, msg_type: &str) -> u64 {
        self.shared
            .lock()
            .unwrap()
            .stats
            .seen
            .get(&(dir, msg_type.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Waits until at least `n` frames of `msg_type` were seen in `dir`; false on timeout.
    pub async fn wait_seen(&self, dir: Dir, msg_type: &str, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.seen(dir, msg_type) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

/// The fault for one frame (`None`: forward it).
fn decide(shared: &Mutex<Shared>, dir: Dir, ty: &str) -> Option<Action> {
    let mut s = shared.lock().unwrap();
    *s.stats.seen.entry((dir, ty.to_owned())).or_insert(0) += 1;
    if ty == "ping" || ty == "pong" {
        return None;
    }
    if let Some(i) = s
        .rules
        .iter()
        .position(|r| r.dir == dir && r.msg_type.as_deref().is_none_or(|t| t == ty))
    {
        let action = s.rules[i].action.clone();
        s.rules[i].times -= 1;
        if s.rules[i].times == 0 {
            s.rules.remove(i);
        }
        return Some(action);
    }
    if let Some((r, g)) = s.random.as_mut() {
        let x = g.unit();
        let mut acc = r.drop;
        if x < acc {
            return Some(Action::Drop);
        }
        acc += r.delay;
        if x < acc {
            let ms = 1 + g.below(r.max_delay_ms.max(1));
            return Some(Action::Delay(Duration::from_millis(ms)));
        }
        acc += r.duplicate;
        if x < acc {
            return Some(Action::Duplicate);
        }
        acc += r.reorder;
        if x < acc {
            return Some(Action::Reorder);
        }
    }
    None
}

// The header callback's error type (`ErrorResponse`) is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn handle(
    tcp: TcpStream,
    upstream: String,
    shared: Arc<Mutex<Shared>>,
    mut cut_rx: watch::Receiver<u64>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if shared.lock().unwrap().partitioned {
        shared.lock().unwrap().stats.cut += 1;
        return Ok(()); // dropped: connection reset
    }
    // Reach the participant first: when it is down, the coordinator's dial fails as it would
    // without the proxy (instead of an accepted upgrade that dies at once).
    let up_tcp = match tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(upstream.as_str()),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => return Ok(()),
    };
    let _ = up_tcp.set_nodelay(true);
    let auth = Arc::new(Mutex::new(None));
    let auth2 = auth.clone();
    let keep_auth = move |req: &Request, resp: Response| {
        *auth2.lock().unwrap() = req.headers().get("authorization").cloned();
        Ok(resp)
    };
    let client_ws = tokio_tungstenite::accept_hdr_async(tcp, keep_auth).await?;
    let mut req = format!("ws://{upstream}/").into_client_request()?;
    if let Some(a) = auth.lock().unwrap().take() {
        req.headers_mut().insert("authorization", a);
    }
    let (part_ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(req, up_tcp),
    )
    .await??;
    shared.lock().unwrap().stats.connections += 1;
    let (mut c_sink, c_stream) = client_ws.split();
    let (mut p_sink, p_stream) = part_ws.split();
    let (to_p, mut to_p_rx) = mpsc::unbounded_channel::<WsMsg>();
    let (to_c, mut to_c_rx) = mpsc::unbounded_channel::<WsMsg>();
    let wp = tokio::spawn(async move {
        while let Some(m) = to_p_rx.recv().await {
            if p_sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let wc = tokio::spawn(async move {
        while let Some(m) = to_c_rx.recv().await {
            if c_sink.send(m).await.is_err() {
                break;
            }
        }
    });
    tokio::select! {
        _ = pump(c_stream, to_p, Dir::ToParticipant, shared.clone()) => {}
        _ = pump(p_stream, to_c, Dir::ToCoordinator, shared.clone()) => {}
        _ = cut_rx.changed() => {}
    }
    wp.abort();
    wc.abort();
    Ok(())
}

async fn pump<S>(
    mut stream: S,
    out: mpsc::UnboundedSender<WsMsg>,
    dir: Dir,
    shared: Arc<Mutex<Shared>>,
) where
    S: futures_util::Stream<Item = Result<WsMsg, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut held: Option<WsMsg> = None;
    let mut held_until = tokio::time::Instant::now();
    loop {
        let next = if held.is_some() {
            tokio::select! {
                m = stream.next() => m,
                _ = tokio::time::sleep_until(held_until) => {
                    if let Some(h) = held.take() {
                        let _ = out.send(h);
                    }
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let msg = match next {
            Some(Ok(m)) => m,
            _ => return,
        };
        let text = match &msg {
            WsMsg::Text(t) => t.as_str().to_owned(),
            WsMsg::Close(_) => {
                let _ = out.send(msg);
                return;
            }
            // Binary and control frames pass untouched (tungstenite answers pings itself).
            WsMsg::Binary(_) => {
                let _ = out.send(msg);
                continue;
            }
            _ => continue,
        };
        let ty = wire_type(&text);
        let action = decide(&shared, dir, &ty);
        let count = |f: &dyn Fn(&mut ProxyStats)| f(&mut shared.lock().unwrap().stats);
        match action {
            None => {
                count(&|s| s.forwarded += 1);
                if out.send(msg).is_err() {
                    return;
                }
                if let Some(h) = held.take() {
                    let _ = out.send(h);
                }
            }
            Some(Action::Drop) => count(&|s| s.dropped += 1),
            Some(Action::Delay(d)) => {
                count(&|s| s.delayed += 1);
                let out = out.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = out.send(msg);
                });
            }
            Some(Action::Duplicate) => {
                count(&|s| {
                    s.duplicated += 1;
                    s.forwarded += 2;
                });
                let _ = out.send(msg.clone());
                let _ = out.send(msg);
            }
            Some(Action::Reorder) => {
                count(&|s| s.reordered += 1);
                if let Some(h) = held.take() {
                    let _ = out.send(h);
                }
                held = Some(msg);
                held_until = tokio::time::Instant::now() + Duration::from_millis(300);
            }
        }
    }
}
