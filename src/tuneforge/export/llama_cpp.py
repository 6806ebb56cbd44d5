"""llama.cpp's pieces for a GGUF export: its converter scripts, and (optionally) the compiled library.

The converter is Python (convert_hf_to_gguf.py, its `conversion/` package and a matching gguf-py;
PyPI's `gguf` package does not carry it). The llama-cpp-python source package vendors exactly those
files, so tuneforge takes them from there once: `pip download` of that sdist (the version of the
installed llama-cpp-python, so converter and runtime agree; else LLAMA_CPP_PYTHON below), only the
converter's files unpacked into the cache (TUNEFORGE_CACHE, default ~/.cache/tuneforge). Nothing is
compiled. LLAMA_CPP_DIR names a llama.cpp checkout to use instead.

The compiled library (llama-cpp-python, built when `tuneforge[gguf]` is installed) quantizes to the
k-quants and loads the result back; without it f32/f16/bf16/q8_0 are still written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tuneforge.config.errors import ConfigError
from tuneforge.data.dataset import cache_root
from tuneforge.log import note

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist whose converter is used when llama-cpp-python is not installed
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
EXTRA = "pip install 'tuneforge[gguf]'"


def has_library() -> bool:
    """Is the compiled llama.cpp (llama-cpp-python) importable?"""
    return importlib.util.find_spec("llama_cpp") is not None


def library_version() -> str | None:
    if not has_library():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return None


def _complete(folder: Path) -> bool:
    return (folder / "convert_hf_to_gguf.py").is_file() and (folder / "gguf-py" / "gguf").is_dir()


def check_python_deps() -> None:
    """What the converter imports beyond tuneforge's own dependencies."""
    if importlib.util.find_spec("sentencepiece") is None:
        raise ConfigError(f"a GGUF export needs sentencepiece (llama.cpp's converter imports it): {EXTRA}")


def converter_dir() -> Path:
    """A folder holding llama.cpp's converter: LLAMA_CPP_DIR, the cache, or fetched into the cache now."""
    check_python_deps()
    given = os.environ.get("LLAMA_CPP_DIR")
    if given:
        folder = Path(given).expanduser()
        if not _complete(folder):
            raise ConfigError(f"LLAMA_CPP_DIR={given} holds no convert_hf_to_gguf.py with its gguf-py/; point it at "
                              "a llama.cpp checkout, or unset it to let tuneforge fetch the converter")
        return folder
    version = library_version() or LLAMA_CPP_PYTHON
    folder = cache_root() / "llama.cpp" / f"llama-cpp-python-{version}"
    if not _complete(folder):
        fetch_converter(version, folder)
    return folder


def fetch_converter(version: str, folder: Path) -> None:
    """pip download the llama-cpp-python sdist and unpack only the converter's files into `folder`."""
    note(f"fetching llama.cpp's converter (llama-cpp-python {version} source package, about 75 MB) into {folder}")
    with tempfile.TemporaryDirectory(prefix="tuneforge-llama-cpp-") as tmp:
        command = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary", ":all:",
                   "--no-deps", "--quiet", "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
            raise ConfigError(f"could not fetch llama.cpp's converter (pip download llama-cpp-python=={version}: "
                              f"{last}); set LLAMA_CPP_DIR to a llama.cpp checkout instead")
        staging = Path(tmp) / "converter"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                _, _, rest = member.name.partition("/vendor/llama.cpp/")
                if rest and rest.startswith(CONVERTER_FILES) and (member.isfile() or member.isdir()):
                    member.name = rest
                    archive.extract(member, staging, filter="data")
        if not _complete(staging):
            raise ConfigError(f"llama-cpp-python {version}'s source package holds no converter; set LLAMA_CPP_DIR "
                              "to a llama.cpp checkout")
        # whole or not at all: copied beside the cache folder, then renamed into place
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
