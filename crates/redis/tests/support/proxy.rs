//! A TCP proxy on loopback in front of a test server that can go silent: its connections then
//! stop forwarding in both directions without closing (a black hole, as after a failover or a
//! NAT drop: no reset, no answer), and stay dead after it resumes; only connections made after
//! [`Proxy::resume`] forward again. Everything it started stops when it is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; stops (closing every connection) on drop.
pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Whether new connections are dead on arrival.
    silent: bool,
    /// Every connection so far.
    links: Vec<Arc<Link>>,
    /// The connections that were open when the proxy went silent.
    silenced: Vec<Arc<Link>>,
}

/// One proxied connection.
#[derive(Default)]
struct Link {
    /// Whether bytes get through (otherwise they are read and dropped).
    forwarding: AtomicBool,
    /// Whether the client (the backend) closed its end.
    client_closed: AtomicBool,
}

impl Proxy {
    /// Starts forwarding a free loopback port to the server on `upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let accept = tokio::spawn(accept(listener, upstream, state.clone()));
        Self {
            port,
            state,
            accept,
        }
    }

    /// The URL to give the backend.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Goes silent: every connection stops forwarding (and never will again) without closing,
    /// and connections made from now on are dead too, until [`Proxy::resume`].
    pub fn silence(&self) {
        let mut state = self.state.lock();
        state.silent = true;
        let open: Vec<Arc<Link>> = state
            .links
            .iter()
            .filter(|l| !l.client_closed.load(Ordering::SeqCst))
            .cloned()
            .collect();
        for link in &open {
            link.forwarding.store(false, Ordering::SeqCst);
        }
        state.silenced = open;
    }

    /// Forwards new connections again (the silenced ones stay dead).
    pub fn resume(&self) {
        self.state.lock().silent = false;
    }

    /// How many connections were open when the proxy went silent.
    pub fn silenced(&self) -> usize {
        self.state.lock().silenced.len()
    }

    /// Whether the client closed every connection that was open when the proxy went silent:
    /// it noticed they were dead.
    pub fn silenced_all_closed(&self) -> bool {
        let state = self.state.lock();
        state
            .silenced
            .iter()
            .all(|l| l.client_closed.load(Ordering::SeqCst))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection's task.
        self.accept.abort();
    }
}

/// Accepts clients and serves each on a task of its own.
async fn accept(listener: TcpListener, upstream: u16, state: Arc<Mutex<State>>) {
    let mut links = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let link = Arc::new(Link::default());
        {
            let mut state = state.lock();
            link.forwarding.store(!state.silent, Ordering::SeqCst);
            state.links.push(link.clone());
        }
        links.spawn(serve(client, upstream, link));
        while links.try_join_next().is_some() {}
    }
}

/// Pumps bytes both ways. The client closing ends the link; the server closing is passed on
/// only while forwarding (a black hole never closes).
async fn serve(client: TcpStream, upstream: u16, link: Arc<Link>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    {
        let up = pump(&mut client_rx, &mut server_tx, &link);
        tokio::pin!(up);
        tokio::select! {
            () = &mut up => {
                link.client_closed.store(true, Ordering::SeqCst);
                return;
            }
            () = pump(&mut server_rx, &mut client_tx, &link) => {}
        }
        if link.forwarding.load(Ordering::SeqCst) {
            return;
        }
        up.await;
    }
    link.client_closed.store(true, Ordering::SeqCst);
}

/// Copies `from` to `to` while the link forwards (drops the bytes otherwise), until `from` ends.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    link: &Link,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if link.forwarding.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
