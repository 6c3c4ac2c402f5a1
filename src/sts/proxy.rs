//! The admin's proxy for STS and Roles Anywhere (`--sts-proxy`, `--sts-no-proxy`): the only proxy
//! podcreds ever uses for them. Nothing is read from the environment (`HTTP(S)_PROXY`, `NO_PROXY`).
//!
//! HTTPS endpoints are reached through a `CONNECT` tunnel, so the proxy sees the endpoint's host
//! and port (and the TLS handshake's server name), never a token. Plain-HTTP endpoints (only with
//! `--allow-insecure-sts-endpoints`) are never sent through the proxy: forwarding them would show
//! the proxy every token in clear, so they are connected to directly.
//!
//! Proxy credentials (`http://user:password@host:port`) go to the proxy in `Proxy-Authorization`
//! and nowhere else: the URL is held as a secret, and what logs and errors show is
//! [`StsProxy::shown`], without them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_smithy_http_client::proxy::ProxyConfig;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use tower_service::Service;

/// Why `--sts-proxy` is refused at start. The URL itself is never repeated: it may hold a
/// password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("--sts-proxy is not a URL (not repeated here: it may hold credentials)")]
    NotAUrl,
    #[error(
        "--sts-proxy {shown} must be an http:// URL: podcreds talks to the proxy in plain HTTP and tunnels TLS to STS through it (CONNECT); a proxy reached over TLS is not supported"
    )]
    NotHttp { shown: String },
    #[error("--sts-proxy has no host")]
    NoHost,
    #[error(
        "--sts-proxy {shown} must be scheme://[user:password@]host[:port], without a path or query"
    )]
    HasPath { shown: String },
}

impl ProxyError {
    /// Stable, low-cardinality category (the start error's).
    pub fn category(&self) -> &'static str {
        "InvalidStsProxy"
    }
}

/// The admin's proxy, checked.
#[derive(Clone)]
pub struct StsProxy {
    /// `http://host:port`, without credentials: what logs show.
    shown: String,
    /// Whether the URL carries credentials.
    authenticated: bool,
    /// `--sts-no-proxy`, as given (the `NO_PROXY` syntax).
    no_proxy: String,
    /// For the AWS SDK's client (HTTPS destinations only).
    sdk: ProxyConfig,
    /// For the Roles Anywhere client (HTTPS destinations only).
    matcher: Arc<Matcher>,
}

impl fmt::Debug for StsProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsProxy")
            .field("proxy", &self.shown)
            .field("authenticated", &self.authenticated)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl StsProxy {
    /// Checks `url` (`http://[user:password@]host[:port]`) and the hosts that bypass it
    /// (`no_proxy`: comma-separated host names, domain suffixes, IP addresses or CIDR ranges, as
    /// in `NO_PROXY`).
    pub fn parse(url: &SecretString, no_proxy: &[String]) -> Result<Self, ProxyError> {
        let raw = url.expose_secret().trim();
        let uri: http::Uri = raw.parse().map_err(|_| ProxyError::NotAUrl)?;
        let authority = uri.authority().ok_or(ProxyError::NoHost)?;
        let (authenticated, host_port) = match authority.as_str().rsplit_once('@') {
            Some((_, host_port)) => (true, host_port),
            None => (false, authority.as_str()),
        };
        if authority.host().is_empty() || host_port.is_empty() {
            return Err(ProxyError::NoHost);
        }
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let shown = if scheme.is_empty() {
            host_port.to_string()
        } else {
            format!("{scheme}://{host_port}")
        };
        if scheme != "http" {
            return Err(ProxyError::NotHttp { shown });
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(ProxyError::HasPath { shown });
        }
        let no_proxy = no_proxy
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        let sdk = ProxyConfig::https(raw)
            .map_err(|_| ProxyError::NotAUrl)?
            .no_proxy(&no_proxy);
        let matcher = Matcher::builder().https(raw).no(no_proxy.as_str()).build();
        Ok(Self {
            shown,
            authenticated,
            no_proxy,
            sdk,
            matcher: Arc::new(matcher),
        })
    }

    /// The proxy without its credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether the proxy URL carries credentials.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The hosts that bypass the proxy, as given.
    pub fn no_proxy(&self) -> &str {
        &self.no_proxy
    }

    /// Whether a call to `endpoint` goes through the proxy.
    pub fn proxies(&self, endpoint: &str) -> bool {
        endpoint
            .parse::<http::Uri>()
            .is_ok_and(|uri| self.matcher.intercept(&uri).is_some())
    }

    /// The AWS SDK's proxy configuration.
    pub(super) fn sdk_config(&self) -> ProxyConfig {
        self.sdk.clone()
    }
}

/// The Roles Anywhere client's connector: a `CONNECT` tunnel through the admin's proxy for the
/// destinations it covers, a direct TCP connection otherwise. TLS is added on top, end to end.
#[derive(Clone)]
pub(super) struct ProxyRoute {
    pub(super) http: HttpConnector,
    pub(super) proxy: Option<Arc<Matcher>>,
}

impl ProxyRoute {
    pub(super) fn new(http: HttpConnector, proxy: Option<&StsProxy>) -> Self {
        Self {
            http,
            proxy: proxy.map(|p| p.matcher.clone()),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;

impl Service<http::Uri> for ProxyRoute {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let intercept = self.proxy.as_ref().and_then(|m| m.intercept(&dst));
        match intercept {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.http.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    futures::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
                    Ok(tunnel.call(dst).await?)
                })
            }
            None => {
                let connecting = self.http.call(dst);
                Box::pin(async move { Ok(connecting.await?) })
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn parse(url: &str, no_proxy: &[&str]) -> Result<StsProxy, ProxyError> {
        StsProxy::parse(
            &SecretString::from(url.to_string()),
            &no_proxy.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_proxy_url_is_checked_and_shown_without_credentials() {
        let proxy = parse("http://user:p%40ss@proxy.corp:3128", &[]).expect("valid");
        assert_eq!(proxy.shown(), "http://proxy.corp:3128");
        assert!(proxy.authenticated());
        let shown = format!("{proxy:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("user"),
            "{shown}"
        );
        let plain = parse("HTTP://10.0.0.1:8080/", &[]).expect("valid");
        assert_eq!(plain.shown(), "http://10.0.0.1:8080");
        assert!(!plain.authenticated());

        assert_eq!(
            parse("https://user:secret@proxy.corp:443", &[]).unwrap_err(),
            ProxyError::NotHttp {
                shown: "https://proxy.corp:443".into()
            }
        );
        assert_eq!(
            parse("socks5://proxy.corp:1080", &[]).unwrap_err(),
            ProxyError::NotHttp {
                shown: "socks5://proxy.corp:1080".into()
            }
        );
        assert_eq!(
            parse("http://proxy.corp:3128/path", &[]).unwrap_err(),
            ProxyError::HasPath {
                shown: "http://proxy.corp:3128".into()
            }
        );
        assert_eq!(
            parse("user:secret@proxy.corp:3128", &[]).unwrap_err(),
            ProxyError::NotHttp {
                shown: "proxy.corp:3128".into()
            }
        );
        for bad in [
            "not a url",
            "http://",
            "http://user:secret@",
            "http://user:sec ret@proxy.corp",
        ] {
            let e = parse(bad, &[]).expect_err(bad);
            assert!(!e.to_string().contains("sec"), "{e}");
        }
    }

    #[test]
    fn only_https_endpoints_outside_no_proxy_go_through_the_proxy() {
        let proxy = parse(
            "http://proxy.corp:3128",
            &["minio.storage.svc", " .internal ", "10.0.0.0/8"],
        )
        .expect("valid");
        assert!(proxy.proxies("https://sts.eu-west-1.amazonaws.com"));
        assert!(proxy.proxies("https://rolesanywhere.eu-west-1.amazonaws.com"));
        // Plain HTTP would show the proxy every token: never proxied.
        assert!(!proxy.proxies("http://sts.example.com"));
        assert!(!proxy.proxies("https://minio.storage.svc:9000"));
        assert!(!proxy.proxies("https://sts.corp.internal"));
        assert!(!proxy.proxies("https://10.1.2.3:8443"));
        assert_eq!(proxy.no_proxy(), "minio.storage.svc,.internal,10.0.0.0/8");
    }

    #[tokio::test]
    async fn the_roles_anywhere_connector_tunnels_https_and_connects_plain_http_directly() {
        let proxy_server = Recorder::start("HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let direct = Recorder::start("HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        let proxy = parse(
            &format!("http://user:p%40ss@{}", proxy_server.address),
            &["localhost"],
        )
        .expect("valid");
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut route = ProxyRoute::new(http.clone(), Some(&proxy));
        let refused = route
            .call(
                "https://rolesanywhere.eu-west-1.amazonaws.com"
                    .parse()
                    .expect("uri"),
            )
            .await;
        assert!(refused.is_err(), "the proxy refused the tunnel");
        let heads = proxy_server.heads();
        assert_eq!(heads.len(), 1);
        assert!(
            heads[0].starts_with("CONNECT rolesanywhere.eu-west-1.amazonaws.com:443 HTTP/1.1\r\n"),
            "{heads:?}"
        );
        // The credentials go to the proxy, percent-decoded ("user:p@ss"), and nowhere else.
        assert!(
            heads[0]
                .lines()
                .any(|l| l.eq_ignore_ascii_case("proxy-authorization: Basic dXNlcjpwQHNz")),
            "{heads:?}"
        );
        // Plain HTTP, and hosts in --sts-no-proxy, are connected to directly.
        for uri in [
            format!("http://{}", direct.address),
            format!("https://localhost:{}", direct.port()),
        ] {
            route
                .call(uri.parse().expect("uri"))
                .await
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
        // A connection is established before the listener's accept returns: wait for it.
        direct.wait_for_connections(2).await;
        assert_eq!(proxy_server.connections(), 1);
        // Without a proxy everything is direct.
        let mut direct_route = ProxyRoute::new(http, None);
        direct_route
            .call(format!("http://{}", direct.address).parse().expect("uri"))
            .await
            .expect("direct");
        direct.wait_for_connections(3).await;
        assert_eq!(proxy_server.connections(), 1);
    }

    /// A loopback listener standing in for a proxy or an endpoint in tests: it counts connections,
    /// records the first bytes each one sends (a request head), answers `answer` and closes.
    pub(in crate::sts) struct Recorder {
        pub(in crate::sts) address: String,
        heads: Arc<std::sync::Mutex<Vec<String>>>,
        connections: Arc<std::sync::atomic::AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Recorder {
        pub(in crate::sts) async fn start(answer: &'static str) -> Self {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
            let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (seen, count) = (heads.clone(), connections.clone());
            let task = tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let mut buffer = vec![0u8; 16 * 1024];
                        let read = tokio::time::timeout(
                            std::time::Duration::from_secs(5),
                            socket.read(&mut buffer),
                        )
                        .await;
                        if let Ok(Ok(n)) = read {
                            let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
                            if head.contains("\r\n\r\n") {
                                if let Ok(mut heads) = seen.lock() {
                                    heads.push(head);
                                }
                                let _ = socket.write_all(answer.as_bytes()).await;
                            }
                        }
                    });
                }
            });
            Self {
                address,
                heads,
                connections,
                task,
            }
        }

        pub(in crate::sts) fn port(&self) -> u16 {
            self.address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or_default()
        }

        /// The request heads received so far.
        pub(in crate::sts) fn heads(&self) -> Vec<String> {
            self.heads.lock().map(|h| h.clone()).unwrap_or_default()
        }

        pub(in crate::sts) fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// Waits until `n` connections were accepted; panics after 10 seconds.
        pub(in crate::sts) async fn wait_for_connections(&self, n: usize) {
            let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while self.connections() < n {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(
                waited.is_ok(),
                "{} connection(s) accepted, expected {n}",
                self.connections()
            );
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}
