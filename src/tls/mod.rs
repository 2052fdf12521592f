//! TLS: the SNI certificate store (survives reloads), the rustls resolver over it, and the
//! self-signed placeholder certificate made on first start.

pub mod build;
pub mod listener;
pub mod pem;
pub mod placeholder;
pub mod store;

pub use build::build_index;
pub use store::{CertIndex, CertStore};
