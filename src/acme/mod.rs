//! ACME: certificate issuance state. For now only the HTTP-01 token table that the plain HTTP
//! listener answers from; the issuing manager fills it.

pub mod http01;
