//! `/status.json`'s layout: pretty-printed for people, except arrays of numbers (and gaps,
//! `null`), which stay on one line, so a history series of 180 values is one line, not 180.

/// Characters an array of numbers and nulls may hold besides its brackets.
fn scalar_byte(b: u8) -> bool {
    matches!(
        b,
        b'0'..=b'9'
            | b'.'
            | b'-'
            | b'+'
            | b'e'
            | b'E'
            | b'n'
            | b'u'
            | b'l'
            | b','
            | b' '
            | b'\n'
            | b'\r'
            | b'\t'
    )
}

/// `pretty` (serde_json's pretty output) with every array of numbers and nulls written as
/// `[1,2.5,null]`. Text inside strings is never touched.
pub fn inline_number_arrays(pretty: &str) -> String {
    let bytes = pretty.as_bytes();
    let mut out = String::with_capacity(pretty.len());
    let (mut copied, mut i) = (0, 0);
    let (mut in_string, mut escaped) = (false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'[' {
            let end = i
                + 1
                + bytes[i + 1..]
                    .iter()
                    .take_while(|b| scalar_byte(**b))
                    .count();
            if bytes.get(end) == Some(&b']') {
                out.push_str(&pretty[copied..i]);
                let values: Vec<&str> = pretty[i + 1..end]
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .collect();
                out.push('[');
                out.push_str(&values.join(","));
                out.push(']');
                copied = end + 1;
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&pretty[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_arrays_go_on_one_line_and_the_rest_stays_pretty() {
        let value = serde_json::json!({
            "series": [1.5, null, 2, -0.25, 1e-7],
            "empty": [],
            "names": ["a [1, 2]", "b"],
            "nested": [[1, 2], [3]],
            "objects": [{"x": [null, null]}],
            "text": "[1,\n 2]",
        });
        let pretty = serde_json::to_string_pretty(&value).expect("json");
        let laid_out = inline_number_arrays(&pretty);
        assert!(
            laid_out.contains("\"series\": [1.5,null,2,-0.25,1e-7]"),
            "{laid_out}"
        );
        assert!(laid_out.contains("\"empty\": []"), "{laid_out}");
        assert!(laid_out.contains("\"x\": [null,null]"), "{laid_out}");
        assert!(laid_out.contains("[1,2],"), "{laid_out}");
        assert!(
            laid_out.contains("\"names\": [\n"),
            "string arrays stay pretty: {laid_out}"
        );
        assert!(
            laid_out.contains("\"a [1, 2]\""),
            "strings are never touched"
        );
        let back: serde_json::Value = serde_json::from_str(&laid_out).expect("still JSON");
        assert_eq!(back, value);
    }
}
