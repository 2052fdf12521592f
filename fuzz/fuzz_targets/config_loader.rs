//! cargo-fuzz target: `ferrogate::security::fuzz_bodies::config_loader` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrogate::security::fuzz_bodies::config_loader(data);
});
