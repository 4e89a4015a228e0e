//! Python's `json` module writes the floats `-inf`, `inf` and `nan` as the bare words
//! `-Infinity`, `Infinity` and `NaN`, which JSON parsers reject; diffusers saves DPM-Solver's
//! default `lambda_min_clipped` (−∞) that way. [`sanitize`] quotes those words so the config
//! parses, and the float fields read the strings back as floats.

/// `text` with every bare `-Infinity`, `Infinity` and `NaN` outside a string quoted.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            // Inside a string only the closing quote matters; `\"` does not close it.
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|word| rest.starts_with(word))
        {
            out.push('"');
            out.push_str(word);
            out.push('"');
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn quotes_bare_words_but_not_strings() {
        assert_eq!(
            sanitize(r#"{"a": -Infinity, "b": [NaN, Infinity], "c": "NaN \" Infinity"}"#),
            r#"{"a": "-Infinity", "b": ["NaN", "Infinity"], "c": "NaN \" Infinity"}"#
        );
        assert_eq!(sanitize(r#"{"x": 1.5e-3}"#), r#"{"x": 1.5e-3}"#);
    }
}
