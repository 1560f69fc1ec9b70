-- Schema of the `app` database, created by `cdcmon db init` (src/db.rs includes this file).
--
-- Written for both TiDB and MariaDB/MySQL: plain MySQL DDL, no TiDB-only clauses.
-- Every statement is idempotent (IF NOT EXISTS), so `db init` can run on every start.
-- Every table has a primary key: TiCDC refuses (or, with ignore_ineligible_table, silently
-- skips) tables without a primary key or a not-null unique key.
--
-- Format rules for the tiny splitter in src/db.rs: statements end with `;` at the end of a
-- line, comments are whole lines starting with `--`, and no string literal contains `;`.

CREATE DATABASE IF NOT EXISTS app DEFAULT CHARACTER SET utf8mb4;

CREATE TABLE IF NOT EXISTS app.users (
  id         BIGINT       NOT NULL,
  email      VARCHAR(255) NOT NULL,
  name       VARCHAR(255) NOT NULL,
  created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- `orders.user_id` references `users`. TiDB enforces foreign keys from v6.6 on
-- (tidb_enable_foreign_key); older TiDB parses the clause and ignores it.
CREATE TABLE IF NOT EXISTS app.orders (
  id         BIGINT        NOT NULL,
  user_id    BIGINT        NOT NULL,
  amount     DECIMAL(12,2) NOT NULL,
  status     VARCHAR(32)   NOT NULL DEFAULT 'new',
  created_at TIMESTAMP     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  KEY idx_orders_user_id (user_id),
  CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES app.users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
