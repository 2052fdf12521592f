//! Injected faults: the JSON body of `POST /sim/faults` (also the CLI's starting values) and the
//! decisions they imply for one request.

use serde::{Deserialize, Serialize};

/// Faults in force on a node. A `POST /sim/faults` replaces all of them: omitted fields reset to
/// the defaults (no faults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of completion requests answered 503 at once (0..=1).
    pub error_rate: f64,
    /// Multiplies every simulated latency (queue excepted: that is real waiting).
    pub slow_factor: f64,
    /// Drop the connection after this many output tokens, with no clean end of the response.
    pub kill_after_tokens: Option<u32>,
    /// `GET /health` answers 503.
    pub unhealthy: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            slow_factor: 1.0,
            kill_after_tokens: None,
            unhealthy: false,
        }
    }
}

impl Faults {
    /// Why these faults cannot be applied, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be between 0 and 1".into());
        }
        if !(self.slow_factor.is_finite() && self.slow_factor > 0.0) {
            return Err("slow_factor must be a positive number".into());
        }
        Ok(())
    }

    /// Parses and validates a `POST /sim/faults` body.
    pub fn parse(body: &[u8]) -> Result<Faults, String> {
        let faults: Faults = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        faults.validate()?;
        Ok(faults)
    }

    /// Whether a request drawing `roll` (uniform in 0..1) gets an injected error.
    pub fn injects_error(&self, roll: f64) -> bool {
        roll < self.error_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_bodies() {
        let f = Faults::parse(
            br#"{"error_rate":0.5,"slow_factor":2,"kill_after_tokens":3,"unhealthy":true}"#,
        )
        .unwrap();
        assert_eq!(f.error_rate, 0.5);
        assert_eq!(f.slow_factor, 2.0);
        assert_eq!(f.kill_after_tokens, Some(3));
        assert!(f.unhealthy);
        let f = Faults::parse(br#"{"kill_after_tokens":null}"#).unwrap();
        assert_eq!(f, Faults::default());
    }

    #[test]
    fn rejects_out_of_range_and_unknown_fields() {
        assert!(Faults::parse(br#"{"error_rate":1.5}"#).is_err());
        assert!(Faults::parse(br#"{"slow_factor":0}"#).is_err());
        assert!(Faults::parse(br#"{"eror_rate":0.1}"#).is_err());
        assert!(Faults::parse(b"nope").is_err());
    }

    #[test]
    fn error_rate_decides_by_roll() {
        let f = Faults {
            error_rate: 0.25,
            ..Faults::default()
        };
        assert!(f.injects_error(0.1));
        assert!(!f.injects_error(0.3));
        assert!(!Faults::default().injects_error(0.0));
        let always = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        assert!(always.injects_error(0.999));
    }
}
