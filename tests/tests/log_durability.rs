//! The decision log's durability at the syscall level.
//!
//! `coordinator/tests/log.rs` "crashes" with `process::exit`, which keeps the page cache, so a
//! log that never fsyncs passes it. Here the real coordinator binary runs under
//! `strace -f` while clients commit transfers over two Redis participants, and the trace must
//! show, for every committed transaction T:
//!
//! * a `write` of T's COMMIT record to a log segment (`log-*.seg`),
//! * every Commit frame for T (to both participants; the WebSocket frames the coordinator
//!   sends are masked, so the trace's bytes are unmasked here) and the client's `committed`
//!   answer leave only after an `fdatasync`/`fsync` of that segment which *covers* the record:
//!   it started after the record's `write` returned and returned before the first byte of the
//!   frame (or answer) was written. With group commit one fsync covers many records; an fsync
//!   that was already running when the record was written does not count.
//!
//! strace stops a thread at each traced syscall's entry and exit and prints the events in the
//! order it handles them; a thread that waits for the fsync's completion can only issue its
//! send after the fsync's exit stop was handled, so line order is causal order here.

use redis::AsyncCommands;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use twopc_participant::{RunningServer, Server, ServerConfig};
use twopc_redis_participant::{RedisResource, Retention};
use twopc_tests::coordinator_config::{CoordinatorConfig, ParticipantEntry};
use twopc_tests::stack::Proc;
use twopc_tests::RedisServer;

const STRACE: &str = "/usr/bin/strace";
const TRANSFERS: usize = 24;

async fn serve(redis: &RedisServer, name: &str, token: &str) -> RunningServer {
    let cfg = ServerConfig::new(name.parse().unwrap(), token);
    let resource = RedisResource::new(&redis.url(), None, Retention::default()).unwrap();
    Server::new(resource, cfg)
        .unwrap()
        .bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

/// One traced syscall, with the trace lines of its entry and exit.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    entry: usize,
    exit: usize,
    fd: Option<i64>,
    /// The first string argument (written bytes; the path of `openat`).
    bytes: Vec<u8>,
    /// The second iovec and on, for writev.
    more: Vec<Vec<u8>>,
    ret: Option<i64>,
}

/// Decodes strace's `-xx` strings: every byte as `\xHH`.
fn hex_strings(s: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let mut v = Vec::new();
            i += 1;
            while i + 3 < b.len() && b[i] == b'\\' && b[i + 1] == b'x' {
                let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                v.push(u8::from_str_radix(h, 16).unwrap());
                i += 4;
            }
            if i < b.len() && b[i] == b'"' {
                out.push(v);
            }
        }
        i += 1;
    }
    out
}

/// Parses an `strace -f -xx` trace into calls (unfinished/resumed pairs joined).
fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut open: HashMap<(String, String), usize> = HashMap::new();
    for (line_no, line) in text.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = r.split_once(" resumed>") else {
                continue;
            };
            if let Some(k) = open.remove(&(pid.to_string(), name.to_string())) {
                calls[k].exit = line_no;
                calls[k].ret = ret_of(tail);
                if calls[k].bytes.is_empty() {
                    let mut strs = hex_strings(tail).into_iter();
                    calls[k].bytes = strs.next().unwrap_or_default();
                    calls[k].more = strs.collect();
                }
            }
            continue;
        }
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let name = rest[..paren].to_string();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let args = &rest[paren + 1..];
        let fd = args
            .split([',', ')', ' '])
            .next()
            .and_then(|a| a.parse::<i64>().ok());
        let mut strs = hex_strings(args).into_iter();
        let bytes = strs.next().unwrap_or_default();
        let more = strs.collect();
        let unfinished = rest.ends_with("<unfinished ...>");
        calls.push(Call {
            name: name.clone(),
            entry: line_no,
            exit: line_no,
            fd,
            bytes,
            more,
            ret: if unfinished { None } else { ret_of(args) },
        });
        if unfinished {
            open.insert((pid.to_string(), name), calls.len() - 1);
        }
    }
    calls
}

/// The return value at the end of a line: strace pads `) = N` with spaces.
fn ret_of(s: &str) -> Option<i64> {
    s.rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().strip_prefix("= "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What the trace shows the coordinator did.
#[derive(Default, Debug)]
struct Observed {
    /// (txid, segment path, exit line) of every COMMIT record write.
    commit_writes: Vec<(String, String, usize)>,
    /// (segment path, entry line, exit line) of every successful fsync/fdatasync of a segment.
    syncs: Vec<(String, usize, usize)>,
    /// (txid, entry line of the write holding the frame's first byte) per Commit frame.
    commit_frames: Vec<(String, usize)>,
    /// (txid, entry line) of every HTTP response saying `committed`.
    committed_answers: Vec<(String, usize)>,
}

/// Per socket: the bytes written so far and which call wrote each piece.
#[derive(Default)]
struct Stream {
    buf: Vec<u8>,
    /// (offset in `buf`, entry line of the call that wrote from there).
    pieces: Vec<(usize, usize)>,
    /// Offset of the next WebSocket frame once the upgrade request is behind us.
    ws_at: Option<usize>,
}

impl Stream {
    fn line_at(&self, off: usize) -> usize {
        self.pieces
            .iter()
            .rev()
            .find(|(o, _)| *o <= off)
            .map(|(_, l)| *l)
            .expect("a piece")
    }

    /// Complete client→server frames from `ws_at` on: (unmasked payload, entry line).
    fn frames(&mut self) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let Some(mut at) = self.ws_at else {
            return out;
        };
        loop {
            let b = &self.buf[at..];
            if b.len() < 2 {
                break;
            }
            let masked = b[1] & 0x80 != 0;
            let (len, mut hdr) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            let mask = if masked {
                if b.len() < hdr + 4 {
                    break;
                }
                let m = [b[hdr], b[hdr + 1], b[hdr + 2], b[hdr + 3]];
                hdr += 4;
                Some(m)
            } else {
                None
            };
            if b.len() < hdr + len {
                break;
            }
            let payload: Vec<u8> = b[hdr..hdr + len]
                .iter()
                .enumerate()
                .map(|(i, x)| mask.map_or(*x, |m| x ^ m[i % 4]))
                .collect();
            out.push((payload, self.line_at(at)));
            at += hdr + len;
        }
        self.ws_at = Some(at);
        out
    }
}

fn observe(calls: &[Call], txids: &[String]) -> Observed {
    let mut obs = Observed::default();
    let mut files: HashMap<i64, String> = HashMap::new();
    let mut streams: HashMap<i64, Stream> = HashMap::new();
    for c in calls {
        match (c.name.as_str(), c.fd) {
            ("openat", _) => {
                if let Some(fd) = c.ret.filter(|r| *r >= 0) {
                    files.insert(fd, String::from_utf8_lossy(&c.bytes).into_owned());
                    streams.remove(&fd);
                }
            }
            ("close", Some(fd)) => {
                files.remove(&fd);
                streams.remove(&fd);
            }
            ("fsync" | "fdatasync", Some(fd)) if c.ret == Some(0) => {
                if let Some(p) = files.get(&fd).filter(|p| p.ends_with(".seg")) {
                    obs.syncs.push((p.clone(), c.entry, c.exit));
                }
            }
            ("write" | "writev" | "sendto" | "sendmsg", Some(fd)) => {
                let mut data = c.bytes.clone();
                for m in &c.more {
                    data.extend_from_slice(m);
                }
                // Only what the call really wrote (a short write leaves the rest for later).
                if let Some(n) = c.ret {
                    data.truncate(usize::try_from(n).unwrap_or(0));
                }
                if let Some(p) = files.get(&fd) {
                    if p.ends_with(".seg") {
                        for t in txids {
                            let rec = format!(r#""type":"commit","txid":"{t}""#);
                            if contains(&data, rec.as_bytes()) {
                                obs.commit_writes.push((t.clone(), p.clone(), c.exit));
                            }
                        }
                    }
                    continue;
                }
                let s = streams.entry(fd).or_default();
                s.pieces.push((s.buf.len(), c.entry));
                s.buf.extend_from_slice(&data);
                if s.buf.starts_with(b"HTTP/1.1 ") {
                    for t in txids {
                        let id = format!(r#""id":"{t}""#);
                        if contains(&data, id.as_bytes())
                            && contains(&data, br#""outcome":"committed""#)
                        {
                            obs.committed_answers.push((t.clone(), c.entry));
                        }
                    }
                } else if s.ws_at.is_none() && s.buf.starts_with(b"GET ") {
                    if let Some(end) = s.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        s.ws_at = Some(end + 4);
                    }
                }
                for (payload, line) in s.frames() {
                    if !contains(&payload, br#""type":"commit""#) {
                        continue;
                    }
                    for t in txids {
                        if contains(&payload, format!(r#""txid":"{t}""#).as_bytes()) {
                            obs.commit_frames.push((t.clone(), line));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    obs
}

/// Every violation of "the Commit frame / the committed answer leaves after an fsync covering
/// the COMMIT record", plus vacuity checks.
fn violations(obs: &Observed, committed: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    if obs.syncs.is_empty() {
        v.push("the trace shows no fsync/fdatasync of a log segment at all".to_string());
    }
    for t in committed {
        let Some((_, seg, written)) = obs.commit_writes.iter().find(|(x, _, _)| x == t) else {
            v.push(format!("{t}: no write of its COMMIT record in the trace"));
            continue;
        };
        let covered_before = |send: usize| {
            obs.syncs
                .iter()
                .any(|(p, entry, exit)| p == seg && *entry > *written && *exit < send)
        };
        let frames: Vec<usize> = obs
            .commit_frames
            .iter()
            .filter(|(x, _)| x == t)
            .map(|(_, l)| *l)
            .collect();
        if frames.len() < 2 {
            v.push(format!(
                "{t}: {} Commit frame(s) in the trace, expected one per participant",
                frames.len()
            ));
        }
        for send in frames {
            if !covered_before(send) {
                v.push(format!(
                    "{t}: Commit frame written at trace line {} before any fsync of {seg} \
                     covering its COMMIT record (written by line {})",
                    send + 1,
                    written + 1
                ));
            }
        }
        match obs.committed_answers.iter().find(|(x, _)| x == t) {
            None => v.push(format!("{t}: no `committed` answer in the trace")),
            Some((_, send)) if !covered_before(*send) => v.push(format!(
                "{t}: client told committed at trace line {} before an fsync covering the record",
                send + 1
            )),
            Some(_) => {}
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_leaves_after_the_fsync_that_covers_its_decision_record() {
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is missing: scripts/setup.sh installs the Debian package strace"
    );
    let (r_ledger, r_vault) = (
        RedisServer::start_new().unwrap(),
        RedisServer::start_new().unwrap(),
    );
    let ledger = serve(&r_ledger, "ledger", "ledger-token-0123456789").await;
    let vault = serve(&r_vault, "vault", "vault-token-0123456789").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coordinator.toml");
    CoordinatorConfig::new(
        &dir.path().join("data"),
        vec![
            ParticipantEntry::redis("ledger", ledger.local_addr(), "ledger-token-0123456789"),
            ParticipantEntry::redis("vault", vault.local_addr(), "vault-token-0123456789"),
        ],
    )
    .set("prepare_timeout_ms", 10000)
    .set("ack_wait_ms", 5000)
    .set("client_timeout_ms", 30000)
    .write(&config)
    .unwrap();
    let trace = dir.path().join("trace.txt");
    let exe = env!("CARGO_BIN_EXE_twopc-coordinator-under-test");
    // --seccomp-bpf: only the traced syscalls stop the process, the rest run at full speed.
    let mut proc = Proc::spawn(
        vec![
            STRACE.into(),
            "-f".into(),
            "-qq".into(),
            "--seccomp-bpf".into(),
            "-xx".into(),
            "-s".into(),
            "1048576".into(),
            "-e".into(),
            "trace=openat,close,write,writev,sendto,sendmsg,fsync,fdatasync".into(),
            "-o".into(),
            trace.display().to_string(),
            exe.into(),
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        vec![("TWOPC_LOG".into(), "warn".into())],
    )
    .expect("spawn the coordinator under strace");
    let url = proc
        .first_line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {:?}", proc.first_line))
        .to_owned();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = match http.get(format!("{url}/v1/participants")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if v.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["connected"] == true))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Concurrent transfers on distinct keys, so that decisions share fsyncs (group commit).
    let txids: Vec<String> = (0..TRANSFERS).map(|i| format!("dur-{i}")).collect();
    let posts = txids.iter().enumerate().map(|(i, id)| {
        let http = http.clone();
        let url = url.clone();
        let body = json!({
            "id": id,
            "participants": {
                "ledger": {"redis": [{"op": "incrby", "key": format!("ledger:{i}"), "by": -1}]},
                "vault": {"redis": [{"op": "incrby", "key": format!("vault:{i}"), "by": 1}]},
            }
        });
        async move {
            let r = http
                .post(format!("{url}/v1/transactions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            (id.clone(), v["outcome"].as_str().unwrap_or("").to_owned())
        }
    });
    let answers = futures_util::future::join_all(posts).await;
    let committed: Vec<String> = answers
        .iter()
        .filter(|(_, o)| o == "committed")
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(
        committed.len(),
        TRANSFERS,
        "every transfer commits: {answers:?}"
    );
    // Both participants applied every transfer (the Commits arrived).
    let mut c = redis::Client::open(r_vault.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for i in 0..TRANSFERS {
        loop {
            let v: Option<i64> = c.get(format!("vault:{i}")).await.unwrap();
            if v == Some(1) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "vault:{i} = {v:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A clean stop of the coordinator (strace's child) ends strace and flushes the trace.
    let strace_pid = proc.pid().expect("strace runs");
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
            .unwrap_or_default();
    let coordinator_pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the coordinator is strace's child");
    // SAFETY: kill(2) of the coordinator process this test started (by its pid).
    assert_eq!(unsafe { libc::kill(coordinator_pid, libc::SIGTERM) }, 0);
    assert!(
        proc.wait_exit(Duration::from_secs(30)),
        "strace did not exit after the coordinator stopped"
    );

    let text = std::fs::read_to_string(&trace).unwrap();
    let calls = parse_trace(&text);
    let obs = observe(&calls, &txids);
    let v = violations(&obs, &committed);
    println!(
        "log durability: {} traced calls, {} COMMIT record writes, {} segment fsyncs, {} Commit frames, {} committed answers, {} violations",
        calls.len(),
        obs.commit_writes.len(),
        obs.syncs.len(),
        obs.commit_frames.len(),
        obs.committed_answers.len(),
        v.len()
    );
    if !v.is_empty() {
        let keep = std::env::temp_dir().join("twopc-log-durability-trace.txt");
        let _ = std::fs::copy(&trace, &keep);
        panic!(
            "{} violation(s) (trace kept at {}):\n{}",
            v.len(),
            keep.display(),
            v.join("\n")
        );
    }
    ledger.shutdown().await.unwrap();
    vault.shutdown().await.unwrap();
}

/// The checker itself: a trace in which a Commit frame leaves between the record's write and
/// its fsync is reported, one where an fsync was already running during the write does not
/// count as covering it, and a correct order passes.
#[test]
fn the_trace_checker_rejects_a_commit_sent_before_its_fsync() {
    // (strace -xx string, length) of some bytes.
    let hex = |s: &[u8]| {
        (
            s.iter().map(|b| format!("\\x{b:02x}")).collect::<String>(),
            s.len(),
        )
    };
    // A masked client frame: opcode text, mask key 1 2 3 4.
    let frame = |payload: &str| {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    let upgrade = hex(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    let rec = hex(br#"{"lsn":1,"record":{"type":"commit","txid":"t9","participants":[]}}"#);
    let commit = hex(&frame(r#"{"v":1,"id":3,"type":"commit","txid":"t9"}"#));
    let answer = hex(br#"HTTP/1.1 200 OK\r\n\r\n{"id":"t9","outcome":"committed"}"#);
    let (seg, _) = hex(b"/d/log-00000000000000000001.seg");
    let (upgrade, ul) = upgrade;
    let (rec, rl) = rec;
    let (commit, cl) = commit;
    let (answer, al) = answer;
    let build = |order: &[&str]| {
        let mut lines = vec![
            format!(r#"1 openat(AT_FDCWD, "{seg}", O_RDWR) = 5"#),
            format!(r#"2 sendto(7, "{upgrade}", {ul}, MSG_NOSIGNAL, NULL, 0) = {ul}"#),
            format!(r#"3 sendto(8, "{upgrade}", {ul}, MSG_NOSIGNAL, NULL, 0) = {ul}"#),
        ];
        for step in order {
            lines.push(match *step {
                "write" => format!(r#"4 write(5, "{rec}", {rl}) = {rl}"#),
                "sync" => "4 fdatasync(5) = 0".to_string(),
                "sync-start" => "4 fdatasync(5 <unfinished ...>".to_string(),
                "sync-end" => "4 <... fdatasync resumed>) = 0".to_string(),
                "send" => {
                    format!(r#"2 sendto(7, "{commit}", {cl}, MSG_NOSIGNAL, NULL, 0) = {cl}"#)
                }
                "send2" => {
                    format!(r#"3 sendto(8, "{commit}", {cl}, MSG_NOSIGNAL, NULL, 0) = {cl}"#)
                }
                "answer" => format!(r#"6 write(9, "{answer}", {al}) = {al}"#),
                other => panic!("{other}"),
            });
        }
        lines.join("\n")
    };
    let check = |order: &[&str]| {
        let ids = vec!["t9".to_string()];
        violations(&observe(&parse_trace(&build(order)), &ids), &ids)
    };
    assert_eq!(
        check(&["write", "sync", "send", "send2", "answer"]),
        Vec::<String>::new()
    );
    let v = check(&["write", "send", "sync", "send2", "answer"]);
    assert!(v.len() == 1 && v[0].contains("Commit frame"), "{v:?}");
    // An fsync that was already running when the record was written does not cover it.
    let v = check(&["sync-start", "write", "sync-end", "send", "send2", "answer"]);
    assert_eq!(v.len(), 3, "{v:?}");
    let v = check(&["write", "send", "send2", "answer"]);
    assert!(v.iter().any(|x| x.contains("no fsync")), "{v:?}");
    let v = check(&["write", "sync", "send"]);
    assert!(
        v.iter().any(|x| x.contains("1 Commit frame"))
            && v.iter().any(|x| x.contains("no `committed` answer")),
        "{v:?}"
    );
}
