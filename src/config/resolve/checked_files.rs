//! Files the model names by path and reads where it uses them (secrets, CA roots): checked here
//! for being readable and holding what they should, so a mistake shows at load, not at first use.
//! Also where a [`Secret`] is read when it is used.

use crate::config::draft::{CheckedFile, CheckedFileKind};
use crate::config::model::Secret;
use crate::config::report::Report;

/// Reports `file` at its key when it cannot be read or does not hold what its kind needs.
pub(super) fn check(file: &CheckedFile, report: &mut Report) {
    let path = file.path.display();
    let problem = match std::fs::read(&file.path) {
        Err(error) => Some(match file.kind {
            CheckedFileKind::Secret => format!("cannot read secret file {path}: {error}"),
            CheckedFileKind::AcmeCaRoot | CheckedFileKind::RedisCaRoot => {
                format!("cannot read {path}: {error}")
            }
        }),
        Ok(bytes) => {
            let no_certificate = || crate::pem::parse_chain(&bytes).is_err();
            match file.kind {
                CheckedFileKind::Secret => String::from_utf8_lossy(&bytes)
                    .trim()
                    .is_empty()
                    .then(|| format!("secret file {path} is empty")),
                CheckedFileKind::AcmeCaRoot => {
                    no_certificate().then(|| format!("no PEM certificate found in {path}"))
                }
                CheckedFileKind::RedisCaRoot => {
                    no_certificate().then(|| format!("{path} holds no PEM certificate"))
                }
            }
        }
    };
    if let Some(message) = problem {
        report.at_value(&file.at, message);
    }
}

impl Secret {
    /// Reads the secret, trimmed of surrounding whitespace.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
            Self::Env(name) => std::env::var(name)
                .map(|s| s.trim().to_string())
                .map_err(|_| format!("environment variable {name} is not set")),
        }
    }
}
