//! Lookups and reloads against the generated fixtures in tests/fixtures/geoip/ (written by
//! scripts/make-geoip-fixtures.py).

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geoip")
        .join(name)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn code(text: &str) -> Option<CountryCode> {
    CountryCode::parse(text)
}

#[test]
fn country_codes_are_two_letters_upper_cased() {
    assert_eq!(code("de").map(|c| c.to_string()).as_deref(), Some("DE"));
    for bad in ["", "D", "DEU", "1A", "Ü"] {
        assert_eq!(code(bad), None, "{bad}");
    }
}

#[test]
fn looks_countries_up_by_address() {
    let db = GeoipDatabase::open(&fixture("countries.mmdb")).unwrap();
    assert_eq!(db.country(ip("192.0.2.77")), code("DE"));
    assert_eq!(db.country(ip("198.51.100.1")), code("RU"));
    assert_eq!(db.country(ip("2001:db8::5")), code("FR"));
    // IPv4-mapped IPv6 is the IPv4 address.
    assert_eq!(db.country(ip("::ffff:192.0.2.1")), code("DE"));
    // No country, only a registered one.
    assert_eq!(db.country(ip("203.0.113.9")), code("NL"));
    // Not in the database.
    assert_eq!(db.country(ip("10.1.2.3")), None);
    assert_eq!(db.country(ip("2001:db9::1")), None);
    assert!(db.description().contains("ferrogate-test-Country"));
}

#[test]
fn a_missing_or_foreign_file_is_refused_with_its_name() {
    let error = GeoipDatabase::open(Path::new("/nonexistent/x.mmdb")).unwrap_err();
    assert!(
        error.starts_with("cannot read /nonexistent/x.mmdb"),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.mmdb");
    std::fs::write(&text, "not a database").unwrap();
    let error = GeoipDatabase::open(&text).unwrap_err();
    assert!(
        error.contains("is not a MaxMind-format database"),
        "{error}"
    );
}

#[test]
fn a_changed_file_replaces_the_database_and_a_bad_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countries.mmdb");
    std::fs::copy(fixture("countries.mmdb"), &path).unwrap();
    let handle = GeoipHandle::new(&path, Arc::new(GeoipDatabase::open(&path).unwrap()));
    assert_eq!(handle.refresh(), Refresh::Unchanged);
    assert_eq!(handle.country(ip("192.0.2.1")), code("DE"));

    // An update written beside and renamed over, as geoipupdate does.
    let next = dir.path().join("countries.mmdb.new");
    std::fs::copy(fixture("countries-v2.mmdb"), &next).unwrap();
    std::fs::rename(&next, &path).unwrap();
    assert!(matches!(handle.refresh(), Refresh::Reloaded(_)));
    assert_eq!(handle.country(ip("192.0.2.1")), code("FR"));
    assert_eq!(handle.refresh(), Refresh::Unchanged);

    // A truncated download: the database in force stays, and the bad file is not read again.
    let bytes = std::fs::read(fixture("countries.mmdb")).unwrap();
    std::fs::write(&next, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::rename(&next, &path).unwrap();
    match handle.refresh() {
        Refresh::Kept(reason) => assert!(reason.contains("countries.mmdb"), "{reason}"),
        other => panic!("expected the old database kept, got {other:?}"),
    }
    assert_eq!(handle.country(ip("192.0.2.1")), code("FR"));
    assert_eq!(handle.refresh(), Refresh::Unchanged);

    // Removed: kept, said once.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(handle.refresh(), Refresh::Kept(_)));
    assert_eq!(handle.refresh(), Refresh::Unchanged);
    assert_eq!(handle.country(ip("192.0.2.1")), code("FR"));

    // Back again: read.
    std::fs::copy(fixture("countries.mmdb"), &path).unwrap();
    assert!(matches!(handle.refresh(), Refresh::Reloaded(_)));
    assert_eq!(handle.country(ip("192.0.2.1")), code("DE"));
}
