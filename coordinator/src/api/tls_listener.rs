//! HTTPS for the API: a listener that hands axum connections whose TLS handshake is done.
//!
//! axum's server calls `accept` one connection at a time, so a handshake must not run inside
//! it: one client that opens a TCP connection and sends nothing would stall every other
//! client. The accept task here starts each handshake in its own task, bounded in number
//! ([`MAX_HANDSHAKES`]) and in time ([`HANDSHAKE_TIMEOUT`]), and queues the finished ones.
//! ALPN offers `h2` and `http/1.1`; hyper serves whichever the client picked (browsers use
//! HTTP/2, and open the event stream's WebSocket over it with an extended CONNECT).
//!
//! Each connection comes with its [`ApiPeer`]: the address, and the common name of the client
//! certificate the handshake verified, if one was presented. axum hands it to every request of
//! the connection as `ConnectInfo`, where the authentication middleware reads it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use twopc_tls::{Stream, TlsAcceptor};

/// Handshakes in progress at once; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of an API connection.
#[derive(Debug, Clone)]
pub struct ApiPeer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The subject common name of its verified client certificate, if it presented one.
    pub certificate_cn: Option<String>,
}

/// A TCP listener whose connections come out TLS-terminated.
pub struct TlsListener {
    ready: mpsc::Receiver<(Stream, ApiPeer)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Wraps a bound listener; `config` should offer ALPN `h2` and `http/1.1`.
    pub fn new(tcp: TcpListener, config: Arc<twopc_tls::rustls::ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(Stream, ApiPeer)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (socket, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = twopc_tls::accept(socket, Some(&acceptor));
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    // The chain was verified against client_ca_file by the handshake; the
                    // leaf comes first.
                    let certificate_cn = stream
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(twopc_tls::common_name);
                    let peer = ApiPeer {
                        addr: peer,
                        certificate_cn,
                    };
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "API connection refused: {e}"),
                Err(_) => tracing::debug!(%peer, "API connection: TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Stream;
    type Addr = ApiPeer;

    async fn accept(&mut self) -> (Stream, ApiPeer) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when the runtime does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<ApiPeer> {
        Ok(ApiPeer {
            addr: self.local,
            certificate_cn: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ApiPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
