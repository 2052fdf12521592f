//! cargo-fuzz target: `ferrogate::security::fuzz_bodies::route_matcher` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrogate::security::fuzz_bodies::route_matcher(data);
});
