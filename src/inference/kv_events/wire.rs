//! The bytes of vLLM's KV-cache event stream: each ZMQ message is `[topic, seq, payload]`, the
//! sequence number 8 bytes big-endian, the payload one msgpack `KVEventBatch`:
//! `[ts, [event…], data_parallel_rank?]`, each event a tagged array
//! (`["BlockStored", hashes, parent, token_ids, block_size, …]`, `["BlockRemoved", hashes, …]`,
//! `["AllBlocksCleared"]`) or, in newer releases, a map with a `type` key. Fields are read by
//! position (or name) and extra ones ignored, so older and newer vLLM versions decode alike; a
//! hash is a uint or a 32-byte digest (its last eight bytes, big-endian, as vLLM folds it);
//! unknown events are skipped. Decoded into plain values by `rmpv`: the layouts vary too much
//! between versions for a fixed serde shape.

use rmpv::Value;

/// One event, reduced to what routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Blocks newly cached, in prompt order (with the engine's block size when given).
    Stored {
        hashes: Vec<u64>,
        block_size: Option<usize>,
    },
    /// Blocks evicted.
    Removed { hashes: Vec<u64> },
    /// Every block dropped.
    Cleared,
}

/// One numbered batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub events: Vec<Event>,
}

/// The replay socket's end marker: sequence -1.
pub const END_OF_REPLAY: [u8; 8] = [0xff; 8];

/// A sequence-number frame: 8 bytes big-endian.
pub fn seq(frame: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = frame.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A block hash: a uint, or a digest folded to its last eight bytes.
fn hash(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => i.as_u64().or_else(|| i.as_i64().map(|v| v as u64)),
        Value::Binary(bytes) if bytes.len() >= 8 => {
            let tail: [u8; 8] = bytes[bytes.len() - 8..].try_into().ok()?;
            Some(u64::from_be_bytes(tail))
        }
        _ => None,
    }
}

fn hashes(value: Option<&Value>) -> Option<Vec<u64>> {
    value?.as_array()?.iter().map(hash).collect()
}

/// Field `index` (after the tag) of an array event, or `name` of a map event.
fn field<'a>(event: &'a Value, index: usize, name: &str) -> Option<&'a Value> {
    match event {
        Value::Array(items) => items.get(index + 1),
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// One event; `Ok(None)` for an event of a kind routing does not use.
fn event(value: &Value) -> Result<Option<Event>, String> {
    let tag = match value {
        Value::Array(items) => items.first().and_then(Value::as_str),
        Value::Map(_) => field(value, 0, "type").and_then(Value::as_str),
        // Not an event this decoder knows the shape of: skipped like an unknown tag.
        _ => return Ok(None),
    }
    .ok_or("an event without a tag")?;
    Ok(match tag {
        "BlockStored" => Some(Event::Stored {
            hashes: hashes(field(value, 0, "block_hashes"))
                .ok_or("BlockStored without block hashes")?,
            block_size: field(value, 3, "block_size")
                .and_then(Value::as_u64)
                .and_then(|s| usize::try_from(s).ok()),
        }),
        "BlockRemoved" => Some(Event::Removed {
            hashes: hashes(field(value, 0, "block_hashes"))
                .ok_or("BlockRemoved without block hashes")?,
        }),
        "AllBlocksCleared" => Some(Event::Cleared),
        _ => None,
    })
}

/// Decodes a batch payload with its sequence number.
pub fn decode(seq: u64, payload: &[u8]) -> Result<Batch, String> {
    let mut bytes = payload;
    let value = rmpv::decode::read_value(&mut bytes).map_err(|e| format!("msgpack: {e}"))?;
    let items = value.as_array().ok_or("a batch is not an array")?;
    let events = items
        .get(1)
        .and_then(Value::as_array)
        .ok_or("a batch without an event list")?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if let Some(event) = event(e)? {
            out.push(event);
        }
    }
    Ok(Batch { seq, events: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A batch as msgspec encodes vLLM's structs (ts 1.5, rank 0): a BlockStored of hashes 1
    /// and u64::MAX with tokens [1, 2], block size 16, medium GPU and four more nil fields, a
    /// BlockRemoved of 3, a clear.
    const MSGSPEC_BATCH: &str = "93 cb3ff8000000000000 93 \
        9b ab426c6f636b53746f726564 92 01 cfffffffffffffffff c0 92 01 02 10 c0 a3475055 c0 c0 c0 c0 \
        94 ac426c6f636b52656d6f766564 91 03 a3475055 c0 \
        91 b0416c6c426c6f636b73436c6561726564 \
        00";

    #[test]
    fn decodes_vllm_batches() {
        let batch = decode(7, &hex(MSGSPEC_BATCH)).expect("decodes");
        assert_eq!(batch.seq, 7);
        assert_eq!(
            batch.events,
            vec![
                Event::Stored {
                    hashes: vec![1, u64::MAX],
                    block_size: Some(16)
                },
                Event::Removed { hashes: vec![3] },
                Event::Cleared,
            ]
        );
        assert_eq!(seq(&[0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(seq(&END_OF_REPLAY), Some(u64::MAX));
        assert_eq!(seq(&[1, 2]), None);
    }

    #[test]
    fn older_newer_and_odd_layouts() {
        // vLLM 0.9: a two-element batch, five-field BlockStored, 32-byte digests.
        let mut digest = vec![0u8; 32];
        digest[31] = 5;
        let old = Value::Array(vec![
            Value::from(1.0),
            Value::Array(vec![
                Value::Array(vec![
                    Value::from("BlockStored"),
                    Value::Array(vec![Value::Binary(digest)]),
                    Value::Nil,
                    Value::Array(vec![]),
                    Value::from(16),
                    Value::Nil,
                ]),
                Value::Array(vec![Value::from("SomethingNew"), Value::from(1)]),
                // Newer: a map with a type key.
                Value::Map(vec![
                    (Value::from("type"), Value::from("BlockRemoved")),
                    (
                        Value::from("block_hashes"),
                        Value::Array(vec![Value::from(9)]),
                    ),
                ]),
            ]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &old).expect("encode");
        let batch = decode(0, &bytes).expect("decodes");
        assert_eq!(
            batch.events,
            vec![
                Event::Stored {
                    hashes: vec![5],
                    block_size: Some(16)
                },
                Event::Removed { hashes: vec![9] },
            ]
        );
        assert!(decode(0, b"\xc1").is_err());
        assert!(decode(0, &hex("91 01")).is_err());
        assert!(
            decode(0, &hex("92 01 91 91 01")).is_err(),
            "an untagged event"
        );
    }
}
