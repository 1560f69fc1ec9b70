-- Seed rows of the `app` database, inserted by `cdcmon db init` (src/db.rs includes this file).
--
-- Fixed ids below 1000 (smoke-test rows use ids far above that). `ON DUPLICATE KEY UPDATE
-- id = id` makes a re-run a no-op for rows that already exist, without INSERT IGNORE's habit
-- of also swallowing other errors (a broken foreign key, a truncated value).
-- Users before orders: orders.user_id references users.id.
-- Same format rules as schema.sql.

INSERT INTO app.users (id, email, name) VALUES
  (1, 'alice@example.com', 'Alice'),
  (2, 'bob@example.com', 'Bob'),
  (3, 'carol@example.com', 'Carol')
ON DUPLICATE KEY UPDATE id = id;

INSERT INTO app.orders (id, user_id, amount, status) VALUES
  (1, 1, 19.99, 'paid'),
  (2, 1, 5.00, 'new'),
  (3, 2, 42.50, 'shipped'),
  (4, 3, 7.25, 'new')
ON DUPLICATE KEY UPDATE id = id;
