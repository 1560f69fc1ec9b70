//! HTTP basic-auth credentials, one type for every HTTP client in cdcmon: the schema-registry
//! client (`consume`, `decode`) and the smoke checks of Elasticsearch and Grafana.

/// A user and password for HTTP basic auth. Its `Debug` never shows the password, so the
/// credentials can sit in structs that are logged or printed in test failures.
#[derive(Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({}, ***)", self.user)
    }
}
