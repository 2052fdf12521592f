//! The bytes of vLLM's KV-cache event stream: a msgpack `KVEventBatch` in msgspec's
//! `array_like` layout (`[ts, [events…], data_parallel_rank]`, each event an array led by its tag:
//! `BlockStored`, `BlockRemoved`, `AllBlocksCleared`, every declared field present, unset ones
//! nil), and the three ZMQ frames a batch travels in: topic, sequence number (8 bytes,
//! big-endian), payload. Pure.

use serde::ser::{Serialize, Serializer};

/// The storage medium vLLM names for the GPU's KV cache.
pub const MEDIUM_GPU: &str = "GPU";
/// The sequence number of the replay socket's end marker (-1 as 8 signed big-endian bytes).
pub const END_OF_REPLAY: [u8; 8] = [0xff; 8];

/// Newly cached full blocks of one request, in prompt order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStored {
    /// The blocks' hashes (vLLM's 64-bit form).
    pub block_hashes: Vec<u64>,
    /// The hash of the block before the first of them; `None` from the prompt's start.
    pub parent_block_hash: Option<u64>,
    /// Exactly the blocks' tokens.
    pub token_ids: Vec<u32>,
    pub block_size: u32,
}

/// One change to a node's prefix cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    Stored(BlockStored),
    /// Evicted blocks (vLLM sends one event per block).
    Removed(Vec<u64>),
    /// The whole cache was dropped.
    AllCleared,
}

impl Serialize for KvEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let none_int: Option<i64> = None;
        let none_str: Option<&str> = None;
        match self {
            // block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
            // lora_name, extra_keys, group_idx, kv_cache_spec_kind,
            // kv_cache_spec_sliding_window.
            KvEvent::Stored(s) => (
                "BlockStored",
                &s.block_hashes,
                s.parent_block_hash,
                &s.token_ids,
                s.block_size,
                none_int,
                Some(MEDIUM_GPU),
                none_str,
                none_int,
                none_int,
                none_str,
                none_int,
            )
                .serialize(serializer),
            // block_hashes, medium, group_idx.
            KvEvent::Removed(hashes) => {
                ("BlockRemoved", hashes, Some(MEDIUM_GPU), none_int).serialize(serializer)
            }
            KvEvent::AllCleared => ("AllBlocksCleared",).serialize(serializer),
        }
    }
}

/// One batch's msgpack payload: `[ts, events, data_parallel_rank]`.
pub fn encode_batch(ts: f64, events: &[KvEvent], data_parallel_rank: u32) -> Vec<u8> {
    // Plain data into a Vec: encoding cannot fail.
    rmp_serde::to_vec(&(ts, events, Some(data_parallel_rank))).unwrap_or_default()
}

/// The frames of one published message.
pub fn frames(topic: &str, seq: u64, payload: &[u8]) -> [Vec<u8>; 3] {
    [
        topic.as_bytes().to_vec(),
        seq.to_be_bytes().to_vec(),
        payload.to_vec(),
    ]
}

/// The start sequence of a replay request (`[b"", start]` from a DEALER, the identity already
/// taken off), if it is one.
pub fn replay_start(frames: &[&[u8]]) -> Option<u64> {
    match frames {
        [[], start] => Some(u64::from_be_bytes((*start).try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// msgspec 0.23's encoding of the same batch through vLLM's struct definitions with
    /// `array_like=True` (ts 1757500000.25, rank 0).
    const MSGSPEC_BATCH: &str = "93cb41da305498100000949cab426c6f636b53746f72656492cfb014755627\
        6afc9c07c0940102cd012cce0001117002c0a3475055c0c0c0c0c09cab426c6f636b53746f7265649105cfb0\
        147556276afc9c92090a02c0a3475055c0c0c0c0c094ac426c6f636b52656d6f76656491cfffffffffffffff\
        ffa3475055c091b0416c6c426c6f636b73436c656172656400";

    fn sample() -> Vec<KvEvent> {
        vec![
            KvEvent::Stored(BlockStored {
                block_hashes: vec![12_687_895_063_098_490_012, 7],
                parent_block_hash: None,
                token_ids: vec![1, 2, 300, 70_000],
                block_size: 2,
            }),
            KvEvent::Stored(BlockStored {
                block_hashes: vec![5],
                parent_block_hash: Some(12_687_895_063_098_490_012),
                token_ids: vec![9, 10],
                block_size: 2,
            }),
            KvEvent::Removed(vec![u64::MAX]),
            KvEvent::AllCleared,
        ]
    }

    #[test]
    fn bytes_equal_msgspec_encoding() {
        let payload = encode_batch(1_757_500_000.25, &sample(), 0);
        assert_eq!(hex(&payload), MSGSPEC_BATCH);
    }

    #[test]
    fn decodes_to_the_documented_arrays() {
        let payload = encode_batch(2.5, &sample(), 0);
        let v: Value = rmp_serde::from_slice(&payload).unwrap();
        assert_eq!(v[0], json!(2.5));
        assert_eq!(v[2], json!(0));
        let events = v[1].as_array().unwrap();
        assert_eq!(
            events[0],
            json!([
                "BlockStored",
                [12_687_895_063_098_490_012u64, 7],
                null,
                [1, 2, 300, 70000],
                2,
                null,
                "GPU",
                null,
                null,
                null,
                null,
                null
            ])
        );
        assert_eq!(events[1][2], json!(12_687_895_063_098_490_012u64));
        assert_eq!(events[2], json!(["BlockRemoved", [u64::MAX], "GPU", null]));
        assert_eq!(events[3], json!(["AllBlocksCleared"]));
    }

    #[test]
    fn frames_and_replay_requests() {
        let [topic, seq, payload] = frames("kv-events", 258, b"xy");
        assert_eq!(topic, b"kv-events");
        assert_eq!(seq, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(payload, b"xy");
        assert_eq!(replay_start(&[b"", &[0, 0, 0, 0, 0, 0, 0, 9]]), Some(9));
        assert_eq!(replay_start(&[b"x", &[0; 8]]), None);
        assert_eq!(replay_start(&[b"", &[0; 4]]), None);
        assert_eq!(replay_start(&[&[0; 8]]), None);
        assert_eq!(i64::from_be_bytes(END_OF_REPLAY), -1);
    }
}
