//! `https://` upstreams through the real binary (issue #16): a local HTTPS server with a
//! certificate from a CA made here, verified through the target's `ca_file`, reached over
//! HTTP/2 when it offers it; a certificate that does not verify is a 502
//! `upstream_tls_error` that names the reason; a server that asks for a client certificate
//! gets the target's `client_cert`, and refusing its absence is a 502.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use hearth_e2e::Server;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use reqwest::blocking::Client;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

/// A CA, and certificates it signed for the server (`localhost`, `127.0.0.1`) and a client.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    server: (CertificateDer<'static>, KeyPair),
    client: (String, KeyPair),
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Hearth test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert, key)
    };
    let (server, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client, client_key) = leaf(vec!["hearth-gateway".into()]);
    Pki {
        server: (server.der().clone(), server_key),
        client: (client.pem(), client_key),
        ca,
    }
}

/// Accepts TLS connections for axum; a handshake that fails (a client certificate refused,
/// or ours refused by the client) ends that connection only.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(stream) = self.tls.accept(tcp).await {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS server offering HTTP/2 and HTTP/1.1 that answers every request with the HTTP
/// version it came in; with `client_ca`, it requires a client certificate that CA signed.
fn https_upstream(pki: &Pki, client_ca: bool) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.serialize_der()));
    let mut config = builder
        .with_single_cert(vec![pki.server.0.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tcp = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let app = Router::new().fallback(|request: Request| async move {
                axum::Json(serde_json::json!({
                    "version": format!("{:?}", request.version()),
                    "path": request.uri().path(),
                }))
            });
            axum::serve(TlsListener { tcp, tls }, app).await.unwrap();
        });
    });
    port
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn call(server: &Server, model: &str) -> (u16, Value) {
    let response = Client::new()
        .get(server.url("/model/proxy/v1/version"))
        .header("x-gpustack-model", model)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn https_upstreams_are_verified_and_speak_http2() {
    let pki = pki();
    let plain = https_upstream(&pki, false);
    let mutual = https_upstream(&pki, true);
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca.pem());
    let cert = write(dir.path(), "client.pem", &pki.client.0);
    let key = write(dir.path(), "client.key", &pki.client.1.serialize_pem());
    let deployment = |name: &str, port: u16, host: &str, tls: &str| {
        format!(
            "[[deployments]]\nname = \"{name}\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"https://{host}:{port}\"\n{tls}"
        )
    };
    let config = [
        deployment(
            "private-ca",
            plain,
            "localhost",
            &format!("  ca_file = \"{ca}\"\n"),
        ),
        deployment(
            "by-ip",
            plain,
            "127.0.0.1",
            &format!("  ca_file = \"{ca}\"\n"),
        ),
        // The system's roots do not know the test's CA.
        deployment("system-roots", plain, "localhost", ""),
        deployment(
            "mutual",
            mutual,
            "localhost",
            &format!(
                "  ca_file = \"{ca}\"\n  client_cert = \"{cert}\"\n  client_key = \"{key}\"\n"
            ),
        ),
        deployment(
            "mutual-no-cert",
            mutual,
            "localhost",
            &format!("  ca_file = \"{ca}\"\n"),
        ),
    ]
    .concat();
    let server = Server::start(dir.path(), &config, &[]).unwrap();

    for model in ["private-ca", "by-ip", "mutual"] {
        let (status, body) = call(&server, model);
        assert_eq!(status, 200, "{model}: {body}\n{}", server.log());
        // ALPN chose HTTP/2, which the server offered first.
        assert_eq!(body["version"], "HTTP/2.0", "{model}");
        assert_eq!(body["path"], "/v1/version");
    }

    let (status, body) = call(&server, "system-roots");
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["code"],
        "upstream_tls_error",
        "{body}\n{}",
        server.log()
    );
    assert_eq!(body["error"]["type"], "server_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("UnknownIssuer"), "{message}");

    // Under TLS 1.3 the refusal of a missing client certificate arrives after the handshake;
    // it is a 502 either way, but not always recognised as a TLS error (README: a known
    // limitation).
    let (status, body) = call(&server, "mutual-no-cert");
    assert_eq!(status, 502, "{body}");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        ["upstream_tls_error", "upstream_unreachable"].contains(&code),
        "{body}\n{}",
        server.log()
    );
}
