//! Features the config contract names but this build does not implement yet: the parser accepts
//! them, validation rejects them here, one variant each, so each can be deleted when it lands.

/// A contract feature not implemented yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::config) enum NotYet {
    /// `balance:` values not implemented (the name as written).
    Balance(&'static str),
    Inference,
}

impl NotYet {
    pub(in crate::config) fn message(self) -> String {
        match self {
            Self::Balance(name) => {
                format!("balance `{name}` is not supported yet by this build; use `round_robin`, `least_inflight`, `p2c` or `hash`")
            }
            Self::Inference => unsupported("inference-aware routing (`inference`)"),
        }
    }
}

fn unsupported(feature: &str) -> String {
    format!("{feature} is not supported yet by this build; remove it")
}
