//! The node's KV event stream seen by a real ZMQ subscriber over TCP on loopback: batches carry
//! consecutive sequence numbers, a prompt's blocks arrive as `BlockStored` with the tokens
//! `/tokenize` gives and the hashes vLLM's `sha256_cbor` gives, LRU evictions as `BlockRemoved`,
//! a reset as `AllBlocksCleared`, and a replay request fills a gap with the very bytes that were
//! published.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use super::client::request;
use super::{chat, fast};
use crate::block_hash::{block_hashes, none_hash};
use crate::{start, KvEventsConfig, SimConfig, SimHandle};

const WAIT: Duration = Duration::from_millis(300);

/// `(seq, payload)` of one published message, checked for its topic.
async fn next_message(sub: &mut SubSocket, wait: Duration) -> Option<(u64, Bytes)> {
    let message = tokio::time::timeout(wait, sub.recv()).await.ok()?.ok()?;
    let frames = message.into_vec();
    assert_eq!(frames.len(), 3, "topic, seq, payload");
    assert_eq!(&frames[0][..], b"kv-events");
    let seq = u64::from_be_bytes(frames[1][..].try_into().expect("8-byte seq"));
    Some((seq, frames[2].clone()))
}

fn decode(payload: &[u8]) -> Value {
    rmp_serde::from_slice(payload).expect("msgpack batch")
}

async fn complete(node: &SimHandle, content: &str) {
    let body = chat("m", content, json!({"max_tokens": 1}));
    let (head, text) = request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 200, "{text}");
}

async fn tokens_of(node: &SimHandle, content: &str) -> Vec<u32> {
    let body = chat("m", content, json!({}));
    let (head, text) = request(node.addr(), "POST", "/tokenize", &body).await;
    assert_eq!(head.status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["tokens"].clone()).unwrap()
}

#[tokio::test]
async fn a_subscriber_sees_stores_evictions_resets_and_replays_a_gap() {
    let node = start(SimConfig {
        cache_blocks: 8,
        kv_events: Some(KvEventsConfig {
            replay_endpoint: Some("tcp://127.0.0.1:0".into()),
            ..KvEventsConfig::on("tcp://127.0.0.1:0")
        }),
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let (events_at, replay_at) = node.kv_event_endpoints().unwrap();
    assert!(events_at.starts_with("tcp://127.0.0.1:"), "{events_at}");
    let replay_at = replay_at.unwrap();

    let mut sub = SubSocket::new();
    sub.connect(&events_at).await.unwrap();
    sub.subscribe("kv-events").await.unwrap();
    // Until the subscription reaches the publisher, its batches are lost (ZMQ's slow joiner):
    // warm up with prompts of their own until one arrives.
    let mut live: BTreeMap<u64, Bytes> = BTreeMap::new();
    for round in 0..100 {
        complete(&node, &format!("warm-up {round} {}", "w".repeat(80))).await;
        if let Some((seq, payload)) = next_message(&mut sub, WAIT).await {
            live.insert(seq, payload);
            break;
        }
    }
    let (&first_seen, _) = live.iter().next().expect("a batch arrives once subscribed");
    while let Some((seq, payload)) = next_message(&mut sub, Duration::from_millis(50)).await {
        live.insert(seq, payload);
    }
    let last = *live.keys().last().unwrap();

    // A 130-character message: 1 + 34 + 1 + 1 + 1 + 3 = 41 tokens, two full blocks.
    let content = "p".repeat(130);
    complete(&node, &content).await;
    let (seq, payload) = next_message(&mut sub, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seq, last + 1, "sequence numbers are consecutive");
    live.insert(seq, payload.clone());
    let tokens = tokens_of(&node, &content).await;
    assert_eq!(tokens.len(), 41);
    let hashes = block_hashes(&none_hash("0"), &tokens, 16);
    let batch = decode(&payload);
    assert!(batch[0].as_f64().unwrap() > 1.7e9, "ts is Unix seconds");
    assert_eq!(batch[2], json!(0), "data parallel rank");
    let events = batch[1].as_array().unwrap();
    let stored = events.last().unwrap();
    assert_eq!(
        stored,
        &json!([
            "BlockStored",
            hashes,
            null,
            tokens[..32],
            16,
            null,
            "GPU",
            null,
            null,
            null,
            null,
            null
        ])
    );
    // Evictions before the stores that needed the room, one block per event.
    for removed in &events[..events.len() - 1] {
        assert_eq!(removed[0], "BlockRemoved");
        assert_eq!(removed[1].as_array().unwrap().len(), 1);
        assert_eq!(removed[2], "GPU");
    }

    // A longer message sharing both full blocks stores only its third, the second as parent.
    let longer = format!("{content}{}", "q".repeat(40));
    let longer_tokens = tokens_of(&node, &longer).await;
    let longer_hashes = block_hashes(&none_hash("0"), &longer_tokens, 16);
    assert_eq!(longer_hashes.len(), 3);
    assert_eq!(longer_hashes[..2], hashes[..]);
    complete(&node, &longer).await;
    let (seq, payload) = next_message(&mut sub, Duration::from_secs(5))
        .await
        .unwrap();
    live.insert(seq, payload.clone());
    let batch = decode(&payload);
    let stored = batch[1].as_array().unwrap().last().unwrap().clone();
    assert_eq!(stored[1], json!(longer_hashes[2..]));
    assert_eq!(stored[2], json!(hashes[1]));
    assert_eq!(stored[3], json!(longer_tokens[32..48]));

    // Eight blocks of cache: a new prompt of eight blocks evicts every old one.
    complete(&node, &"r".repeat(490)).await;
    let (seq, payload) = next_message(&mut sub, Duration::from_secs(5))
        .await
        .unwrap();
    live.insert(seq, payload.clone());
    let batch = decode(&payload);
    let removed: Vec<u64> = batch[1]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[0] == "BlockRemoved")
        .map(|e| e[1][0].as_u64().unwrap())
        .collect();
    assert!(removed.len() >= 3, "{batch}");
    assert!(
        removed.contains(&hashes[1]),
        "the tail of an old chain went: {batch}"
    );

    // A reset.
    let (head, _) = request(node.addr(), "POST", "/reset_prefix_cache", "").await;
    assert_eq!(head.status, 200);
    let (seq, payload) = next_message(&mut sub, Duration::from_secs(5))
        .await
        .unwrap();
    live.insert(seq, payload.clone());
    assert_eq!(decode(&payload)[1], json!([["AllBlocksCleared"]]));
    assert_eq!(node.stats().cache_blocks_resident, 0);

    // Replay from 0: the batches lost before the subscription, then the ones seen live, byte
    // for byte, then the end marker.
    let mut dealer = DealerSocket::new();
    dealer.connect(&replay_at).await.unwrap();
    let ask = ZmqMessage::try_from(vec![
        Bytes::new(),
        Bytes::copy_from_slice(&0u64.to_be_bytes()),
    ])
    .unwrap();
    dealer.send(ask).await.unwrap();
    let mut replayed = Vec::new();
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
            .await
            .expect("replay answers")
            .unwrap()
            .into_vec();
        assert_eq!(answer.len(), 3, "delimiter, seq, payload");
        assert!(answer[0].is_empty());
        if answer[1][..] == [0xff; 8] {
            assert!(answer[2].is_empty(), "the end marker has no payload");
            break;
        }
        let seq = u64::from_be_bytes(answer[1][..].try_into().unwrap());
        replayed.push((seq, answer[2].clone()));
    }
    let seqs: Vec<u64> = replayed.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..=seq).collect::<Vec<_>>(), "every batch from 0 on");
    for (seq, payload) in &replayed {
        if let Some(seen) = live.get(seq) {
            assert_eq!(seen, payload, "replay of {seq} is the published bytes");
        }
    }
    assert!(first_seen <= seq);
    // A start past the end gets only the end marker.
    let ask = ZmqMessage::try_from(vec![
        Bytes::new(),
        Bytes::copy_from_slice(&(seq + 100).to_be_bytes()),
    ])
    .unwrap();
    dealer.send(ask).await.unwrap();
    let answer = dealer.recv().await.unwrap().into_vec();
    assert_eq!(&answer[1][..], &[0xff; 8]);
}

#[tokio::test]
async fn no_reset_while_a_request_holds_blocks() {
    let node = start(SimConfig {
        decode_ms: 50.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let body = chat("m", &"s".repeat(200), json!({"max_tokens": 40}));
    let addr = node.addr();
    let running =
        tokio::spawn(async move { request(addr, "POST", "/v1/chat/completions", &body).await });
    super::wait_until(&node, "running", |s| s.running == 1).await;
    let (head, _) = request(node.addr(), "POST", "/reset_prefix_cache", "").await;
    assert_eq!(head.status, 503);
    assert!(node.stats().cache_blocks_resident > 0);
    running.await.unwrap();
    assert!(node.reset_prefix_cache());
    assert_eq!(node.stats().cache_blocks_resident, 0);
}
