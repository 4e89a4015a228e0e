//! A chat choice's generated text shaped into OpenAI's answer: `content`,
//! `reasoning_content`, `tool_calls` (or the legacy `function_call`) and the finish reason,
//! whole or as streamed deltas. Both go through the same splitter, so a joined stream
//! equals the whole answer.

use serde_json::{Value, json};

use super::tools::parse::ParsedCall;
use super::tools::split::{OutputSplitter, Piece, Reasoning, split_whole};

/// How a request's answers are read.
#[derive(Debug, Clone)]
pub struct AnswerShape {
    pub reasoning: Reasoning,
    /// The functions a call may name; `None` when calls are not parsed.
    pub tools: Option<Vec<String>>,
    pub parallel: bool,
    pub legacy: bool,
}

impl AnswerShape {
    /// Plain text: no reasoning, no tools.
    pub fn is_plain(&self) -> bool {
        !OutputSplitter::is_needed(self.reasoning, self.tools.is_some())
    }

    fn kept(&self, mut calls: Vec<ParsedCall>) -> Vec<ParsedCall> {
        if !self.parallel {
            calls.truncate(1);
        }
        calls
    }

    fn finish_reason(&self, reason: &'static str, calls: &[ParsedCall]) -> &'static str {
        match (calls.is_empty(), self.legacy) {
            (true, _) => reason,
            (false, true) => "function_call",
            (false, false) => "tool_calls",
        }
    }

    /// The whole `message` object and the finish reason.
    pub fn message(&self, text: &str, reason: &'static str) -> (Value, &'static str) {
        if self.is_plain() {
            return (json!({"role": "assistant", "content": text}), reason);
        }
        let (thought, content, calls) = split_whole(text, self.reasoning, self.tools.clone());
        let calls = self.kept(calls);
        let mut message = json!({"role": "assistant", "content": content});
        if let Some(thought) = thought {
            message["reasoning_content"] = Value::String(thought);
        }
        if let Some(first) = calls.first().filter(|_| self.legacy) {
            message["function_call"] = json!({"name": first.name, "arguments": first.arguments});
        } else if !calls.is_empty() {
            message["tool_calls"] = calls
                .iter()
                .map(|c| {
                    json!({"id": call_id(), "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        (message, self.finish_reason(reason, &calls))
    }
}

/// A fresh call id in OpenAI's style.
fn call_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// One streamed choice's deltas.
#[derive(Debug)]
pub struct StreamShaper {
    shape: AnswerShape,
    splitter: Option<OutputSplitter>,
}

fn piece_delta(piece: Piece) -> Value {
    match piece {
        Piece::Reasoning(t) => json!({"reasoning_content": t}),
        Piece::Content(t) => json!({"content": t}),
    }
}

impl StreamShaper {
    pub fn new(shape: AnswerShape) -> Self {
        let splitter =
            (!shape.is_plain()).then(|| OutputSplitter::new(shape.reasoning, shape.tools.clone()));
        Self { shape, splitter }
    }

    /// The deltas a new piece of text makes.
    pub fn push(&mut self, text: String) -> Vec<Value> {
        match &mut self.splitter {
            None if text.is_empty() => Vec::new(),
            None => vec![json!({"content": text})],
            Some(splitter) => splitter.push(&text).into_iter().map(piece_delta).collect(),
        }
    }

    /// The last deltas (held-back text, then each call: its id and name, then its
    /// arguments) and the finish reason.
    pub fn finish(&mut self, reason: &'static str) -> (Vec<Value>, &'static str) {
        let Some(splitter) = &mut self.splitter else {
            return (Vec::new(), reason);
        };
        let (pieces, calls) = splitter.finish();
        let calls = self.shape.kept(calls);
        let mut deltas: Vec<Value> = pieces.into_iter().map(piece_delta).collect();
        for (index, call) in calls.iter().enumerate() {
            if self.shape.legacy {
                deltas.push(json!({"function_call": {"name": call.name, "arguments": ""}}));
                deltas.push(json!({"function_call": {"arguments": call.arguments}}));
            } else {
                deltas.push(json!({"tool_calls": [{"index": index, "id": call_id(), "type": "function",
                                                    "function": {"name": call.name, "arguments": ""}}]}));
                deltas.push(json!({"tool_calls": [{"index": index,
                                                    "function": {"arguments": call.arguments}}]}));
            }
        }
        (deltas, self.shape.finish_reason(reason, &calls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(parallel: bool, legacy: bool) -> AnswerShape {
        AnswerShape {
            reasoning: Reasoning::Off,
            tools: Some(vec!["w".into()]),
            parallel,
            legacy,
        }
    }

    const TWO_CALLS: &str = "<tool_call>\n{\"name\":\"w\",\"arguments\":{\"c\":1}}\n</tool_call>\n<tool_call>\n{\"name\":\"w\",\"arguments\":{\"c\":2}}\n</tool_call>";

    #[test]
    fn whole_answers_carry_calls_with_ids() {
        let (message, reason) = shape(true, false).message(TWO_CALLS, "stop");
        assert_eq!(reason, "tool_calls");
        assert_eq!(message["content"], Value::Null);
        let calls = message["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert_eq!(calls[1]["function"]["arguments"], "{\"c\":2}");
        let (message, _) = shape(false, false).message(TWO_CALLS, "stop");
        assert_eq!(message["tool_calls"].as_array().unwrap().len(), 1);
        let (message, reason) = shape(false, true).message(TWO_CALLS, "stop");
        assert_eq!(reason, "function_call");
        assert_eq!(message["function_call"]["name"], "w");
    }

    #[test]
    fn streamed_calls_open_with_id_and_name_then_arguments() {
        let mut shaper = StreamShaper::new(shape(true, false));
        let mut deltas = Vec::new();
        for c in TWO_CALLS.chars() {
            deltas.extend(shaper.push(c.to_string()));
        }
        assert!(deltas.is_empty(), "no content leaks: {deltas:?}");
        let (deltas, reason) = shaper.finish("stop");
        assert_eq!(reason, "tool_calls");
        assert_eq!(deltas.len(), 4);
        assert_eq!(deltas[0]["tool_calls"][0]["function"]["name"], "w");
        assert!(deltas[0]["tool_calls"][0]["id"].is_string());
        assert_eq!(deltas[3]["tool_calls"][0]["index"], 1);
        assert_eq!(
            deltas[3]["tool_calls"][0]["function"]["arguments"],
            "{\"c\":2}"
        );
    }
}
