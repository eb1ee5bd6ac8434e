use std::io;

/// Why writing an archive failed. Every variant says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading the source failed.
    #[error("reading {what} at byte {offset}: {source}")]
    Source {
        what: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing the archive at byte {offset}: {source}")]
    Output {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// An argument breaks a rule of the format (name, chunk size, section count).
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl From<strata_format::FormatError> for WriteError {
    fn from(e: strata_format::FormatError) -> Self {
        WriteError::Invalid { what: e.what, detail: e.detail }
    }
}
