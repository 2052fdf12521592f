//! The translated configuration as plain data, and its YAML text: sections in ferrogate's order,
//! routes in block style, servers and small settings as flow mappings, a comment above each
//! part saying which HAProxy lines it came from. Scalars are quoted only when YAML needs it.

use std::fmt::Write as _;

/// A header or query condition of a route's `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Present,
    Absent,
    Equals(String),
    Prefix(String),
    Regex(String),
}

/// A route's `match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchOut {
    pub methods: Vec<String>,
    pub headers: Vec<(String, Cond)>,
    pub query: Vec<(String, Cond)>,
    pub client: Vec<String>,
}

impl MatchOut {
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.client.is_empty()
    }
}

/// `set`, `add`, `remove` of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Upstream(String),
    Redirect {
        to: String,
        status: u16,
    },
    Respond {
        status: u16,
        body: String,
        content_type: Option<String>,
    },
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOut {
    pub comments: Vec<String>,
    pub name: String,
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub listener: Option<String>,
    pub matching: MatchOut,
    pub action: Action,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub deny_user_agents: Vec<String>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

/// One listener: `http`, `https` or an extra one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOut {
    pub comments: Vec<String>,
    pub name: String,
    pub address: String,
    pub tls: bool,
    /// Further keys, values already YAML (`header_timeout: 300s`, `client_auth: {…}`).
    pub keys: Vec<(String, String)>,
}

impl ListenerOut {
    pub fn is_builtin(&self) -> bool {
        self.name == "http" || self.name == "https"
    }
}

/// One `tls.certificates` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertOut {
    File {
        comments: Vec<String>,
        name: String,
        path: String,
        /// Written as a comment (ACME issues its names instead).
        disabled: bool,
    },
    Acme {
        comments: Vec<String>,
        name: String,
        domains: Vec<String>,
    },
}

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOut {
    pub address: String,
    pub weight: Option<u32>,
    pub max_inflight: Option<u32>,
    pub drain: bool,
    /// `server NAME (file:line)`, written after it.
    pub comment: String,
}

/// One upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOut {
    pub comments: Vec<String>,
    pub name: String,
    pub servers: Vec<ServerOut>,
    /// Keys after `servers`, values already YAML, in order (`balance`, `sticky`, `health`, …).
    pub keys: Vec<(String, String)>,
}

/// The whole translated file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub header: Vec<String>,
    pub workers: Option<(u32, String)>,
    pub listeners: Vec<ListenerOut>,
    pub certificates: Vec<CertOut>,
    /// Comments above `acme:`, when an ACME section is written.
    pub acme: Option<Vec<String>>,
    pub routes: Vec<RouteOut>,
    pub upstreams: Vec<UpstreamOut>,
}

/// Words YAML 1.1 or 1.2 would read as something other than a string.
const RESERVED: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
];

/// `text` as a YAML scalar: plain when that reads back as the same string, else double-quoted.
pub fn scalar(text: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_./:@+-=%".contains(c);
    let plain = !text.is_empty()
        && text.chars().all(plain_char)
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_/".contains(c))
        && !text.ends_with(':')
        && !text.contains(": ")
        && !RESERVED.contains(&text.to_ascii_lowercase().as_str())
        && text.parse::<f64>().is_err()
        && !text.starts_with("0x")
        && !text.starts_with("0o");
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
    }
}

/// `[a, b]`
pub fn flow_seq<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| scalar(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// `{ k: v, … }` with values already YAML.
pub fn flow_map(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", items.join(", "))
}

fn cond(c: &Cond) -> String {
    match c {
        Cond::Present => "present".into(),
        Cond::Absent => "absent".into(),
        Cond::Equals(v) => format!("{{ equals: {} }}", scalar(v)),
        Cond::Prefix(v) => format!("{{ prefix: {} }}", scalar(v)),
        Cond::Regex(v) => format!("{{ regex: {} }}", scalar(v)),
    }
}

fn comments(out: &mut String, indent: &str, lines: &[String]) {
    for line in lines {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}#");
        } else {
            let _ = writeln!(out, "{indent}# {line}");
        }
    }
}

fn header_ops(ops: &HeaderOps) -> String {
    let mut pairs = Vec::new();
    let map = |list: &[(String, String)]| {
        flow_map(
            &list
                .iter()
                .map(|(k, v)| (scalar(k), scalar(v)))
                .collect::<Vec<_>>(),
        )
    };
    if !ops.set.is_empty() {
        pairs.push(("set".to_string(), map(&ops.set)));
    }
    if !ops.add.is_empty() {
        pairs.push(("add".to_string(), map(&ops.add)));
    }
    if !ops.remove.is_empty() {
        pairs.push(("remove".to_string(), flow_seq(&ops.remove)));
    }
    flow_map(&pairs)
}

fn route(out: &mut String, r: &RouteOut) {
    comments(out, "  ", &r.comments);
    let _ = writeln!(out, "  - name: {}", scalar(&r.name));
    if !r.hosts.is_empty() {
        let _ = writeln!(out, "    hosts: {}", flow_seq(&r.hosts));
    }
    if let Some(prefix) = &r.path_prefix {
        let _ = writeln!(out, "    path_prefix: {}", scalar(prefix));
    }
    if let Some(listener) = &r.listener {
        let _ = writeln!(out, "    listener: {}", scalar(listener));
    }
    if !r.matching.is_empty() {
        let m = &r.matching;
        let _ = writeln!(out, "    match:");
        if !m.methods.is_empty() {
            let _ = writeln!(out, "      methods: {}", flow_seq(&m.methods));
        }
        for (key, list) in [("headers", &m.headers), ("query", &m.query)] {
            if !list.is_empty() {
                let _ = writeln!(out, "      {key}:");
                for (name, c) in list {
                    let _ = writeln!(out, "        {}: {}", scalar(name), cond(c));
                }
            }
        }
        if !m.client.is_empty() {
            let _ = writeln!(out, "      client: {}", flow_seq(&m.client));
        }
    }
    for (key, list) in [("allow", &r.allow), ("deny", &r.deny)] {
        if !list.is_empty() {
            let _ = writeln!(out, "    {key}: {}", flow_seq(list));
        }
    }
    if !r.deny_user_agents.is_empty() {
        let _ = writeln!(
            out,
            "    deny_user_agents: {}",
            flow_seq(&r.deny_user_agents)
        );
    }
    match &r.action {
        Action::Upstream(name) => {
            let _ = writeln!(out, "    upstream: {}", scalar(name));
        }
        Action::Redirect { to, status } => {
            let _ = writeln!(
                out,
                "    redirect: {{ to: {}, status: {status} }}",
                scalar(to)
            );
        }
        Action::Respond {
            status,
            body,
            content_type,
        } => {
            let mut pairs = vec![
                ("status".to_string(), status.to_string()),
                ("body".to_string(), scalar(body)),
            ];
            if let Some(t) = content_type {
                pairs.push(("content_type".to_string(), scalar(t)));
            }
            let _ = writeln!(out, "    respond: {}", flow_map(&pairs));
        }
    }
    if !r.request_headers.is_empty() || !r.response_headers.is_empty() {
        let _ = writeln!(out, "    headers:");
        if !r.request_headers.is_empty() {
            let _ = writeln!(out, "      request: {}", header_ops(&r.request_headers));
        }
        if !r.response_headers.is_empty() {
            let _ = writeln!(out, "      response: {}", header_ops(&r.response_headers));
        }
    }
}

fn listener_value(l: &ListenerOut) -> String {
    if l.keys.is_empty() {
        return scalar(&l.address);
    }
    let mut pairs = vec![("address".to_string(), scalar(&l.address))];
    pairs.extend(l.keys.iter().cloned());
    flow_map(&pairs)
}

/// The document as YAML text.
pub fn render(doc: &Document) -> String {
    let mut out = String::new();
    comments(&mut out, "", &doc.header);
    out.push_str("state_dir: /var/lib/ferrogate\n");
    if let Some((workers, origin)) = &doc.workers {
        let _ = writeln!(out, "workers: {workers}   # {origin}");
    }
    out.push_str("listeners:\n");
    if doc.listeners.is_empty() {
        out.push_str("  {}\n");
    }
    for l in doc.listeners.iter().filter(|l| l.is_builtin()) {
        comments(&mut out, "  ", &l.comments);
        let _ = writeln!(out, "  {}: {}", l.name, listener_value(l));
    }
    let extra: Vec<&ListenerOut> = doc.listeners.iter().filter(|l| !l.is_builtin()).collect();
    if !extra.is_empty() {
        out.push_str("  extra:\n");
        for l in extra {
            comments(&mut out, "    ", &l.comments);
            let mut pairs = vec![
                ("name".to_string(), scalar(&l.name)),
                ("address".to_string(), scalar(&l.address)),
                ("tls".to_string(), l.tls.to_string()),
            ];
            pairs.extend(l.keys.iter().cloned());
            let _ = writeln!(out, "    - {}", flow_map(&pairs));
        }
    }
    out.push_str("# The runtime API (HAProxy's stats socket): ferrogate ctl --admin 127.0.0.1:9901 servers\n");
    out.push_str("admin: { listen: 127.0.0.1:9901 }\n");
    out.push_str("tls:\n");
    if doc.certificates.is_empty() {
        out.push_str("  certificates: []   # a self-signed placeholder until there is one\n");
    } else {
        out.push_str("  certificates:\n");
    }
    for cert in &doc.certificates {
        match cert {
            CertOut::File {
                comments: lines,
                name,
                path,
                disabled,
            } => {
                comments(&mut out, "    ", lines);
                let mark = if *disabled { "# " } else { "" };
                let _ = writeln!(
                    out,
                    "    {mark}- {{ name: {}, cert: {}, key: {} }}",
                    scalar(name),
                    scalar(path),
                    scalar(path)
                );
            }
            CertOut::Acme {
                comments: lines,
                name,
                domains,
            } => {
                comments(&mut out, "    ", lines);
                let _ = writeln!(
                    out,
                    "    - {{ name: {}, domains: {}, acme: {{ challenge: http-01 }} }}",
                    scalar(name),
                    flow_seq(domains)
                );
            }
        }
    }
    let acme_certificates = doc
        .certificates
        .iter()
        .any(|c| matches!(c, CertOut::Acme { .. }));
    if doc.acme.is_some() && !acme_certificates {
        out.push_str(
            "  # - { name: example.com, domains: [example.com], acme: { challenge: http-01 } }\n",
        );
    }
    if let Some(lines) = &doc.acme {
        comments(&mut out, "", lines);
        out.push_str("acme:\n  directory: letsencrypt\n  # email: ops@example.com   # the CA's expiry notices\n");
    }
    if doc.routes.is_empty() {
        out.push_str("routes: []\n");
    } else {
        out.push_str("routes:\n");
    }
    for r in &doc.routes {
        route(&mut out, r);
    }
    if doc.upstreams.is_empty() {
        out.push_str("upstreams: {}\n");
    } else {
        out.push_str("upstreams:\n");
    }
    for u in &doc.upstreams {
        comments(&mut out, "  ", &u.comments);
        let _ = writeln!(out, "  {}:", scalar(&u.name));
        out.push_str("    servers:\n");
        for s in &u.servers {
            let mut pairs = vec![("address".to_string(), scalar(&s.address))];
            if let Some(w) = s.weight {
                pairs.push(("weight".into(), w.to_string()));
            }
            if let Some(m) = s.max_inflight {
                pairs.push(("max_inflight".into(), m.to_string()));
            }
            if s.drain {
                pairs.push(("drain".into(), "true".into()));
            }
            let _ = writeln!(out, "      - {}   # {}", flow_map(&pairs), s.comment);
        }
        for (key, value) in &u.keys {
            let _ = writeln!(out, "    {key}: {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_yaml_needs_it() {
        for plain in [
            "chat.example.com",
            "10.0.0.1:8080",
            "/owui/",
            "owui_chat",
            "X-Env",
            "0.0.0.0:443",
            "10m",
        ] {
            assert_eq!(scalar(plain), plain);
        }
        for (text, quoted) in [
            ("*.example.com", "\"*.example.com\""),
            ("yes", "\"yes\""),
            ("1", "\"1\""),
            ("{client_ip}", "\"{client_ip}\""),
            ("a b", "\"a b\""),
            ("(?i)curl", "\"(?i)curl\""),
            ("", "\"\""),
            ("say \"hi\"\n", "\"say \\\"hi\\\"\\n\""),
            ("key:", "\"key:\""),
            ("-x", "\"-x\""),
        ] {
            assert_eq!(scalar(text), quoted, "{text}");
        }
    }

    #[test]
    fn a_document_reads_back_as_the_same_data() {
        let doc = Document {
            header: vec!["from test".into()],
            workers: Some((4, "nbthread 4 (t.cfg:2)".into())),
            listeners: vec![
                ListenerOut {
                    comments: vec!["frontend web (t.cfg:5)".into()],
                    name: "https".into(),
                    address: "0.0.0.0:443".into(),
                    tls: true,
                    keys: vec![("header_timeout".into(), "300s".into())],
                },
                ListenerOut {
                    comments: vec![],
                    name: "admin-web".into(),
                    address: "[::]:8443".into(),
                    tls: true,
                    keys: vec![],
                },
            ],
            certificates: vec![CertOut::Acme {
                comments: vec![],
                name: "chat.example.com".into(),
                domains: vec!["chat.example.com".into()],
            }],
            acme: Some(vec!["certbot replaced".into()]),
            routes: vec![RouteOut {
                comments: vec!["use_backend (t.cfg:9)".into()],
                name: "web-owui".into(),
                hosts: vec!["*.example.com".into()],
                path_prefix: Some("/owui/".into()),
                listener: None,
                matching: MatchOut {
                    methods: vec!["GET".into()],
                    headers: vec![
                        ("x-env".into(), Cond::Equals("1".into())),
                        ("x-debug".into(), Cond::Absent),
                    ],
                    query: vec![],
                    client: vec!["10.0.0.0/8".into()],
                },
                action: Action::Upstream("owui".into()),
                allow: vec![],
                deny: vec!["192.0.2.0/24".into()],
                deny_user_agents: vec!["(?i)curl".into()],
                request_headers: HeaderOps {
                    set: vec![("X-Client".into(), "{client_ip}".into())],
                    add: vec![],
                    remove: vec!["X-Internal".into()],
                },
                response_headers: HeaderOps::default(),
            }],
            upstreams: vec![UpstreamOut {
                comments: vec!["backend owui (t.cfg:20)".into()],
                name: "owui".into(),
                servers: vec![ServerOut {
                    address: "10.0.0.11:3000".into(),
                    weight: Some(2),
                    max_inflight: None,
                    drain: false,
                    comment: "server owui1 (t.cfg:21)".into(),
                }],
                keys: vec![("balance".into(), "round_robin".into())],
            }],
        };
        let text = render(&doc);
        let value: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(value["workers"], serde_yaml::Value::from(4));
        assert_eq!(
            value["listeners"]["https"]["header_timeout"],
            serde_yaml::Value::from("300s")
        );
        assert_eq!(
            value["listeners"]["extra"][0]["address"],
            serde_yaml::Value::from("[::]:8443")
        );
        let route = &value["routes"][0];
        assert_eq!(route["hosts"][0], serde_yaml::Value::from("*.example.com"));
        assert_eq!(
            route["match"]["headers"]["x-env"]["equals"],
            serde_yaml::Value::from("1")
        );
        assert_eq!(
            route["match"]["headers"]["x-debug"],
            serde_yaml::Value::from("absent")
        );
        assert_eq!(
            route["headers"]["request"]["set"]["X-Client"],
            serde_yaml::Value::from("{client_ip}")
        );
        assert_eq!(
            value["upstreams"]["owui"]["servers"][0]["weight"],
            serde_yaml::Value::from(2)
        );
        assert_eq!(
            value["acme"]["directory"],
            serde_yaml::Value::from("letsencrypt")
        );
        assert!(text.contains("  # frontend web (t.cfg:5)\n  https: { address: 0.0.0.0:443, header_timeout: 300s }\n"), "{text}");
        assert!(
            text.contains(
                "      - { address: 10.0.0.11:3000, weight: 2 }   # server owui1 (t.cfg:21)\n"
            ),
            "{text}"
        );
    }
}
