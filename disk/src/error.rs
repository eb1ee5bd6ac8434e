//! One error type: what could not be read, where, and why.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The image does not hold what was asked for: no such partition, no
    /// recognised file system, no such path.
    NotFound,
    /// A partition table or file system that breaks its own rules, or asks
    /// for more than the stated limits.
    Damaged,
    /// The file system or table kind is recognised but not read here.
    Unsupported,
    /// Reading the image failed (damaged archive ranges answer this way).
    Io,
}

/// A failure, with what was being read and the byte offset in the image
/// where it is known.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    what: String,
    offset: Option<u64>,
    detail: String,
}

impl Error {
    /// A new error of `kind` about `what`, with a plain-words `detail`.
    pub fn new(kind: ErrorKind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error { kind, what: what.into(), offset: None, detail: detail.into() }
    }

    /// The same error, at byte `offset` of the image.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset.get_or_insert(offset);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was being read.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Where in the image, when known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, what, e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)?;
        if let Some(offset) = self.offset {
            write!(f, " at image byte {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for Error {}
