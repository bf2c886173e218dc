use std::fmt;

/// Why an input was rejected. `Display` names the offending row or video, so the
/// Python layer can raise it as a `ValueError` verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum InputError {
    /// A box with some (not all) values NaN, or any infinite value.
    NonFinite { which: &'static str, row: usize },
    /// A box with x1 < x0 or y1 < y0.
    Inverted { which: &'static str, row: usize },
    /// Two arrays that must have the same length do not.
    LengthMismatch {
        what: String,
        expected: usize,
        got: usize,
    },
    /// Offsets that are not 0 ... T and non-decreasing.
    BadOffsets { index: usize, detail: String },
    /// A relation name that is none of left/right/top/bottom (L/R/T/B).
    BadRelation { video: Option<usize>, value: String },
    /// A parameter out of range (e.g. m = 0).
    BadParameter { name: &'static str, detail: String },
    /// An array whose shape is not the documented one.
    BadShape { what: &'static str, detail: String },
    /// A bad row of a tracks table ([`densify_tracks`](crate::densify_tracks)): `row`
    /// counts across its chunks, `video` is the row's video (None: not a scored one).
    TrackRow {
        problem: TrackProblem,
        row: usize,
        video: Option<usize>,
        frame: i64,
        label: Option<u8>,
    },
    /// An index or value outside the range it indexes (`len` entries).
    OutOfRange {
        what: &'static str,
        row: usize,
        value: i64,
        len: usize,
    },
    /// An error inside video `video` of a batch.
    InVideo {
        video: usize,
        source: Box<InputError>,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::NonFinite { which, row } => write!(
                f,
                "{which} box at row {row} has NaN or inf values (only an all-NaN row means 'not detected')"
            ),
            InputError::Inverted { which, row } => {
                write!(f, "{which} box at row {row} has x1 < x0 or y1 < y0")
            }
            InputError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected length {expected}, got {got}")
            }
            InputError::BadOffsets { index, detail } => {
                write!(f, "offsets[{index}]: {detail}")
            }
            InputError::BadRelation { video, value } => match video {
                Some(v) => write!(
                    f,
                    "video {v}: unknown relation {value:?} (expected left/right/top/bottom or L/R/T/B)"
                ),
                None => write!(
                    f,
                    "unknown relation {value:?} (expected left/right/top/bottom or L/R/T/B)"
                ),
            },
            InputError::BadParameter { name, detail } => write!(f, "{name}: {detail}"),
            InputError::BadShape { what, detail } => write!(f, "{what}: {detail}"),
            InputError::TrackRow {
                problem,
                row,
                video,
                frame,
                label,
            } => {
                write!(f, "tracks row {row} (")?;
                match video {
                    Some(v) => write!(f, "video {v}, ")?,
                    None => write!(f, "no scored video, ")?,
                }
                write!(f, "frame {frame}")?;
                if let Some(l) = label {
                    write!(f, ", {}", if *l == 0 { "animal" } else { "object" })?;
                }
                write!(f, "): {}", problem.describe())
            }
            InputError::OutOfRange {
                what,
                row,
                value,
                len,
            } => write!(f, "{what} {value} at row {row} is out of range (0..{len})"),
            InputError::InVideo { video, source } => write!(f, "video {video}: {source}"),
        }
    }
}

impl std::error::Error for InputError {}

/// What is wrong with a tracks row (see [`InputError::TrackRow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackProblem {
    /// A label that is neither animal nor object.
    UnknownLabel,
    /// A box with some (not all) values NaN, or an infinite value.
    NonFinite,
    /// A box with x1 < x0 or y1 < y0.
    Inverted,
    /// A frame index below 0.
    NegativeFrame,
    /// A second row with the same (video, frame, label).
    Duplicate,
}

impl TrackProblem {
    /// A stable name (the Python binding passes it on with the error).
    pub fn name(self) -> &'static str {
        match self {
            TrackProblem::UnknownLabel => "unknown_label",
            TrackProblem::NonFinite => "non_finite",
            TrackProblem::Inverted => "inverted",
            TrackProblem::NegativeFrame => "negative_frame",
            TrackProblem::Duplicate => "duplicate",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TrackProblem::UnknownLabel => "unknown label (expected animal or object)",
            TrackProblem::NonFinite => "non-finite box coordinates",
            TrackProblem::Inverted => "inverted box (x1 < x0 or y1 < y0)",
            TrackProblem::NegativeFrame => "negative frame index",
            TrackProblem::Duplicate => "more than one row of this label in this frame",
        }
    }
}
