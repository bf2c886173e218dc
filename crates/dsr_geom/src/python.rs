//! The thin PyO3 binding: converts numpy inputs to slices, releases the GIL
//! around the core, and turns `InputError` into `ValueError`.

use numpy::{
    IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::{DsrParams, InputError, Relation, TrackChunk};

fn value_error(e: InputError) -> PyErr {
    match e {
        // the row's coordinates ride along, so the caller can name the sample
        InputError::TrackRow {
            problem,
            row,
            video,
            frame,
            label,
        } => PyValueError::new_err((e.to_string(), problem.name(), row, video, frame, label)),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A `[N, 4]` box array as a flat row-major buffer, borrowed when contiguous.
enum Flat<'py, T: numpy::Element> {
    Array(PyReadonlyArray2<'py, T>),
    Owned(Vec<T>),
}

impl<'py, T: numpy::Element + Copy> Flat<'py, T> {
    fn new(arr: PyReadonlyArray2<'py, T>, name: &str) -> PyResult<Self> {
        let shape = arr.shape();
        if shape[1] != 4 {
            return Err(PyValueError::new_err(format!(
                "{name} must have shape [N, 4] (x0, y0, x1, y1), got [{}, {}]",
                shape[0], shape[1]
            )));
        }
        // `as_slice` also accepts Fortran-ordered arrays, whose memory order is not
        // row-major: borrow only C-contiguous data, copy everything else in logical order.
        if arr.is_c_contiguous() && arr.as_slice().is_ok() {
            Ok(Flat::Array(arr))
        } else {
            Ok(Flat::Owned(arr.as_array().iter().copied().collect()))
        }
    }

    fn slice(&self) -> &[T] {
        match self {
            Flat::Array(a) => a.as_slice().expect("checked contiguous"),
            Flat::Owned(v) => v,
        }
    }
}

/// Both box arrays, as float32 when both already are, float64 otherwise.
enum BoxPair<'py> {
    F32(Flat<'py, f32>, Flat<'py, f32>),
    F64(Flat<'py, f64>, Flat<'py, f64>),
}

fn as_f64<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray2<'py, f64>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, f64>>() {
        return Ok(a);
    }
    let np = obj.py().import("numpy")?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("dtype", "float64")?;
    let conv = np
        .call_method("asarray", (obj,), Some(&kwargs))
        .map_err(|e| {
            PyValueError::new_err(format!(
                "{name} must be a numeric array of shape [N, 4]: {e}"
            ))
        })?;
    conv.extract::<PyReadonlyArray2<'py, f64>>()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a 2-D array of shape [N, 4]")))
}

fn box_pair<'py>(animal: &Bound<'py, PyAny>, obj: &Bound<'py, PyAny>) -> PyResult<BoxPair<'py>> {
    if let (Ok(a), Ok(o)) = (
        animal.extract::<PyReadonlyArray2<'py, f32>>(),
        obj.extract::<PyReadonlyArray2<'py, f32>>(),
    ) {
        return Ok(BoxPair::F32(Flat::new(a, "animal")?, Flat::new(o, "obj")?));
    }
    Ok(BoxPair::F64(
        Flat::new(as_f64(animal, "animal")?, "animal")?,
        Flat::new(as_f64(obj, "obj")?, "obj")?,
    ))
}

fn relation(s: &str, video: Option<usize>) -> PyResult<Relation> {
    Relation::parse(s).map_err(|_| {
        value_error(InputError::BadRelation {
            video,
            value: s.to_string(),
        })
    })
}

/// One relation per video: a sequence of names, or one name for every video.
fn relations(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<Relation>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(vec![relation(s.to_str()?, None)?]);
    }
    let bad = || PyValueError::new_err(format!("{name} must be a sequence of relation names"));
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (v, item) in obj.try_iter().map_err(|_| bad())?.enumerate() {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| bad())?;
        out.push(relation(&s.to_cow()?, Some(v))?);
    }
    Ok(out)
}

/// Scoring parameters from Python ints; negative values are a `ValueError` (not the
/// `OverflowError` an unsigned argument would give).
fn params(m: i64, min_frames: i64) -> PyResult<DsrParams> {
    let m = usize::try_from(m)
        .map_err(|_| PyValueError::new_err(format!("m must be at least 1, got {m}")))?;
    let min_frames = usize::try_from(min_frames)
        .map_err(|_| PyValueError::new_err(format!("min_frames must be >= 0, got {min_frames}")))?;
    Ok(DsrParams { m, min_frames })
}

/// `offsets` as int64 values: an integer array or sequence of length V+1.
fn offsets_vec(offsets: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if let Ok(a) = offsets.extract::<PyReadonlyArray1<'_, i64>>() {
        return Ok(a.as_array().iter().copied().collect());
    }
    let bad = || PyValueError::new_err("offsets must be a 1-D integer array of length V+1");
    let np = offsets.py().import("numpy")?;
    let arr = np.call_method1("asarray", (offsets,)).map_err(|_| bad())?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if ndim != 1 || !(kind == "i" || kind == "u") {
        return Err(bad());
    }
    let arr = arr
        .call_method("astype", ("int64",), None)
        .map_err(|_| bad())?;
    let a = arr
        .extract::<PyReadonlyArray1<'_, i64>>()
        .map_err(|_| bad())?;
    Ok(a.as_array().iter().copied().collect())
}

/// A 1-D float array (any float/int dtype, or a sequence) as `f64` values.
fn floats_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f64>>() {
        return Ok(a.as_array().iter().copied().collect());
    }
    let np = obj.py().import("numpy")?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("dtype", "float64")?;
    np.call_method("asarray", (obj,), Some(&kwargs))
        .and_then(|a| a.extract::<PyReadonlyArray1<'_, f64>>())
        .map(|a| a.as_array().iter().copied().collect())
        .map_err(|_| PyValueError::new_err(format!("{name} must be a 1-D array of numbers")))
}

/// SSR score of `relation` for every frame; NaN where the frame is not kept.
#[pyfunction]
#[pyo3(signature = (animal, obj, relation))]
fn ssr_scores<'py>(
    py: Python<'py>,
    animal: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
    relation: &str,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let rel = self::relation(relation, None)?;
    let out = match box_pair(animal, obj)? {
        BoxPair::F32(a, o) => {
            let (a, o) = (a.slice(), o.slice());
            py.detach(|| crate::ssr_scores(a, o, rel))
        }
        BoxPair::F64(a, o) => {
            let (a, o) = (a.slice(), o.slice());
            py.detach(|| crate::ssr_scores(a, o, rel))
        }
    }
    .map_err(value_error)?;
    Ok(out.into_pyarray(py))
}

/// DSR score of one video, or None when it has fewer than `min_frames` kept frames.
#[pyfunction]
#[pyo3(signature = (animal, obj, initial, r#final, *, m = 3, min_frames = 20))]
fn dsr_score<'py>(
    animal: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
    initial: &str,
    r#final: &str,
    m: i64,
    min_frames: i64,
) -> PyResult<Option<f64>> {
    let (i, f) = (relation(initial, None)?, relation(r#final, None)?);
    let p = params(m, min_frames)?;
    let s = match box_pair(animal, obj)? {
        BoxPair::F32(a, o) => crate::dsr_video(a.slice(), o.slice(), i, f, p),
        BoxPair::F64(a, o) => crate::dsr_video(a.slice(), o.slice(), i, f, p),
    }
    .map_err(value_error)?;
    Ok(s.dsr)
}

/// Scores many videos at once; see DESIGN.md. Returns a dict of float64[V] arrays
/// (`dsr`, `r_init`, `r_final`, `g_init`, `g_final`; NaN where invalid) and int64 `n_kept`.
#[pyfunction]
#[pyo3(signature = (animal, obj, offsets, initial, r#final, *, m = 3, min_frames = 20))]
#[allow(clippy::too_many_arguments)]
fn dsr_batch<'py>(
    py: Python<'py>,
    animal: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
    offsets: &Bound<'py, PyAny>,
    initial: &Bound<'py, PyAny>,
    r#final: &Bound<'py, PyAny>,
    m: i64,
    min_frames: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let p = params(m, min_frames)?;
    let offs = offsets_vec(offsets)?;
    let mut ini = relations(initial, "initial")?;
    let mut fin = relations(r#final, "final")?;
    let n_videos = offs.len().saturating_sub(1);
    if initial.cast::<PyString>().is_ok() {
        ini = vec![ini[0]; n_videos];
    }
    if r#final.cast::<PyString>().is_ok() {
        fin = vec![fin[0]; n_videos];
    }
    let out = match box_pair(animal, obj)? {
        BoxPair::F32(a, o) => {
            let (a, o) = (a.slice(), o.slice());
            py.detach(|| crate::dsr_batch(a, o, &offs, &ini, &fin, p))
        }
        BoxPair::F64(a, o) => {
            let (a, o) = (a.slice(), o.slice());
            py.detach(|| crate::dsr_batch(a, o, &offs, &ini, &fin, p))
        }
    }
    .map_err(value_error)?;
    let d = PyDict::new(py);
    d.set_item("dsr", out.dsr.into_pyarray(py))?;
    d.set_item("r_init", out.r_init.into_pyarray(py))?;
    d.set_item("r_final", out.r_final.into_pyarray(py))?;
    d.set_item("g_init", out.g_init.into_pyarray(py))?;
    d.set_item("g_final", out.g_final.into_pyarray(py))?;
    d.set_item("n_kept", out.n_kept.into_pyarray(py))?;
    Ok(d)
}

/// Correctness@t for each threshold: valid videos with DSR >= t over all videos
/// (NaN DSR = invalid). Defaults to the official grid `numpy.arange(0, 1, 0.1)`.
#[pyfunction]
#[pyo3(signature = (dsr, thresholds = None))]
fn correctness_curve<'py>(
    py: Python<'py>,
    dsr: &Bound<'py, PyAny>,
    thresholds: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let dsr = floats_vec(dsr, "dsr")?;
    let th = match thresholds {
        Some(t) => floats_vec(t, "thresholds")?,
        None => crate::OFFICIAL_THRESHOLDS.to_vec(),
    };
    let out = py
        .detach(|| crate::correctness_curve(&dsr, &th))
        .map_err(value_error)?;
    Ok(out.into_pyarray(py))
}

/// One chunk's columns, borrowed from the caller's numpy arrays.
struct ChunkArrays<'py> {
    ints: [PyReadonlyArray1<'py, i32>; 4],
    frame: PyReadonlyArray1<'py, i64>,
    boxes: [PyReadonlyArray1<'py, f64>; 4],
}

const INT_KEYS: [&str; 4] = ["sample", "sample_map", "label", "label_map"];
const BOX_KEYS: [&str; 4] = ["x0", "y0", "x1", "y1"];

fn chunk_column<'py, T: numpy::Element>(
    chunk: &Bound<'py, PyAny>,
    index: usize,
    key: &str,
    dtype: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let bad = || {
        PyValueError::new_err(format!(
            "tracks chunk {index}: {key:?} must be a contiguous 1-D {dtype} array"
        ))
    };
    let a = chunk
        .get_item(key)
        .map_err(|_| PyValueError::new_err(format!("tracks chunk {index}: no {key:?} array")))?
        .extract::<PyReadonlyArray1<'py, T>>()
        .map_err(|_| bad())?;
    a.as_slice().map_err(|_| bad())?;
    Ok(a)
}

impl<'py> ChunkArrays<'py> {
    fn new(chunk: &Bound<'py, PyAny>, i: usize) -> PyResult<Self> {
        let int = |k| chunk_column::<i32>(chunk, i, k, "int32");
        let float = |k| chunk_column::<f64>(chunk, i, k, "float64");
        Ok(ChunkArrays {
            ints: [
                int(INT_KEYS[0])?,
                int(INT_KEYS[1])?,
                int(INT_KEYS[2])?,
                int(INT_KEYS[3])?,
            ],
            frame: chunk_column::<i64>(chunk, i, "frame", "int64")?,
            boxes: [
                float(BOX_KEYS[0])?,
                float(BOX_KEYS[1])?,
                float(BOX_KEYS[2])?,
                float(BOX_KEYS[3])?,
            ],
        })
    }

    fn view(&self) -> TrackChunk<'_> {
        let int = |k: usize| self.ints[k].as_slice().expect("checked contiguous");
        let float = |k: usize| self.boxes[k].as_slice().expect("checked contiguous");
        TrackChunk {
            sample: int(0),
            sample_map: int(1),
            label: int(2),
            label_map: int(3),
            frame: self.frame.as_slice().expect("checked contiguous"),
            x0: float(0),
            y0: float(1),
            x1: float(2),
            y1: float(3),
        }
    }
}

/// Long tracks rows (chunks of dictionary-coded columns) -> the dense per-video arrays
/// `dsr_batch` takes; see the crate's `densify_tracks`. Returns a dict: `frames` int64[F],
/// `animal`/`obj` float64[F, 4], `offsets` int64[V+1], `n_rows` int64[V], `n_unknown` int.
/// A bad row raises `ValueError(message, problem, row, video, frame, label)`.
#[pyfunction]
#[pyo3(signature = (chunks, n_videos))]
fn densify_tracks<'py>(
    py: Python<'py>,
    chunks: &Bound<'py, PyAny>,
    n_videos: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let arrays = chunks
        .try_iter()
        .map_err(|_| PyValueError::new_err("chunks must be a sequence of dicts of arrays"))?
        .enumerate()
        .map(|(i, c)| ChunkArrays::new(&c?, i))
        .collect::<PyResult<Vec<_>>>()?;
    let views: Vec<TrackChunk<'_>> = arrays.iter().map(ChunkArrays::view).collect();
    let out = py
        .detach(|| crate::densify_tracks(&views, n_videos))
        .map_err(value_error)?;
    let rows = out.frames.len();
    let d = PyDict::new(py);
    d.set_item("frames", out.frames.into_pyarray(py))?;
    d.set_item("animal", out.animal.into_pyarray(py).reshape([rows, 4])?)?;
    d.set_item("obj", out.obj.into_pyarray(py).reshape([rows, 4])?)?;
    d.set_item("offsets", out.offsets.into_pyarray(py))?;
    d.set_item("n_rows", out.n_rows.into_pyarray(py))?;
    d.set_item("n_unknown", out.n_unknown)?;
    Ok(d)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ssr_scores, m)?)?;
    m.add_function(wrap_pyfunction!(dsr_score, m)?)?;
    m.add_function(wrap_pyfunction!(dsr_batch, m)?)?;
    m.add_function(wrap_pyfunction!(correctness_curve, m)?)?;
    m.add_function(wrap_pyfunction!(densify_tracks, m)?)?;
    m.add("OFFICIAL_THRESHOLDS", crate::OFFICIAL_THRESHOLDS.to_vec())?;
    Ok(())
}
