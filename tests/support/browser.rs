//! A real headless Chromium (Debian's `chromium`, installed by `scripts/install-chromium.sh` if
//! missing), driven over the DevTools protocol: open a page, run script in it, wait for what it
//! shows, take a screenshot. One browser per test, in a profile directory of its own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::poll;
use super::services;

static BROWSER: OnceCell<PathBuf> = OnceCell::const_new();

/// The browser's path, installing it first if it is missing.
async fn browser_path() -> PathBuf {
    BROWSER
        .get_or_init(|| async { PathBuf::from(services::install("install-chromium.sh").await) })
        .await
        .clone()
}

/// One headless browser showing one page.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts a browser on `url` and connects to its page.
    pub async fn open(url: &str) -> Self {
        let path = browser_path().await;
        let profile =
            std::env::temp_dir().join(format!("ridelock-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(profile.join("chromium.log")).unwrap();
        let child = Command::new(&path)
            .args([
                "--headless",
                // Root (CI) cannot use the sandbox's user namespaces.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        // The browser writes the port it listens on into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let port: u16 = poll::until(
            Duration::from_secs(30),
            || async { std::fs::read_to_string(&port_file).ok() },
            |text| {
                text.as_ref()
                    .and_then(|t| t.lines().next()?.parse::<u16>().ok())
                    .is_some()
            },
        )
        .await
        .ok()
        .flatten()
        .and_then(|t| t.lines().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "chromium never listened; its log:\n{}",
                std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default()
            )
        });
        let targets: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page_url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page among {targets:#?}"))
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page_url).await.unwrap();
        Self {
            child,
            profile,
            page,
            next_id: 0,
        }
    }

    /// Sends a DevTools command and answers its result (events met meanwhile are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.page.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer in 10 s"))
                .expect("the page's connection is open")
                .unwrap();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of `expression` evaluated in the page (a promise is awaited), or the exception
    /// it threw.
    async fn evaluate(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// The value of `expression` evaluated in the page; panics if it throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.evaluate(expression)
            .await
            .unwrap_or_else(|exception| panic!("{expression}: {exception}"))
    }

    /// Evaluates `expression` every 20 ms until it is truthy, for at most `within` (throwing,
    /// as while the page loads, counts as not yet); its value.
    pub async fn wait_for(&mut self, expression: &str, within: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let value = self.evaluate(expression).await.unwrap_or(Value::Null);
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return Some(value);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Saves what the page shows now as a PNG.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
