"""``modelroll push DIR URI``: upload every file of a package directory under a URI prefix
(file and network I/O).

``file://`` (or a plain path) copies into a directory, each file written to a temporary name and
renamed into place. ``s3://BUCKET/PREFIX`` uploads through obstore with the inference server's
S3 settings (``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for an S3-compatible store) and its
one-line errors. Each object is one PUT, signed with the sha256 of its body, so the store refuses
bytes that changed on the way; S3 has no rename, but a PUT is atomic: an object is either
entirely there or not at all.

The artifact named in reference.json goes last, so whoever finds the artifact at the prefix
finds its reference statistics and report there too. A failure stops the push at that file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelroll_contract import reference as contract
from modelroll_server.fetch import FetchError, Location, StoreSource, parse_uri, s3_settings, store_error

from . import package
from .errors import CheckFailed, InputError


@dataclass(frozen=True)
class Pushed:
    name: str  # the file's path relative to the package directory
    uri: str
    digest: str
    size: int


def package_files(directory: Path) -> list[Path]:
    """Every regular file under ``directory``, relative paths sorted, the artifact last; the
    artifact must be the one its reference.json describes."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    if not files:
        raise InputError(f"{directory}: no files to push")
    described = _described(directory)
    if described is None:
        return files
    artifact = directory / described.artifact
    try:
        actual = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"{artifact}: named in reference.json, cannot be read: {e.strerror or e}") from e
    if actual != described.digest:
        raise InputError(f"{artifact} is {actual}, but reference.json describes {described.digest}")
    return sorted(files, key=lambda p: (p.as_posix() == described.artifact, p.as_posix()))


def _described(directory: Path) -> contract.ModelInfo | None:
    path = directory / contract.REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        return contract.loads(path.read_bytes()).model
    except (OSError, contract.ReferenceError) as e:
        raise InputError(f"{path}: {e}") from e


def _join(prefix: str, rel: Path) -> str:
    return f"{prefix.rstrip('/')}/{rel.as_posix()}"


def push(
    directory: Path,
    uri: str,
    env: Mapping[str, str] | None = None,
    on_pushed: Callable[[Pushed], None] | None = None,
) -> list[Pushed]:
    """Upload every file of ``directory`` under ``uri``; ``on_pushed`` is told of each as it lands."""
    files = package_files(directory)
    try:
        loc = parse_uri(uri)
    except FetchError as e:
        hint = "; push writes under a prefix: s3://BUCKET/PREFIX" if uri.startswith("s3://") else ""
        raise InputError(f"{e}{hint}") from e
    if loc.kind == "file":
        uploads = _to_directory(Path(loc.path), directory, files)
    elif loc.kind == "s3":
        uploads = _to_s3(loc, directory, files, os.environ if env is None else env)
    else:
        raise InputError(f"push takes file:// or s3:// URIs, not {loc.kind}: {loc.uri}")
    done: list[Pushed] = []
    try:
        for pushed in uploads:
            done.append(pushed)
            if on_pushed:
                on_pushed(pushed)
    except CheckFailed as e:
        raise CheckFailed(f"{e} ({len(done)} of {len(files)} files pushed before it)") from e
    return done


def _to_directory(target: Path, source: Path, files: list[Path]) -> Iterator[Pushed]:
    if target.resolve() == source.resolve():
        raise InputError(f"{target}: is the package directory itself")
    for rel in files:
        dest = target / rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        except OSError as e:
            raise CheckFailed(f"cannot write in {dest.parent}: {e.strerror or e}") from e
        h = hashlib.sha256()
        try:
            with open(source / rel, "rb") as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise CheckFailed(f"copying {rel} to {dest} failed: {e.strerror or e}") from e
        yield Pushed(rel.as_posix(), dest.resolve().as_uri(), "sha256:" + h.hexdigest(), size)


def _to_s3(loc: Location, source: Path, files: list[Path], env: Mapping[str, str]) -> Iterator[Pushed]:
    import obstore

    try:
        settings = s3_settings(env)
        store: Any = StoreSource(loc, settings).store  # the fetch's own store: same settings, same errors
    except FetchError as e:
        raise InputError(str(e)) from e
    for rel in files:
        key = _join(loc.path, rel)
        shown = f"s3://{loc.bucket}/{key}"
        try:
            data = (source / rel).read_bytes()
        except OSError as e:
            raise CheckFailed(f"cannot read {source / rel}: {e.strerror or e}") from e
        try:
            obstore.put(store, key, data)
        except Exception as e:
            raise CheckFailed(str(store_error(e, "PUT", shown, settings))) from e
        yield Pushed(rel.as_posix(), shown, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def pushed_spec(directory: Path, done: list[Pushed]) -> dict[str, Any] | None:
    """The ModelDeployment spec fields for the pushed package (None without reference.json)."""
    m = _described(directory)
    by_name = {p.name: p for p in done}
    if m is None or m.artifact not in by_name or contract.REFERENCE_FILE not in by_name:
        return None
    artifact, reference = by_name[m.artifact], by_name[contract.REFERENCE_FILE]
    return package.spec_fields(
        artifact.uri, artifact.digest, m.format, m.version, m.method, reference.uri, reference.digest
    )
