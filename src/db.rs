//! `cdcmon db init`: create database `app` (tables `users`, `orders`), seed rows and the
//! application user, idempotently.
//!
//! The SQL a reader wants to see lives in `sql/schema.sql` and `sql/seed.sql`; only the user
//! statements are built here, because they carry the password. The `mysql` crate is blocking,
//! so the whole run happens on a `spawn_blocking` thread.
//!
//! The same connection helpers serve `cdcmon smoke` (TiDB reachability, schema, pipeline).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Value};

/// `sql/schema.sql`: database and tables.
pub const SCHEMA_SQL: &str = include_str!("../sql/schema.sql");
/// `sql/seed.sql`: seed rows with fixed ids.
pub const SEED_SQL: &str = include_str!("../sql/seed.sql");

/// The database the stack replicates (TiCDC filter `app.*`).
pub const APP_DB: &str = "app";

/// Environment variable holding the application password when no file is given.
pub const APP_PASSWORD_ENV: &str = "CDCMON_APP_PASSWORD";

/// Flags of `cdcmon db init`.
#[derive(Debug, Clone, clap::Args)]
pub struct DbInitArgs {
    /// TiDB (or MySQL/MariaDB) account allowed to create databases and users,
    /// `mysql://user:password@host:port`.
    #[arg(
        long,
        env = "CDCMON_TIDB_URL",
        default_value = crate::defaults::TIDB_URL
    )]
    pub tidb_url: String,
    /// Application user to create; it gets SELECT, INSERT, UPDATE, DELETE on `app.*`.
    #[arg(long, env = "CDCMON_APP_USER", default_value = "app")]
    pub app_user: String,
    /// Host part of the application account (`'app'@'<host>'`); `%` = any host.
    #[arg(long, env = "CDCMON_APP_USER_HOST", default_value = "%")]
    pub app_user_host: String,
    /// File holding the application user's password (one trailing newline is ignored).
    /// Without it, the password is read from the CDCMON_APP_PASSWORD environment variable.
    #[arg(long, env = "CDCMON_APP_PASSWORD_FILE")]
    pub app_password_file: Option<PathBuf>,
    /// How long to keep retrying the first connection while the server starts, in seconds.
    #[arg(long, env = "CDCMON_WAIT_TIMEOUT_SECS", default_value_t = 120)]
    pub wait_timeout_secs: u64,
    /// Also `SET GLOBAL tidb_enable_row_level_checksum = ON`, before the seed rows: TiDB writes
    /// row checksums only when it is on, and a changefeed with `--integrity-check-level
    /// correctness` has nothing to send without them. TiDB only: skipped with a warning on
    /// MySQL/MariaDB, which have no such variable.
    #[arg(long, env = "CDCMON_ROW_CHECKSUM")]
    pub row_checksum: bool,
}

/// TiDB's global switch for row-level checksums (pingcap/docs `ticdc/ticdc-integrity-check.md`:
/// "SET GLOBAL tidb_enable_row_level_checksum = ON"). Only rows written after it is on carry a
/// checksum.
pub const ROW_CHECKSUM_VARIABLE: &str = "tidb_enable_row_level_checksum";

/// What `--row-checksum` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChecksum {
    /// Not asked for.
    NotRequested,
    /// TiDB: the global variable reads ON.
    Enabled,
    /// Not TiDB (MySQL, MariaDB): nothing to set.
    SkippedNotTidb,
}

/// What `db init` left behind, for the summary line and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSummary {
    pub users: u64,
    pub orders: u64,
    pub account: String,
    pub row_checksum: RowChecksum,
}

/// Entry point of `cdcmon db init`.
pub async fn run(args: DbInitArgs) -> anyhow::Result<()> {
    let password = resolve_app_password(args.app_password_file.as_deref())?;
    let summary = tokio::task::spawn_blocking(move || init_blocking(&args, &password))
        .await
        .context("db init task failed to run")??;
    let checksum = match summary.row_checksum {
        RowChecksum::NotRequested => "",
        RowChecksum::Enabled => ", tidb_enable_row_level_checksum ON",
        RowChecksum::SkippedNotTidb => ", row checksum skipped (not TiDB)",
    };
    println!(
        "db init: database {APP_DB} ready (users: {} rows, orders: {} rows), user {} granted on {APP_DB}.*{checksum}",
        summary.users, summary.orders, summary.account
    );
    Ok(())
}

/// The blocking body of `db init`: connect (with retry), schema, seed, user.
pub fn init_blocking(args: &DbInitArgs, password: &str) -> anyhow::Result<InitSummary> {
    let deadline = Duration::from_secs(args.wait_timeout_secs);
    let mut conn = connect_with_retry(&args.tidb_url, deadline)?;
    // Before the seed: rows written earlier never get a checksum.
    let row_checksum = if args.row_checksum {
        enable_row_checksum(&mut conn)?
    } else {
        RowChecksum::NotRequested
    };
    run_script(&mut conn, "sql/schema.sql", SCHEMA_SQL)?;
    run_script(&mut conn, "sql/seed.sql", SEED_SQL)?;
    let account = ensure_app_user(&mut conn, &args.app_user, &args.app_user_host, password)?;
    let users = count_rows(&mut conn, "app.users")?;
    let orders = count_rows(&mut conn, "app.orders")?;
    Ok(InitSummary {
        users,
        orders,
        account,
        row_checksum,
    })
}

/// Whether the answer to `SHOW GLOBAL VARIABLES LIKE 'tidb_enable_row_level_checksum'` says the
/// server has the variable, i.e. is a TiDB that can carry row checksums. Detecting TiDB by the
/// variable itself, not by `VERSION()`: TiDB's `server-version` config replaces the whole
/// version string (no `-TiDB-` then), and MariaDB/MySQL answer this with no rows (audit B2 #1).
pub fn has_row_checksum_variable(rows: &[(String, String)]) -> bool {
    rows.iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(ROW_CHECKSUM_VARIABLE))
}

/// `SET GLOBAL tidb_enable_row_level_checksum = ON` on a server that has the variable (TiDB),
/// then read it back; on any other server a warning and nothing else (setting it there would
/// fail with "Unknown system variable").
pub fn enable_row_checksum(conn: &mut Conn) -> anyhow::Result<RowChecksum> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .context("cannot read the server version (SELECT VERSION())")?;
    let version = version.unwrap_or_default();
    // `\_`: LIKE's `_` would match any character.
    let pattern = ROW_CHECKSUM_VARIABLE.replace('_', "\\_");
    let rows: Vec<(String, String)> = conn
        .query(format!("SHOW GLOBAL VARIABLES LIKE '{pattern}'"))
        .with_context(|| {
            format!("cannot look up {ROW_CHECKSUM_VARIABLE} (SHOW GLOBAL VARIABLES)")
        })?;
    if !has_row_checksum_variable(&rows) {
        tracing::warn!(
            server_version = %version,
            "--row-checksum: the server has no {ROW_CHECKSUM_VARIABLE} (not TiDB), so there is nothing to set; skipped"
        );
        return Ok(RowChecksum::SkippedNotTidb);
    }
    conn.query_drop(format!("SET GLOBAL {ROW_CHECKSUM_VARIABLE} = ON"))
        .with_context(|| {
            format!("cannot SET GLOBAL {ROW_CHECKSUM_VARIABLE} = ON (needs SUPER or SYSTEM_VARIABLES_ADMIN)")
        })?;
    let value: Option<String> = conn
        .query_first(format!(
            "SELECT CAST(@@GLOBAL.{ROW_CHECKSUM_VARIABLE} AS CHAR)"
        ))
        .with_context(|| format!("cannot read back @@GLOBAL.{ROW_CHECKSUM_VARIABLE}"))?;
    match value.as_deref() {
        Some("1" | "ON" | "on") => {
            tracing::info!(server_version = %version, "{ROW_CHECKSUM_VARIABLE} is ON");
            Ok(RowChecksum::Enabled)
        }
        other => {
            bail!("SET GLOBAL {ROW_CHECKSUM_VARIABLE} = ON was accepted but it reads {other:?}")
        }
    }
}

/// The application password: `file` if given, else `CDCMON_APP_PASSWORD`. Never a default —
/// a literal in code or in the Nix store would be readable by everyone.
pub fn resolve_app_password(file: Option<&Path>) -> anyhow::Result<String> {
    password_from(file, std::env::var(APP_PASSWORD_ENV).ok())
}

/// [`resolve_app_password`] with the environment value passed in (testable without `set_var`).
pub fn password_from(file: Option<&Path>, env_value: Option<String>) -> anyhow::Result<String> {
    let password = match file {
        Some(path) => crate::secret_file::read_secret(path, "app password")?,
        None => env_value.with_context(|| {
            format!("no application password: pass --app-password-file (CDCMON_APP_PASSWORD_FILE) or set {APP_PASSWORD_ENV}")
        })?,
    };
    if password.is_empty() {
        bail!("the application password is empty");
    }
    Ok(password)
}

/// `mysql://user:password@host:port` with the password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Connection options from a URL, with timeouts so a dead server cannot hang a caller.
pub fn mysql_opts(url: &str) -> anyhow::Result<Opts> {
    let opts =
        Opts::from_url(url).with_context(|| format!("invalid MySQL URL {}", redact_url(url)))?;
    let builder = OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        // DDL on TiDB takes about a second per statement; a minute bounds a stuck server.
        .read_timeout(Some(Duration::from_secs(60)))
        .write_timeout(Some(Duration::from_secs(60)));
    Ok(builder.into())
}

/// Connect once.
pub fn connect(url: &str) -> anyhow::Result<Conn> {
    let opts = mysql_opts(url)?;
    Conn::new(opts).with_context(|| format!("cannot connect to {}", redact_url(url)))
}

/// Errors that no amount of waiting fixes: wrong credentials or missing rights.
fn is_permanent(err: &mysql::Error) -> bool {
    // 1044 ER_DBACCESS_DENIED_ERROR, 1045 ER_ACCESS_DENIED_ERROR, 1698 ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    matches!(err, mysql::Error::MySqlError(e) if matches!(e.code, 1044 | 1045 | 1698))
}

/// Connect, retrying with exponential backoff (200 ms … 5 s) until `deadline` has passed.
/// Every failed attempt is logged; authentication errors fail at once.
pub fn connect_with_retry(url: &str, deadline: Duration) -> anyhow::Result<Conn> {
    let opts = mysql_opts(url)?;
    let shown = redact_url(url);
    let start = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1u32;
    loop {
        match Conn::new(opts.clone()) {
            Ok(conn) => {
                tracing::info!(url = %shown, attempt, "connected");
                return Ok(conn);
            }
            Err(err) if is_permanent(&err) => {
                return Err(err).with_context(|| format!("cannot log in to {shown}"));
            }
            Err(err) => {
                let elapsed = start.elapsed();
                if elapsed >= deadline {
                    return Err(err).with_context(|| {
                        format!(
                            "{shown} not reachable after {attempt} attempts in {:.1} s",
                            elapsed.as_secs_f64()
                        )
                    });
                }
                let wait = backoff.min(deadline - elapsed);
                tracing::warn!(
                    url = %shown,
                    attempt,
                    error = %err,
                    retry_in_ms = wait.as_millis() as u64,
                    left_s = (deadline - elapsed).as_secs(),
                    "database not reachable yet"
                );
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Split a script into statements: whole-line `--` comments dropped, statements end with `;`
/// at the end of a line. Our files follow these rules (see their headers); a general SQL
/// splitter would need to understand quoting, which these files do not need.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line.trim_end());
        if let Some(stmt) = current.trim_end().strip_suffix(';') {
            out.push(stmt.trim().to_owned());
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Run every statement of a script, naming the file and statement on error.
pub fn run_script(conn: &mut Conn, name: &str, script: &str) -> anyhow::Result<()> {
    for (i, stmt) in split_statements(script).iter().enumerate() {
        let first_line = stmt.lines().next().unwrap_or_default();
        tracing::debug!(script = name, statement = i + 1, "{first_line}");
        conn.query_drop(stmt)
            .with_context(|| format!("{name} statement {} failed: {first_line}", i + 1))?;
    }
    tracing::info!(script = name, "applied");
    Ok(())
}

/// A string as an SQL literal, escaped for this connection's `NO_BACKSLASH_ESCAPES` mode by
/// the driver's own escaper. Used where MySQL grammar takes no placeholders (user names,
/// `IDENTIFIED BY`).
pub fn sql_literal(conn: &Conn, s: &str) -> String {
    Value::from(s).as_sql(conn.no_backslash_escape())
}

/// Create the application account if absent, (re)set its password, grant DML on `app.*`.
/// Returns the account as `'user'@'host'`. The statements are never logged: they hold the password.
pub fn ensure_app_user(
    conn: &mut Conn,
    user: &str,
    host: &str,
    password: &str,
) -> anyhow::Result<String> {
    if user.is_empty() {
        bail!("--app-user is empty");
    }
    let account = format!("{}@{}", sql_literal(conn, user), sql_literal(conn, host));
    let secret = sql_literal(conn, password);
    conn.query_drop(format!(
        "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {secret}"
    ))
    .with_context(|| format!("CREATE USER {account} failed"))?;
    // CREATE USER IF NOT EXISTS keeps an old password; ALTER USER makes the file authoritative.
    conn.query_drop(format!("ALTER USER {account} IDENTIFIED BY {secret}"))
        .with_context(|| format!("ALTER USER {account} failed"))?;
    conn.query_drop(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {APP_DB}.* TO {account}"
    ))
    .with_context(|| format!("GRANT on {APP_DB}.* to {account} failed"))?;
    tracing::info!(%account, "application user ready");
    Ok(account)
}

/// `SELECT COUNT(*)` of a table.
pub fn count_rows(conn: &mut Conn, table: &str) -> anyhow::Result<u64> {
    let n: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .with_context(|| format!("cannot count rows of {table}"))?;
    Ok(n.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_the_expected_statements() {
        let schema = split_statements(SCHEMA_SQL);
        assert_eq!(schema.len(), 3, "{schema:#?}");
        assert!(schema[0].starts_with("CREATE DATABASE IF NOT EXISTS app"));
        assert!(schema[1].starts_with("CREATE TABLE IF NOT EXISTS app.users"));
        assert!(schema[2].contains("FOREIGN KEY (user_id) REFERENCES app.users (id)"));
        assert!(schema.iter().all(|s| !s.ends_with(';')));
        let seed = split_statements(SEED_SQL);
        assert_eq!(seed.len(), 2, "{seed:#?}");
        assert!(seed.iter().all(|s| s.contains("ON DUPLICATE KEY UPDATE")));
        // Every table has a primary key, or TiCDC will not replicate it.
        for create in schema.iter().filter(|s| s.starts_with("CREATE TABLE")) {
            assert!(create.contains("PRIMARY KEY"), "{create}");
        }
    }

    #[test]
    fn split_keeps_a_trailing_statement_without_semicolon() {
        assert_eq!(
            split_statements("-- c\nSELECT 1;\n\nSELECT\n  2"),
            ["SELECT 1", "SELECT\n  2"]
        );
    }

    #[test]
    fn tidb_is_detected_by_its_row_checksum_variable_not_by_version() {
        let row = |n: &str| (n.to_owned(), "OFF".to_owned());
        // TiDB (whatever `server-version` makes VERSION() say) lists the variable.
        assert!(has_row_checksum_variable(&[row(
            "tidb_enable_row_level_checksum"
        )]));
        // MariaDB/MySQL: no rows; a LIKE neighbour that is not the variable does not count.
        assert!(!has_row_checksum_variable(&[]));
        assert!(!has_row_checksum_variable(&[row(
            "tidbXenable_row_level_checksum"
        )]));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://root:s3cret@127.0.0.1:4000"),
            "mysql://root:***@127.0.0.1:4000"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:4000"),
            "mysql://root@127.0.0.1:4000"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
    }

    #[test]
    fn password_comes_from_file_then_env_and_is_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "p'a\\ss\n").unwrap();
        assert_eq!(
            password_from(Some(&file), Some("env".into())).unwrap(),
            "p'a\\ss"
        );
        std::fs::write(&file, "crlf\r\n").unwrap();
        assert_eq!(password_from(Some(&file), None).unwrap(), "crlf");
        assert_eq!(password_from(None, Some("env".into())).unwrap(), "env");
        let err = password_from(None, None).unwrap_err().to_string();
        assert!(err.contains("--app-password-file"), "{err}");
        assert!(password_from(None, Some(String::new())).is_err());
        assert!(password_from(Some(&dir.path().join("missing")), None).is_err());
    }

    #[test]
    fn bad_urls_are_reported_without_the_password() {
        let err = format!("{:#}", mysql_opts("postgres://u:pw@h:1").unwrap_err());
        assert!(!err.contains("pw@"), "{err}");
    }
}
