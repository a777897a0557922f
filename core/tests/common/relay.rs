//! A TCP relay in front of a server's HTTP port whose connections a test can cut, both ways,
//! without a WebSocket close (as a proxy or NAT that resets them would). Shared by the
//! conference tests and the browser module's (`#[path]`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Relays every connection made to [`Relay::addr`] to `to`.
pub struct Relay {
    /// Where to connect.
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port.
    pub async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let kept = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().unwrap().push(link);
            }
        });
        Self {
            addr,
            links,
            accept,
        }
    }

    /// Drops every connection through it so far, both ways; new ones are relayed as before.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
