//! Secrets read from files (systemd's `LoadCredential`, Compose secrets, a file written by
//! `echo`), never from the command line or the Nix store.
//!
//! Two rules, one per kind of file. Before this module three readers each had their own (one
//! line ending stripped, all trailing newlines stripped, the first line taken), so the same file
//! could give three different passwords:
//! - [`read_secret`]: a secret cdcmon itself hands on (the application password `db init` sets
//!   and `smoke` logs in with, the schema registry's basic-auth password).
//! - [`read_secret_as_grafana`]: a password Grafana also reads from the same file; the smoke must
//!   log in with exactly what Grafana made of it.

use std::path::Path;

use anyhow::{Context, bail};

/// The secret in `path`: the file's text without one trailing line ending (`\n` or `\r\n`, which
/// `echo` and editors add and which is never part of the secret).
///
/// Refused, with `what` and the path named: an unreadable file, an empty secret, and a secret
/// that still holds a line break (a second line is almost always a mistake, and a line break in
/// an HTTP header or SQL password would fail later with a less clear error).
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    if secret.contains(['\n', '\r']) {
        bail!(
            "the {what} file {} has more than one line; it must hold the secret alone",
            path.display()
        );
    }
    Ok(secret.to_owned())
}

/// The password in `path` as Grafana reads it through `$__file{path}` (how the NixOS module and
/// Compose give Grafana its admin password): the whole file with leading and trailing white
/// space trimmed (grafana `pkg/setting/expanders.go`, `fileExpander.Expand`:
/// `strings.TrimSpace(string(f))`; Go's and Rust's trim both use Unicode `White_Space`).
/// Refused: an unreadable file, and one with nothing but white space (Grafana would then have
/// an empty admin password, which it does not accept).
pub fn read_secret_as_grafana(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, text).unwrap();
        read_secret(&path, "test password")
    }

    #[test]
    fn one_trailing_line_ending_is_not_part_of_the_secret() {
        assert_eq!(read("s3cret").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        // Spaces are kept: they may be part of a password.
        assert_eq!(read(" s3 cret \n").unwrap(), " s3 cret ");
    }

    #[test]
    fn empty_multi_line_and_missing_files_are_refused_naming_the_file() {
        for text in ["", "\n", "\r\n"] {
            let e = read(text).unwrap_err().to_string();
            assert!(
                e.contains("test password file") && e.contains("is empty"),
                "{e}"
            );
        }
        for text in ["a\nb", "a\n\n", "a\r\nb\r\n", "a\rb"] {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains("more than one line"), "{text:?}: {e}");
        }
        let e = read_secret(Path::new("/nonexistent/pw"), "app password").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the app password file /nonexistent/pw"
        );
    }

    #[test]
    fn grafana_files_are_trimmed_as_grafana_trims_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grafana");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_secret_as_grafana(&path, "Grafana password")
        };
        assert_eq!(read("admin").unwrap(), "admin");
        assert_eq!(read(" \tadmin \n\n").unwrap(), "admin");
        assert_eq!(read("ad min\r\n").unwrap(), "ad min");
        let e = read(" \n\t").unwrap_err().to_string();
        assert!(
            e.contains("Grafana password file") && e.contains("is empty"),
            "{e}"
        );
        let e = read_secret_as_grafana(Path::new("/nonexistent/pw"), "Grafana password")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "cannot read the Grafana password file /nonexistent/pw");
    }
}
