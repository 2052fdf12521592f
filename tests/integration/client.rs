//! A minimal HTTP/1.1 client over TCP and TLS (any certificate accepted, the presented one
//! recorded), a raw mode that sends arbitrary bytes, and a streaming reader that timestamps each
//! server-sent event as it arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ClientConnection;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CipherSuite, ClientConfig, DigitallySignedStruct, HandshakeKind, NamedGroup, ProtocolVersion,
    SignatureScheme, SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest wait for a whole response in the ordinary helpers.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for an answer to a raw (malformed) request.
pub const DEFAULT_RAW_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response the client will buffer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send; `Host` comes first, then `headers` in order.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(host: &str, target: &str) -> Self {
        Self {
            method: "GET".into(),
            target: target.into(),
            host: Some(host.into()),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(host: &str, target: &str) -> Self {
        Self {
            method: "POST".into(),
            ..Self::get(host, target)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if let Some(host) = &self.host {
            out.push_str(&format!("Host: {host}\r\n"));
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// What a TLS client is shown and agrees on.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub alpn: Option<Vec<u8>>,
    /// The leaf certificate (DER) the server presented.
    pub peer_cert: Option<Vec<u8>>,
    pub version: Option<ProtocolVersion>,
    pub suite: Option<CipherSuite>,
    pub kx_group: Option<NamedGroup>,
    /// The handshake resumed an earlier session.
    pub resumed: bool,
}

/// Client-side TLS choices.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `None` sends no SNI at all.
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
    /// Restrict to one protocol version; `None` offers 1.2 and 1.3.
    pub version: Option<&'static rustls::SupportedProtocolVersion>,
}

impl TlsOptions {
    /// SNI = `host`, ALPN http/1.1 only.
    pub fn http1(host: &str) -> Self {
        Self {
            sni: Some(host.into()),
            alpn: vec![b"http/1.1".to_vec()],
            version: None,
        }
    }
}

/// Accepts any server certificate (the tests check which one was presented instead).
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects over TLS and completes the handshake.
pub async fn tls_connect(addr: SocketAddr, opts: &TlsOptions) -> (TlsStream<TcpStream>, TlsInfo) {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tls_connect_over(tcp, opts).await
}

/// A TLS handshake over an already connected socket (after a PROXY header, say).
pub async fn tls_connect_over(
    tcp: TcpStream,
    opts: &TlsOptions,
) -> (TlsStream<TcpStream>, TlsInfo) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = match opts.version {
        Some(v) => builder.with_protocol_versions(&[v]),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
        .with_no_client_auth();
    config.alpn_protocols = opts.alpn.clone();
    config.enable_sni = opts.sni.is_some();
    let name = match &opts.sni {
        Some(sni) => ServerName::try_from(sni.clone()).expect("valid SNI name"),
        // rustls never sends an IP address as SNI.
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    handshake(tcp, &Arc::new(config), name).await
}

async fn handshake(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
) -> (TlsStream<TcpStream>, TlsInfo) {
    let stream = tokio::time::timeout(
        DEFAULT_RESPONSE_TIMEOUT,
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake");
    let info = tls_info(stream.get_ref().1);
    (stream, info)
}

fn tls_info(conn: &ClientConnection) -> TlsInfo {
    TlsInfo {
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        peer_cert: conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec()),
        version: conn.protocol_version(),
        suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
        kx_group: conn.negotiated_key_exchange_group().map(|g| g.name()),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    }
}

/// A client like OpenSSL's (AES-256-GCM listed first) whose connections share one session
/// store, so a later handshake can resume an earlier one; for [`tls_connect_with`].
pub fn resuming_client(version: &'static SupportedProtocolVersion) -> Arc<ClientConfig> {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider};
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    });
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::in_memory_sessions(64);
    Arc::new(config)
}

/// A client that leads with the post-quantum hybrid key exchange (X25519MLKEM768), as current
/// browsers do; for [`tls_connect_with`].
pub fn post_quantum_client() -> Arc<ClientConfig> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let provider = Arc::new(CryptoProvider {
        kx_groups: vec![kx_group::X25519MLKEM768, kx_group::X25519],
        ..default_provider()
    });
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client that accepts any server certificate and shows `chain` with `key` when asked for a
/// client certificate (`None`: shows none).
pub fn client_with_identity(
    identity: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One request over a new TLS connection made with `config`; an error instead of a panic when
/// the handshake or the exchange fails (a refused client certificate).
pub async fn try_tls_request(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    req: &Request,
) -> Result<Response, String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(&req.to_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let n = tls
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((response, _)) = parse_response(&buf, false) {
                return Ok(response);
            }
        }
        parse_response(&buf, true)
            .map(|(r, _)| r)
            .ok_or_else(|| "closed without a response".to_string())
    };
    tokio::time::timeout(DEFAULT_RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// A TLS connection made with `config` (see [`resuming_client`]), SNI `sni`.
pub async fn tls_connect_with(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> (TlsStream<TcpStream>, TlsInfo) {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = ServerName::try_from(sni.to_string()).expect("valid SNI name");
    handshake(tcp, config, name).await
}

/// Sends one request on a stream and reads one response.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    req: &Request,
) -> Response {
    stream
        .write_all(&req.to_bytes())
        .await
        .expect("write request");
    stream.flush().await.expect("flush request");
    read_response(stream, DEFAULT_RESPONSE_TIMEOUT).await
}

/// One request over a new plain TCP connection.
pub async fn http_request(addr: SocketAddr, req: &Request) -> Response {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
    exchange(&mut tcp, req).await
}

/// `GET target` with `Host: host` over plain TCP.
pub async fn http_get(addr: SocketAddr, host: &str, target: &str) -> Response {
    http_request(addr, &Request::get(host, target)).await
}

/// One request over a new TLS connection (SNI = host without port, ALPN http/1.1).
pub async fn https_request(addr: SocketAddr, req: &Request) -> Response {
    let host = req.host.clone().unwrap_or_else(|| "localhost".into());
    let sni = host.split(':').next().unwrap_or(&host).to_string();
    let (mut tls, _) = tls_connect(addr, &TlsOptions::http1(&sni)).await;
    exchange(&mut tls, req).await
}

/// `GET target` with `Host: host` over TLS.
pub async fn https_get(addr: SocketAddr, host: &str, target: &str) -> Response {
    https_request(addr, &Request::get(host, target)).await
}

/// Reads one full response (content-length, chunked, or close-delimited).
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Response {
    let mut responses = read_responses(stream, 1, limit).await;
    responses.remove(0)
}

/// Reads `count` full responses in the order they come, however the reads split them (a
/// pipelining client's answers), all within `limit`.
pub async fn read_responses<S: AsyncRead + Unpin>(
    stream: &mut S,
    count: usize,
    limit: Duration,
) -> Vec<Response> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((response, used)) = parse_response(&buf, false) {
            buf.drain(..used);
            got.push(response);
            if got.len() == count {
                return got;
            }
        }
        assert!(buf.len() < MAX_RESPONSE_BYTES, "response too large");
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {count} responses within {limit:?}; got so far: {:?}",
                    got.len(),
                    String::from_utf8_lossy(&buf)
                )
            });
        match read {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // EOF, or a TLS peer closing without close_notify: the body may be close-delimited.
            _ => {
                let last = parse_response(&buf, true).map(|(r, _)| r);
                match last {
                    Some(response) if got.len() + 1 == count => {
                        got.push(response);
                        return got;
                    }
                    _ => panic!(
                        "connection closed after {} of {count} responses: {:?}",
                        got.len(),
                        String::from_utf8_lossy(&buf)
                    ),
                }
            }
        }
    }
}

/// Sends raw bytes (write errors ignored: the server may refuse early) and returns whatever comes
/// back until a full response, EOF, or [`DEFAULT_RAW_TIMEOUT`].
pub async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> Vec<u8> {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let deadline = Instant::now() + DEFAULT_RAW_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while parse_response(&buf, false).is_none() && buf.len() < MAX_RESPONSE_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    buf
}

/// The status code at the start of raw response bytes.
pub fn raw_status(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..raw.len().min(32))?).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Position just after the blank line ending a head.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Status and headers of a response head (without the blank line).
fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// Parses one complete response from the start of `buf`; `None` while incomplete. With `eof`,
/// a body without framing ends at the end of `buf`. Returns the bytes consumed too.
pub fn parse_response(buf: &[u8], eof: bool) -> Option<(Response, usize)> {
    let end = head_end(buf)?;
    let (status, headers) = parse_head(&buf[..end - 4])?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let rest = &buf[end..];
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        decode_chunked(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    } else if eof {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((
        Response {
            status,
            headers,
            body,
        },
        end + used,
    ))
}

/// One step of chunked decoding.
enum Chunk {
    Data(Vec<u8>),
    Last,
}

/// Takes one complete chunk (size line, data, CRLF) off the front of `buf`; `None` while the
/// chunk is incomplete. The last chunk consumes its trailers too.
fn take_chunk(buf: &[u8]) -> Option<(Chunk, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let size_text = std::str::from_utf8(&buf[..line_end]).ok()?;
    let size_text = size_text.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(size_text, 16).expect("valid chunk size");
    let start = line_end + 2;
    if size == 0 {
        // Trailers end with an empty line.
        let mut pos = start;
        loop {
            let rel = buf[pos..].windows(2).position(|w| w == b"\r\n")?;
            if rel == 0 {
                return Some((Chunk::Last, pos + 2));
            }
            pos += rel + 2;
        }
    }
    if buf.len() < start + size + 2 {
        return None;
    }
    Some((
        Chunk::Data(buf[start..start + size].to_vec()),
        start + size + 2,
    ))
}

/// Decodes a whole chunked body; `None` while incomplete.
fn decode_chunked(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        match take_chunk(&buf[pos..])? {
            (Chunk::Data(data), used) => {
                body.extend_from_slice(&data);
                pos += used;
            }
            (Chunk::Last, used) => return Some((body, pos + used)),
        }
    }
}

/// One server-sent event and when it was complete on the client side.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    /// The event text without the blank line ending it, e.g. `data: 3`.
    pub data: String,
}

/// Sends `req` and reads a streamed response, timestamping each `\n\n`-terminated event when the
/// read that completed it returned. Stops after `max_events`, at the end of the body, on EOF, or
/// at `limit`. Returns the response head (with an empty body) and the events.
pub async fn read_events<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    req: &Request,
    max_events: usize,
    limit: Duration,
) -> (Response, Vec<Event>) {
    stream
        .write_all(&req.to_bytes())
        .await
        .expect("write request");
    stream.flush().await.expect("flush request");
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 16 * 1024];
    let mut raw = Vec::new();
    let mut at = Instant::now();
    let end = loop {
        if let Some(end) = head_end(&raw) {
            break end;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                at = Instant::now();
                raw.extend_from_slice(&chunk[..n]);
            }
            other => panic!(
                "no response head ({other:?}); got: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    };
    let (status, headers) = parse_head(&raw[..end - 4]).expect("valid response head");
    let head = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let mut pending = raw[end..].to_vec();
    let mut decoded = Vec::new();
    let mut events = Vec::new();
    loop {
        let mut finished = false;
        if chunked {
            while let Some((item, used)) = take_chunk(&pending) {
                pending.drain(..used);
                match item {
                    Chunk::Data(data) => decoded.extend_from_slice(&data),
                    Chunk::Last => {
                        finished = true;
                        break;
                    }
                }
            }
        } else {
            decoded.append(&mut pending);
        }
        while let Some(pos) = decoded.windows(2).position(|w| w == b"\n\n") {
            let text: Vec<u8> = decoded.drain(..pos + 2).collect();
            events.push(Event {
                at,
                data: String::from_utf8_lossy(&text[..pos]).into_owned(),
            });
        }
        if finished || events.len() >= max_events {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                at = Instant::now();
                pending.extend_from_slice(&chunk[..n]);
            }
            _ => break,
        }
    }
    (head, events)
}
