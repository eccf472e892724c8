"""LAMOST low-resolution spectra, read from either FITS layout (wavelengths in Å, flux with its inverse
variance); :func:`read_lamost_spectrum` raises :class:`~domains.astro.input_errors.AstroInputError` naming
the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from domains.astro.input_errors import AstroInputError


@dataclass
class LamostSpectrum:
    """One LAMOST low-resolution spectrum.

    Attributes:
        wavelength: Vacuum, heliocentric wavelengths (Quantity in Å), increasing.
        flux: Flux per pixel (LAMOST's relative flux calibration; unit from ``BUNIT`` when given).
        ivar: Inverse variance of ``flux`` per pixel (0 marks a bad pixel).
        layout: ``"image"`` (primary image HDU, older DRs) or ``"coadd"`` (``COADD`` binary table).
        header: The primary header (OBSID, DESIG, RA, DEC, Z...).
        source: The file it came from.
    """

    wavelength: u.Quantity
    flux: np.ndarray
    ivar: np.ndarray
    layout: str
    header: fits.Header = field(repr=False)
    source: str = ""

    @property
    def sigma(self) -> np.ndarray:
        """Per-pixel flux uncertainty 1/√IVAR where IVAR > 0, NaN where the pixel is flagged bad."""
        sigma = np.full_like(self.flux, np.nan, dtype=np.float64)
        good = self.ivar > 0
        sigma[good] = 1.0 / np.sqrt(self.ivar[good])
        return sigma


def read_lamost_spectrum(path: str | Path) -> LamostSpectrum:
    """Read a LAMOST low-resolution spectrum from either FITS layout.

    Layout ``image`` (older data releases): the primary HDU is a 2-D image whose rows are flux, inverse
    variance, wavelength, and-mask, or-mask; the wavelength grid is log-linear,
    ``10**(COEFF0 + COEFF1 · arange(NAXIS1))`` Å, from the header. Layout ``coadd`` (newer releases): an
    empty primary header and a binary table (``COADD``) with one row of array columns ``FLUX, IVAR,
    WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION``.

    Raises:
        AstroInputError: unreadable file, neither layout, or NaN-only flux.
    """
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdus:
            primary = hdus[0]
            header = primary.header.copy()
            if primary.data is not None and primary.data.ndim == 2:
                layout = "image"
                data = np.asarray(primary.data, dtype=np.float64)
                if data.shape[0] < 2:
                    raise AstroInputError(path, f"image layout needs flux and ivar rows, found shape {data.shape}")
                if "COEFF0" not in header or "COEFF1" not in header:
                    raise AstroInputError(path, "image layout without COEFF0/COEFF1 wavelength keywords")
                n_pixels = int(header.get("NAXIS1", data.shape[1]))
                wavelength = 10.0 ** (header["COEFF0"] + header["COEFF1"] * np.arange(n_pixels))
                flux, ivar = data[0, :n_pixels], data[1, :n_pixels]
            else:
                tables = [h for h in hdus[1:] if isinstance(h, fits.BinTableHDU)]
                named = [h for h in tables if h.name.upper() == "COADD"]
                if not (named or tables):
                    raise AstroInputError(path, "neither a 2-D primary image nor a COADD binary table")
                table = (named or tables)[0]
                names = {name.upper(): name for name in table.columns.names}
                missing = [c for c in ("FLUX", "IVAR", "WAVELENGTH") if c not in names]
                if missing or len(table.data) == 0:
                    raise AstroInputError(path, f"COADD table lacks {missing or 'rows'}")
                layout = "coadd"
                row = table.data[0]
                flux = np.asarray(row[names["FLUX"]], dtype=np.float64)
                ivar = np.asarray(row[names["IVAR"]], dtype=np.float64)
                wavelength = np.asarray(row[names["WAVELENGTH"]], dtype=np.float64)
    except AstroInputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, fits.verify.VerifyError) as error:
        raise AstroInputError(path, f"unreadable FITS ({type(error).__name__}: {error})") from error
    if not (flux.shape == ivar.shape == wavelength.shape):
        raise AstroInputError(
            path, f"flux/ivar/wavelength lengths differ: {flux.shape}/{ivar.shape}/{wavelength.shape}"
        )
    if not np.isfinite(flux).any():
        raise AstroInputError(path, "NaN-only flux")
    order = np.argsort(wavelength, kind="stable")
    ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    return LamostSpectrum(
        wavelength=wavelength[order] * u.AA,
        flux=flux[order],
        ivar=ivar[order],
        layout=layout,
        header=header,
        source=str(path),
    )
