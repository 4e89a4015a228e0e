//! Token ids to text, one token at a time: incremental detokenisation that never
//! splits a multi-byte character, and stop strings that are never emitted.

/// Decodes a growing token sequence into text deltas.
///
/// Decoding token by token is wrong for byte-level BPE (a character may span
/// tokens, and some tokenizers change a token's text by what precedes it), so
/// this decodes a short window of recent tokens and emits only what the newest
/// one added, and only once it is complete UTF-8.
#[derive(Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix_offset: usize,
    /// End of what has been emitted.
    read_offset: usize,
}

impl Detokenizer {
    /// Adds a token; returns the new text it completes, if any.
    pub fn push(
        &mut self,
        token: u32,
        decode: impl Fn(&[u32]) -> Result<String, String>,
    ) -> Result<Option<String>, String> {
        self.ids.push(token);
        let before = decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let now = decode(&self.ids[self.prefix_offset..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let delta = now[before.len()..].to_owned();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }
}

/// Holds back text that might be the start of a stop string.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What [`StopMatcher::push`] lets through.
#[derive(Debug, PartialEq, Eq)]
pub struct StopCheck {
    /// Text safe to emit now.
    pub emit: String,
    /// A stop string was found: nothing after `emit` may be emitted.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.pending.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let emit = self.pending[..at].to_owned();
            self.pending.clear();
            return StopCheck {
                emit,
                stopped: true,
            };
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(move |&n| stop.is_char_boundary(n))
                    .map(move |n| &stop[..n])
            })
            .filter(|prefix| self.pending.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let split = self.pending.len() - keep;
        let emit = self.pending[..split].to_owned();
        self.pending.drain(..split);
        StopCheck {
            emit,
            stopped: false,
        }
    }

    /// What is still held back when the sequence ends without a stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level "tokenizer": each token is one byte of UTF-8.
    fn decode(ids: &[u32]) -> Result<String, String> {
        let bytes: Vec<u8> = ids.iter().map(|&b| b as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn multi_byte_characters_are_never_split() {
        let mut detok = Detokenizer::default();
        let mut out = Vec::new();
        for byte in "aé€😀".bytes() {
            if let Some(delta) = detok.push(u32::from(byte), decode).unwrap() {
                out.push(delta);
            }
        }
        assert_eq!(out, ["a", "é", "€", "😀"]);
    }

    #[test]
    fn stop_strings_are_cut_and_withheld() {
        let mut m = StopMatcher::new(vec!["\n\n".into(), "END".into()]);
        assert_eq!(m.push("Hello E").emit, "Hello ");
        assert_eq!(m.push("N").emit, "");
        let check = m.push("D more");
        assert_eq!(
            check,
            StopCheck {
                emit: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn a_false_start_is_released() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("EN").emit, "");
        assert_eq!(m.push("x").emit, "ENx");
        assert_eq!(m.push("E").emit, "");
        assert_eq!(m.finish(), "E");
    }

    #[test]
    fn stop_inside_one_delta() {
        let mut m = StopMatcher::new(vec!["stop".into()]);
        assert_eq!(
            m.push("go stop go"),
            StopCheck {
                emit: "go ".into(),
                stopped: true
            }
        );
    }
}
