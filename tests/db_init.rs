//! `cdcmon db init` against a real MySQL-compatible server (MariaDB in CI).
//!
//! The server is found through `CDCMON_TEST_MYSQL_URL` (e.g. `mysql://root:secret@127.0.0.1:3306`,
//! an account that may create databases and users). Without it the server tests print that they
//! were skipped and return. The application account used here is `cdcmon_test_app`, so running
//! the tests against a developer database never changes the real `app` user's password.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdcmon::db::{self, DbInitArgs};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

const TEST_USER: &str = "cdcmon_test_app";

fn server_url(test: &str) -> Option<String> {
    match std::env::var("CDCMON_TEST_MYSQL_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: set CDCMON_TEST_MYSQL_URL=mysql://root:secret@127.0.0.1:3306 to run it"
            );
            None
        }
    }
}

fn args(url: &str, password_file: PathBuf) -> DbInitArgs {
    DbInitArgs {
        tidb_url: url.to_owned(),
        app_user: TEST_USER.to_owned(),
        app_user_host: "%".to_owned(),
        app_password_file: Some(password_file),
        wait_timeout_secs: 30,
        row_checksum: false,
    }
}

fn login(url: &str, user: &str, password: &str) -> mysql::Result<Conn> {
    let base = Opts::from_url(url).expect("valid test URL");
    Conn::new(
        OptsBuilder::from_opts(base)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some("app")),
    )
}

/// Everything `db init` is responsible for, as comparable text.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    tables: Vec<(String, String)>,
    primary_keys: Vec<(String, String)>,
    foreign_keys: Vec<(String, String, String)>,
    seed_users: Vec<(i64, String, String)>,
    seed_orders: Vec<(i64, i64, String, String)>,
    users_total: u64,
    orders_total: u64,
}

fn snapshot(conn: &mut Conn) -> Snapshot {
    Snapshot {
        tables: conn
            .query(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME IN ('users', 'orders') ORDER BY TABLE_NAME",
            )
            .unwrap(),
        primary_keys: conn
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = 'app' AND CONSTRAINT_NAME = 'PRIMARY' \
                 AND TABLE_NAME IN ('users', 'orders') ORDER BY TABLE_NAME",
            )
            .unwrap(),
        foreign_keys: conn
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = 'app' AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY TABLE_NAME",
            )
            .unwrap(),
        // Seed ids are below 1000; smoke-test rows (if any ran) are far above.
        seed_users: conn
            .query("SELECT id, email, name FROM app.users WHERE id < 1000 ORDER BY id")
            .unwrap(),
        seed_orders: conn
            .query(
                "SELECT id, user_id, CAST(amount AS CHAR), status FROM app.orders WHERE id < 1000 ORDER BY id",
            )
            .unwrap(),
        users_total: db::count_rows(conn, "app.users").unwrap(),
        orders_total: db::count_rows(conn, "app.orders").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn db_init_creates_schema_seed_and_user_and_is_idempotent() {
    let Some(url) = server_url("db_init_creates_schema_seed_and_user_and_is_idempotent") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("app-password");
    // Quotes, backslash, semicolon and comment markers: the password must survive escaping.
    let password = "t'e\"st\\pw; -- x";
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();

    db::run(args(&url, pw_file.clone())).await.unwrap();
    let mut admin = db::connect(&url).unwrap();
    let first = snapshot(&mut admin);

    assert_eq!(
        first.tables,
        [
            ("orders".to_owned(), "BASE TABLE".to_owned()),
            ("users".to_owned(), "BASE TABLE".to_owned())
        ]
    );
    assert_eq!(
        first.primary_keys,
        [
            ("orders".to_owned(), "id".to_owned()),
            ("users".to_owned(), "id".to_owned())
        ]
    );
    assert_eq!(
        first.foreign_keys,
        [(
            "orders".to_owned(),
            "user_id".to_owned(),
            "users".to_owned()
        )]
    );
    assert_eq!(first.seed_users.len(), 3, "{:?}", first.seed_users);
    assert_eq!(
        first.seed_users[0],
        (1, "alice@example.com".to_owned(), "Alice".to_owned())
    );
    assert_eq!(first.seed_orders.len(), 4, "{:?}", first.seed_orders);
    assert_eq!(
        first.seed_orders[2],
        (3, 2, "42.50".to_owned(), "shipped".to_owned())
    );

    // The application user logs in with the password from the file and may use app.*.
    let mut app = login(&url, TEST_USER, password).expect("app user logs in");
    let n: Option<u64> = app.query_first("SELECT COUNT(*) FROM app.users").unwrap();
    assert!(n.unwrap_or(0) >= 3);
    // ... but gets DML only, no DDL.
    let ddl = app.query_drop("CREATE TABLE app.cdcmon_test_denied (id INT PRIMARY KEY)");
    assert!(ddl.is_err(), "the app user must not be allowed DDL");
    drop(app);
    assert!(login(&url, TEST_USER, "wrong").is_err());

    // Second run: same state, no duplicate seed rows.
    db::run(args(&url, pw_file.clone())).await.unwrap();
    let second = snapshot(&mut admin);
    assert_eq!(first, second);

    // A changed password file is authoritative on the next run (ALTER USER).
    std::fs::write(&pw_file, "rotated-pw").unwrap();
    db::run(args(&url, pw_file.clone())).await.unwrap();
    assert!(login(&url, TEST_USER, "rotated-pw").is_ok());
    assert!(login(&url, TEST_USER, password).is_err());
    assert_eq!(snapshot(&mut admin), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_admin_password_fails_at_once_instead_of_retrying() {
    let Some(url) = server_url("wrong_admin_password_fails_at_once_instead_of_retrying") else {
        return;
    };
    let opts = Opts::from_url(&url).unwrap();
    let bad = format!(
        "mysql://{}:definitely-wrong@{}:{}",
        opts.get_user().unwrap_or("root"),
        opts.get_ip_or_hostname(),
        opts.get_tcp_port()
    );
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "x").unwrap();
    let start = Instant::now();
    let err = db::run(args(&bad, pw_file)).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(start.elapsed() < Duration::from_secs(10), "retried: {text}");
    assert!(text.contains("cannot log in"), "{text}");
    assert!(
        !text.contains("definitely-wrong"),
        "password leaked: {text}"
    );
}

/// Needs no server: nothing listens on the port, so every attempt fails until the deadline.
/// `--row-checksum` on MariaDB/MySQL: not TiDB, so nothing is set and nothing fails — the same
/// schema, seed and user as without it, and the summary says it was skipped. (The TiDB branch,
/// `SET GLOBAL tidb_enable_row_level_checksum = ON`, needs a TiDB server; none runs here.)
#[tokio::test(flavor = "multi_thread")]
async fn row_checksum_is_skipped_cleanly_on_a_server_that_is_not_tidb() {
    let Some(url) = server_url("row_checksum_is_skipped_cleanly_on_a_server_that_is_not_tidb")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("app-password");
    std::fs::write(&pw_file, "checksum-pw\n").unwrap();
    // Its own application account: the other server test runs in parallel with another
    // password for TEST_USER.
    let mut plain = args(&url, pw_file);
    plain.app_user = "cdcmon_test_ck".to_owned();
    let mut with_checksum = plain.clone();
    with_checksum.row_checksum = true;
    let summary =
        tokio::task::spawn_blocking(move || db::init_blocking(&with_checksum, "checksum-pw"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(summary.row_checksum, db::RowChecksum::SkippedNotTidb);
    let mut admin = db::connect(&url).unwrap();
    // What db init asks: MariaDB answers the exact lookup with no rows (audit B2 #1).
    let rows: Vec<(String, String)> = admin
        .query("SHOW GLOBAL VARIABLES LIKE 'tidb\\_enable\\_row\\_level\\_checksum'")
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    assert!(!db::has_row_checksum_variable(&rows));
    // The variable really does not exist there: setting it would have failed the run.
    let direct = admin.query_drop("SET GLOBAL tidb_enable_row_level_checksum = ON");
    assert!(direct.is_err(), "MariaDB accepted a TiDB-only variable?");
    let after = snapshot(&mut admin);
    db::run(plain).await.unwrap();
    assert_eq!(snapshot(&mut admin), after);
}

#[test]
fn unreachable_server_gives_up_at_the_deadline_with_the_attempt_count() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = Instant::now();
    let err = db::connect_with_retry(
        &format!("mysql://root:pw@127.0.0.1:{port}"),
        Duration::from_millis(1500),
    )
    .expect_err("nothing listens there");
    let elapsed = start.elapsed();
    let text = format!("{err:#}");
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(text.contains("not reachable after"), "{text}");
    assert!(text.contains("root:***@"), "{text}");
}

#[tokio::test]
async fn missing_password_is_an_error_before_connecting() {
    // No file and no CDCMON_APP_PASSWORD: refuse before touching the network.
    if std::env::var_os(db::APP_PASSWORD_ENV).is_some() {
        eprintln!(
            "SKIPPED missing_password_is_an_error_before_connecting: CDCMON_APP_PASSWORD is set"
        );
        return;
    }
    let err = db::run(DbInitArgs {
        tidb_url: "mysql://root@127.0.0.1:1".to_owned(),
        app_user: "app".to_owned(),
        app_user_host: "%".to_owned(),
        app_password_file: None,
        wait_timeout_secs: 0,
        row_checksum: false,
    })
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("CDCMON_APP_PASSWORD"),
        "{err:#}"
    );
}
