//! Structured outputs: `response_format` (`text`, `json_object`, `json_schema`) read into a
//! grammar, and a grammar compiled into one matcher per choice.
//!
//! The JSON is kept compact (no whitespace between tokens, `,` and `:` as separators): the
//! model cannot pad an answer with blank lines until `max_tokens` runs out. A schema the
//! grammar engine cannot enforce is a 400 naming what it refused, never an unconstrained
//! answer.

use llguidance::api::TopLevelGrammar;
use serde_json::{Value, json};

use crate::engine::{GrammarConstraint, TextEngine, TokenConstraint};
use crate::error::{HearthError, Result};

/// The grammar options every JSON answer gets, unless the schema's own `x-guidance` sets them.
fn compact_options() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ",", "key_separator": ":"})
}

/// `schema` with the compact-JSON options added.
pub fn json_grammar(schema: Value) -> TopLevelGrammar {
    TopLevelGrammar::from_json_schema(compact(schema))
}

/// `schema` with the compact-JSON options added, the schema's own `x-guidance` winning.
pub fn compact(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        let mut options = compact_options();
        if let (Some(Value::Object(theirs)), Value::Object(ours)) =
            (map.get("x-guidance"), &mut options)
        {
            ours.extend(theirs.clone());
        }
        map.insert("x-guidance".to_owned(), options);
    }
    schema
}

/// The grammar `response_format` asks for; `None` for plain text.
pub fn response_format(format: Option<&Value>) -> Result<Option<TopLevelGrammar>> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let bad = |message: &str| HearthError::invalid_param("response_format", message);
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json_grammar(json!({"type": "object"})))),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| bad("`json_schema` must be an object with `name` and `schema`"))?;
            match spec.get("name").and_then(Value::as_str) {
                Some(name)
                    if !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
                _ => {
                    return Err(HearthError::invalid_param(
                        "response_format.json_schema.name",
                        "`name` must be 1-64 letters, digits, underscores or dashes",
                    ));
                }
            }
            let schema = match spec.get("schema") {
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(schema @ (Value::Object(_) | Value::Bool(true))) => schema.clone(),
                Some(_) => {
                    return Err(HearthError::invalid_param(
                        "response_format.json_schema.schema",
                        "`schema` must be a JSON Schema object",
                    ));
                }
            };
            Ok(Some(json_grammar(schema)))
        }
        _ => Err(bad(
            "`response_format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

/// One matcher per choice for `grammar` (compiled once, off the async threads), or a 400
/// naming `param` when the grammar engine refuses it.
pub async fn constraints(
    engine: &TextEngine,
    grammar: Option<TopLevelGrammar>,
    choices: usize,
    param: &str,
) -> Result<Vec<Option<Box<dyn TokenConstraint>>>> {
    let Some(grammar) = grammar else {
        return Ok((0..choices).map(|_| None).collect());
    };
    let (lazy, param) = (engine.grammar.clone(), param.to_owned());
    let first: GrammarConstraint = tokio::task::spawn_blocking(move || {
        let compiler = lazy.engine().map_err(|e| {
            HearthError::invalid_param(
                &param,
                format!("this model's vocabulary could not be read for constrained decoding: {e}"),
            )
        })?;
        compiler.constraint(grammar).map_err(|e| {
            HearthError::invalid_param(
                &param,
                format!("the schema or grammar cannot be enforced: {e}"),
            )
        })
    })
    .await
    .map_err(|e| HearthError::Internal(format!("grammar compilation: {e}")))??;
    let mut all: Vec<Option<Box<dyn TokenConstraint>>> = (1..choices)
        .map(|_| Some(Box::new(first.fork()) as Box<dyn TokenConstraint>))
        .collect();
    all.insert(0, Some(Box::new(first)));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(format: Value) -> String {
        match response_format(Some(&format)).unwrap_err() {
            HearthError::InvalidRequest { param: Some(p), .. } => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn formats_map_to_grammars_or_name_what_is_wrong() {
        assert!(response_format(None).unwrap().is_none());
        assert!(
            response_format(Some(&json!({"type": "text"})))
                .unwrap()
                .is_none()
        );
        assert!(
            response_format(Some(&json!({"type": "json_object"})))
                .unwrap()
                .is_some()
        );
        assert_eq!(param(json!({"type": "xml"})), "response_format");
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"schema": {}}})),
            "response_format.json_schema.name"
        );
        assert_eq!(
            param(json!({"type": "json_schema", "json_schema": {"name": "a", "schema": 3}})),
            "response_format.json_schema.schema"
        );
    }

    #[test]
    fn the_compact_options_yield_to_the_schemas_own() {
        let grammar =
            json_grammar(json!({"type": "object", "x-guidance": {"item_separator": ", "}}));
        let schema = grammar.grammars[0].json_schema.clone().unwrap();
        assert_eq!(schema["x-guidance"]["item_separator"], ", ");
        assert_eq!(schema["x-guidance"]["whitespace_flexible"], false);
    }
}
