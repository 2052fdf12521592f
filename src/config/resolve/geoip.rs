//! `geoip.database`: the country database, read and checked at load when a route uses
//! `countries` (a missing or foreign file is an error at the key).

use std::sync::Arc;

use crate::config::draft::DraftGeoip;
use crate::config::model::Geoip;
use crate::config::report::Report;
use crate::geoip::GeoipDatabase;

/// The database `draft` names; `None` when it cannot be used (reported).
pub(super) fn load(draft: DraftGeoip, report: &mut Report) -> Option<Geoip> {
    match GeoipDatabase::open(&draft.database.path) {
        Ok(database) => Some(Geoip {
            database: draft.database.path,
            loaded: Arc::new(database),
        }),
        Err(message) => {
            report.at_value(&draft.at, message);
            None
        }
    }
}
