//! A small raw HTTP/1.1 client over a real TCP socket for the simulator's tests: send a request,
//! read the head, then the body whole (Content-Length or chunked) or chunk by chunk.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest any single read may take before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect to sim");
        Conn {
            reader: BufReader::new(stream),
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("content-type: application/json\r\n");
        }
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let stream = self.reader.get_mut();
        stream
            .write_all(req.as_bytes())
            .await
            .expect("write request");
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        let n = timeout(READ_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .expect("read timed out")?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    pub async fn head(&mut self) -> Head {
        let status_line = self.line().await.expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut headers = Vec::new();
        loop {
            let line = self.line().await.expect("header line");
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header colon");
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Head { status, headers }
    }

    /// The next chunk of a chunked body: `Ok(None)` at the terminating chunk, `Err` when the
    /// connection ends before it.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let size_line = self.line().await?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        if size == 0 {
            self.line().await?;
            return Ok(None);
        }
        let mut data = vec![0; size + 2];
        timeout(READ_TIMEOUT, self.reader.read_exact(&mut data))
            .await
            .expect("read timed out")?;
        data.truncate(size);
        Ok(Some(data))
    }

    /// The whole body after `head`.
    pub async fn body(&mut self, head: &Head) -> std::io::Result<Vec<u8>> {
        if head.is_chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.next_chunk().await? {
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
        let len: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        timeout(READ_TIMEOUT, self.reader.read_exact(&mut body))
            .await
            .expect("read timed out")?;
        Ok(body)
    }

    /// Sends a request and reads the whole response.
    pub async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (Head, String) {
        self.send(method, path, headers, body).await;
        let head = self.head().await;
        let body = self.body(&head).await.expect("response body");
        (head, String::from_utf8(body).expect("utf-8 body"))
    }

    /// Everything the server sends until it closes the connection (EOF or reset).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = timeout(READ_TIMEOUT, self.reader.read_to_end(&mut out))
            .await
            .expect("server never closed the connection");
        out
    }
}

/// One request on a fresh connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (Head, String) {
    Conn::connect(addr)
        .await
        .exchange(method, path, &[], body)
        .await
}

/// The `data:` payloads of SSE text, in order.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}
