//! How a model writes tool calls, and the grammars that hold it to that.
//!
//! The format follows from the chat template: Hermes-style `<tool_call>{json}</tool_call>`
//! (Qwen2.5/3, and the fallback prompt below), Llama 3's bare `{"name", "parameters"}`
//! object, Mistral's `[TOOL_CALLS][...]`. A template that does not render `tools` gets the
//! definitions in a system message ([`fallback_system_prompt`]) teaching the Hermes form.
//!
//! Grammars are Lark with one `%json` sub-grammar per function's `parameters` (so each
//! schema's `$ref`s resolve against itself). Forced (`required`, a named function): the
//! answer is nothing but calls. Lazy (`auto`): free text until the model writes the call
//! marker, then the call is held to the grammar.

use llguidance::api::TopLevelGrammar;
use serde_json::Value;

use super::ToolSpec;
use crate::api::structured::compact;

/// A model's tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one block per call.
    Hermes,
    /// `{"name": ..., "parameters": {...}}`, calls separated by `;`.
    Llama3,
    /// `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
    Mistral,
}

/// How the grammar holds the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Only calls (`tool_choice: "required"` or a named function).
    Forced,
    /// Text, or calls once the model starts one (`tool_choice: "auto"`).
    Lazy,
}

/// Lark's string literal for `text` (its literals are JSON strings).
fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

impl ToolFormat {
    /// The format the template was written for; Hermes when it shows none (the fallback
    /// prompt teaches that one).
    pub fn of_template(source: &str) -> Self {
        if source.contains("<tool_call>") {
            Self::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Self::Mistral
        } else if source.contains("<|python_tag|>") || source.contains("ipython") {
            Self::Llama3
        } else {
            Self::Hermes
        }
    }

    fn arguments_key(self) -> &'static str {
        match self {
            Self::Llama3 => "parameters",
            Self::Hermes | Self::Mistral => "arguments",
        }
    }

    /// One call's JSON as the grammar writes it (compact).
    pub fn call_json(self, name: &str, arguments: &Value) -> String {
        let mut call = serde_json::Map::new();
        call.insert("name".into(), Value::String(name.to_owned()));
        call.insert(self.arguments_key().into(), arguments.clone());
        Value::Object(call).to_string()
    }

    /// Calls written out as the model would write them (for a template that cannot render
    /// `tool_calls` itself).
    pub fn calls_text(self, calls: &[(String, Value)]) -> String {
        let bodies = calls.iter().map(|(name, args)| self.call_json(name, args));
        match self {
            Self::Hermes => bodies
                .map(|b| format!("<tool_call>\n{b}\n</tool_call>"))
                .collect::<Vec<_>>()
                .join("\n"),
            Self::Llama3 => bodies.collect::<Vec<_>>().join(";"),
            Self::Mistral => format!("[TOOL_CALLS][{}]", bodies.collect::<Vec<_>>().join(",")),
        }
    }

    /// The grammar for calls to `tools` (at least one tool).
    pub fn grammar(
        self,
        tools: &[&ToolSpec],
        enforcement: Enforcement,
        parallel: bool,
    ) -> TopLevelGrammar {
        let mut lark = String::new();
        let key = self.arguments_key();
        let mut bodies = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            let head = format!("{{\"name\":{},\"{key}\":", Value::String(tool.name.clone()));
            lark.push_str(&format!(
                "body_{i}: {} args_{i} \"}}\"\nargs_{i}: %json {}\n",
                literal(&head),
                compact(tool.parameters().clone())
            ));
            bodies.push(format!("body_{i}"));
        }
        let body = format!("({})", bodies.join(" | "));
        let (open, between, close) = match self {
            Self::Hermes => ("<tool_call>\n", "\n", "\n</tool_call>"),
            Self::Llama3 => ("", ";", ""),
            Self::Mistral => ("[TOOL_CALLS][", ",", "]"),
        };
        let (one, many) = match self {
            // Each Hermes call is a block of its own.
            Self::Hermes => {
                let block = format!("{} {body} {}", literal(open), literal(close));
                (
                    block.clone(),
                    format!("{block} ({} {block})*", literal(between)),
                )
            }
            Self::Llama3 | Self::Mistral => {
                let wrap = |inner: String| {
                    [literal(open), inner, literal(close)]
                        .into_iter()
                        .filter(|part| part != "\"\"")
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                (
                    wrap(body.clone()),
                    wrap(format!("{body} ({} {body})*", literal(between))),
                )
            }
        };
        let calls = if parallel { many } else { one };
        match enforcement {
            Enforcement::Forced => lark.push_str(&format!("start: {calls}\n")),
            Enforcement::Lazy => match self {
                Self::Hermes | Self::Mistral => {
                    // Free text up to the marker (lazily matched), then the calls.
                    let marker = open.trim_end_matches('\n');
                    let after_marker = calls
                        .strip_prefix(&literal(open))
                        .unwrap_or(&calls)
                        .to_owned();
                    let rest = if open.ends_with('\n') {
                        format!("\"\\n\" {after_marker}")
                    } else {
                        after_marker
                    };
                    lark.push_str(&format!(
                        "start: TEXT | call_head {rest} TEXT\ncall_head[lazy]: TEXT {}\nTEXT: /(.|\\n)*/\n",
                        literal(marker)
                    ));
                }
                // Llama 3 has no marker: an answer that opens with `{` is a call.
                Self::Llama3 => lark.push_str(&format!(
                    "start: PROSE | {calls}\nPROSE: /([^{{](.|\\n)*)?/\n"
                )),
            },
        }
        TopLevelGrammar::from_lark(lark)
    }
}

/// The system message that shows `tools` to a model whose template cannot: the definitions
/// and the Hermes call form (the one most open models were tuned on).
pub fn fallback_system_prompt(tools: &[&ToolSpec]) -> String {
    let definitions: Vec<String> = tools.iter().map(|t| t.definition.to_string()).collect();
    format!(
        "You can call functions to help with the user's request. The functions, as JSON Schema:\n\
         <tools>\n{}\n</tools>\n\
         To call a function, answer with only this block for each call:\n\
         <tool_call>\n{{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}}\n</tool_call>",
        definitions.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> ToolSpec {
        let parameters = json!({"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]});
        ToolSpec {
            name: name.into(),
            definition: json!({"type": "function", "function": {"name": name, "parameters": parameters}}),
        }
    }

    fn lark_of(grammar: &TopLevelGrammar) -> String {
        grammar.grammars[0].lark_grammar.clone().unwrap()
    }

    #[test]
    fn templates_tell_the_format() {
        assert_eq!(
            ToolFormat::of_template("{{ '<tool_call>\\n' }}"),
            ToolFormat::Hermes
        );
        assert_eq!(
            ToolFormat::of_template("[TOOL_CALLS] {{ x }}"),
            ToolFormat::Mistral
        );
        assert_eq!(
            ToolFormat::of_template("<|python_tag|>"),
            ToolFormat::Llama3
        );
        assert_eq!(
            ToolFormat::of_template("{{ messages }}"),
            ToolFormat::Hermes
        );
    }

    #[test]
    fn calls_are_written_in_each_format() {
        let calls = [("w".to_owned(), json!({"city": "Paris"}))];
        assert_eq!(
            ToolFormat::Hermes.calls_text(&calls),
            "<tool_call>\n{\"name\":\"w\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
        );
        assert_eq!(
            ToolFormat::Llama3.calls_text(&calls),
            "{\"name\":\"w\",\"parameters\":{\"city\":\"Paris\"}}"
        );
        assert_eq!(
            ToolFormat::Mistral.calls_text(&calls),
            "[TOOL_CALLS][{\"name\":\"w\",\"arguments\":{\"city\":\"Paris\"}}]"
        );
    }

    #[test]
    fn grammars_name_every_function_and_compile_in_lark() {
        let (a, b) = (tool("a"), tool("b"));
        let forced = ToolFormat::Hermes.grammar(&[&a, &b], Enforcement::Forced, true);
        let lark = lark_of(&forced);
        assert!(lark.contains("body_0") && lark.contains("body_1"), "{lark}");
        assert!(lark.contains("start: \"<tool_call>\\n\""), "{lark}");
        let lazy = ToolFormat::Hermes.grammar(&[&a], Enforcement::Lazy, false);
        assert!(
            lark_of(&lazy).contains("call_head[lazy]"),
            "{}",
            lark_of(&lazy)
        );
    }
}
