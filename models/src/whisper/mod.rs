//! Whisper (speech recognition and translation). So far: the audio front end ([`mel`]), the
//! log-mel spectrogram every Whisper size reads, checked against openai-whisper's own filter
//! bank and a numpy reference (`models/scripts/generate_whisper_mel_reference.py`), and the
//! reader of CTranslate2's `model.bin` ([`ct2`]) that the default Whisper ships in. The
//! encoder, decoder and loaders follow.

pub mod ct2;
pub mod mel;
