//! A minimal HTTP/1.1 endpoint for Prometheus scrapes: `GET /metrics` answers the
//! registry's text, anything else 404 or 405. One request per connection
//! (`Connection: close`), each bounded in size and time, so a slow or hostile client
//! holds one task for at most [`CLIENT_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Registry;
use crate::error::{Error, Result};

/// Longest a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted.
const MAX_REQUEST_BYTES: usize = 8192;

/// A running metrics endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    token: CancellationToken,
    accept: JoinHandle<()>,
    connections: TaskTracker,
}

impl MetricsServer {
    /// Listen on `addr` and serve `registry`. Fails (`Unavailable`) if the address
    /// cannot be bound.
    pub async fn bind(addr: &str, registry: Registry) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::unavailable(format!("cannot listen on {addr} for metrics")).with_source(e)
        })?;
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let connections = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            registry,
            token.clone(),
            connections.clone(),
        ));
        Ok(MetricsServer {
            addr,
            token,
            accept,
            connections,
        })
    }

    /// The address it listens on (with the port chosen when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections (the listener is closed), then wait for the
    /// connections being answered to finish.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.accept.await;
        self.connections.close();
        self.connections.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    registry: Registry,
    token: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let conn = tokio::select! {
            _ = token.cancelled() => return,
            conn = listener.accept() => conn,
        };
        match conn {
            Ok((stream, _)) => {
                let registry = registry.clone();
                connections.spawn(async move {
                    let served = tokio::time::timeout(CLIENT_TIMEOUT, serve(stream, &registry));
                    if let Ok(Err(e)) = served.await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_BYTES {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, "200 OK", &registry.render()).await,
        ("GET", _) => respond(&mut stream, "404 Not Found", "not found: try /metrics\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let r = Registry::new();
        r.describe("x_total", "X.");
        metrics::with_local_recorder(&r, || metrics::counter!("x_total").increment(4));
        let server = MetricsServer::bind("127.0.0.1:0", r).await.unwrap();
        let addr = server.local_addr();
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let body = "# HELP x_total X.\n# TYPE x_total counter\nx_total 4\n";
        assert!(
            ok.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{ok}"
        );
        assert!(ok.ends_with(&format!("\r\n\r\n{body}")), "{ok}");
        let nf = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let na = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(na.starts_with("HTTP/1.1 405"), "{na}");
        server.stop().await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed after stop"
        );
    }
}
