//! Network parts between the operator and STS: a TLS front, a counting CONNECT proxy, the trust bundle.

use crate::support::Env;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Writes `ca`'s certificate where the operator reads its trust store from (`SSL_CERT_FILE`).
pub fn trust_bundle(
    env: &Env,
    ca: &podcreds_testenv::pki::Ca,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let path = env.plane.dir().join(format!("{name}-ca.pem"));
    std::fs::write(&path, ca.cert_pem())?;
    Ok(path)
}

/// A `CONNECT` proxy on loopback: it opens a tunnel for each `CONNECT` carrying the expected
/// `Proxy-Authorization` (when it expects one), counts it and forwards bytes both ways; anything
/// else (a forwarded request in absolute form, wrong credentials) is refused and recorded.
pub struct ConnectProxy {
    pub address: SocketAddr,
    pub(crate) log: Arc<Mutex<ProxyLog>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start(credentials: Option<(&str, &str)>) -> anyhow::Result<Self> {
        use base64::Engine;
        let expected = credentials.map(|(user, password)| {
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let log = Arc::new(Mutex::new(ProxyLog::default()));
        let seen = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (seen, expected) = (seen.clone(), expected.clone());
                tokio::spawn(async move {
                    let _ = serve_proxy(socket, seen, expected).await;
                });
            }
        });
        Ok(Self { address, log, task })
    }

    /// `http://<user>:<password>@127.0.0.1:<port>` (percent-encoded) or without credentials.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!(
                "http://{}:{}@{}",
                percent_encode(user),
                percent_encode(password),
                self.address
            ),
            None => format!("http://{}", self.address),
        }
    }

    pub fn log(&self) -> ProxyLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the proxy saw.
#[derive(Clone, Debug, Default)]
pub struct ProxyLog {
    /// The `CONNECT` targets of the tunnels it opened, in order.
    pub tunnels: Vec<String>,
    /// Requests it refused: anything but `CONNECT` (the request line), or a `CONNECT` without
    /// the expected credentials.
    pub refused: Vec<String>,
}

/// A TLS front for a plain-HTTP server: `https://127.0.0.1:<port>` (or `https://localhost:<port>`),
/// with a certificate of its own CA, passing each connection's bytes on to `backend`.
pub struct TlsFront {
    pub port: u16,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(
        ca: &podcreds_testenv::pki::Ca,
        backend: SocketAddr,
    ) -> anyhow::Result<Self> {
        let serving = ca.serving()?;
        let certs = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            connections,
            task,
        })
    }

    /// The endpoint by IP address.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Connections accepted (TLS or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve_proxy(
    socket: TcpStream,
    log: Arc<Mutex<ProxyLog>>,
    expected: Option<String>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(socket);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':')
            && name.eq_ignore_ascii_case("proxy-authorization")
            && let Some((scheme, credentials)) = value.trim().split_once(' ')
            && scheme.eq_ignore_ascii_case("basic")
        {
            authorization = Some(credentials.trim().to_string());
        }
    }
    let request_line = request_line.trim_end().to_string();
    let target = request_line
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
        .map(str::to_string);
    let authorized = expected.is_none() || authorization == expected;
    let mut socket = reader.into_inner();
    let Some(target) = target.filter(|_| authorized) else {
        if let Ok(mut log) = log.lock() {
            log.refused.push(request_line);
        }
        let answer = if authorized {
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        } else {
            "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"e2e\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        };
        socket.write_all(answer.as_bytes()).await?;
        return Ok(());
    };
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        socket
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    if let Ok(mut log) = log.lock() {
        log.tunnels.push(target);
    }
    socket
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut socket, &mut upstream).await?;
    Ok(())
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
