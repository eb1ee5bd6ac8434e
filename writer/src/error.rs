//! The writer's one error type.

use std::io;

/// Why writing an archive failed. Every variant says what was being done.
/// More variants may come (encryption, object storage): match with a
/// wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Reading the source failed.
    #[error("reading {what} at byte {offset}: {source}")]
    Source {
        /// What was being read: the image or tree, and the file where known.
        what: String,
        /// The byte of that source the read was at.
        offset: u64,
        /// The error the source gave.
        #[source]
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing the archive at byte {offset}: {source}")]
    Output {
        /// The archive's length written so far.
        offset: u64,
        /// The error the output gave.
        #[source]
        source: io::Error,
    },
    /// An argument breaks a rule of the format (name, chunk size, section count).
    #[error("{what}: {detail}")]
    Invalid {
        /// The argument or input broken: `"section name"`, `"tree entry"`, ...
        what: &'static str,
        /// What was wrong with it, and what was expected.
        detail: String,
    },
}

impl From<strata_format::FormatError> for WriteError {
    fn from(e: strata_format::FormatError) -> Self {
        WriteError::Invalid { what: e.what, detail: e.detail }
    }
}
