//! The HTTP client subcommands: `submit`, `show` and `in-doubt`, and the HTTP client they and
//! the load generator ([`crate::load`]) share. Bodies are the [`twopc_protocol::api`] types.

use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use twopc_protocol::api::{ParticipantStatus, TransactionRequest};
use twopc_protocol::{Operations, ParticipantName, RedisOp, SqlStatement, TxId};

/// What a client subcommand ends with.
pub type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Where the coordinator is, and who is asking.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The coordinator's base URL.
    #[arg(long, env = "COORDINATOR_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// The client token, when the coordinator has clients configured. Prefer `TWOPC_TOKEN`
    /// or `--token-file`: a flag's value is visible to every user in `ps`.
    #[arg(long, env = "TWOPC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file whose first line is the client token.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// PEM file with the CA that an https:// coordinator's certificate must chain to.
    #[arg(long, env = "TWOPC_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate to present to an https:// coordinator that knows
    /// this client by its certificate (`[[client]] certificate_cn`), instead of a token.
    #[arg(
        long,
        env = "TWOPC_CERT_FILE",
        value_name = "FILE",
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    #[arg(
        long,
        env = "TWOPC_KEY_FILE",
        value_name = "FILE",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

impl ClientArgs {
    /// The HTTP client of every subcommand (two minutes per request), sending the token.
    pub fn http(&self) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (None, None) => None,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "the token has characters no HTTP header may hold")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .default_headers(headers);
        if let Some(path) = &self.ca_file {
            twopc_tls::install_default_provider();
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: holds no PEM certificate", path.display()).into());
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
            if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
                let read = |p: &PathBuf, what: &str| {
                    std::fs::read(p)
                        .map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
                };
                let mut pem = read(cert, "client certificate file")?;
                pem.push(b'\n');
                pem.extend(read(key, "client key file")?);
                // The error names neither file's content (the key's least of all).
                let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                    format!(
                        "{} and {}: not a PEM certificate and its private key",
                        cert.display(),
                        key.display()
                    )
                })?;
                builder = builder.identity(identity);
            }
        } else if self.url.starts_with("https://") {
            return Err(
                "an https:// coordinator needs --ca-file (or TWOPC_CA_FILE): the CA its \
                 certificate is checked against"
                    .into(),
            );
        }
        Ok(builder.build()?)
    }
}

/// `submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// A JSON file with the whole request body (`{"id": ..., "participants": {...}}`); `-` reads
    /// standard input.
    #[arg(long, short, conflicts_with_all = ["sql", "redis"])]
    file: Option<PathBuf>,
    /// Transaction id (optional; generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// `PARTICIPANT=SQL`: one SQL statement for a Postgres participant (repeatable).
    #[arg(long, value_name = "PARTICIPANT=SQL")]
    sql: Vec<String>,
    /// `PARTICIPANT=JSON`: one Redis operation, e.g. `ledger={"op":"incrby","key":"k","by":1}`
    /// (repeatable).
    #[arg(long, value_name = "PARTICIPANT=JSON")]
    redis: Vec<String>,
}

/// `show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The transaction id.
    id: String,
}

/// Prints an answer (pretty JSON when it is JSON); success iff the status is 2xx.
pub async fn print_response(resp: reqwest::Response) -> CliResult {
    let status = resp.status();
    let text = resp.text().await?;
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{pretty}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `submit`: POST a transaction and print the answer.
pub async fn submit(a: SubmitArgs) -> CliResult {
    // A file is sent as it is (the coordinator judges it); flags are built into a request.
    let body: serde_json::Value = if let Some(f) = a.file {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(&f)?
        };
        serde_json::from_str(&text)?
    } else {
        serde_json::to_value(request_from_flags(a.id, &a.sql, &a.redis)?)?
    };
    let resp = a
        .client
        .http()?
        .post(format!("{}/v1/transactions", a.client.url))
        .json(&body)
        .send()
        .await?;
    print_response(resp).await
}

/// `show`: GET one transaction.
pub async fn show(a: ShowArgs) -> CliResult {
    let resp = a
        .client
        .http()?
        .get(format!("{}/v1/transactions/{}", a.client.url, a.id))
        .send()
        .await?;
    print_response(resp).await
}

/// `in-doubt`: participants' connection state and what they hold prepared.
pub async fn in_doubt(a: ClientArgs) -> CliResult {
    let resp = a
        .http()?
        .get(format!("{}/v1/participants", a.url))
        .send()
        .await?;
    if !resp.status().is_success() {
        return print_response(resp).await;
    }
    let list: Vec<ParticipantStatus> = resp.json().await?;
    println!(
        "{:<16} {:<9} {:<10} {:>9} {:>8} {:>12}",
        "participant", "kind", "connected", "prepared", "foreign", "awaiting ack"
    );
    for p in list {
        println!(
            "{:<16} {:<9} {:<10} {:>9} {:>8} {:>12}",
            p.name.as_str(),
            p.kind.as_str(),
            p.connected,
            p.reported_prepared,
            p.foreign_prepared,
            p.awaiting_ack,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The request `submit` builds from `--id`, `--sql PARTICIPANT=SQL` and
/// `--redis PARTICIPANT=JSON` (each repeatable, in order per participant).
fn request_from_flags(
    id: Option<String>,
    sql: &[String],
    redis: &[String],
) -> Result<TransactionRequest, Box<dyn std::error::Error>> {
    const BOTH: &str = "a participant cannot take both sql and redis";
    let mut parts: BTreeMap<ParticipantName, Operations> = BTreeMap::new();
    for s in sql {
        let (p, q) = s.split_once('=').ok_or("--sql wants PARTICIPANT=SQL")?;
        let entry = parts
            .entry(ParticipantName::new(p)?)
            .or_insert_with(|| Operations::Sql(Vec::new()));
        let Operations::Sql(stmts) = entry else {
            return Err(BOTH.into());
        };
        stmts.push(SqlStatement {
            query: q.to_owned(),
            params: Vec::new(),
            shard_key: None,
        });
    }
    for s in redis {
        let (p, op) = s.split_once('=').ok_or("--redis wants PARTICIPANT=JSON")?;
        let op: RedisOp = serde_json::from_str(op)?;
        let entry = parts
            .entry(ParticipantName::new(p)?)
            .or_insert_with(|| Operations::Redis(Vec::new()));
        let Operations::Redis(ops) = entry else {
            return Err(BOTH.into());
        };
        ops.push(op);
    }
    Ok(TransactionRequest {
        id: id.map(TxId::new).transpose()?,
        participants: parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_a_request() {
        let req = request_from_flags(
            Some("t1".into()),
            &["bank=select 1".into(), "bank=select 2".into()],
            &[r#"ledger={"op":"incrby","key":"k","by":1}"#.into()],
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"id":"t1","participants":{"bank":{"sql":[{"query":"select 1"},{"query":"select 2"}]},"ledger":{"redis":[{"op":"incrby","key":"k","by":1}]}}}"#
        );
        let both = request_from_flags(
            None,
            &["x=select 1".into()],
            &[r#"x={"op":"del","key":"k"}"#.into()],
        )
        .unwrap_err();
        assert!(both.to_string().contains("both"), "{both}");
        assert!(request_from_flags(None, &["no-equals".into()], &[]).is_err());
    }
}
