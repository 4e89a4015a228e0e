//! Tool calls read out of a model's text, in every form open models write them: Hermes
//! `<tool_call>{json}</tool_call>` blocks (the closing tag may be cut off), Mistral's
//! `[TOOL_CALLS][...]` (and its newer `[TOOL_CALLS]name[ARGS]{...}`), Llama 3's
//! `<|python_tag|>{json}` or bare `{"name", "parameters"}` objects separated by `;`, and a
//! call object (or a list of them) in a fenced code block or as the whole answer.
//!
//! Only calls to the request's functions count; text that holds none stays content. The
//! first form that yields a call wins, and the content is the text outside its calls.

use serde_json::Value;

/// One parsed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments as a JSON text (OpenAI sends a string).
    pub arguments: String,
}

/// A model's answer, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The text outside the calls, trimmed; `None` when nothing is left.
    pub content: Option<String>,
    pub calls: Vec<ParsedCall>,
}

/// A Markdown code fence.
pub const FENCE: &str = "```";

/// Text markers that start a call in some format (a fence too, and a leading `{` or `[`).
pub const CALL_MARKERS: [&str; 4] = ["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", FENCE];

/// A call object: `name` plus `arguments` (or Llama's `parameters`), arguments as an
/// object or as a JSON string.
fn call_of(value: &Value, known: &[&str]) -> Option<ParsedCall> {
    let object = value.as_object()?;
    let object = match object.get("function") {
        Some(Value::Object(inner)) => inner,
        _ => object,
    };
    let name = object.get("name")?.as_str()?;
    if !known.contains(&name) {
        return None;
    }
    let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => text.clone(),
        },
        Some(other) => other.to_string(),
    };
    Some(ParsedCall {
        name: name.to_owned(),
        arguments,
    })
}

/// The calls in one JSON value: a call object or a list of them (all must be calls).
fn calls_of(value: &Value, known: &[&str]) -> Option<Vec<ParsedCall>> {
    match value {
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|item| call_of(item, known)).collect()
        }
        Value::Array(_) => None,
        other => call_of(other, known).map(|c| vec![c]),
    }
}

/// The first JSON value at the start of `text` (after whitespace), and the bytes it took.
fn leading_json(text: &str) -> Option<(Value, usize)> {
    let start = text.len() - text.trim_start().len();
    let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    let value = values.next()?.ok()?;
    Some((value, start + values.byte_offset()))
}

/// A span of the text that was calls.
struct Found {
    spans: Vec<(usize, usize)>,
    calls: Vec<ParsedCall>,
}

/// Every `open … close` block whose body is calls (the last block may lack its `close`);
/// with `info_line`, the rest of the opening line (a fence's language) is not body.
fn blocks(
    text: &str,
    known: &[&str],
    (open, close): (&str, &str),
    info_line: bool,
) -> Option<Found> {
    let mut found = Found {
        spans: Vec::new(),
        calls: Vec::new(),
    };
    let mut from = 0;
    while let Some(at) = text[from..].find(open).map(|i| i + from) {
        let mut body_start = at + open.len();
        if info_line {
            body_start = text[body_start..]
                .find('\n')
                .map_or(text.len(), |i| body_start + i + 1);
        }
        let (body_end, end) = match text[body_start..].find(close) {
            Some(i) => (body_start + i, body_start + i + close.len()),
            None => (text.len(), text.len()),
        };
        if let Ok(value) = serde_json::from_str::<Value>(text[body_start..body_end].trim())
            && let Some(calls) = calls_of(&value, known)
        {
            found.calls.extend(calls);
            found.spans.push((at, end));
        }
        from = end;
    }
    (!found.calls.is_empty()).then_some(found)
}

fn hermes(text: &str, known: &[&str]) -> Option<Found> {
    blocks(text, known, ("<tool_call>", "</tool_call>"), false)
}

fn mistral(text: &str, known: &[&str]) -> Option<Found> {
    let marker = "[TOOL_CALLS]";
    let at = text.find(marker)?;
    let rest = &text[at + marker.len()..];
    if let Some((value, used)) = leading_json(rest)
        && let Some(calls) = calls_of(&value, known)
    {
        return Some(Found {
            spans: vec![(at, at + marker.len() + used)],
            calls,
        });
    }
    // The newer form: `[TOOL_CALLS]name[ARGS]{...}`, repeated.
    let mut found = Found {
        spans: Vec::new(),
        calls: Vec::new(),
    };
    let mut from = at;
    while let Some(start) = text[from..].find(marker).map(|i| i + from) {
        let after = &text[start + marker.len()..];
        let Some((name, args)) = after.split_once("[ARGS]") else {
            break;
        };
        let Some((value, used)) = leading_json(args) else {
            break;
        };
        let call = serde_json::json!({"name": name.trim(), "arguments": value});
        let Some(call) = call_of(&call, known) else {
            break;
        };
        let end = start + marker.len() + name.len() + "[ARGS]".len() + used;
        found.calls.push(call);
        found.spans.push((start, end));
        from = end;
    }
    (!found.calls.is_empty()).then_some(found)
}

/// JSON call objects from `at`, separated by `;` (Llama 3), until something else comes.
fn separated_objects(text: &str, at: usize, known: &[&str]) -> Option<(Vec<ParsedCall>, usize)> {
    let mut calls = Vec::new();
    let mut end = at;
    loop {
        let Some((value, used)) = leading_json(&text[end..]) else {
            break;
        };
        let Some(more) = calls_of(&value, known) else {
            break;
        };
        calls.extend(more);
        end += used;
        let rest = &text[end..];
        match rest.trim_start().strip_prefix(';') {
            Some(after) => end = text.len() - after.len(),
            None => break,
        }
    }
    (!calls.is_empty()).then_some((calls, end))
}

fn llama(text: &str, known: &[&str]) -> Option<Found> {
    let marker = "<|python_tag|>";
    let at = text.find(marker)?;
    let (calls, end) = separated_objects(text, at + marker.len(), known)?;
    Some(Found {
        spans: vec![(at, end)],
        calls,
    })
}

fn fenced(text: &str, known: &[&str]) -> Option<Found> {
    blocks(text, known, (FENCE, FENCE), true)
}

fn bare(text: &str, known: &[&str]) -> Option<Found> {
    let start = text.len() - text.trim_start().len();
    let (calls, end) = separated_objects(text, start, known)?;
    // Only when the calls are the whole answer: a JSON object amid prose is prose.
    text[end..].trim().is_empty().then(|| Found {
        spans: vec![(start, end)],
        calls,
    })
}

/// Splits `text` into content and calls to the `known` functions.
pub fn parse_calls(text: &str, known: &[&str]) -> Parsed {
    let found = [hermes, mistral, llama, fenced, bare]
        .iter()
        .find_map(|form| form(text, known));
    let Some(found) = found else {
        let content = text.trim();
        return Parsed {
            content: (!content.is_empty()).then(|| content.to_owned()),
            calls: Vec::new(),
        };
    };
    let mut outside = String::new();
    let mut from = 0;
    for (start, end) in found.spans {
        outside.push_str(&text[from..start]);
        from = end;
    }
    outside.push_str(&text[from..]);
    let content = outside.trim();
    Parsed {
        content: (!content.is_empty()).then(|| content.to_owned()),
        calls: found.calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 2] = ["get_weather", "get_time"];

    fn calls(text: &str) -> Vec<(String, String)> {
        parse_calls(text, &KNOWN)
            .calls
            .into_iter()
            .map(|c| (c.name, c.arguments))
            .collect()
    }

    fn weather(city: &str) -> (String, String) {
        ("get_weather".into(), format!("{{\"city\":\"{city}\"}}"))
    }

    #[test]
    fn hermes_blocks_even_unterminated() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\
                    <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}";
        assert_eq!(calls(text), [weather("Paris"), weather("Rome")]);
        assert_eq!(
            parse_calls(text, &KNOWN).content.as_deref(),
            Some("Let me check.")
        );
    }

    #[test]
    fn mistral_both_forms() {
        assert_eq!(
            calls(
                "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]"
            ),
            [weather("Paris")]
        );
        assert_eq!(
            calls("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}"),
            [weather("Oslo")]
        );
    }

    #[test]
    fn llama3_python_tag_and_bare_objects() {
        assert_eq!(
            calls(
                "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}"
            ),
            [weather("Lima")]
        );
        assert_eq!(
            calls(
                "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}; {\"name\": \"get_time\", \"parameters\": {}}"
            ),
            [weather("Lima"), ("get_time".into(), "{}".into())]
        );
    }

    #[test]
    fn fenced_json_as_qwen_writes_it_without_tags() {
        let text = "```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n```";
        assert_eq!(
            calls(text),
            [(
                "get_weather".into(),
                "{\"city\":\"Paris\",\"unit\":\"celsius\"}".into()
            )]
        );
        assert_eq!(parse_calls(text, &KNOWN).content, None);
    }

    #[test]
    fn string_arguments_and_openai_shaped_objects() {
        assert_eq!(
            calls(
                "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}"
            ),
            [weather("Paris")]
        );
    }

    #[test]
    fn unknown_functions_and_prose_stay_content() {
        let text = "Use {\"name\": \"get_weather\"} like this.";
        assert!(calls(text).is_empty(), "JSON amid prose is not a call");
        assert_eq!(parse_calls(text, &KNOWN).content.as_deref(), Some(text));
        assert!(
            calls("<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>").is_empty()
        );
        assert!(calls("```python\nprint(1)\n```").is_empty());
        assert_eq!(parse_calls("  ", &KNOWN).content, None);
    }
}
