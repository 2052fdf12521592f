//! The fuzz bodies, driving ferrogate's public API: each takes arbitrary bytes and must return
//! without panicking whatever they are. The config loader, the route matcher, the PROXY header
//! parser. The cargo-fuzz targets in `fuzz_targets/` (libFuzzer) call them, and so does the
//! stable-toolchain smoke run below (`cargo test` in this directory).

use std::path::Path;

use ferrogate::config::model::HostMatch;
use ferrogate::routing::{normalize_host, Router};
use ferrogate::security::proxy_header::{parse, Step, V1_MAX_LEN};

/// The config loader on arbitrary text: errors are fine, panics are not.
pub fn config_loader(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferrogate::config::load_str(text, Path::new("fuzz.yaml"));
    }
}

/// The route matcher: a table built from the first half, looked up with the second.
pub fn route_matcher(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle -= 1;
    }
    let (table, lookups) = text.split_at(middle);
    let mut router = Router::default();
    for (index, line) in table.lines().take(64).enumerate() {
        let (host, path) = line.split_once(' ').unwrap_or((line, "/"));
        let hosts = match host.strip_prefix("*.") {
            Some(rest) => vec![HostMatch::Wildcard(rest.to_ascii_lowercase())],
            None if host.is_empty() => Vec::new(),
            None => vec![HostMatch::Exact(host.to_ascii_lowercase())],
        };
        router.insert(&hosts, path, index);
    }
    for line in lookups.lines().take(64) {
        let (host, path) = line.split_once(' ').unwrap_or((line, "/"));
        if let Some(host) = normalize_host(host) {
            let _ = router.find(&host, path);
        }
    }
}

/// The PROXY header parser, fed the way the socket reader feeds it.
pub fn proxy_header(data: &[u8]) {
    let mut have = 0;
    for _ in 0..=V1_MAX_LEN {
        match parse(&data[..have]) {
            Ok(Step::More(n)) if n > 0 && have + n <= data.len() => have += n,
            Ok(Step::Done(header)) => {
                assert_eq!(header.len, have, "a header is exactly the bytes read");
                return;
            }
            _ => return,
        }
    }
    panic!("the PROXY parser kept asking for bytes");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inputs per body: bounded so the test takes about a second in debug builds.
    const ROUNDS: usize = 20_000;

    /// Inputs that start like the real thing, then mutate.
    const SEEDS: &[&[u8]] = &[
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n",
        b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x09\x0a\x00\x00\x01\x9c\x40\x01\xbb",
        b"listeners:\n  https: 127.0.0.1:8443\nroutes:\n  - { name: a, upstream: a, rate_limit: { rate: 1/s } }\nupstreams:\n  a:\n    servers: [ { address: 127.0.0.1:3000 } ]\n",
        b"a.test /\n*.b.test /v1\n /x\na.test /v1/chat\nx.b.test /v1/y\n",
    ];

    fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for _ in 0..rng.usize(1..8) {
            match rng.u8(0..4) {
                0 if !out.is_empty() => {
                    let i = rng.usize(..out.len());
                    out[i] = rng.u8(..);
                }
                1 => {
                    let i = rng.usize(..=out.len());
                    out.insert(i, rng.u8(..));
                }
                2 if !out.is_empty() => {
                    let i = rng.usize(..out.len());
                    out.truncate(i);
                }
                _ => out.extend((0..rng.usize(0..16)).map(|_| rng.u8(..))),
            }
        }
        out
    }

    #[test]
    fn fuzz_bodies_survive_mutated_and_random_inputs() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for round in 0..ROUNDS {
            let input = if round % 4 == 0 {
                (0..rng.usize(0..128)).map(|_| rng.u8(..)).collect()
            } else {
                mutate(&mut rng, SEEDS[round % SEEDS.len()])
            };
            proxy_header(&input);
            route_matcher(&input);
            if round % 10 == 0 {
                config_loader(&input);
            }
        }
    }
}
