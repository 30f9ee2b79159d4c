//! How a guest's outgoing request is sent ([`send`]): its host resolved once, every address it
//! resolved to checked against the outbound policy ([`crate::outbound`]), and the connection
//! made to an address that passed — never to a name resolved again later, so a name that
//! changes its answer between the check and the connection (DNS rebinding) reaches nothing the
//! policy refused. The rest (TLS, the HTTP/1.1 exchange, the timeouts of the request's options)
//! is wasmtime-wasi-http's `default_send_request` (wasmtime 48), which resolves and connects by
//! itself and so cannot be used as it is.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::http::uri::Scheme;
use hyper::{Request, Response, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::outbound::Outbound;

/// wasmtime-wasi-http's timeouts when the request's options set none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// The future of a request's connection once its response arrived (it carries the response's
/// body).
pub type Io = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// Sends `request` to an address `outbound` allows: `HttpRequestDenied` when the policy can
/// allow no address of its host (which is then not even resolved), `DestinationIpProhibited`
/// when it resolved only to refused addresses; either counted in `outbound`'s denials.
pub async fn send(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
    outbound: Arc<Outbound>,
) -> Result<(Response<ResponseBody>, Io), Error> {
    let uri = request.uri();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = authority
        .port_u16()
        .unwrap_or(if use_tls { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let option = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.and_then(|o| pick(&o)).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect_timeout = option(|o| o.connect_timeout);
    let first_byte_timeout = option(|o| o.first_byte_timeout);
    let between_bytes_timeout = option(|o| o.between_bytes_timeout);

    let stream = tokio::time::timeout(connect_timeout, connect(&host, port, &outbound))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if use_tls {
        let name = server_name(&host)?;
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let tls = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request goes to the origin: its target is the path alone (the URI's scheme and
    // authority are for a proxy; the `host` header carries the authority).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    *request.uri_mut() = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        // tokio panics on an interval of zero.
        let between = between_bytes_timeout.max(Duration::from_nanos(1));
        let mut timeout = tokio::time::interval(between);
        timeout.reset();
        Ok::<_, Error>(response.map(|incoming| ResponseBody { incoming, timeout }))
    };
    let mut send = std::pin::pin!(send);
    let mut conn = Some(conn);
    // The response, driving the connection meanwhile.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(io) = conn.as_mut() else {
                return Poll::Pending;
            };
            let finished = ready!(Pin::new(io).poll(cx));
            conn = None;
            match finished {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    let io: Io = Box::pin(async move {
        let Some(conn) = conn else {
            return Ok(());
        };
        conn.await.map_err(|err| {
            if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(err)
            }
        })
    });
    Ok((response, io))
}

/// A TCP connection to `host:port` at an address `outbound` allows, trying each such address
/// in the resolver's order.
async fn connect(host: &str, port: u16, outbound: &Outbound) -> Result<TcpStream, Error> {
    if !outbound.may_allow(host) {
        outbound.deny();
        tracing::debug!("outgoing request to {host}:{port} denied by --allow-outbound");
        return Err(Error::HttpRequestDenied);
    }
    let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| Error::DnsError {
                rcode: Some(err.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    if candidates.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    let mut last = None;
    for addr in candidates
        .iter()
        .filter(|addr| outbound.allows(host, **addr))
    {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = Some(err),
        }
    }
    match last {
        Some(err) => Err(Error::Connect(err)),
        None => {
            outbound.deny();
            tracing::debug!(
                "outgoing request to {host}:{port} ({candidates:?}) denied by --allow-outbound"
            );
            Err(Error::DestinationIpProhibited)
        }
    }
}

/// The name a TLS server's certificate must carry: the request's host (a name or an IP).
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    use rustls::pki_types::ServerName;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    Ok(ServerName::try_from(host)?.to_owned())
}

/// The TLS client settings of every request: the web PKI's roots (as wasmtime-wasi-http's),
/// ring's cryptography; made once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .with_root_certificates(roots.clone())
                        .with_no_client_auth()
                });
            // ring supports the default versions; were it not so, the process default would do.
            Arc::new(config.unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }))
        })
        .clone()
}

/// A response's body, failing with `ConnectionReadTimeout` when no frame comes within the
/// request's between-bytes timeout.
pub struct ResponseBody {
    incoming: Incoming,
    timeout: tokio::time::Interval,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;

    use super::*;

    #[test]
    fn tls_names_and_settings() {
        assert_eq!(
            server_name("example.com").unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert_eq!(
            server_name("::1").unwrap(),
            ServerName::from(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert!(server_name("not a name").is_err());
        // Made once, with the web PKI's roots.
        assert!(Arc::ptr_eq(&tls_config(), &tls_config()));
    }

    /// The policy is applied before any connection: a refused literal address is never
    /// dialled, and a host no pattern names is not even resolved.
    #[tokio::test]
    async fn refused_destinations_are_not_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let default = Outbound::default();
        let refused = connect("127.0.0.1", port, &default).await.unwrap_err();
        assert!(
            matches!(refused, Error::DestinationIpProhibited),
            "{refused}"
        );
        let none = Outbound::new(&[crate::outbound::Pattern::None], Vec::new());
        let denied = connect("localhost", port, &none).await.unwrap_err();
        assert!(matches!(denied, Error::HttpRequestDenied), "{denied}");
        assert_eq!(default.denied().get() + none.denied().get(), 2);
        let pattern = crate::outbound::parse_pattern(&format!("127.0.0.1:{port}")).unwrap();
        let listed = Outbound::new(&[pattern], Vec::new());
        assert!(connect("127.0.0.1", port, &listed).await.is_ok());
        let (_accepted, _) = listener.accept().await.unwrap();
    }
}
