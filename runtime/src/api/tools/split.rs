//! One choice's text split as it streams: `<think>…</think>` reasoning, content, and tool
//! calls. Content that might be the start of a call (a marker, or a prefix of one) is held
//! back, so a content delta never carries a call's raw text; the calls are parsed from the
//! whole answer when it ends. A non-streamed answer goes through the same splitter in one
//! push, so the joined stream always equals it.
//!
//! A code fence is held only until it shows whether it may hold a call: one whose info string
//! is neither empty nor `json`, or whose body does not open with `{` or `[`, is code, and
//! streams as content to its closing fence (a coding model's answers are not held to the end).
//!
//! Reasoning and content are trimmed: leading whitespace is dropped and trailing whitespace
//! is held until more text follows it.

use super::parse::{CALL_MARKERS, FENCE, ParsedCall, parse_calls};

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Whether and how the model reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// The template knows no `<think>`.
    Off,
    /// The answer may open with `<think>`.
    MayThink,
    /// The prompt ended inside `<think>` (DeepSeek-R1 distills, Qwen3 thinking mode).
    Thinking,
}

/// A piece of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Reasoning(String),
    Content(String),
}

/// Trims a text as it grows: nothing before its first non-space, trailing spaces held.
#[derive(Debug, Default)]
struct Trimmed {
    started: bool,
    held: String,
    emitted: String,
}

impl Trimmed {
    fn push(&mut self, text: &str) -> String {
        let text = if self.started {
            text
        } else {
            text.trim_start()
        };
        if text.is_empty() {
            return String::new();
        }
        self.started = true;
        let combined = std::mem::take(&mut self.held) + text;
        let body = combined.trim_end().len();
        self.held = combined[body..].to_owned();
        let out = combined[..body].to_owned();
        self.emitted.push_str(&out);
        out
    }
}

/// Where the content scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Plain text.
    Text,
    /// At a fence (`scanned` is its first backtick) not yet known to be code or a call.
    Fence,
    /// Inside a fenced code block: content until the closing fence.
    Code,
    /// A call (or what may be one) has begun: no more content is shown until the end.
    Call,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Not yet known whether the answer opens with `<think>`.
    Undecided,
    Reasoning,
    Content,
}

/// The splitter of one choice.
#[derive(Debug)]
pub struct OutputSplitter {
    phase: Phase,
    /// Text not yet placed (an undecided opening, or a possible `</think>`).
    pending: String,
    reasoning: Trimmed,
    /// Names of the functions a call may use; `None` when calls are not parsed.
    tools: Option<Vec<String>>,
    /// All content text, raw.
    content: String,
    /// How much of `content` has been passed to `shown`.
    scanned: usize,
    scan: Scan,
    shown: Trimmed,
}

/// The longest suffix of `text` that is a proper prefix of one of `markers`.
fn held_suffix(text: &str, markers: &[&str]) -> usize {
    markers
        .iter()
        .flat_map(|m| (1..m.len()).rev().map(move |n| &m[..n]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

impl OutputSplitter {
    pub fn new(reasoning: Reasoning, tools: Option<Vec<String>>) -> Self {
        Self {
            phase: match reasoning {
                Reasoning::Off => Phase::Content,
                Reasoning::MayThink => Phase::Undecided,
                Reasoning::Thinking => Phase::Reasoning,
            },
            pending: String::new(),
            reasoning: Trimmed::default(),
            tools,
            content: String::new(),
            scanned: 0,
            scan: Scan::Text,
            shown: Trimmed::default(),
        }
    }

    /// Whether the splitter changes anything: without reasoning or tools, text passes as is.
    pub fn is_needed(reasoning: Reasoning, tools: bool) -> bool {
        reasoning != Reasoning::Off || tools
    }

    /// The pieces `text` (the next delta) completes.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut pieces = Vec::new();
        self.pending.push_str(text);
        if self.phase == Phase::Undecided {
            let opening = self.pending.trim_start();
            if let Some(after) = opening.strip_prefix(THINK_OPEN) {
                self.pending = after.to_owned();
                self.phase = Phase::Reasoning;
            } else if THINK_OPEN.starts_with(opening) {
                return pieces;
            } else {
                self.phase = Phase::Content;
            }
        }
        if self.phase == Phase::Reasoning {
            if let Some(at) = self.pending.find(THINK_CLOSE) {
                let thought = self.pending[..at].to_owned();
                let rest = self.pending[at + THINK_CLOSE.len()..].to_owned();
                self.pending.clear();
                self.push_reasoning(&thought, &mut pieces);
                self.phase = Phase::Content;
                self.push_content(&rest, &mut pieces);
            } else {
                let keep = held_suffix(&self.pending, &[THINK_CLOSE]);
                let ready = self.pending[..self.pending.len() - keep].to_owned();
                self.pending.drain(..ready.len());
                self.push_reasoning(&ready, &mut pieces);
            }
            return pieces;
        }
        let text = std::mem::take(&mut self.pending);
        self.push_content(&text, &mut pieces);
        pieces
    }

    fn push_reasoning(&mut self, text: &str, pieces: &mut Vec<Piece>) {
        let out = self.reasoning.push(text);
        if !out.is_empty() {
            pieces.push(Piece::Reasoning(out));
        }
    }

    fn push_content(&mut self, text: &str, pieces: &mut Vec<Piece>) {
        self.content.push_str(text);
        if self.tools.is_none() {
            let out = self.shown.push(text);
            if !out.is_empty() {
                pieces.push(Piece::Content(out));
            }
            return;
        }
        loop {
            match self.scan {
                Scan::Call => return,
                Scan::Text => {
                    let unscanned = &self.content[self.scanned..];
                    let opening = !self.shown.started && {
                        let t = self.content.trim_start();
                        t.starts_with('{') || t.starts_with('[')
                    };
                    if opening {
                        self.scan = Scan::Call;
                        return;
                    }
                    let marker = CALL_MARKERS
                        .iter()
                        .filter_map(|m| unscanned.find(m).map(|at| (at, *m)))
                        .min();
                    match marker {
                        Some((at, m)) => {
                            self.show(at, pieces);
                            self.scan = if m == FENCE { Scan::Fence } else { Scan::Call };
                        }
                        None => {
                            let ready = unscanned.len() - held_suffix(unscanned, &CALL_MARKERS);
                            self.show(ready, pieces);
                            return;
                        }
                    }
                }
                Scan::Fence => {
                    let rest = &self.content[self.scanned + FENCE.len()..];
                    let Some(line_end) = rest.find('\n') else {
                        return;
                    };
                    let info = rest[..line_end].trim();
                    let body = rest[line_end + 1..].trim_start();
                    let may_be_call = info.is_empty() || info.eq_ignore_ascii_case("json");
                    if may_be_call && body.is_empty() {
                        return;
                    }
                    if may_be_call && (body.starts_with('{') || body.starts_with('[')) {
                        self.scan = Scan::Call;
                        return;
                    }
                    self.show(FENCE.len() + line_end + 1, pieces);
                    self.scan = Scan::Code;
                }
                Scan::Code => {
                    let unscanned = &self.content[self.scanned..];
                    match unscanned.find(FENCE) {
                        Some(at) => {
                            self.show(at + FENCE.len(), pieces);
                            self.scan = Scan::Text;
                        }
                        None => {
                            let ready = unscanned.len() - held_suffix(unscanned, &[FENCE]);
                            self.show(ready, pieces);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Shows the next `len` bytes of the content.
    fn show(&mut self, len: usize, pieces: &mut Vec<Piece>) {
        let text = self.content[self.scanned..self.scanned + len].to_owned();
        self.scanned += len;
        let out = self.shown.push(&text);
        if !out.is_empty() {
            pieces.push(Piece::Content(out));
        }
    }

    /// The rest of the answer once generation ended, and the calls it made.
    pub fn finish(&mut self) -> (Vec<Piece>, Vec<ParsedCall>) {
        let mut pieces = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        match self.phase {
            // An answer that is only a prefix of `<think>` is content.
            Phase::Undecided | Phase::Content => {
                self.phase = Phase::Content;
                self.push_content(&pending, &mut pieces);
            }
            // Cut off while thinking: it was all reasoning.
            Phase::Reasoning => self.push_reasoning(&pending, &mut pieces),
        }
        let Some(tools) = &self.tools else {
            return (pieces, Vec::new());
        };
        let known: Vec<&str> = tools.iter().map(String::as_str).collect();
        let parsed = parse_calls(&self.content, &known);
        let content = parsed.content.unwrap_or_default();
        // What was shown is the trimmed text before the first marker: a prefix of the
        // content the parse leaves.
        if let Some(rest) = content.strip_prefix(self.shown.emitted.as_str())
            && !rest.is_empty()
        {
            pieces.push(Piece::Content(rest.to_owned()));
        }
        (pieces, parsed.calls)
    }
}

/// A whole answer split at once: (reasoning, content, calls), `None` for empty parts.
pub fn split_whole(
    text: &str,
    reasoning: Reasoning,
    tools: Option<Vec<String>>,
) -> (Option<String>, Option<String>, Vec<ParsedCall>) {
    let mut splitter = OutputSplitter::new(reasoning, tools);
    let mut pieces = splitter.push(text);
    let (rest, calls) = splitter.finish();
    pieces.extend(rest);
    let (mut thought, mut content) = (String::new(), String::new());
    for piece in pieces {
        match piece {
            Piece::Reasoning(t) => thought.push_str(&t),
            Piece::Content(t) => content.push_str(&t),
        }
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    (some(thought), some(content), calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Option<Vec<String>> {
        Some(vec!["get_weather".into()])
    }

    /// Streams `text` in pieces of `size` bytes (on char boundaries) and joins the output.
    fn streamed(
        text: &str,
        size: usize,
        reasoning: Reasoning,
        tools: Option<Vec<String>>,
    ) -> (String, String, Vec<ParsedCall>, Vec<Piece>) {
        let mut splitter = OutputSplitter::new(reasoning, tools);
        let mut all = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(size) {
            all.extend(splitter.push(&chunk.iter().collect::<String>()));
        }
        let (rest, calls) = splitter.finish();
        all.extend(rest);
        let (mut r, mut c) = (String::new(), String::new());
        for piece in &all {
            match piece {
                Piece::Reasoning(t) => r.push_str(t),
                Piece::Content(t) => c.push_str(t),
            }
        }
        (r, c, calls, all)
    }

    #[test]
    fn content_never_shows_a_call_and_the_stream_equals_the_whole() {
        let text = "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let whole = split_whole(text, Reasoning::Off, tools());
        assert_eq!(whole.1.as_deref(), Some("Checking."));
        assert_eq!(whole.2.len(), 1);
        for size in [1, 2, 3, 7, 100] {
            let (_, content, calls, pieces) = streamed(text, size, Reasoning::Off, tools());
            assert_eq!(content, "Checking.", "size {size}");
            assert_eq!(calls, whole.2);
            assert!(
                pieces
                    .iter()
                    .all(|p| !matches!(p, Piece::Content(t) if t.contains('<') || t.contains('{'))),
                "{pieces:?}"
            );
        }
    }

    #[test]
    fn a_fence_that_is_no_call_comes_back_as_content() {
        let text = "Here:\n```python\nprint(1)\n```\nDone.";
        for size in [1, 4, 50] {
            let (_, content, calls, _) = streamed(text, size, Reasoning::Off, tools());
            assert_eq!(content, text);
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn code_streams_as_it_comes_and_a_fenced_call_is_still_a_call() {
        // The code shows before the answer ends: everything up to the last token.
        let mut splitter = OutputSplitter::new(Reasoning::Off, tools());
        let mut shown = String::new();
        for piece in [
            "Sure:\n```py",
            "thon\ndef add(a, b):\n",
            "    return a + b\n``",
            "`\nThat is it.",
        ] {
            for p in splitter.push(piece) {
                if let Piece::Content(t) = p {
                    shown.push_str(&t);
                }
            }
        }
        assert_eq!(
            shown,
            "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nThat is it."
        );
        let text = "Calling it.\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```";
        for size in [1, 5, 200] {
            let (_, content, calls, pieces) = streamed(text, size, Reasoning::Off, tools());
            assert_eq!(content, "Calling it.", "size {size}");
            assert_eq!(calls.len(), 1);
            assert!(
                pieces
                    .iter()
                    .all(|p| !matches!(p, Piece::Content(t) if t.contains("get_weather"))),
                "{pieces:?}"
            );
        }
        // A fence of JSON data that is no call comes back whole at the end.
        let data = "```json\n[1, 2]\n```";
        assert_eq!(streamed(data, 2, Reasoning::Off, tools()).1, data);
    }

    #[test]
    fn reasoning_is_split_off_streamed_or_not() {
        let text = "<think>\nThe user wants Paris.\n</think>\n\nParis is sunny.";
        let whole = split_whole(text, Reasoning::MayThink, None);
        assert_eq!(whole.0.as_deref(), Some("The user wants Paris."));
        assert_eq!(whole.1.as_deref(), Some("Paris is sunny."));
        for size in [1, 3, 9] {
            let (r, c, _, _) = streamed(text, size, Reasoning::MayThink, None);
            assert_eq!(
                (r.as_str(), c.as_str()),
                ("The user wants Paris.", "Paris is sunny.")
            );
        }
        // The prompt opened the thought: the answer starts inside it.
        let (r, c, _, _) = streamed("hmm</think>ok", 2, Reasoning::Thinking, None);
        assert_eq!((r.as_str(), c.as_str()), ("hmm", "ok"));
        // No <think>: all content.
        let (r, c, _, _) = streamed("<thin air", 1, Reasoning::MayThink, None);
        assert_eq!((r.as_str(), c.as_str()), ("", "<thin air"));
    }

    #[test]
    fn a_bare_call_answer_has_no_content() {
        let text = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}";
        let (_, content, calls, _) = streamed(text, 3, Reasoning::Off, tools());
        assert_eq!(content, "");
        assert_eq!(calls[0].arguments, "{\"city\":\"Oslo\"}");
    }
}
