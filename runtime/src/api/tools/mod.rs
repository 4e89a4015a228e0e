//! Tool calling on local models: the request's `tools`, `tool_choice` and
//! `parallel_tool_calls` (and the legacy `functions` / `function_call` mapped onto them),
//! checked into one [`ToolRequest`]; the model's call format and grammars ([`format`]);
//! parsing calls out of the generated text ([`parse`]); and splitting a streamed answer
//! into reasoning, content and tool calls ([`split`]).

pub mod format;
pub mod parse;
pub mod split;

use serde_json::{Value, json};

use crate::error::{HearthError, Result};

/// One callable function.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    /// The definition as templates get it: `{"type": "function", "function": {...}}`, its
    /// `parameters` always a JSON Schema object.
    pub definition: Value,
}

impl ToolSpec {
    /// The JSON Schema of the arguments object.
    pub fn parameters(&self) -> &Value {
        &self.definition["function"]["parameters"]
    }
}

/// Which calls the model may or must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls: the tools are not shown to the model.
    None,
    /// The model decides; a call it starts is held to the grammar.
    Auto,
    /// At least one call, under the grammar.
    Required,
    /// This function, under the grammar.
    Named(String),
}

/// A chat request's tools, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub tools: Vec<ToolSpec>,
    pub choice: ToolChoice,
    /// More than one call per answer (never with a named function).
    pub parallel: bool,
    /// Asked with `functions`: answered with `message.function_call` and
    /// `finish_reason: "function_call"`.
    pub legacy: bool,
}

impl ToolRequest {
    /// The tools a call may use under the current choice.
    pub fn callable(&self) -> Vec<&ToolSpec> {
        match &self.choice {
            ToolChoice::None => Vec::new(),
            ToolChoice::Named(name) => self.tools.iter().filter(|t| &t.name == name).collect(),
            ToolChoice::Auto | ToolChoice::Required => self.tools.iter().collect(),
        }
    }

    /// The definitions the template shows (none under `tool_choice: "none"`).
    pub fn shown(&self) -> Option<Vec<Value>> {
        (self.choice != ToolChoice::None)
            .then(|| self.tools.iter().map(|t| t.definition.clone()).collect())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One function definition (`function` of a tool, or a legacy `functions` entry).
fn function_spec(function: &Value, param: &str) -> Result<ToolSpec> {
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            HearthError::invalid_param(
                format!("{param}.name"),
                "a function `name` must be 1-64 letters, digits, underscores or dashes",
            )
        })?;
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => {
            return Err(HearthError::invalid_param(
                format!("{param}.parameters"),
                "`parameters` must be a JSON Schema object",
            ));
        }
    };
    let mut function = function.clone();
    function["parameters"] = parameters;
    Ok(ToolSpec {
        name: name.to_owned(),
        definition: json!({"type": "function", "function": function}),
    })
}

/// The raw fields a chat request may carry about tools.
#[derive(Debug, Default, Clone, Copy)]
pub struct ToolFields<'a> {
    pub tools: Option<&'a Value>,
    pub tool_choice: Option<&'a Value>,
    pub parallel_tool_calls: Option<bool>,
    pub functions: Option<&'a Value>,
    pub function_call: Option<&'a Value>,
}

/// Reads the request's tool fields; `None` when it has no tools.
pub fn tool_request(fields: ToolFields<'_>) -> Result<Option<ToolRequest>> {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    let (tools, choice, legacy, choice_param) = match (
        present(fields.tools),
        present(fields.functions),
    ) {
        (Some(_), Some(_)) => {
            return Err(HearthError::invalid_param(
                "functions",
                "`functions` is the legacy form of `tools`: send one of them",
            ));
        }
        (Some(tools), None) => {
            let items = tools
                .as_array()
                .ok_or_else(|| HearthError::invalid_param("tools", "`tools` must be a list"))?;
            let specs = items
                .iter()
                .enumerate()
                .map(|(i, tool)| {
                    let param = format!("tools[{i}]");
                    match (tool.get("type").and_then(Value::as_str), tool.get("function")) {
                        (Some("function"), Some(f)) if f.is_object() => {
                            function_spec(f, &format!("{param}.function"))
                        }
                        _ => Err(HearthError::invalid_param(
                            format!("{param}.type"),
                            "only `{\"type\": \"function\", \"function\": {...}}` tools are supported",
                        )),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            (specs, present(fields.tool_choice), false, "tool_choice")
        }
        (None, Some(functions)) => {
            let items = functions.as_array().ok_or_else(|| {
                HearthError::invalid_param("functions", "`functions` must be a list")
            })?;
            let specs = items
                .iter()
                .enumerate()
                .map(|(i, f)| function_spec(f, &format!("functions[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            (specs, present(fields.function_call), true, "function_call")
        }
        (None, None) => {
            if present(fields.tool_choice).is_some() {
                return Err(HearthError::invalid_param(
                    "tool_choice",
                    "`tool_choice` is only allowed when `tools` are given",
                ));
            }
            return Ok(None);
        }
    };
    if tools.is_empty() {
        return Ok(None);
    }
    for (i, tool) in tools.iter().enumerate() {
        if tools[..i].iter().any(|t| t.name == tool.name) {
            return Err(HearthError::invalid_param(
                if legacy { "functions" } else { "tools" },
                format!("function `{}` is defined twice", tool.name),
            ));
        }
    }
    let bad_choice = || {
        HearthError::invalid_param(
            choice_param,
            format!("`{choice_param}` must be none, auto, required or a function of the request"),
        )
    };
    let choice = match choice {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" if !legacy => ToolChoice::Required,
            _ => return Err(bad_choice()),
        },
        Some(named) => {
            let name = if legacy {
                named.get("name")
            } else {
                named.get("function").and_then(|f| f.get("name"))
            }
            .and_then(Value::as_str)
            .ok_or_else(bad_choice)?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(HearthError::invalid_param(
                    choice_param,
                    format!("`{name}` is not one of the request's functions"),
                ));
            }
            ToolChoice::Named(name.to_owned())
        }
    };
    // Legacy function calling made one call per answer, and a named function is one call.
    let parallel = !legacy
        && !matches!(choice, ToolChoice::Named(_))
        && fields.parallel_tool_calls.unwrap_or(true);
    Ok(Some(ToolRequest {
        tools,
        choice,
        parallel,
        legacy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    fn param_of(fields: ToolFields<'_>) -> String {
        match tool_request(fields).unwrap_err() {
            HearthError::InvalidRequest { param: Some(p), .. } => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tools_and_choices_are_read() {
        let tools = weather();
        let request = tool_request(ToolFields {
            tools: Some(&tools),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(request.choice, ToolChoice::Auto);
        assert!(request.parallel);
        assert_eq!(request.tools[0].name, "get_weather");
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let request = tool_request(ToolFields {
            tools: Some(&tools),
            tool_choice: Some(&named),
            parallel_tool_calls: Some(false),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(request.choice, ToolChoice::Named("get_weather".into()));
        assert!(!request.parallel);
        let none = json!("none");
        let request = tool_request(ToolFields {
            tools: Some(&tools),
            tool_choice: Some(&none),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert!(request.shown().is_none() && request.callable().is_empty());
    }

    #[test]
    fn legacy_functions_map_onto_tools() {
        let functions = json!([{"name": "lookup"}]);
        let call = json!({"name": "lookup"});
        let request = tool_request(ToolFields {
            functions: Some(&functions),
            function_call: Some(&call),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        assert!(request.legacy && !request.parallel);
        assert_eq!(request.choice, ToolChoice::Named("lookup".into()));
        assert_eq!(request.tools[0].parameters()["type"], "object");
    }

    #[test]
    fn bad_tool_fields_name_their_param() {
        let tools = weather();
        let unknown = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(
            param_of(ToolFields {
                tools: Some(&tools),
                tool_choice: Some(&unknown),
                ..Default::default()
            }),
            "tool_choice"
        );
        let required = json!("required");
        assert_eq!(
            param_of(ToolFields {
                tool_choice: Some(&required),
                ..Default::default()
            }),
            "tool_choice"
        );
        let bad_name = json!([{"type": "function", "function": {"name": "has space"}}]);
        assert_eq!(
            param_of(ToolFields {
                tools: Some(&bad_name),
                ..Default::default()
            }),
            "tools[0].function.name"
        );
        let twice = json!([{"type": "function", "function": {"name": "a"}},
                           {"type": "function", "function": {"name": "a"}}]);
        assert_eq!(
            param_of(ToolFields {
                tools: Some(&twice),
                ..Default::default()
            }),
            "tools"
        );
        let not_function = json!([{"type": "code_interpreter"}]);
        assert_eq!(
            param_of(ToolFields {
                tools: Some(&not_function),
                ..Default::default()
            }),
            "tools[0].type"
        );
    }
}
