# Sourced by .ci/run: start MariaDB (no systemd in CI) on 127.0.0.1:3306 and export
# CDCMON_TEST_MYSQL_URL for a test admin account that may create databases, users and grants,
# as `cdcmon db init` does on TiDB as root.
if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
  install -d -o mysql -g mysql /run/mysqld
  # A stale or missing data directory on a fresh machine: initialise it once.
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  (mysqld_safe --user=mysql --bind-address=127.0.0.1 --port=3306 >/tmp/mariadb.log 2>&1 &)
  for _ in $(seq 1 60); do
    mysqladmin --protocol=socket ping >/dev/null 2>&1 && break
    sleep 1
  done
  mysqladmin --protocol=socket ping >/dev/null || { cat /tmp/mariadb.log; echo "MariaDB did not start" >&2; exit 1; }
fi
ci_mysql_password="ci-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mysql --protocol=socket -uroot <<SQL
CREATE USER IF NOT EXISTS 'cdcmon_ci'@'127.0.0.1' IDENTIFIED BY '${ci_mysql_password}';
CREATE USER IF NOT EXISTS 'cdcmon_ci'@'localhost' IDENTIFIED BY '${ci_mysql_password}';
ALTER USER 'cdcmon_ci'@'127.0.0.1' IDENTIFIED BY '${ci_mysql_password}';
ALTER USER 'cdcmon_ci'@'localhost' IDENTIFIED BY '${ci_mysql_password}';
GRANT ALL PRIVILEGES ON *.* TO 'cdcmon_ci'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'cdcmon_ci'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
CDCMON_TEST_MYSQL_URL="mysql://cdcmon_ci:${ci_mysql_password}@127.0.0.1:3306"
