//! Features the config contract names but this build does not implement yet: the parser accepts
//! them, validation rejects them here, one variant each, so each can be deleted when it lands.

/// A contract feature not implemented yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::config) enum NotYet {
    /// `balance:` other than `round_robin` (the name as written).
    Balance(&'static str),
    Sticky,
    Health,
    Discovery,
    Inference,
    MaxInflight,
}

impl NotYet {
    pub(in crate::config) fn message(self) -> String {
        match self {
            Self::Balance(name) => {
                format!("balance `{name}` is not supported yet by this build; use `round_robin`")
            }
            Self::Sticky => unsupported("sticky sessions (`sticky`)"),
            Self::Health => unsupported("active health checks (`health`)"),
            Self::Discovery => unsupported("DNS discovery (`discovery`)"),
            Self::Inference => unsupported("inference-aware routing (`inference`)"),
            Self::MaxInflight => unsupported("per-server limits (`max_inflight`)"),
        }
    }
}

fn unsupported(feature: &str) -> String {
    format!("{feature} is not supported yet by this build; remove it")
}
