//! cargo-fuzz target: `ferrogate_fuzz::config_loader` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrogate_fuzz::config_loader(data);
});
