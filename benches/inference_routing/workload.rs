//! The synthetic multi-tenant chat workload: tenants with long system prompts, chats whose
//! history grows turn by turn, a Poisson arrival process whose rate ramps up and then holds, and
//! the OpenAI request bodies built from them. Deterministic for a seed.

use std::time::Duration;

use serde_json::{json, Value};

/// Characters per token, as the simulator counts them.
pub const CHARS_PER_TOKEN: usize = 4;
/// The one model every simulated node serves.
pub const MODEL: &str = "sim-model";

/// Words prompts are made of (the simulator only counts characters).
const WORDS: [&str; 32] = [
    "cluster",
    "invoice",
    "policy",
    "latency",
    "summary",
    "customer",
    "kernel",
    "account",
    "report",
    "schedule",
    "network",
    "budget",
    "contract",
    "release",
    "support",
    "document",
    "project",
    "quality",
    "service",
    "backup",
    "review",
    "archive",
    "request",
    "finance",
    "storage",
    "ticket",
    "product",
    "meeting",
    "vendor",
    "compliance",
    "dataset",
    "pipeline",
];

/// What the workload looks like (from the environment knobs).
#[derive(Debug, Clone)]
pub struct Shape {
    pub tenants: usize,
    pub system_tokens: usize,
    /// User message length range in tokens.
    pub user_tokens: (usize, usize),
    /// Output length range in tokens.
    pub output_tokens: (u32, u32),
    /// Turns per chat range.
    pub turns: (usize, usize),
    /// Share of new chats that belong to tenant 0 (the `hot` control); 0 = uniform.
    pub hot_share: f64,
    /// Every request is a fresh random prompt of `system_tokens` tokens without a chat id (the
    /// `random` control).
    pub random_prompts: bool,
}

/// One chat in progress.
#[derive(Debug, Clone)]
pub struct Chat {
    pub id: String,
    pub tenant: usize,
    /// (user, assistant) turns so far.
    pub history: Vec<(String, String)>,
    pub turns_left: usize,
    pub busy: bool,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Index into the open chats, `None` for a random prompt.
    pub chat: Option<usize>,
    pub chat_id: Option<String>,
    pub user: String,
    pub body: Vec<u8>,
}

/// Tenants' prompts, open chats and the random source.
pub struct Workload {
    pub shape: Shape,
    rng: fastrand::Rng,
    system: Vec<String>,
    pub chats: Vec<Chat>,
    next_chat: u64,
}

/// Open chats kept at most (a new chat replaces a finished one beyond this).
const MAX_OPEN_CHATS: usize = 2_000;
/// Chance that an arrival continues an idle open chat rather than starting a new one.
const CONTINUE_SHARE: f64 = 0.75;

impl Workload {
    pub fn new(shape: Shape, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let system = (0..shape.tenants)
            .map(|t| {
                let head = format!("You are the assistant of tenant {t}. Follow its handbook. ");
                let body_chars = (shape.system_tokens * CHARS_PER_TOKEN).saturating_sub(head.len());
                head + &words(&mut rng, body_chars)
            })
            .collect();
        Workload {
            shape,
            rng,
            system,
            chats: Vec::new(),
            next_chat: 0,
        }
    }

    /// The next request: continues an idle chat or opens a new one (or a random prompt).
    pub fn next_turn(&mut self) -> Turn {
        let (user_lo, user_hi) = self.shape.user_tokens;
        let user_chars = self.rng.usize(user_lo..=user_hi) * CHARS_PER_TOKEN;
        let user = words(&mut self.rng, user_chars);
        let max_tokens = self
            .rng
            .u32(self.shape.output_tokens.0..=self.shape.output_tokens.1);
        if self.shape.random_prompts {
            let prompt = words(&mut self.rng, self.shape.system_tokens * CHARS_PER_TOKEN);
            let messages = vec![json!({"role": "user", "content": prompt})];
            return Turn {
                chat: None,
                chat_id: None,
                user,
                body: body(messages, max_tokens),
            };
        }
        let chat = self.pick_chat();
        let c = &mut self.chats[chat];
        c.busy = true;
        let mut messages = vec![json!({"role": "system", "content": self.system[c.tenant]})];
        for (u, a) in &c.history {
            messages.push(json!({"role": "user", "content": u}));
            messages.push(json!({"role": "assistant", "content": a}));
        }
        messages.push(json!({"role": "user", "content": user}));
        Turn {
            chat: Some(chat),
            chat_id: Some(c.id.clone()),
            user,
            body: body(messages, max_tokens),
        }
    }

    /// Records a finished turn (a failed one leaves the history as it was).
    pub fn finish(&mut self, chat: usize, user: String, reply: Option<String>) {
        let c = &mut self.chats[chat];
        c.busy = false;
        if let Some(reply) = reply {
            c.history.push((user, reply));
            c.turns_left = c.turns_left.saturating_sub(1);
        }
    }

    fn pick_chat(&mut self) -> usize {
        let idle: Vec<usize> = (0..self.chats.len())
            .filter(|&i| !self.chats[i].busy && self.chats[i].turns_left > 0)
            .collect();
        if !idle.is_empty() && self.rng.f64() < CONTINUE_SHARE {
            return idle[self.rng.usize(..idle.len())];
        }
        let tenant = if self.shape.hot_share > 0.0 && self.rng.f64() < self.shape.hot_share {
            0
        } else {
            self.rng.usize(..self.shape.tenants)
        };
        self.next_chat += 1;
        let chat = Chat {
            id: format!("chat-{}-{}", tenant, self.next_chat),
            tenant,
            history: Vec::new(),
            turns_left: self.rng.usize(self.shape.turns.0..=self.shape.turns.1),
            busy: false,
        };
        // Reuse the slot of a finished chat once the table is large.
        if self.chats.len() >= MAX_OPEN_CHATS {
            if let Some(done) = self.chats.iter().position(|c| !c.busy && c.turns_left == 0) {
                self.chats[done] = chat;
                return done;
            }
        }
        self.chats.push(chat);
        self.chats.len() - 1
    }

    /// Seconds until the next arrival of a Poisson process at `rate` per second.
    pub fn gap(&mut self, rate: f64) -> Duration {
        let u = self.rng.f64().max(1e-12);
        Duration::from_secs_f64((-u.ln() / rate.max(1e-3)).min(10.0))
    }
}

/// The arrival rate at `elapsed` into a run: ramps linearly from `start` to `peak` over `ramp`,
/// then holds `peak`.
pub fn rate_at(elapsed: Duration, ramp: Duration, start: f64, peak: f64) -> f64 {
    if elapsed >= ramp || ramp.is_zero() {
        return peak;
    }
    start + (peak - start) * elapsed.as_secs_f64() / ramp.as_secs_f64()
}

fn body(messages: Vec<Value>, max_tokens: u32) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": MODEL,
        "stream": true,
        "max_tokens": max_tokens,
        "messages": messages,
    }))
    .expect("serialize request body")
}

/// About `chars` characters of random words.
pub fn words(rng: &mut fastrand::Rng, chars: usize) -> String {
    let mut out = String::with_capacity(chars + 16);
    while out.len() < chars {
        out.push_str(WORDS[rng.usize(..WORDS.len())]);
        out.push(' ');
    }
    out.truncate(chars);
    out
}
