//! DSR-Score geometry core.
//!
//! Pure functions over slices: the spatial-relation (SSR) score of one frame, the
//! dynamic-spatial-relation (DSR) score of one video, batch scoring of many videos
//! (parallel with rayon), correctness curves, and the densification of long tracks
//! rows (one per sample, frame and label) into the per-video arrays batch scoring takes. The definition is the one in the
//! project's DESIGN.md ("Scoring"), which reproduces the official SpatialAlign
//! scorer (`calc_dsr_score.py`) operation for operation.
//!
//! Boxes are `[x0, y0, x1, y1]` in pixels, y downwards. A box whose four values are
//! all NaN means "not detected in this frame". Every other malformed input is an
//! [`InputError`]; nothing here panics on user data.

mod curve;
mod dsr;
mod error;
mod relation;
mod ssr;
mod tracks;

pub use curve::{correctness_curve, OFFICIAL_THRESHOLDS};
pub use dsr::{dsr_batch, dsr_video, dsr_video_at, BatchScores, DsrParams, VideoScore};
pub use error::{InputError, TrackProblem};
pub use relation::Relation;
pub use ssr::{check_box, frame_geometry, ssr_scores, BoxState, FrameGeometry};
pub use tracks::{densify_tracks, DenseTracks, TrackChunk};

#[cfg(feature = "python")]
mod python;
