//! Reading the small JSON files of a model folder, with errors that name the file and field.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::ModelError;

/// Reads and parses `path`, reporting a missing file, an unreadable file or the exact field
/// that does not parse.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = read_file(path)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| ModelError::Config {
        path: path.to_path_buf(),
        field: err.path().to_string(),
        reason: err.inner().to_string(),
    })
}

/// Reads a whole file, telling a missing file apart from an unreadable one.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// Maps an I/O error on `path` to [`ModelError::MissingFile`] or [`ModelError::Io`].
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> ModelError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ModelError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
