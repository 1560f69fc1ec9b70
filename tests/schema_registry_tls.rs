//! The schema-registry client over https against a local rustls server on 127.0.0.1 whose
//! certificate is signed by a CA generated here (rcgen): with `--schema-registry-ca-file` the
//! schema is fetched, without it the error names the URL and the failed certificate check.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cdcmon::schema_registry::{HttpSchemaRegistry, RegistryError, SchemaRegistry};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost.
struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "cdcmon test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    // "127.0.0.1" becomes an IP-address SAN (rcgen 0.13 `CertificateParams::new`).
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("server params");
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: cert.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// A blocking https server answering `GET path` from `routes` (404 otherwise), one thread per
/// connection. A client that rejects the certificate aborts the handshake: that connection ends
/// without a request, which is recorded as a failed handshake.
struct TlsServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    failed_handshakes: Arc<Mutex<usize>>,
}

impl TlsServer {
    fn start(pki: &Pki, routes: HashMap<String, String>) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(Mutex::new(0));
        let routes = Arc::new(routes);
        let (reqs, failed) = (requests.clone(), failed_handshakes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, routes) = (config.clone(), routes.clone());
                let (reqs, failed) = (reqs.clone(), failed.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).expect("TLS session");
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            // An alert from the client, or the connection closed.
                            _ => {
                                *failed.lock().unwrap() += 1;
                                return;
                            }
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    reqs.lock().unwrap().push(path.clone());
                    let (status, body) = match routes.get(&path) {
                        Some(b) => ("200 OK", b.clone()),
                        None => (
                            "404 Not Found",
                            r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
                        ),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsServer {
            port,
            requests,
            failed_handshakes,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn write_ca(dir: &Path, pki: &Pki) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).expect("write CA file");
    path
}

const SCHEMA_ANSWER: &str = r#"{"schema":"{\"type\":\"string\"}"}"#;

#[tokio::test]
async fn https_with_the_ca_file_fetches_and_without_it_names_the_certificate_check() {
    let pki = pki();
    let srv = TlsServer::start(
        &pki,
        HashMap::from([("/schemas/ids/1".to_owned(), SCHEMA_ANSWER.to_owned())]),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);

    let trusting = HttpSchemaRegistry::new(&srv.url(), None, Some(&ca)).expect("client");
    assert_eq!(
        trusting.schema_by_id(1).await.expect("fetched over https"),
        r#"{"type":"string"}"#
    );
    assert_eq!(*srv.requests.lock().unwrap(), vec!["/schemas/ids/1"]);
    // An answer over TLS is still interpreted: 404 is permanent.
    let e = trusting.schema_by_id(9).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { id: 9, .. }), "{e:?}");

    // The test CA is in no system store: the handshake fails on the certificate.
    let system_roots_only = HttpSchemaRegistry::new(&srv.url(), None, None).expect("client");
    let e = system_roots_only.schema_by_id(1).await.unwrap_err();
    let RegistryError::Transport { id: 1, detail } = &e else {
        panic!("expected a transport error, got {e:?}");
    };
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        detail.contains(&format!("{}/schemas/ids/1", srv.url())),
        "names the URL: {text}"
    );
    assert!(
        detail.contains("invalid peer certificate")
            && detail.contains("certificate verification failed")
            && detail.contains("--schema-registry-ca-file"),
        "names the certificate check and the fix: {text}"
    );
    assert!(!e.is_permanent(), "retried: a certificate can be fixed");
    assert_eq!(
        srv.requests.lock().unwrap().len(),
        2,
        "no request got past the failed handshake"
    );
    // The server thread records the aborted handshake shortly after the client gave up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while *srv.failed_handshakes.lock().unwrap() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server saw no aborted handshake"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("without the CA file: {text}");
}

/// A CA file that does not hold the signing CA (another generated CA) is no better than none.
#[tokio::test]
async fn a_ca_file_with_another_ca_is_refused() {
    let (pki, other) = (pki(), pki());
    let srv = TlsServer::start(
        &pki,
        HashMap::from([("/schemas/ids/1".to_owned(), SCHEMA_ANSWER.to_owned())]),
    );
    let dir = tempfile::tempdir().unwrap();
    let wrong = write_ca(dir.path(), &other);
    let reg = HttpSchemaRegistry::new(&srv.url(), None, Some(&wrong)).expect("client");
    let e = reg.schema_by_id(1).await.unwrap_err();
    assert!(
        e.to_string().contains("certificate verification failed"),
        "{e}"
    );
    assert!(srv.requests.lock().unwrap().is_empty());
}

/// The flag reaches the client from the CLI too: `cdcmon decode` fetches both schemas of the
/// worked Avro row over https with `CDCMON_SCHEMA_REGISTRY_CA_FILE`.
#[test]
fn decode_cli_uses_the_ca_file_from_the_environment() {
    let vectors: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/avro/vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let answer =
        |id: u32| vectors["worked_row"][format!("registry_GET_/schemas/ids/{id}")].to_string();
    let pki = pki();
    let srv = TlsServer::start(
        &pki,
        HashMap::from([
            ("/schemas/ids/1".to_owned(), answer(1)),
            ("/schemas/ids/2".to_owned(), answer(2)),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), &pki);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/avro");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcmon"))
        .args(["decode", "--protocol", "avro", "--schema-registry-url"])
        .arg(srv.url())
        .args(["--ticdc-time-zone", "Asia/Shanghai", "--key"])
        .arg(format!("{fixtures}/worked_row_key.bin"))
        .arg(format!("{fixtures}/worked_row_value.bin"))
        .env("CDCMON_SCHEMA_REGISTRY_CA_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["protocol"], "avro");
    assert_eq!(line["checksum"], "ok");
    let mut paths = srv.requests.lock().unwrap().clone();
    paths.sort();
    assert_eq!(paths, vec!["/schemas/ids/1", "/schemas/ids/2"]);
}
