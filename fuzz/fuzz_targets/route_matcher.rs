//! cargo-fuzz target: `ferrogate_fuzz::route_matcher` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrogate_fuzz::route_matcher(data);
});
