//! A chat request's messages turned into the model's prompt: checked, normalised to what
//! Hugging Face templates take (`developer` as `system`, content parts joined, tool-call
//! `arguments` as objects, `role: "tool"` results with the function's `name`), and rendered
//! with the tools by the model's own template. A template that cannot render tools gets
//! them in a system message, its history's calls written out in the Hermes form and tool
//! results as `<tool_response>` user turns (documented in the README).

use hearth_models::chat_template::ChatPrompt;
use serde_json::{Map, Value, json};

use super::tools::ToolRequest;
use super::tools::format::{ToolFormat, fallback_system_prompt};
use crate::engine::TextEngine;
use crate::error::{HearthError, Result};

/// A message's text: a string, or text parts joined.
fn content_text(content: Option<&Value>, param: &str) -> Result<Option<String>> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) => Ok(text),
                    (kind, _) => Err(HearthError::invalid_param(
                        format!("{param}.content"),
                        format!(
                            "content part of type {} is not supported by this model",
                            kind.unwrap_or("?")
                        ),
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(|texts| Some(texts.join(""))),
        Some(_) => Err(HearthError::invalid_param(
            format!("{param}.content"),
            "content must be a string or a list of parts",
        )),
    }
}

/// An assistant message's `tool_calls` (or legacy `function_call`) as templates take them.
fn template_calls(message: &Value, param: &str) -> Result<Option<Vec<Value>>> {
    let bad = |message: &str| HearthError::invalid_param(format!("{param}.tool_calls"), message);
    let calls = match (message.get("tool_calls"), message.get("function_call")) {
        (Some(Value::Array(calls)), _) if !calls.is_empty() => calls.clone(),
        (_, Some(call @ Value::Object(_))) => {
            vec![json!({"id": "call_legacy", "type": "function", "function": call})]
        }
        (None | Some(Value::Null) | Some(Value::Array(_)), _) => return Ok(None),
        _ => return Err(bad("`tool_calls` must be a list")),
    };
    calls
        .iter()
        .map(|call| {
            let function = call
                .get("function")
                .filter(|f| f.get("name").is_some_and(Value::is_string))
                .ok_or_else(|| bad("each tool call needs `function.name`"))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(text)) => {
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                }
                Some(other) => other.clone(),
                None => json!({}),
            };
            Ok(json!({
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The request's messages, checked and normalised.
pub fn template_messages(raw: &[Value]) -> Result<Vec<Value>> {
    if raw.is_empty() {
        return Err(HearthError::invalid_param(
            "messages",
            "`messages` must not be empty",
        ));
    }
    let mut messages: Vec<Value> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("developer") => "system",
            // The legacy API's function results are tool results.
            Some("function") => "tool",
            Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
            _ => {
                return Err(HearthError::invalid_param(
                    format!("{param}.role"),
                    "role must be system, developer, user, assistant, tool or function",
                ));
            }
        };
        let content = content_text(m.get("content"), &param)?;
        let mut message = json!({"role": role, "content": content.clone().unwrap_or_default()});
        if role == "assistant"
            && let Some(calls) = template_calls(m, &param)?
        {
            message["tool_calls"] = Value::Array(calls);
            if content.is_none() {
                message["content"] = Value::Null;
            }
        }
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(Value::as_str);
            // The function's name: given (legacy), else from the call this answers.
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    messages.iter().rev().find_map(|earlier| {
                        earlier
                            .get("tool_calls")?
                            .as_array()?
                            .iter()
                            .find_map(|call| {
                                (call.get("id")?.as_str()? == id?)
                                    .then(|| call["function"]["name"].as_str().map(str::to_owned))?
                            })
                    })
                });
            if id.is_none() && name.is_none() {
                return Err(HearthError::invalid_param(
                    format!("{param}.tool_call_id"),
                    "a tool message needs the `tool_call_id` it answers",
                ));
            }
            message["tool_call_id"] = id.map_or(Value::Null, |s| Value::String(s.to_owned()));
            message["name"] = name.map_or(Value::Null, Value::String);
        }
        messages.push(message);
    }
    Ok(messages)
}

/// Rewrites tool turns for a template that knows nothing of tools.
fn without_tool_support(messages: Vec<Value>, tools: Option<&ToolRequest>) -> Vec<Value> {
    let mut out: Vec<Value> = messages
        .into_iter()
        .map(|mut m| {
            if let Some(Value::Array(calls)) = m.get("tool_calls").cloned() {
                let calls: Vec<(String, Value)> = calls
                    .iter()
                    .map(|c| {
                        let f = &c["function"];
                        (f["name"].as_str().unwrap_or_default().to_owned(), f["arguments"].clone())
                    })
                    .collect();
                let text = m["content"].as_str().unwrap_or_default().to_owned();
                let written = ToolFormat::Hermes.calls_text(&calls);
                m = json!({"role": "assistant", "content": if text.is_empty() { written } else { format!("{text}\n{written}") }});
            } else if m["role"] == "tool" {
                let text = m["content"].as_str().unwrap_or_default();
                m = json!({"role": "user", "content": format!("<tool_response>\n{text}\n</tool_response>")});
            }
            m
        })
        .collect();
    if let Some(request) = tools
        && request.shown().is_some()
    {
        let prompt = fallback_system_prompt(&request.callable());
        match out.first_mut() {
            Some(first) if first["role"] == "system" => {
                let theirs = first["content"].as_str().unwrap_or_default();
                first["content"] = Value::String(format!("{theirs}\n\n{prompt}"));
            }
            _ => out.insert(0, json!({"role": "system", "content": prompt})),
        }
    }
    out
}

/// The rendered prompt, and the tool-call format the model writes.
pub fn render(
    engine: &TextEngine,
    raw: &[Value],
    tools: Option<&ToolRequest>,
    kwargs: Option<&Map<String, Value>>,
) -> Result<(String, ToolFormat)> {
    let template = engine.template.as_ref().ok_or_else(|| {
        HearthError::invalid("this model has no chat template; use /v1/completions")
    })?;
    let messages = template_messages(raw)?;
    let has_tool_turns = messages
        .iter()
        .any(|m| m.get("tool_calls").is_some() || m["role"] == "tool");
    let (messages, shown, format) = if template.renders_tools() {
        let shown = tools.and_then(ToolRequest::shown);
        (messages, shown, ToolFormat::of_template(template.source()))
    } else if tools.is_some() || has_tool_turns {
        (
            without_tool_support(messages, tools),
            None,
            ToolFormat::Hermes,
        )
    } else {
        (messages, None, ToolFormat::Hermes)
    };
    let prompt = template
        .render_prompt(&ChatPrompt {
            messages: &messages,
            tools: shown.as_deref(),
            kwargs,
            add_generation_prompt: true,
        })
        .map_err(|e| HearthError::invalid_param("messages", e.to_string()))?;
    Ok((prompt, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_normalised_for_templates() {
        let raw = [
            json!({"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]}),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\": \"Paris\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
        ];
        let messages = template_messages(&raw).unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            messages[1]["tool_calls"][0]["function"]["arguments"]["city"],
            "Paris"
        );
        assert_eq!(messages[1]["content"], Value::Null);
        assert_eq!(messages[2]["name"], "w");
    }

    #[test]
    fn bad_messages_name_their_param() {
        let param = |raw: &[Value]| match template_messages(raw).unwrap_err() {
            HearthError::InvalidRequest { param: Some(p), .. } => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(&[]), "messages");
        assert_eq!(param(&[json!({"role": "robot"})]), "messages[0].role");
        assert_eq!(
            param(&[json!({"role": "tool", "content": "x"})]),
            "messages[0].tool_call_id"
        );
        assert_eq!(
            param(&[json!({"role": "user", "content": [{"type": "image_url"}]})]),
            "messages[0].content"
        );
    }

    #[test]
    fn tool_turns_are_written_out_for_templates_without_tools() {
        let messages = template_messages(&[
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "c", "content": "sunny"}),
        ])
        .unwrap();
        let out = without_tool_support(messages, None);
        assert_eq!(
            out[1]["content"],
            "<tool_call>\n{\"name\":\"w\",\"arguments\":{}}\n</tool_call>"
        );
        assert_eq!(
            out[2],
            json!({"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"})
        );
    }
}
