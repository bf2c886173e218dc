//! The thin PyO3 binding: converts numpy inputs to slices, releases the GIL
//! around the core, and turns `InputError` into `ValueError`.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::{DsrParams, InputError, Relation};

fn value_error(e: InputError) -> PyErr {
    PyValueError::new_err(e.to_string())
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
        if arr.as_slice().is_ok() {
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
    let items: Vec<String> = obj.extract().map_err(|_| {
        PyValueError::new_err(format!("{name} must be a sequence of relation names"))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(v, s)| relation(s, Some(v)))
        .collect()
}

fn params(m: usize, min_frames: usize) -> DsrParams {
    DsrParams { m, min_frames }
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
    m: usize,
    min_frames: usize,
) -> PyResult<Option<f64>> {
    let (i, f) = (relation(initial, None)?, relation(r#final, None)?);
    let p = params(m, min_frames);
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
    m: usize,
    min_frames: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let offsets: PyReadonlyArray1<'py, i64> = match offsets.extract() {
        Ok(a) => a,
        Err(_) => {
            let np = py.import("numpy")?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("dtype", "int64")?;
            np.call_method("asarray", (offsets,), Some(&kwargs))
                .and_then(|a| Ok(a.extract::<PyReadonlyArray1<'py, i64>>()?))
                .map_err(|_| {
                    PyValueError::new_err("offsets must be a 1-D integer array of length V+1")
                })?
        }
    };
    let offs: Vec<i64> = offsets.as_array().iter().copied().collect();
    let mut ini = relations(initial, "initial")?;
    let mut fin = relations(r#final, "final")?;
    let n_videos = offs.len().saturating_sub(1);
    if initial.cast::<PyString>().is_ok() {
        ini = vec![ini[0]; n_videos];
    }
    if r#final.cast::<PyString>().is_ok() {
        fin = vec![fin[0]; n_videos];
    }
    let p = params(m, min_frames);
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
    dsr: Vec<f64>,
    thresholds: Option<Vec<f64>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let th = thresholds.unwrap_or_else(|| crate::OFFICIAL_THRESHOLDS.to_vec());
    let out = py
        .detach(|| crate::correctness_curve(&dsr, &th))
        .map_err(value_error)?;
    Ok(out.into_pyarray(py))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ssr_scores, m)?)?;
    m.add_function(wrap_pyfunction!(dsr_score, m)?)?;
    m.add_function(wrap_pyfunction!(dsr_batch, m)?)?;
    m.add_function(wrap_pyfunction!(correctness_curve, m)?)?;
    m.add("OFFICIAL_THRESHOLDS", crate::OFFICIAL_THRESHOLDS.to_vec())?;
    Ok(())
}
