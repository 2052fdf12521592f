//! cargo-fuzz target: `ferrogate_fuzz::proxy_header` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrogate_fuzz::proxy_header(data);
});
