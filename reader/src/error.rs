//! The reader's one error type: what went wrong, where, and what it affects.

use std::fmt;
use std::io;
use std::ops::Range;

use strata_format::{ErrorClass, FormatError};

/// An error reading an archive. Says what was wrong ([`Error::class`], a label and
/// a detail), where (byte offset of the structure, section name, image byte range),
/// and carries the I/O error when reading itself failed.
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    class: Option<ErrorClass>,
    what: String,
    detail: String,
    offset: Option<u64>,
    section: Option<String>,
    image_range: Option<Range<u64>>,
    io: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(class: ErrorClass, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            class: Some(class),
            what: what.into(),
            detail: detail.into(),
            offset: None,
            section: None,
            image_range: None,
            io: None,
        }))
    }

    /// Reading the archive failed. An early end of file is a truncation.
    pub(crate) fn io(what: impl Into<String>, offset: u64, e: io::Error) -> Self {
        let class = (e.kind() == io::ErrorKind::UnexpectedEof).then_some(ErrorClass::Truncated);
        let detail = if class.is_some() { "the file ends before it".to_string() } else { e.to_string() };
        let mut error = Error::new(ErrorClass::Truncated, what, detail).at(offset);
        error.0.class = class;
        error.0.io = Some(e);
        error
    }

    /// A failure of the destination or another local file, not of the archive.
    pub fn local_io(what: impl Into<String>, e: io::Error) -> Self {
        let mut error = Error::new(ErrorClass::Truncated, what, e.to_string());
        error.0.class = None;
        error.0.io = Some(e);
        error
    }

    pub(crate) fn at(mut self, offset: u64) -> Self {
        self.0.offset.get_or_insert(offset);
        self
    }

    pub(crate) fn in_section(mut self, name: &str) -> Self {
        self.0.section.get_or_insert_with(|| name.to_string());
        self
    }

    pub(crate) fn in_image_range(mut self, range: Range<u64>) -> Self {
        self.0.image_range.get_or_insert(range);
        self
    }

    /// The error class of `spec/FORMAT.md`; `None` when reading (not the archive) failed.
    pub fn class(&self) -> Option<ErrorClass> {
        self.0.class
    }
    /// Byte offset in the archive of the structure at fault.
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }
    /// Name of the section concerned.
    pub fn section(&self) -> Option<&str> {
        self.0.section.as_deref()
    }
    /// Image bytes affected.
    pub fn image_range(&self) -> Option<Range<u64>> {
        self.0.image_range.clone()
    }
    /// Which structure or field.
    pub fn what(&self) -> &str {
        &self.0.what
    }
    /// What was found and what was expected.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Error::new(e.class, e.what, e.detail)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        write!(f, "{}", inner.what)?;
        if let Some(offset) = inner.offset {
            write!(f, " at byte {offset}")?;
        }
        match (&inner.section, &inner.image_range) {
            (Some(s), Some(r)) => write!(f, " (section {s:?}, image bytes {}..{})", r.start, r.end)?,
            (Some(s), None) => write!(f, " (section {s:?})")?,
            (None, Some(r)) => write!(f, " (image bytes {}..{})", r.start, r.end)?,
            (None, None) => {}
        }
        write!(f, ": {}", inner.detail)?;
        if let Some(class) = inner.class {
            write!(f, " [{class}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.io.as_ref().map(|e| e as _)
    }
}
