//! Real headless Chromium, driven over the Chrome DevTools Protocol.
//!
//! Debian's `chromium` is started with `--remote-debugging-port=0` and a throwaway profile; the
//! DevTools WebSocket address it prints is dialled with tokio-tungstenite (already a dependency),
//! and a page target is attached in flattened-session mode. That is all the browser tests need
//! — navigate, evaluate JavaScript, wait for a condition, click by `data-testid`, take
//! screenshots — without chromedriver or a WebDriver client. The flags are the ones this
//! machine needs (no sandbox as root, no background networking on a closed network).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with one page.
pub struct Browser {
    child: Child,
    ws: Ws,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
    /// Console messages and exceptions seen so far (for failure reports).
    pub console: Vec<String>,
}

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

impl Browser {
    /// Starts Chromium at `width`x`height` and attaches to a blank page.
    pub async fn launch(width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {CHROMIUM} (scripts/setup.sh installs it): {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = tx.send(url.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "chromium did not print its DevTools address".to_string())?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            _profile: profile,
            console: Vec::new(),
        };
        let target = b
            .call_browser("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"].as_str().ok_or("no targetId")?.to_owned();
        let attached = b
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or("no sessionId")?
            .to_owned();
        b.call("Page.enable", json!({})).await?;
        b.call("Runtime.enable", json!({})).await?;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        Ok(b)
    }

    async fn send_and_wait(&mut self, mut msg: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        msg["id"] = json!(id);
        self.ws
            .send(WsMessage::text(msg.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .map_err(|_| format!("no answer to {msg}"))?
                .ok_or("DevTools connection closed")?
                .map_err(|e| e.to_string())?;
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("{}: {err}", msg["method"]));
                }
                return Ok(v["result"].clone());
            }
            match v["method"].as_str() {
                Some("Runtime.consoleAPICalled") => {
                    let args: Vec<String> = v["params"]["args"]
                        .as_array()
                        .map(|a| a.iter().map(|x| x["value"].to_string()).collect())
                        .unwrap_or_default();
                    self.console.push(format!(
                        "console.{}: {}",
                        v["params"]["type"],
                        args.join(" ")
                    ));
                }
                Some("Runtime.exceptionThrown") => {
                    self.console
                        .push(format!("exception: {}", v["params"]["exceptionDetails"]));
                }
                _ => {}
            }
        }
    }

    async fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send_and_wait(json!({"method": method, "params": params}))
            .await
    }

    /// Calls a DevTools method on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.send_and_wait(json!({"method": method, "params": params, "sessionId": session}))
            .await
    }

    /// Navigates and waits for the load event's readiness (document.readyState complete).
    pub async fn goto(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({"url": url})).await?;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
        )
        .await
    }

    /// Evaluates `js` in the page and returns its value (promises awaited).
    pub async fn eval(&mut self, js: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("{js}: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `condition` (a JS expression) until it is truthy.
    pub async fn wait_for(&mut self, condition: &str, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(v) = self.eval(&format!("!!({condition})")).await {
                if v == json!(true) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "timed out waiting for `{condition}`; console: {:?}",
                    self.console
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element with this `data-testid` (fails if it does not exist).
    pub async fn click(&mut self, testid: &str) -> Result<(), String> {
        let js = format!(
            "(() => {{ const e = document.querySelector('[data-testid=\"{testid}\"]'); if (!e) return false; e.click(); return true; }})()"
        );
        match self.eval(&js).await? {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("no element with data-testid={testid}")),
        }
    }

    /// Number of elements matching a CSS selector.
    pub async fn count(&mut self, selector: &str) -> Result<u64, String> {
        let js = format!(
            "document.querySelectorAll({}).length",
            serde_json::to_string(selector).unwrap_or_default()
        );
        Ok(self.eval(&js).await?.as_u64().unwrap_or(0))
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)
            .map_err(|e| format!("bad base64 in screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, bytes).map_err(|e| e.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
