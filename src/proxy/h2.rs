//! HTTP/2 settings ferrogate's listeners advertise to clients: pingora's bounded defaults
//! (header list size, concurrent streams) with receive windows sized for uploads.

use pingora::protocols::http::v2::server::{default_h2_options, H2Options};

use crate::config::model::MAX_H2_WINDOW;

/// The HTTP/2 options of a proxy listener whose streams may each receive `stream_window` bytes
/// before a window update (`h2_window`). The connection's window is twice that, so one upload
/// never waits on the connection while another stream is busy; it is also the most request
/// body one connection can make ferrogate hold while its upstream is slow to read.
pub fn options(stream_window: u32) -> H2Options {
    let stream_window = stream_window.min(MAX_H2_WINDOW);
    let mut options = default_h2_options();
    options
        .initial_window_size(stream_window)
        .initial_connection_window_size(stream_window * 2);
    options
}

// RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error. (The integration tests
// check what a client is granted.)
const _: () = assert!(MAX_H2_WINDOW as u64 * 2 < 1 << 31);
