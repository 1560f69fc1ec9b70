//! TiDB hops: reachability (`SELECT 1`), schema, application login, and the marked change the
//! pipeline checks follow. The `mysql` crate blocks, so each call runs on `spawn_blocking`.

use std::time::Duration;

use anyhow::{Context, bail};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

use super::Expectation;
use crate::db;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("database task failed to run")?
}

/// `SELECT 1` (waiting for the server up to `deadline`) and the server version.
pub async fn select_one(url: &str, deadline: Duration) -> anyhow::Result<String> {
    let url = url.to_owned();
    blocking(move || {
        let mut conn = db::connect_with_retry(&url, deadline)?;
        let one: Option<i64> = conn.query_first("SELECT 1").context("SELECT 1 failed")?;
        if one != Some(1) {
            bail!("SELECT 1 returned {one:?}");
        }
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .context("SELECT VERSION() failed")?;
        Ok(format!(
            "TiDB {} reachable, SELECT 1 ok (server {})",
            db::redact_url(&url),
            version.unwrap_or_default()
        ))
    })
    .await
}

/// `app.users` and `app.orders` exist (base tables with a primary key).
pub async fn schema(url: &str) -> anyhow::Result<String> {
    let url = url.to_owned();
    blocking(move || {
        let mut conn = db::connect(&url)?;
        let mut parts = Vec::new();
        for table in ["users", "orders"] {
            let pk: Option<u64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'",
                    (db::APP_DB, table),
                )
                .with_context(|| format!("cannot read information_schema for app.{table}"))?;
            let exists: Option<u64> = conn.exec_first(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db::APP_DB, table),
            )?;
            if exists.unwrap_or(0) == 0 {
                bail!("table app.{table} does not exist (run `cdcmon db init`)");
            }
            if pk.unwrap_or(0) == 0 {
                bail!("table app.{table} has no primary key: TiCDC will not replicate it");
            }
            let rows = db::count_rows(&mut conn, &format!("app.{table}"))?;
            parts.push(format!("app.{table} ({rows} rows)"));
        }
        Ok(format!("schema: {} exist with primary keys", parts.join(", ")))
    })
    .await
}

/// Connection options for `user`/`password` on the server of `url`, database `app`.
pub fn app_opts(url: &str, user: &str, password: &str) -> anyhow::Result<Opts> {
    let base = db::mysql_opts(url)?;
    Ok(OptsBuilder::from_opts(base)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(db::APP_DB))
        .into())
}

/// The application user logs in and may read `app.users`.
pub async fn app_login(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let opts = app_opts(url, user, password)?;
    let user = user.to_owned();
    blocking(move || {
        let mut conn =
            Conn::new(opts).with_context(|| format!("application user {user} cannot log in"))?;
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM app.users")
            .with_context(|| format!("application user {user} cannot read app.users"))?;
        Ok(format!(
            "application user {user} logs in and reads app.users ({} rows)",
            n.unwrap_or(0)
        ))
    })
    .await
}

/// TiDB's current TSO (`SELECT TIDB_CURRENT_TSO()`, the TSO of the statement's own
/// transaction): everything committed before it has a smaller commit-ts, so a cdcmon watermark
/// at or past it proves cdcmon has consumed all of it.
pub async fn current_tso(url: &str) -> anyhow::Result<u64> {
    let url = url.to_owned();
    blocking(move || {
        let mut conn = db::connect(&url)?;
        let tso: Option<u64> = conn
            .query_first("SELECT TIDB_CURRENT_TSO()")
            .context("cannot read TIDB_CURRENT_TSO() (is --tidb-url a TiDB server?)")?;
        match tso {
            Some(t) if t > 0 => Ok(t),
            other => bail!("TIDB_CURRENT_TSO() returned {other:?}"),
        }
    })
    .await
}

/// The statements of the marked change, in order. Each runs in autocommit, so each is its own
/// transaction with its own commit-ts. DDL brackets the DML so the DDL-vs-rows check sees both.
/// The DDL table has a fixed name; `DROP TABLE IF EXISTS` clears what a crashed run left (on
/// TiDB a drop of a missing table is a no-op that creates no DDL job, so no DDL event).
pub fn change_statements(e: &Expectation) -> Vec<String> {
    let id = e.id;
    let ddl = &e.ddl_table;
    vec![
        format!("DROP TABLE IF EXISTS app.{ddl}"),
        format!("CREATE TABLE app.{ddl} (id BIGINT NOT NULL PRIMARY KEY)"),
        format!(
            "INSERT INTO app.users (id, email, name) VALUES ({id}, 'smoke-{id}@cdcmon.invalid', 'cdcmon smoke {id}')"
        ),
        format!(
            "INSERT INTO app.orders (id, user_id, amount, status) VALUES ({id}, {id}, 1.00, 'smoke')"
        ),
        format!("UPDATE app.users SET name = 'cdcmon smoke {id} updated' WHERE id = {id}"),
        format!("UPDATE app.orders SET status = 'smoke-updated' WHERE id = {id}"),
        format!("DELETE FROM app.orders WHERE id = {id}"),
        format!("DELETE FROM app.users WHERE id = {id}"),
        format!("DROP TABLE app.{ddl}"),
    ]
}

/// Apply the marked change. Every DML must touch exactly one row.
pub async fn apply_change(url: &str, e: &Expectation) -> anyhow::Result<String> {
    let url = url.to_owned();
    let statements = change_statements(e);
    let id = e.id;
    blocking(move || {
        let mut conn = db::connect(&url)?;
        for stmt in &statements {
            conn.query_drop(stmt)
                .with_context(|| format!("statement failed: {stmt}"))?;
            let is_dml = !stmt.starts_with("CREATE") && !stmt.starts_with("DROP");
            if is_dml && conn.affected_rows() != 1 {
                bail!(
                    "statement changed {} rows instead of 1: {stmt}",
                    conn.affected_rows()
                );
            }
        }
        Ok(format!(
            "changed app.users and app.orders row id={id} (insert, update, delete) plus CREATE/DROP TABLE"
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_is_ddl_then_six_dml_then_ddl() {
        let e = Expectation::for_marker(77);
        let s = change_statements(&e);
        assert_eq!(s.len(), 9);
        assert_eq!(s[0], "DROP TABLE IF EXISTS app.cdcmon_smoke_ddl");
        assert!(s[1].starts_with("CREATE TABLE app.cdcmon_smoke_ddl ("));
        assert!(s[2].starts_with("INSERT INTO app.users"));
        assert!(s[7].starts_with("DELETE FROM app.users"));
        assert_eq!(s[8], "DROP TABLE app.cdcmon_smoke_ddl");
    }
}
