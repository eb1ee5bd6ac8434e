//! The reader's one error type: what went wrong, where, and what it affects.

use std::fmt;
use std::io;
use std::ops::Range;

use strata_format::{ErrorClass, FormatError};

/// An error reading an archive. Says what was wrong ([`Error::kind`] and
/// [`Error::class`], a label and a detail), where (byte offset of the structure,
/// section name, image byte range), and carries the I/O error when reading
/// itself failed.
///
/// ```
/// use strata_reader::{Archive, ErrorClass, ErrorKind};
///
/// // One stored byte of the first chunk, at archive byte 652, was changed.
/// let archive = Archive::new(&include_bytes!("../../spec/vectors/chunk-body-crc.strata")[..])?;
/// let mut buf = [0u8; 100];
/// let error = archive.image("disk")?.read_at(10, &mut buf).unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::Archive(ErrorClass::RecordChecksum));
/// assert_eq!(error.class(), Some(ErrorClass::RecordChecksum));
/// assert_eq!(error.offset(), Some(652));
/// assert_eq!(error.section(), Some("disk"));
/// assert_eq!(error.image_range(), Some(0..4096), "the image bytes that chunk held");
/// assert!(error.to_string().ends_with("[record-checksum]"));
/// # Ok::<(), strata_reader::Error>(())
/// ```
#[derive(Debug)]
pub struct Error(Box<Inner>);

/// What kind of failure an [`Error`] is, for callers that act on it rather than
/// print it: a defect of the archive, a failing read or write, or a request
/// the archive cannot answer.
///
/// ```
/// use strata_reader::{Archive, ErrorKind};
///
/// let archive = Archive::new(&include_bytes!("../../spec/vectors/image-and-tree.strata")[..])?;
/// match archive.image("no-such-image") {
///     Err(e) if e.kind() == ErrorKind::NoSuchSection => assert_eq!(e.section(), Some("no-such-image")),
///     Err(e) => return Err(e.into()),
///     Ok(image) => panic!("{} is not in this archive", image.name()),
/// }
/// // A tree is not an image, whatever its name.
/// assert_eq!(archive.image("tree").unwrap_err().kind(), ErrorKind::NoSuchSection);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The archive breaks a rule of `spec/FORMAT.md`; the class says which
    /// (also given by [`Error::class`]). An archive that ends early is
    /// [`ErrorClass::Truncated`].
    Archive(ErrorClass),
    /// Reading the archive, or writing a destination, failed for a reason
    /// other than its end: [`std::error::Error::source`] is the `io::Error`.
    Io,
    /// The caller asked for a section the archive does not hold, or one of
    /// another kind (an image by the name of a file tree). Nothing is wrong
    /// with the archive; [`Error::section`] is the name asked for.
    NoSuchSection,
    /// The caller asked for the content of an entry that has none to give:
    /// [`Tree::open`](crate::Tree::open) of a directory, a symbolic link, a
    /// device, a fifo or a socket. Nothing is wrong with the archive.
    NotAFile,
    /// The caller asked for the children of an entry that is not a directory
    /// ([`Tree::read_dir`](crate::Tree::read_dir)). Nothing is wrong with the
    /// archive.
    NotADirectory,
    /// The archive records that it does not hold the content asked for: a
    /// file that could not be read when the archive was written
    /// ([`Entry::is_unreadable`](crate::Entry::is_unreadable)), or whose
    /// content was lost to damage before a salvage
    /// ([`Entry::lost_in_salvage`](crate::Entry::lost_in_salvage)). The
    /// archive is as it should be; no bytes stand for what is missing, not
    /// even zeros.
    NotStored,
}

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    what: String,
    detail: String,
    offset: Option<u64>,
    section: Option<String>,
    image_range: Option<Range<u64>>,
    io: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(class: ErrorClass, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::of_kind(ErrorKind::Archive(class), what, detail)
    }

    fn of_kind(kind: ErrorKind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
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
        let ends_early = e.kind() == io::ErrorKind::UnexpectedEof;
        let detail = if ends_early { "the file ends before it".to_string() } else { e.to_string() };
        let kind = if ends_early { ErrorKind::Archive(ErrorClass::Truncated) } else { ErrorKind::Io };
        let mut error = Error::of_kind(kind, what, detail).at(offset);
        error.0.io = Some(e);
        error
    }

    /// A failure of the destination or another local file, not of the archive.
    pub fn local_io(what: impl Into<String>, e: io::Error) -> Self {
        let mut error = Error::of_kind(ErrorKind::Io, what, e.to_string());
        error.0.io = Some(e);
        error
    }

    /// The archive has no section `name` of the kind `what` names ("image
    /// section"); `detail` says what it has instead.
    pub(crate) fn no_such_section(what: &str, name: &str, detail: impl Into<String>) -> Self {
        Error::of_kind(ErrorKind::NoSuchSection, what, detail).in_section(name)
    }

    /// A request the entry cannot answer (`kind` is [`ErrorKind::NotAFile`],
    /// [`ErrorKind::NotADirectory`] or [`ErrorKind::NotStored`]); `what`
    /// names the entry.
    pub(crate) fn of_entry(kind: ErrorKind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::of_kind(kind, what, detail)
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

    /// What kind of failure this is: match on it (or compare it) to tell a
    /// damaged archive, a failing read and a missing section apart.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    /// The error class of `spec/FORMAT.md`; `None` when the archive is not at
    /// fault (reading failed, or a section asked for is not there: see [`Error::kind`]).
    pub fn class(&self) -> Option<ErrorClass> {
        match self.0.kind {
            ErrorKind::Archive(class) => Some(class),
            ErrorKind::Io
            | ErrorKind::NoSuchSection
            | ErrorKind::NotAFile
            | ErrorKind::NotADirectory
            | ErrorKind::NotStored => None,
        }
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
        if let ErrorKind::Archive(class) = inner.kind {
            write!(f, " [{class}]")?;
        }
        Ok(())
    }
}

/// An error as an `io::Error`, for code that reads an archive through
/// [`std::io::Read`] (an [`crate::ImageReader`] or a [`crate::FileReader`]):
/// the kind is `InvalidData` for a defect of the archive, `NotFound` for a
/// missing section, `InvalidInput` for content asked of an entry that has
/// none, `NotADirectory` for children asked of one that is not a directory,
/// `Other` for content the archive records it does not hold, and the original
/// kind for a failing read; the strata `Error` stays inside, to be had back
/// with `io::Error::get_ref` or `into_inner` and `downcast`.
impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Archive(_) => io::ErrorKind::InvalidData,
            ErrorKind::NoSuchSection => io::ErrorKind::NotFound,
            ErrorKind::NotAFile => io::ErrorKind::InvalidInput,
            ErrorKind::NotADirectory => io::ErrorKind::NotADirectory,
            ErrorKind::NotStored => io::ErrorKind::Other,
            ErrorKind::Io => e.0.io.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, e)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.io.as_ref().map(|e| e as _)
    }
}
