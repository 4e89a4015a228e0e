//! Chat templates: the model's own Jinja template (from `tokenizer_config.json`
//! or GGUF's `tokenizer.chat_template`) rendered with minijinja, with the helpers
//! Hugging Face templates rely on (`raise_exception`, `strftime_now`, Python
//! string methods such as `.strip()`, `tojson`), never a hand-built prompt.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use crate::ModelError;

/// One message as templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Everything a template renders for one request.
#[derive(Debug, Clone, Copy)]
pub struct ChatPrompt<'a> {
    /// OpenAI-shaped messages (`role`, `content`, `tool_calls`, `tool_call_id`, `name`).
    pub messages: &'a [serde_json::Value],
    /// The request's `tools` (`{"type": "function", "function": {...}}`), if any.
    pub tools: Option<&'a [serde_json::Value]>,
    /// `chat_template_kwargs`: extra variables for the template.
    pub kwargs: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub add_generation_prompt: bool,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat";

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use this for "Today's date"; the host's UTC clock is the honest answer.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format
        .replace("%Y", &format!("{year:04}"))
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the strings templates may reference.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ModelError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| {
                ModelError::Template(format!("the chat template does not compile: {e}"))
            })?;
        Ok(Self {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The prompt for `messages`; with `add_generation_prompt` it ends where the
    /// assistant's answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
            .collect();
        self.render_prompt(&ChatPrompt {
            messages: &messages,
            tools: None,
            kwargs: None,
            add_generation_prompt,
        })
    }

    /// The prompt for a full chat request: messages as Hugging Face templates take them
    /// (`tool_calls` with object `arguments`, `role: "tool"` with `tool_call_id`), the tool
    /// definitions, and `chat_template_kwargs` (such as `enable_thinking`), which cannot
    /// override the variables set here.
    pub fn render_prompt(&self, prompt: &ChatPrompt<'_>) -> Result<String, ModelError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ModelError::Template(e.to_string()))?;
        let kwargs = minijinja::Value::from_serialize(prompt.kwargs.cloned().unwrap_or_default());
        template
            .render(context! {
                messages => prompt.messages,
                tools => prompt.tools,
                add_generation_prompt => prompt.add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                ..kwargs
            })
            .map_err(|e| ModelError::Template(format!("rendering the chat template failed: {e}")))
    }

    /// The template's Jinja source (to tell which tool-call format the model was taught).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template renders a `tools` list itself.
    pub fn renders_tools(&self) -> bool {
        self.source.contains("tools")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's own template, as stored in its GGUF file.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        }
    }

    #[test]
    fn renders_smollm2_with_its_default_system_prompt() {
        let template = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let prompt = template
            .render(&[user("What is the capital of France?")], true)
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn helpers_hf_templates_use_are_there() {
        let source = "{% if messages[0]['content'].strip() == '' %}{{ raise_exception('empty') }}{% endif %}\
                      {{ bos_token }}{{ messages | tojson }}{{ strftime_now('%Y') | length }}";
        let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let out = template.render(&[user("hi")], false).unwrap();
        assert!(out.starts_with("<s>[{"), "{out}");
        assert!(out.ends_with('4'), "{out}");
        let err = template.render(&[user("  ")], false).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn tools_messages_and_kwargs_reach_the_template() {
        let source = "{% if tools %}T={{ tools | map(attribute='function') | map(attribute='name') | join(',') }};{% endif %}\
                      {% for m in messages %}{{ m.role }}:{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments.city }}\
                      {% else %}{{ m.content }}{% endif %}|{% endfor %}{% if enable_thinking is false %}nothink{% endif %}";
        let template = ChatTemplate::new(source, "", "").unwrap();
        assert!(template.renders_tools());
        let messages = [
            serde_json::json!({"role": "user", "content": "weather?"}),
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": {"city": "Paris"}}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}),
        ];
        let tools = [serde_json::json!({"type": "function", "function": {"name": "w"}})];
        let kwargs = serde_json::Map::from_iter([("enable_thinking".to_owned(), false.into())]);
        let out = template
            .render_prompt(&ChatPrompt {
                messages: &messages,
                tools: Some(&tools),
                kwargs: Some(&kwargs),
                add_generation_prompt: false,
            })
            .unwrap();
        assert_eq!(out, "T=w;user:weather?|assistant:Paris|tool:sunny|nothink");
    }

    #[test]
    fn a_broken_template_is_an_error() {
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }
}
