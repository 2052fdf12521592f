//! The MaxMind-format country database behind a route's `countries`: opened and checked when
//! the configuration is loaded, looked up by client address, and held by a [`GeoipHandle`] whose
//! database a newer file replaces in place (a bad new file keeps the one in force). Lookups are
//! pure; the only I/O is [`GeoipDatabase::open`] and [`GeoipHandle::refresh`].

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Deserialize;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters, either case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Built from two ASCII letters only.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies one version of a file: a replaced or rewritten file has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of the file at `path` now (following symlinks).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

/// One database file, read into memory.
pub struct GeoipDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
    /// The file's stamp just before it was read.
    stamp: Option<FileStamp>,
}

/// The part of a GeoIP2/GeoLite2 Country or City record that names the country.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

impl GeoipDatabase {
    /// Reads and checks the database at `path`; the error names the file and what is wrong.
    pub fn open(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let stamp = FileStamp::of(path).ok();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Self::from_bytes(bytes, stamp)
            .map_err(|e| format!("{shown} is not a MaxMind-format database: {e}"))
    }

    /// A database from its bytes (`stamp`: the file's, when read from one).
    pub fn from_bytes(bytes: Vec<u8>, stamp: Option<FileStamp>) -> Result<Self, String> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| e.to_string())?;
        Ok(Self { reader, stamp })
    }

    /// The country of `ip` (its `country`, else its `registered_country`); `None` when the
    /// database does not know the address.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let result = self.reader.lookup(ip.to_canonical()).ok()?;
        let record: CountryRecord<'_> = result.decode().ok().flatten()?;
        let code = record
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))?;
        CountryCode::parse(code)
    }

    /// The database's type and build time, for logs.
    pub fn description(&self) -> String {
        let meta = self.reader.metadata();
        format!("{} built {}", meta.database_type, meta.build_epoch)
    }

    /// The stamp of the file this was read from.
    pub fn stamp(&self) -> Option<FileStamp> {
        self.stamp
    }
}

impl fmt::Debug for GeoipDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoipDatabase")
            .field("database", &self.description())
            .finish_non_exhaustive()
    }
}

/// What a [`GeoipHandle::refresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The file is the one already tried.
    Unchanged,
    /// A new file was read and is now in force.
    Reloaded(String),
    /// A new file could not be used; the database in force stays. Says why.
    Kept(String),
}

/// The database of one file, kept across configurations; lookups read whatever is in force.
#[derive(Debug)]
pub struct GeoipHandle {
    path: PathBuf,
    current: ArcSwap<GeoipDatabase>,
    /// The stamp of the last file version read, good or bad (a bad file is not read again until
    /// it changes).
    tried: Mutex<Option<FileStamp>>,
}

impl GeoipHandle {
    /// A handle on `path` with `database` (read from it) in force.
    pub fn new(path: &Path, database: Arc<GeoipDatabase>) -> Self {
        Self {
            path: path.to_path_buf(),
            tried: Mutex::new(database.stamp()),
            current: ArcSwap::new(database),
        }
    }

    /// The file this handle follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The country of `ip` in the database in force.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        self.current.load().country(ip)
    }

    /// The database in force.
    pub fn current(&self) -> Arc<GeoipDatabase> {
        self.current.load_full()
    }

    /// Puts `database` in force (a configuration load read the file afresh).
    pub fn replace(&self, database: Arc<GeoipDatabase>) {
        *self.tried.lock() = database.stamp();
        self.current.store(database);
    }

    /// Reads the file again when it changed since it was last read: a good one replaces the
    /// database in force, a bad one leaves it (and is not retried until it changes again).
    pub fn refresh(&self) -> Refresh {
        let stamp = match FileStamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(error) => {
                // Gone (a rename in progress, or removed): keep serving, look again later.
                let mut tried = self.tried.lock();
                if tried.is_none() {
                    return Refresh::Unchanged;
                }
                *tried = None;
                return Refresh::Kept(format!("cannot read {}: {error}", self.path.display()));
            }
        };
        {
            let mut tried = self.tried.lock();
            if *tried == Some(stamp) {
                return Refresh::Unchanged;
            }
            *tried = Some(stamp);
        }
        match GeoipDatabase::open(&self.path) {
            Ok(database) => {
                let description = database.description();
                *self.tried.lock() = database.stamp();
                self.current.store(Arc::new(database));
                Refresh::Reloaded(description)
            }
            Err(error) => Refresh::Kept(error),
        }
    }
}

/// The handle that outlives configurations: one database file in force at a time.
#[derive(Debug, Default)]
pub struct GeoipKeeper {
    kept: Mutex<Option<Arc<GeoipHandle>>>,
}

impl GeoipKeeper {
    /// The kept handle when it follows `path`, else a new one over `loaded` (kept only when
    /// [`GeoipKeeper::adopt`]ed). Changes nothing.
    pub fn handle_for(&self, path: &Path, loaded: &Arc<GeoipDatabase>) -> Arc<GeoipHandle> {
        match &*self.kept.lock() {
            Some(kept) if kept.path() == path => kept.clone(),
            _ => Arc::new(GeoipHandle::new(path, loaded.clone())),
        }
    }

    /// Keeps `handle` (the one the configuration now in force uses; `None`: none). `loaded`,
    /// read by that configuration's load, replaces the database of a kept handle when it is of
    /// another version of the file.
    pub fn adopt(&self, handle: Option<&Arc<GeoipHandle>>, loaded: Option<&Arc<GeoipDatabase>>) {
        if let (Some(handle), Some(loaded)) = (handle, loaded) {
            if handle.current().stamp() != loaded.stamp() {
                handle.replace(loaded.clone());
            }
        }
        *self.kept.lock() = handle.cloned();
    }

    /// The handle in force.
    pub fn current(&self) -> Option<Arc<GeoipHandle>> {
        self.kept.lock().clone()
    }
}

#[cfg(test)]
mod tests;
