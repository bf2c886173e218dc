//! Long tracks rows -> the dense per-video arrays [`dsr_batch`](crate::dsr_batch) scores.
//!
//! `tracks.parquet` has one row per (sample, frame, label) detection, in any order;
//! an absent row, or one whose four coordinates are NaN, means "not detected". The
//! dense form has one row per (video, frame) that has any detection, videos in
//! their given order and frames ascending within each; a label with no detection
//! in that frame gets an all-NaN box. `offsets[v]..offsets[v + 1]` are video `v`'s rows.
//!
//! Ids arrive dictionary-encoded, the way Arrow reads them from Parquet: per chunk,
//! each row's index into that chunk's dictionary, and a map from dictionary entry to
//! the video it is (`-1`: not a video being scored; its rows are counted and skipped)
//! or to the label it is (0 animal, 1 object, `-1` unknown). No string is looked at.
//!
//! Checks, in this order of precedence (the first offending row in input order is
//! named, except for duplicates, named in (video, frame, label) order): an unknown
//! label on any row, then, among the rows of scored videos with a detection, a box
//! with some but not all values NaN or with an infinite value, an inverted box
//! (x1 < x0 or y1 < y0), a negative frame, and finally two rows with the same
//! (video, frame, label).
//!
//! Cost: one sequential pass over the rows (checks and per-video counts), one
//! scatter into per-video buckets, then per video in parallel (rayon) a sort of its
//! rows by (frame, label) (nearly free when they are already in order) and a fill
//! of its dense rows: O(rows + videos) memory, no hashing.

use rayon::prelude::*;

use crate::error::{InputError, TrackProblem};

/// One chunk of tracks rows (e.g. an Arrow record batch), every slice the same length
/// except the two maps, which are indexed by `sample` and `label`.
#[derive(Debug, Clone, Copy)]
pub struct TrackChunk<'a> {
    /// The row's index into `sample_map`.
    pub sample: &'a [i32],
    /// Dictionary entry -> video index (`0..n_videos`), or `-1`: not a scored video.
    pub sample_map: &'a [i32],
    /// The row's index into `label_map`.
    pub label: &'a [i32],
    /// Dictionary entry -> 0 (animal), 1 (object) or `-1` (an unknown label).
    pub label_map: &'a [i32],
    pub frame: &'a [i64],
    pub x0: &'a [f64],
    pub y0: &'a [f64],
    pub x1: &'a [f64],
    pub y1: &'a [f64],
}

/// The dense tracks of `n_videos` videos.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseTracks {
    /// Frame index of each dense row (ascending within a video).
    pub frames: Vec<i64>,
    /// `[rows * 4]` animal boxes, all-NaN where the animal has no detection.
    pub animal: Vec<f64>,
    /// `[rows * 4]` object boxes, all-NaN where the object has no detection.
    pub obj: Vec<f64>,
    /// `[n_videos + 1]`: video `v`'s dense rows are `offsets[v]..offsets[v + 1]`.
    pub offsets: Vec<i64>,
    /// `[n_videos]`: input rows with a detection per video (0: the video has no tracks).
    pub n_rows: Vec<i64>,
    /// Input rows of ids that are not scored videos (skipped).
    pub n_unknown: usize,
}

/// Per-video facts from the checking pass.
struct Counted {
    /// Kept rows (scored video, a detection) per video.
    counts: Vec<i64>,
    /// Smallest and largest frame of each video's kept rows (`i64::MAX`, `i64::MIN`: none).
    min_frame: Vec<i64>,
    max_frame: Vec<i64>,
    n_unknown: usize,
}

impl Counted {
    /// No rows counted yet, for `n_videos` videos.
    fn empty(n_videos: usize) -> Self {
        Counted {
            counts: vec![0; n_videos],
            min_frame: vec![i64::MAX; n_videos],
            max_frame: vec![i64::MIN; n_videos],
            n_unknown: 0,
        }
    }
}

/// The first row of each kind of problem the checking pass met (row, video, frame).
#[derive(Default)]
struct FirstProblems {
    unknown_label: Option<(usize, Option<usize>, i64)>,
    non_finite: Option<(usize, usize, i64)>,
    inverted: Option<(usize, usize, i64)>,
    negative_frame: Option<(usize, usize, i64)>,
}

fn row_error(
    problem: TrackProblem,
    (row, video, frame): (usize, Option<usize>, i64),
    label: Option<u8>,
) -> InputError {
    InputError::TrackRow {
        problem,
        row,
        video,
        frame,
        label,
    }
}

/// Checks a chunk's lengths, that its indices are inside its maps and its maps' values
/// are videos / labels, so the passes below index without failing.
fn check_chunk(c: &TrackChunk<'_>, index: usize, n_videos: usize) -> Result<(), InputError> {
    let n = c.sample.len();
    let columns: [(&str, usize); 6] = [
        ("label", c.label.len()),
        ("frame", c.frame.len()),
        ("x0", c.x0.len()),
        ("y0", c.y0.len()),
        ("x1", c.x1.len()),
        ("y1", c.y1.len()),
    ];
    for (name, len) in columns {
        if len != n {
            return Err(InputError::LengthMismatch {
                what: format!("tracks chunk {index}: column {name} vs sample"),
                expected: n,
                got: len,
            });
        }
    }
    for (what, indices, map) in [
        ("sample (an index into sample_map)", c.sample, c.sample_map),
        ("label (an index into label_map)", c.label, c.label_map),
    ] {
        // min/max first (vectorises); the row only on failure
        let (lo, hi) = indices
            .iter()
            .fold((i32::MAX, i32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if n > 0 && (lo < 0 || hi as usize >= map.len()) {
            let row = indices
                .iter()
                .position(|&x| x < 0 || x as usize >= map.len())
                .unwrap_or(0);
            return Err(InputError::OutOfRange {
                what,
                row,
                value: indices[row] as i64,
                len: map.len(),
            });
        }
    }
    if let Some(&bad) = c
        .sample_map
        .iter()
        .find(|&&v| v < -1 || v as i64 >= n_videos as i64)
    {
        return Err(InputError::OutOfRange {
            what: "sample_map value (a video index, or -1)",
            row: index,
            value: bad as i64,
            len: n_videos,
        });
    }
    Ok(())
}

/// Rows `start..end` of one chunk whose first row is row `base` of the whole input.
#[derive(Clone, Copy)]
struct Block {
    chunk: usize,
    base: usize,
    start: usize,
    end: usize,
}

/// The checking pass of one block, in input order: every check but duplicates, and
/// per-video counts and frame ranges.
fn count_block(c: &TrackChunk<'_>, block: Block, n_videos: usize) -> (Counted, FirstProblems) {
    let mut out = Counted::empty(n_videos);
    let mut first = FirstProblems::default();
    let base = block.base;
    for i in block.start..block.end {
        let video = c.sample_map[c.sample[i] as usize];
        let label = c.label_map[c.label[i] as usize];
        let frame = c.frame[i];
        if !(label == 0 || label == 1) {
            let video = usize::try_from(video).ok();
            first.unknown_label.get_or_insert((base + i, video, frame));
            continue;
        }
        if video < 0 {
            out.n_unknown += 1;
            continue;
        }
        let v = video as usize;
        let b = [c.x0[i], c.y0[i], c.x1[i], c.y1[i]];
        if !b.iter().all(|x| x.is_finite()) {
            if !b.iter().all(|x| x.is_nan()) {
                first.non_finite.get_or_insert((base + i, v, frame));
            }
            continue; // all NaN: not detected, like an absent row
        }
        if b[2] < b[0] || b[3] < b[1] {
            first.inverted.get_or_insert((base + i, v, frame));
        }
        if frame < 0 {
            first.negative_frame.get_or_insert((base + i, v, frame));
        }
        out.counts[v] += 1;
        out.min_frame[v] = out.min_frame[v].min(frame);
        out.max_frame[v] = out.max_frame[v].max(frame);
    }
    (out, first)
}

/// The rows cut into blocks for the checking pass: a few per thread, each at least
/// 64k rows and 4 rows per video (a block's per-video tallies cost O(videos)).
fn blocks(chunks: &[TrackChunk<'_>], n_videos: usize) -> Vec<Block> {
    let rows: usize = chunks.iter().map(|c| c.sample.len()).sum();
    let want = 4 * rayon::current_num_threads();
    let size = (rows / want.max(1)).max(1 << 16).max(4 * n_videos);
    let mut out = Vec::new();
    let mut base = 0usize;
    for (ci, c) in chunks.iter().enumerate() {
        let n = c.sample.len();
        let mut start = 0;
        while start < n {
            let end = (start + size).min(n);
            out.push(Block {
                chunk: ci,
                base,
                start,
                end,
            });
            start = end;
        }
        base += n;
    }
    out
}

/// The checking pass over every row (blocks in parallel, merged in input order); the
/// first offending row of the highest-precedence problem is the error.
fn count_rows(chunks: &[TrackChunk<'_>], n_videos: usize) -> Result<Counted, InputError> {
    let parts: Vec<(Counted, FirstProblems)> = blocks(chunks, n_videos)
        .into_par_iter()
        .map(|b| count_block(&chunks[b.chunk], b, n_videos))
        .collect();
    let mut out = Counted::empty(n_videos);
    let mut first = FirstProblems::default();
    for (part, f) in parts {
        for v in 0..n_videos {
            out.counts[v] += part.counts[v];
            out.min_frame[v] = out.min_frame[v].min(part.min_frame[v]);
            out.max_frame[v] = out.max_frame[v].max(part.max_frame[v]);
        }
        out.n_unknown += part.n_unknown;
        // blocks are in input order: the first block that met a problem has its first row
        first.unknown_label = first.unknown_label.or(f.unknown_label);
        first.non_finite = first.non_finite.or(f.non_finite);
        first.inverted = first.inverted.or(f.inverted);
        first.negative_frame = first.negative_frame.or(f.negative_frame);
    }
    let some = |(r, v, f): (usize, usize, i64)| (r, Some(v), f);
    if let Some(at) = first.unknown_label {
        return Err(row_error(TrackProblem::UnknownLabel, at, None));
    }
    for (problem, at) in [
        (TrackProblem::NonFinite, first.non_finite),
        (TrackProblem::Inverted, first.inverted),
        (TrackProblem::NegativeFrame, first.negative_frame),
    ] {
        if let Some(at) = at {
            return Err(row_error(problem, some(at), None));
        }
    }
    Ok(out)
}

/// Densifies `chunks` (rows in the order given) for `n_videos` videos; see the module doc.
pub fn densify_tracks(
    chunks: &[TrackChunk<'_>],
    n_videos: usize,
) -> Result<DenseTracks, InputError> {
    densify(chunks, n_videos, None)
}

/// [`densify_tracks`]; `grid` forces the grid (true) or the sort (false) when given.
fn densify(
    chunks: &[TrackChunk<'_>],
    n_videos: usize,
    grid: Option<bool>,
) -> Result<DenseTracks, InputError> {
    if chunks.iter().any(|c| c.sample.len() > u32::MAX as usize) || chunks.len() > u32::MAX as usize
    {
        return Err(InputError::BadShape {
            what: "tracks chunks",
            detail: "at most 2^32 - 1 chunks of at most 2^32 - 1 rows".into(),
        });
    }
    for (i, c) in chunks.iter().enumerate() {
        check_chunk(c, i, n_videos)?;
    }
    let counted = count_rows(chunks, n_videos)?;
    // one grid row per frame of each video's [min, max] range, when that is not much
    // more than its rows (frames 0..n with a few gaps: the usual case); else a sort
    let mut span = 0usize;
    let mut kept = 0usize;
    for v in 0..n_videos {
        if counted.counts[v] > 0 {
            let range = counted.max_frame[v].abs_diff(counted.min_frame[v]);
            span = span
                .saturating_add(usize::try_from(range).unwrap_or(usize::MAX))
                .saturating_add(1);
            kept += counted.counts[v] as usize;
        }
    }
    let (frames, animal, obj, offsets) = if grid.unwrap_or(span <= 2 * kept + n_videos) {
        by_grid(chunks, &counted, span)?
    } else {
        by_sort(chunks, &counted)?
    };
    Ok(DenseTracks {
        frames,
        animal,
        obj,
        offsets,
        n_rows: counted.counts,
        n_unknown: counted.n_unknown,
    })
}

type Dense = (Vec<i64>, Vec<f64>, Vec<f64>, Vec<i64>);

/// The smallest (video, frame, label) of two duplicate rows and one of those rows.
fn duplicate_error(first: Option<((usize, i64, usize), usize)>) -> Result<(), InputError> {
    match first {
        None => Ok(()),
        Some(((video, frame, label), row)) => Err(row_error(
            TrackProblem::Duplicate,
            (row, Some(video), frame),
            Some(label as u8),
        )),
    }
}

/// Frames `min..=max` of each video on a grid: each row is written straight to its
/// (video, frame) cell, then the cells no row reached are squeezed out in place.
fn by_grid(chunks: &[TrackChunk<'_>], counted: &Counted, span: usize) -> Result<Dense, InputError> {
    let n_videos = counted.counts.len();
    let mut start = Vec::with_capacity(n_videos + 1);
    start.push(0usize);
    for v in 0..n_videos {
        let n = if counted.counts[v] > 0 {
            (counted.max_frame[v] - counted.min_frame[v]) as usize + 1
        } else {
            0
        };
        start.push(start[v] + n);
    }
    debug_assert_eq!(start[n_videos], span);
    // zeroed memory comes from the OS untouched: each page is written once, below
    let mut animal = fresh_zeros!(0.0f64, 4 * span);
    let mut obj = fresh_zeros!(0.0f64, 4 * span);
    let mut seen = fresh_zeros!(0u8, span); // bit 0: an animal row, bit 1: an object row
    let mut dup: Option<((usize, i64, usize), usize)> = None;
    let mut base = 0usize;
    for c in chunks {
        for i in 0..c.sample.len() {
            // indices and maps were checked, unknown labels and partly-NaN boxes refused
            let video = c.sample_map[c.sample[i] as usize];
            if video < 0 || c.x0[i].is_nan() {
                continue; // not a scored video, or not detected
            }
            let v = video as usize;
            let label = c.label_map[c.label[i] as usize] as usize;
            let frame = c.frame[i];
            let cell = start[v] + (frame - counted.min_frame[v]) as usize;
            let bit = 1u8 << label;
            if seen[cell] & bit != 0 {
                let key = (v, frame, label);
                if dup.map_or(true, |(k, _)| key < k) {
                    dup = Some((key, base + i));
                }
                continue;
            }
            seen[cell] |= bit;
            let dst = if label == 0 { &mut animal } else { &mut obj };
            dst[4 * cell..4 * cell + 4].copy_from_slice(&[c.x0[i], c.y0[i], c.x1[i], c.y1[i]]);
        }
        base += c.sample.len();
    }
    duplicate_error(dup)?;

    // squeeze: cell `g` moves to dense row `w <= g`; a label it lacks becomes NaN
    let mut frames = Vec::with_capacity(span);
    advise_huge_pages(frames.spare_capacity_mut());
    let mut offsets = Vec::with_capacity(n_videos + 1);
    offsets.push(0i64);
    for v in 0..n_videos {
        for (g, &s) in seen.iter().enumerate().take(start[v + 1]).skip(start[v]) {
            if s == 0 {
                continue;
            }
            let w = frames.len();
            frames.push(counted.min_frame[v] + (g - start[v]) as i64);
            for (arr, bit) in [(&mut animal, 1u8), (&mut obj, 2u8)] {
                if s & bit == 0 {
                    arr[4 * w..4 * w + 4].fill(f64::NAN);
                } else if w != g {
                    arr.copy_within(4 * g..4 * g + 4, 4 * w);
                }
            }
        }
        offsets.push(frames.len() as i64);
    }
    animal.truncate(4 * frames.len());
    obj.truncate(4 * frames.len());
    Ok((frames, animal, obj, offsets))
}

/// Where a kept row sits: its chunk and its row within the chunk.
#[derive(Clone, Copy)]
struct Loc {
    chunk: u32,
    row: u32,
}

/// A kept row in its video's bucket: the sort key `frame << 1 | label` and where it is.
#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    loc: Loc,
}

/// Any frames: rows scattered into per-video buckets, each sorted by (frame, label)
/// in parallel, then the dense rows filled per video in parallel.
fn by_sort(chunks: &[TrackChunk<'_>], counted: &Counted) -> Result<Dense, InputError> {
    let n_videos = counted.counts.len();
    let mut start = Vec::with_capacity(n_videos + 1);
    start.push(0usize);
    for &n in &counted.counts {
        start.push(start[start.len() - 1] + n as usize);
    }
    let mut fill = start[..n_videos].to_vec();
    let blank = Entry {
        key: 0,
        loc: Loc { chunk: 0, row: 0 },
    };
    let mut entries = vec![blank; start[n_videos]];
    advise_huge_pages(&entries);
    for (ci, c) in chunks.iter().enumerate() {
        for i in 0..c.sample.len() {
            let video = c.sample_map[c.sample[i] as usize];
            if video < 0 || c.x0[i].is_nan() {
                continue; // not a scored video, or not detected
            }
            let label = c.label_map[c.label[i] as usize] as u64;
            let slot = &mut fill[video as usize];
            // frames are >= 0 here (negative ones were refused)
            entries[*slot] = Entry {
                key: ((c.frame[i] as u64) << 1) | label,
                loc: Loc {
                    chunk: ci as u32,
                    row: i as u32,
                },
            };
            *slot += 1;
        }
    }

    // per video: order by (frame, label), find duplicates, count distinct frames
    let mut buckets = split_by(&mut entries, &start);
    let sorted: Vec<Result<usize, (u64, Loc)>> = buckets
        .par_iter_mut()
        .with_min_len(64)
        .map(|b| {
            if !b.windows(2).all(|w| w[0].key <= w[1].key) {
                b.sort_unstable_by_key(|e| e.key);
            }
            let mut distinct = usize::from(!b.is_empty());
            for w in b.windows(2) {
                if w[0].key == w[1].key {
                    return Err((w[0].key, w[0].loc));
                }
                distinct += usize::from(w[0].key >> 1 != w[1].key >> 1);
            }
            Ok(distinct)
        })
        .collect();
    let mut offsets = Vec::with_capacity(n_videos + 1);
    offsets.push(0usize);
    for (v, r) in sorted.into_iter().enumerate() {
        match r {
            Ok(n) => offsets.push(offsets[v] + n),
            Err((key, loc)) => {
                let before: usize = chunks[..loc.chunk as usize]
                    .iter()
                    .map(|c| c.sample.len())
                    .sum();
                let key = (v, (key >> 1) as i64, (key & 1) as usize);
                duplicate_error(Some((key, before + loc.row as usize)))?;
            }
        }
    }

    let n_dense = offsets[n_videos];
    let mut frames = fresh_zeros!(0i64, n_dense);
    let mut animal = fresh_zeros!(0.0f64, 4 * n_dense);
    let mut obj = fresh_zeros!(0.0f64, 4 * n_dense);
    animal.fill(f64::NAN);
    obj.fill(f64::NAN);
    let offsets4: Vec<usize> = offsets.iter().map(|&o| 4 * o).collect();
    let frame_parts = split_by(&mut frames, &offsets);
    let animal_parts = split_by(&mut animal, &offsets4);
    let obj_parts = split_by(&mut obj, &offsets4);
    buckets
        .into_par_iter()
        .zip(frame_parts)
        .zip(animal_parts)
        .zip(obj_parts)
        .with_min_len(64)
        .for_each(|(((bucket, frames), animal), obj)| {
            let mut out = usize::MAX; // the dense row being filled
            let mut last_frame = u64::MAX;
            for e in bucket.iter() {
                let frame = e.key >> 1;
                if frame != last_frame {
                    out = out.wrapping_add(1);
                    frames[out] = frame as i64;
                    last_frame = frame;
                }
                let c = &chunks[e.loc.chunk as usize];
                let i = e.loc.row as usize;
                let dst = if e.key & 1 == 0 {
                    &mut animal[4 * out..4 * out + 4]
                } else {
                    &mut obj[4 * out..4 * out + 4]
                };
                dst.copy_from_slice(&[c.x0[i], c.y0[i], c.x1[i], c.y1[i]]);
            }
        });
    Ok((
        frames,
        animal,
        obj,
        offsets.into_iter().map(|o| o as i64).collect(),
    ))
}

/// Asks the OS to back `buffer`'s pages with huge pages (Linux `madvise`; numpy does the
/// same for its large arrays). Called on fresh zeroed buffers before their first write, it
/// makes filling them several times cheaper: one fault per 2 MiB instead of per 4 KiB.
#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(buffer: &[T]) {
    const MIN_BYTES: usize = 4 << 20;
    let bytes = std::mem::size_of_val(buffer);
    if bytes < MIN_BYTES {
        return;
    }
    // SAFETY: sysconf has no preconditions
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return,
    };
    let first = buffer.as_ptr() as usize;
    let start = first.div_ceil(page) * page;
    let end = (first + bytes) / page * page;
    if end > start {
        // SAFETY: [start, end) lies inside `buffer`'s allocation, which outlives the call;
        // MADV_HUGEPAGE changes how the kernel backs those pages, never their contents.
        // Advice only: a refusal (e.g. huge pages disabled) changes nothing.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_buffer: &[T]) {}

/// `len` zeros, fresh from the OS (untouched until written) and advised huge pages.
macro_rules! fresh_zeros {
    ($zero:expr, $len:expr) => {{
        let v = vec![$zero; $len];
        advise_huge_pages(&v);
        v
    }};
}
use fresh_zeros;

/// `data` cut at `bounds` (non-decreasing, `bounds[0] == 0`, last == `data.len()`)
/// into `bounds.len() - 1` disjoint mutable parts.
fn split_by<'a, T>(mut data: &'a mut [T], bounds: &[usize]) -> Vec<&'a mut [T]> {
    let mut parts = Vec::with_capacity(bounds.len().saturating_sub(1));
    for w in bounds.windows(2) {
        let (head, tail) = std::mem::take(&mut data).split_at_mut(w[1] - w[0]);
        parts.push(head);
        data = tail;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    /// Owned columns of one chunk, for building `TrackChunk`s in tests.
    #[derive(Default, Clone)]
    struct Rows {
        sample: Vec<i32>,
        sample_map: Vec<i32>,
        label: Vec<i32>,
        label_map: Vec<i32>,
        frame: Vec<i64>,
        x0: Vec<f64>,
        y0: Vec<f64>,
        x1: Vec<f64>,
        y1: Vec<f64>,
    }

    impl Rows {
        /// Dictionary entry `s` is video `sample_map[s]`; labels 0 animal, 1 object.
        fn new(sample_map: &[i32]) -> Self {
            Rows {
                sample_map: sample_map.to_vec(),
                label_map: vec![0, 1],
                ..Default::default()
            }
        }
        fn push(mut self, sample: i32, frame: i64, label: i32, b: [f64; 4]) -> Self {
            self.sample.push(sample);
            self.frame.push(frame);
            self.label.push(label);
            self.x0.push(b[0]);
            self.y0.push(b[1]);
            self.x1.push(b[2]);
            self.y1.push(b[3]);
            self
        }
        fn chunk(&self) -> TrackChunk<'_> {
            TrackChunk {
                sample: &self.sample,
                sample_map: &self.sample_map,
                label: &self.label,
                label_map: &self.label_map,
                frame: &self.frame,
                x0: &self.x0,
                y0: &self.y0,
                x1: &self.x1,
                y1: &self.y1,
            }
        }
    }

    fn bx(v: f64) -> [f64; 4] {
        [v, v, v + 1.0, v + 1.0]
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// Both ways (grid and sort), which must agree (a duplicate may name either of its
    /// rows), and the automatic choice.
    fn densify_tracks(chunks: &[TrackChunk<'_>], n: usize) -> Result<DenseTracks, InputError> {
        let grid = densify(chunks, n, Some(true));
        let sort = densify(chunks, n, Some(false));
        match (&grid, &sort) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (&a.frames, &a.offsets, &a.n_rows),
                    (&b.frames, &b.offsets, &b.n_rows)
                );
                assert_eq!(a.n_unknown, b.n_unknown);
                assert!(same(&a.animal, &b.animal) && same(&a.obj, &b.obj));
            }
            (
                Err(InputError::TrackRow {
                    problem: TrackProblem::Duplicate,
                    video,
                    frame,
                    label,
                    ..
                }),
                Err(InputError::TrackRow {
                    problem: TrackProblem::Duplicate,
                    video: v,
                    frame: f,
                    label: l,
                    ..
                }),
            ) => assert_eq!((video, frame, label), (v, f, l)),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("grid and sort disagree: {grid:?} vs {sort:?}"),
        }
        let auto = super::densify_tracks(chunks, n);
        assert_eq!(auto.is_ok(), grid.is_ok());
        grid
    }

    #[test]
    fn sparse_frames_are_sorted_not_gridded() {
        // a grid over frames 0..=10^15 would not fit in memory
        let r = Rows::new(&[0])
            .push(0, 1_000_000_000_000_000, 0, bx(2.0))
            .push(0, 0, 1, bx(1.0));
        let d = super::densify_tracks(&[r.chunk()], 1).unwrap();
        assert_eq!(d.frames, vec![0, 1_000_000_000_000_000]);
        assert!(same(&d.obj, &[1.0, 1.0, 2.0, 2.0, NAN, NAN, NAN, NAN]));
    }

    #[test]
    fn rows_in_any_order_become_sorted_dense_rows() {
        // dictionary: 0 -> video 1, 1 -> video 0, 2 -> not scored
        let r = Rows::new(&[1, 0, -1])
            .push(0, 5, 1, bx(50.0))
            .push(1, 2, 0, bx(20.0))
            .push(0, 3, 0, bx(30.0))
            .push(2, 1, 0, bx(99.0))
            .push(0, 5, 0, bx(51.0))
            .push(1, 2, 1, [NAN; 4]); // all NaN: same as absent
        let d = densify_tracks(&[r.chunk()], 3).unwrap();
        assert_eq!(d.offsets, vec![0, 1, 3, 3]);
        assert_eq!(d.frames, vec![2, 3, 5]);
        assert_eq!(d.n_rows, vec![1, 3, 0]);
        assert_eq!(d.n_unknown, 1);
        let mut animal = bx(20.0).to_vec();
        animal.extend(bx(30.0));
        animal.extend(bx(51.0));
        let mut obj = vec![NAN; 8];
        obj.extend(bx(50.0));
        assert!(same(&d.animal, &animal));
        assert!(same(&d.obj, &obj));
    }

    #[test]
    fn chunks_are_one_table() {
        let a = Rows::new(&[0]).push(0, 1, 0, bx(1.0));
        let b = Rows::new(&[-1, 0])
            .push(1, 0, 1, bx(2.0))
            .push(0, 0, 0, bx(3.0));
        let d = densify_tracks(&[a.chunk(), b.chunk()], 1).unwrap();
        assert_eq!(d.frames, vec![0, 1]);
        assert_eq!(d.offsets, vec![0, 2]);
        assert_eq!(d.n_unknown, 1);
        assert!(same(&d.animal, &[NAN, NAN, NAN, NAN, 1.0, 1.0, 2.0, 2.0]));
        assert!(same(&d.obj, &[2.0, 2.0, 3.0, 3.0, NAN, NAN, NAN, NAN]));
    }

    #[test]
    fn no_rows_and_no_videos() {
        let d = densify_tracks(&[], 2).unwrap();
        assert_eq!(d.offsets, vec![0, 0, 0]);
        assert_eq!(d.n_rows, vec![0, 0]);
        assert!(d.frames.is_empty() && d.animal.is_empty());
        let r = Rows::new(&[-1]).push(0, 0, 0, bx(1.0));
        let d = densify_tracks(&[r.chunk()], 0).unwrap();
        assert_eq!(d.offsets, vec![0]);
        assert_eq!(d.n_unknown, 1);
    }

    fn problem(r: &Rows) -> (TrackProblem, usize, Option<usize>, i64, Option<u8>) {
        match densify_tracks(&[r.chunk()], 2).unwrap_err() {
            InputError::TrackRow {
                problem,
                row,
                video,
                frame,
                label,
            } => (problem, row, video, frame, label),
            e => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn bad_rows_are_named_in_precedence_order() {
        let ok = Rows::new(&[0, 1, -1]).push(0, 0, 0, bx(1.0));
        let inverted = ok.clone().push(1, 4, 0, [5.0, 0.0, 4.0, 1.0]);
        assert_eq!(
            problem(&inverted),
            (TrackProblem::Inverted, 1, Some(1), 4, None)
        );
        // a partly NaN box comes before an earlier inverted one
        let partly = inverted.clone().push(0, 7, 1, [1.0, NAN, 2.0, 2.0]);
        assert_eq!(problem(&partly).0, TrackProblem::NonFinite);
        let inf = ok.clone().push(0, 7, 1, [1.0, 1.0, f64::INFINITY, 2.0]);
        assert_eq!(
            problem(&inf),
            (TrackProblem::NonFinite, 1, Some(0), 7, None)
        );
        // an unknown label before everything, even on a row of no scored video
        let mut unknown = partly.clone().push(2, 3, 0, bx(1.0));
        unknown.label_map = vec![0, 1, -1];
        unknown = unknown.push(2, 9, 2, bx(1.0));
        assert_eq!(
            problem(&unknown),
            (TrackProblem::UnknownLabel, 4, None, 9, None)
        );
        let negative = ok.clone().push(1, -3, 1, bx(1.0));
        assert_eq!(
            problem(&negative),
            (TrackProblem::NegativeFrame, 1, Some(1), -3, None)
        );
        // bad rows of videos not scored, and all-NaN bad rows, are skipped
        let skipped = ok
            .clone()
            .push(2, -1, 0, [5.0, 0.0, 4.0, NAN])
            .push(0, -1, 0, [NAN; 4]);
        assert!(densify_tracks(&[skipped.chunk()], 2).is_ok());
    }

    /// Enough rows for several checking blocks (64k rows each at least).
    #[test]
    fn blocks_merge_in_input_order() {
        let n = 300_000usize;
        let mut r = Rows::new(&(0..100).collect::<Vec<i32>>());
        for k in 0..n {
            // video k % 100, frame k / 200, label by (k / 100) % 2: each (video, frame, label) once
            r = r.push(
                (k % 100) as i32,
                (k / 200) as i64,
                ((k / 100) % 2) as i32,
                bx(k as f64),
            );
        }
        let d = super::densify_tracks(&[r.chunk()], 100).unwrap();
        assert_eq!(d.n_rows, vec![3000; 100]);
        assert_eq!(d.offsets[1], 1500);
        assert_eq!(&d.animal[..4], &bx(0.0));
        assert_eq!(&d.obj[..4], &bx(100.0));
        // problems in later blocks: the first row of the highest-precedence kind wins
        let mut bad = r.clone();
        bad.x1[10] = -1.0; // inverted, first block
        bad.y0[250_000] = f64::INFINITY; // non-finite, a later block
        bad.y0[140_000] = f64::INFINITY; // an earlier block than 250_000's
        assert_eq!(problem1(&bad, 100), (TrackProblem::NonFinite, 140_000));
        bad.y0[140_000] = 1.0;
        bad.y0[250_000] = 1.0;
        bad.frame[280_000] = -5;
        bad.x1[120_000] = -1.0;
        assert_eq!(problem1(&bad, 100), (TrackProblem::Inverted, 10));
    }

    fn problem1(r: &Rows, n_videos: usize) -> (TrackProblem, usize) {
        match super::densify_tracks(&[r.chunk()], n_videos).unwrap_err() {
            InputError::TrackRow { problem, row, .. } => (problem, row),
            e => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn duplicates_are_named_in_video_frame_label_order() {
        let r = Rows::new(&[0, 1])
            .push(1, 8, 1, bx(1.0))
            .push(0, 6, 1, bx(1.0))
            .push(1, 2, 0, bx(1.0))
            .push(1, 8, 1, bx(2.0))
            .push(0, 6, 0, bx(1.0))
            .push(1, 2, 0, bx(3.0));
        let (p, _, video, frame, label) = problem(&r);
        assert_eq!(
            (p, video, frame, label),
            (TrackProblem::Duplicate, Some(1), 2, Some(0))
        );
    }

    #[test]
    fn out_of_range_indices_are_errors_not_panics() {
        let mut r = Rows::new(&[0]).push(3, 0, 0, bx(1.0));
        assert!(matches!(
            densify_tracks(&[r.chunk()], 1),
            Err(InputError::OutOfRange { .. })
        ));
        r.sample[0] = 0;
        r.label[0] = -1;
        assert!(densify_tracks(&[r.chunk()], 1).is_err());
        r.label[0] = 0;
        r.sample_map[0] = 5; // not a video index
        assert!(densify_tracks(&[r.chunk()], 1).is_err());
        r.sample_map[0] = 0;
        r.x1.pop();
        assert!(matches!(
            densify_tracks(&[r.chunk()], 1),
            Err(InputError::LengthMismatch { .. })
        ));
    }

    /// Against a direct construction: every (video, frame) in a map, shuffled input,
    /// several chunks.
    #[test]
    fn matches_a_map_on_shuffled_rows() {
        use std::collections::BTreeMap;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let n_videos = 40;
        let mut rows = Vec::new(); // (dict entry, frame, label, box)
        for v in 0..n_videos as i64 + 3 {
            for f in 0..(rand(30) as i64) {
                for l in 0..2 {
                    if rand(4) > 0 {
                        let b = if rand(10) == 0 {
                            [NAN; 4]
                        } else {
                            bx(rand(500) as f64)
                        };
                        rows.push((v as i32, f * 3, l, b));
                    }
                }
            }
        }
        for i in (1..rows.len()).rev() {
            rows.swap(i, rand(i as u64 + 1) as usize);
        }
        // dictionary entry e is video n_videos - 1 - e; the last three are not scored
        let map: Vec<i32> = (0..n_videos as i32 + 3)
            .map(|e| {
                if e < n_videos as i32 {
                    n_videos as i32 - 1 - e
                } else {
                    -1
                }
            })
            .collect();
        let mut parts = [Rows::new(&map), Rows::new(&map), Rows::new(&map)];
        let mut want: BTreeMap<(i32, i64), [[f64; 4]; 2]> = BTreeMap::new();
        let mut n_unknown = 0;
        for (k, &(e, f, l, b)) in rows.iter().enumerate() {
            let p = &mut parts[k * 3 / rows.len()];
            *p = std::mem::take(p).push(e, f, l, b);
            if map[e as usize] < 0 {
                n_unknown += 1;
            } else if !b[0].is_nan() {
                want.entry((map[e as usize], f)).or_insert([[NAN; 4]; 2])[l as usize] = b;
            }
        }
        let chunks: Vec<TrackChunk> = parts.iter().map(|p| p.chunk()).collect();
        let d = densify_tracks(&chunks, n_videos).unwrap();
        assert_eq!(d.n_unknown, n_unknown);
        assert_eq!(d.frames, want.keys().map(|k| k.1).collect::<Vec<_>>());
        let animal: Vec<f64> = want.values().flat_map(|b| b[0]).collect();
        let obj: Vec<f64> = want.values().flat_map(|b| b[1]).collect();
        assert!(same(&d.animal, &animal) && same(&d.obj, &obj));
        for v in 0..n_videos {
            let n = want.keys().filter(|k| k.0 == v as i32).count() as i64;
            assert_eq!(d.offsets[v + 1] - d.offsets[v], n);
        }
    }
}
