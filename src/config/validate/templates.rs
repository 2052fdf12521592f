//! Value templates (`redirect.to`, header values): `{host}`, `{path}`, `{scheme}`,
//! `{client_ip}`, `{request_id}` placeholders, `{{` and `}}` for literal braces. Parsed once at
//! load into [`Template`] parts.

use crate::config::model::{Template, TemplatePart};

/// The placeholders a template may name, as written.
pub(super) const PLACEHOLDERS: &[(&str, TemplatePart)] = &[
    ("host", TemplatePart::Host),
    ("path", TemplatePart::Path),
    ("scheme", TemplatePart::Scheme),
    ("client_ip", TemplatePart::ClientIp),
    ("request_id", TemplatePart::RequestId),
];

/// Parses `text`; the error names the first unknown placeholder or stray brace.
pub(super) fn parse_template(text: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let brace = rest.as_bytes()[at];
        let after = &rest[at + 1..];
        if after.as_bytes().first() == Some(&brace) {
            literal.push(brace as char);
            rest = &after[1..];
            continue;
        }
        if brace == b'}' {
            return Err("a `}` without its `{`: write `}}` for a literal brace".into());
        }
        let Some(end) = after.find('}') else {
            return Err("a `{` without its `}`: write `{{` for a literal brace".into());
        };
        let name = &after[..end];
        let Some((_, part)) = PLACEHOLDERS.iter().find(|(known, _)| *known == name) else {
            let known: Vec<String> = PLACEHOLDERS
                .iter()
                .map(|(n, _)| format!("{{{n}}}"))
                .collect();
            return Err(format!(
                "unknown placeholder `{{{name}}}`: expected one of {} (`{{{{` for a literal brace)",
                known.join(", ")
            ));
        };
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(part.clone());
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    Ok(Template { parts })
}

/// A header value template: placeholders as for [`parse_template`], and literal text that may
/// stand in a header value (no control characters such as CR or LF).
pub(super) fn parse_header_template(text: &str) -> Result<Template, String> {
    let template = parse_template(text)?;
    for part in &template.parts {
        if let TemplatePart::Literal(literal) = part {
            if http::HeaderValue::from_str(literal).is_err() {
                return Err(format!(
                    "`{}` cannot be a header value (control characters such as line breaks are not allowed)",
                    text.escape_debug()
                ));
            }
        }
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplatePart::*;

    fn lit(text: &str) -> TemplatePart {
        Literal(text.into())
    }

    #[test]
    fn placeholders_and_literal_braces_parse_into_parts() {
        assert_eq!(
            parse_template("https://{host}{path}").unwrap().parts,
            [lit("https://"), Host, Path]
        );
        assert_eq!(
            parse_template("{scheme}|{client_ip}|{request_id}")
                .unwrap()
                .parts,
            [Scheme, lit("|"), ClientIp, lit("|"), RequestId]
        );
        assert_eq!(parse_template("a{{b}}c").unwrap().parts, [lit("a{b}c")]);
        assert_eq!(parse_template("").unwrap().parts, []);
        assert_eq!(parse_template("plain").unwrap().literal(), Some("plain"));
        assert_eq!(parse_template("{host}").unwrap().literal(), None);
    }

    #[test]
    fn unknown_placeholders_and_stray_braces_are_refused() {
        let error = parse_template("https://{hots}/").unwrap_err();
        assert!(error.contains("unknown placeholder `{hots}`"), "{error}");
        assert!(error.contains("{host}"), "{error}");
        assert!(parse_template("a}b").unwrap_err().contains("`}}`"));
        assert!(parse_template("a{host").unwrap_err().contains("`{{`"));
        assert!(parse_template("{}")
            .unwrap_err()
            .contains("unknown placeholder"));
    }

    #[test]
    fn header_templates_refuse_line_breaks() {
        assert!(parse_header_template("ok {request_id}").is_ok());
        assert!(parse_header_template("bad\r\nX-Injected: 1").is_err());
    }
}
