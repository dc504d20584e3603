import json

import numpy as np
import pytest

from massmaps.learning.normalise import Normaliser

FIELDS = ("gas", "dm", "tsz", "xray")


def _maps(n=40, size=16, seed=0):
    """Positive, heavy-tailed fields in roughly the physical ranges of the real maps."""
    rng = np.random.default_rng(seed)
    scales = np.array([50.0, 300.0, 20.0, 1e-12])[None, :, None, None]
    return (rng.lognormal(0.0, 1.5, (n, 4, size, size)) * scales).astype(np.float32)


def _chunks(x, size=7):
    for i in range(0, len(x), size):
        yield x[i : i + size]


@pytest.mark.parametrize(
    "stretch",
    [
        "none",
        {"xray": {"stretch": "log", "offset": 1e-16}, "tsz": {"stretch": "asinh", "scale": 5.0}},
        {f: {"stretch": "log", "floor": 1e-30, "offset": 0.0} for f in FIELDS},
    ],
)
def test_round_trip_to_float32_precision(stretch):
    x = _maps()
    norm = Normaliser(FIELDS, stretch).fit(_chunks(x))
    u = norm.apply(x)
    assert u.dtype == np.float32 and u.shape == x.shape
    # The training set spans exactly [0, 1] per field.
    np.testing.assert_allclose(u.min(axis=(0, 2, 3)), 0.0, atol=1e-7)
    np.testing.assert_allclose(u.max(axis=(0, 2, 3)), 1.0, atol=1e-6)
    back = norm.invert(u)
    eps = np.finfo(np.float32).eps
    for k, f in enumerate(FIELDS):
        s = norm.scalings[f]
        if s.stretch == "none":  # absolute error ~ eps * range, relative ~ eps
            atol = 4 * eps * (s.vmax - s.vmin)
            np.testing.assert_allclose(back[:, k], x[:, k], rtol=4 * eps, atol=atol)
        else:  # relative error ~ ln(10) eps * stretched range (log) or eps * range (asinh)
            rtol = 4 * eps * (1 + np.log(10) * (s.vmax - s.vmin))
            np.testing.assert_allclose(back[:, k], x[:, k], rtol=rtol, atol=s.scale * rtol)


def test_fit_over_chunks_equals_fit_in_one_go_and_is_global():
    x = _maps()
    a = Normaliser(FIELDS).fit(_chunks(x, 3))
    b = Normaliser(FIELDS).fit([x])
    assert a.to_dict() == b.to_dict()
    for k, f in enumerate(FIELDS):
        assert a.scalings[f].vmin == float(x[:, k].min())
        assert a.scalings[f].vmax == float(x[:, k].max())
    # Held-out maps are not clipped.
    u = a.apply(x * 2)
    assert u.max() > 1.5


def test_subset_of_fields_and_single_map():
    x = _maps()
    norm = Normaliser(FIELDS, {"xray": {"stretch": "log", "offset": 1e-16}}).fit([x])
    full = norm.apply(x)
    part = norm.apply(x[:, 2:], fields=("tsz", "xray"))
    np.testing.assert_array_equal(part, full[:, 2:])
    one = norm.apply(x[5, :2], fields=("gas", "dm"))  # (F, H, W)
    np.testing.assert_array_equal(one, full[5, :2])
    with pytest.raises(ValueError, match="fields"):
        norm.apply(x[:, :3], fields=("tsz", "xray"))


def test_dict_round_trip_through_json():
    x = _maps()
    norm = Normaliser(FIELDS, {"tsz": {"stretch": "asinh", "scale": 3.0}}).fit([x])
    restored = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored.to_dict() == norm.to_dict()
    np.testing.assert_array_equal(restored.apply(x), norm.apply(x))


def test_fit_from_lazy_dataarray():
    xr = pytest.importorskip("xarray")
    x = _maps()
    da = xr.DataArray(x, dims=("sightline", "field", "y", "x"), coords={"field": list(FIELDS)})
    train = np.arange(0, 40, 2)
    norm = Normaliser(("tsz", "xray")).fit_dataarray(da, train, chunk_size=6)
    ref = Normaliser(("tsz", "xray")).fit([x[train, 2:]])
    assert norm.to_dict() == ref.to_dict()


def test_errors():
    x = _maps()
    with pytest.raises(ValueError, match="floor \\+ offset"):
        Normaliser(FIELDS, {"gas": {"stretch": "log", "floor": 0.0}})
    with pytest.raises(ValueError, match="unknown stretch"):
        Normaliser(FIELDS, "sqrt")
    with pytest.raises(ValueError, match="unknown fields"):
        Normaliser(FIELDS, {"sz": "asinh"})
    with pytest.raises(RuntimeError, match="not fitted"):
        Normaliser(FIELDS).apply(x)
    bad = x.copy()
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Normaliser(FIELDS).fit([bad])
    const = x.copy()
    const[:, 0] = 1.0
    with pytest.raises(ValueError, match="constant"):
        Normaliser(FIELDS).fit([const])
    with pytest.raises(ValueError, match="no data"):
        Normaliser(FIELDS).fit([])


def test_stretch_by_name_fits_its_parameter():
    """stretch: log / asinh in the config (a bare name): floor and scale come from the training data."""
    rng = np.random.default_rng(7)
    x = 10.0 ** rng.uniform(-12, -5, size=(6, 4, 8, 8))  # 7 decades, like the X-ray maps
    chunks = [x[:3], x[3:]]
    norm = Normaliser(FIELDS, "log").fit(chunks)
    for f in FIELDS:
        s = norm.scalings[f]
        assert s.floor == pytest.approx(x[:, FIELDS.index(f)].max() * 1e-6)
    u = norm.apply(x, field_axis=1)
    assert u.min() >= 0 and u.max() == pytest.approx(1.0)
    back = norm.invert(u, field_axis=1)
    keep = x >= np.array([norm.scalings[f].floor for f in FIELDS])[None, :, None, None]
    np.testing.assert_allclose(back[keep], x[keep], rtol=1e-5)
    np.testing.assert_allclose(Normaliser.from_dict(norm.to_dict()).apply(x, field_axis=1), u)
    asinh = Normaliser(FIELDS, "asinh").fit(chunks)
    med = np.median([np.median(np.abs(c[:, 0])) for c in chunks])
    assert asinh.scalings["gas"].scale == pytest.approx(med)
    with pytest.raises(ValueError, match="re-iterable"):
        Normaliser(FIELDS, "log").fit(iter(chunks))


def test_asinh_scale_factor_multiplies_the_fitted_scale_only():
    """normalisation.asinh_scale_factor: the fitted asinh scale times the factor, per field or for all; a
    scale given explicitly, and the log floor, are left alone; a factor that is not a number > 0, or names a
    field the normaliser does not have, is refused."""
    rng = np.random.default_rng(3)
    x = 10.0 ** rng.uniform(-3, 2, size=(6, 4, 8, 8))
    chunks = [x[:3], x[3:]]
    one = Normaliser(FIELDS, "asinh").fit(chunks)
    per_field = Normaliser(FIELDS, "asinh", asinh_scale_factor={"gas": 3.0, "dm": 0.5}).fit(chunks)
    for f, k in zip(FIELDS, (3.0, 0.5, 1.0, 1.0)):
        assert per_field.scalings[f].scale == pytest.approx(k * one.scalings[f].scale, rel=1e-12), f
    every = Normaliser(FIELDS, "asinh", asinh_scale_factor=10.0).fit(chunks)
    assert all(every.scalings[f].scale == pytest.approx(10 * one.scalings[f].scale) for f in FIELDS)
    # the stretch is closer to linear: the core (top decade) takes a larger share of the stretched range
    top = x[:, 0] > 10.0
    u1, u10 = one.apply(x, field_axis=1)[:, 0], every.apply(x, field_axis=1)[:, 0]
    assert np.ptp(u10[top]) > np.ptp(u1[top])
    np.testing.assert_allclose(every.invert(every.apply(x, field_axis=1), field_axis=1), x, rtol=1e-5)
    given = {"gas": {"stretch": "asinh", "scale": 2.0}, "dm": "log"}
    fixed = Normaliser(FIELDS, given, asinh_scale_factor=5.0).fit(chunks)
    assert fixed.scalings["gas"].scale == 2.0
    assert fixed.scalings["dm"].floor == pytest.approx(x[:, 1].max() * 1e-6)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "3", {"gas": 0.0}):
        with pytest.raises(ValueError, match="asinh_scale_factor"):
            Normaliser(FIELDS, "asinh", asinh_scale_factor=bad)
    with pytest.raises(ValueError, match="unknown fields"):
        Normaliser(("gas", "dm"), "asinh", asinh_scale_factor={"tsz": 2.0})
    with pytest.raises(ValueError, match="asinh_scale_factor"):
        Normaliser(FIELDS, "asinh", asinh_scale_factor=True)
    # named for a field whose stretch has no fitted scale: nothing to multiply, refused instead of ignored
    for stretch in ({"gas": "log"}, {"gas": {"stretch": "asinh", "scale": 2.0}}, "none"):
        with pytest.raises(ValueError, match="without a fitted asinh stretch"):
            Normaliser(FIELDS, stretch, asinh_scale_factor={"gas": 3.0})


def test_normalisation_block_keys():
    """train_from_store reads the config's normalisation block: missing keys take the schema's defaults, an
    unknown key (a typo) is refused by name."""
    from massmaps.learning.reconstruct import normalisation_kwargs

    assert normalisation_kwargs(None) == {"stretch": "none", "log_decades": 6.0, "asinh_scale_factor": 1.0}
    assert normalisation_kwargs({"stretch": "asinh"})["stretch"] == "asinh"
    with pytest.raises(ValueError, match="strech"):
        normalisation_kwargs({"strech": "asinh"})


def test_training_mean_of_normalised_targets():
    """normalise.training_mean: the mean map (or per-field mean) of the normalised targets over the
    training sightlines only, the same whatever the chunk size."""
    import xarray as xr

    from massmaps.learning import normalise

    x = _maps(n=30)
    ds = xr.Dataset({"maps": (("sightline", "field", "y", "x"), x)}, coords={"field": list(FIELDS)})
    train = np.array([3, 0, 7, 8, 21, 29])
    norm = Normaliser(FIELDS, stretch="asinh").fit([x[np.sort(train)]])
    want = norm.apply(x[np.sort(train)][:, :2].astype(np.float64), ["gas", "dm"], field_axis=1).mean(axis=0)
    for chunk in (1, 4, 100):
        got = normalise.training_mean(ds, train, norm, chunk_size=chunk)
        np.testing.assert_allclose(got, want, rtol=1e-6)  # apply() returns float32
    np.testing.assert_allclose(normalise.training_mean(ds, train, norm, per_pixel=False), want.mean(axis=(1, 2)))
    with pytest.raises(ValueError, match="no training"):
        normalise.training_mean(ds, np.array([], dtype=int), norm)
