//! `ferrogate health`: a minimal HTTP/1.1 client that asks a running daemon's admin listener for
//! `/healthz`, so container health checks need no curl.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the probe waits for the daemon.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Ok when `GET /healthz` on `admin` answers 200.
pub fn healthz(admin: &str) -> Result<(), String> {
    let address = admin
        .to_socket_addrs()
        .map_err(|e| format!("{admin}: {e}"))?
        .next()
        .ok_or_else(|| format!("{admin}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, PROBE_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| format!("read: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("status {code}")),
        None => Err("no HTTP answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn ok_on_200_and_error_otherwise() {
        for (answer, healthy) in [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 503 x\r\n\r\n", false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("addr").to_string();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 256];
                let _ = stream.read(&mut buf);
                stream.write_all(answer.as_bytes()).expect("answer");
            });
            assert_eq!(healthz(&address).is_ok(), healthy);
            server.join().expect("server");
        }
        assert!(healthz("127.0.0.1:1").is_err());
    }
}
