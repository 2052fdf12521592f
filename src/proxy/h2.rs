//! HTTP/2 settings ferrogate's listeners advertise to clients: pingora's bounded defaults
//! (header list size, concurrent streams) with receive windows sized for uploads.

use pingora::protocols::http::v2::server::{default_h2_options, H2Options};

/// Bytes a client may send on one stream before ferrogate's window update (SETTINGS
/// initial window). The protocol's default, 64 KiB, caps an upload at 64 KiB per round trip:
/// 1.3 MB/s over a 50 ms path, whatever the bandwidth. 1 MiB, as Go's HTTP/2 server (Caddy)
/// allows, lets a document or audio upload fill ~20 MB/s at that distance.
pub const STREAM_WINDOW: u32 = 1 << 20;

/// Bytes a client may have in flight over all streams of one connection. This is also the most
/// request body one connection can make ferrogate hold while the upstream is slow to take it.
pub const CONNECTION_WINDOW: u32 = 2 << 20;

/// The HTTP/2 options of a proxy listener.
pub fn options() -> H2Options {
    let mut options = default_h2_options();
    options
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    options
}

// RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error; the connection must hold at
// least one full stream window. (The integration tests check what a client is granted.)
const _: () = assert!(STREAM_WINDOW > 65_535 && STREAM_WINDOW < (1 << 31));
const _: () = assert!(CONNECTION_WINDOW >= STREAM_WINDOW && CONNECTION_WINDOW < (1 << 31));
