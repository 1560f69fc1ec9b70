//! Grafana hops: `/api/health`, the provisioned dashboard found by `/api/search`, and each
//! datasource's own health check.
//!
//! Shapes (Grafana docs `developers/http_api`): `other.md` "Health API" (`{"commit",
//! "database":"ok","version"}`), `folder_dashboard_search.md` (`[{"uid","title","type":
//! "dash-db",…}]`), `data_source.md` "Check data source health" (`{"message","status":"OK"}`);
//! a failing check answers HTTP 400 with `"status":"ERROR"` (grafana `pkg/api/datasources.go`
//! `checkDatasourceHealth`).

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::{BasicAuth, get_text, parse_json, refuse_auth_errors, snippet};

#[derive(Debug, Deserialize)]
struct Health {
    #[serde(default)]
    database: String,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Deserialize)]
struct SearchHit {
    #[serde(default)]
    uid: String,
    title: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "folderTitle", default)]
    folder_title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DatasourceHealth {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `GET /api/health`: 200 and `database: ok`. Needs no login.
pub async fn health(
    client: &reqwest::Client,
    url: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let health_url = format!("{}/api/health", base(url));
    super::retry("grafana health", deadline, || async {
        let (status, body) = get_text(client, &health_url, None).await?;
        if status != 200 {
            bail!("{health_url} answered HTTP {status}: {}", snippet(&body));
        }
        let h: Health = parse_json(&health_url, status, &body)?;
        if h.database != "ok" {
            bail!("Grafana database is {:?}", h.database);
        }
        Ok(format!(
            "Grafana {} healthy (version {}, database ok)",
            base(url),
            h.version
        ))
    })
    .await
}

/// A dashboard titled exactly `title` is found by `/api/search` (i.e. it was provisioned).
pub async fn dashboard(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    title: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let search_url = format!("{}/api/search", base(url));
    super::retry("grafana dashboard", deadline, || async {
        let resp = client
            .get(&search_url)
            .basic_auth(&auth.user, Some(&auth.password))
            .query(&[("query", title), ("type", "dash-db")])
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        refuse_auth_errors(&search_url, status, &body)?;
        if status != 200 {
            bail!("{search_url} answered HTTP {status}: {}", snippet(&body));
        }
        let hits: Vec<SearchHit> = parse_json(&search_url, status, &body)?;
        // `query` is a substring match: insist on the exact title.
        let Some(hit) = hits
            .iter()
            .find(|h| h.title == title && (h.kind.is_empty() || h.kind == "dash-db"))
        else {
            let titles: Vec<&str> = hits.iter().map(|h| h.title.as_str()).collect();
            bail!(
                "no dashboard titled {title:?} (search found {titles:?}); is provisioning loaded?"
            );
        };
        Ok(format!(
            "Grafana dashboard {title:?} provisioned (uid {}{})",
            hit.uid,
            hit.folder_title
                .as_deref()
                .map(|f| format!(", folder {f:?}"))
                .unwrap_or_default()
        ))
    })
    .await
}

/// Every datasource in `uids` passes its health check.
pub async fn datasources(
    client: &reqwest::Client,
    url: &str,
    auth: &BasicAuth,
    uids: &[String],
    deadline: Duration,
) -> anyhow::Result<String> {
    if uids.is_empty() {
        bail!("no datasource uids to check");
    }
    super::retry("grafana datasources", deadline, || async {
        let mut ok = Vec::new();
        for uid in uids {
            let health_url = format!("{}/api/datasources/uid/{uid}/health", base(url));
            let (status, body) = get_text(client, &health_url, Some(auth)).await?;
            refuse_auth_errors(&health_url, status, &body)?;
            if status == 404 {
                bail!("datasource {uid:?} not found ({health_url} answered 404): is it provisioned with that uid?");
            }
            let h: DatasourceHealth = parse_json(&health_url, status, &body)?;
            if status != 200 || h.status != "OK" {
                bail!(
                    "datasource {uid:?} health check: HTTP {status}, status {}: {}",
                    h.status,
                    h.message
                );
            }
            ok.push(format!("{uid} ({})", h.message.trim_end_matches('.')));
        }
        Ok(format!("Grafana datasources healthy: {}", ok.join(", ")))
    })
    .await
}
