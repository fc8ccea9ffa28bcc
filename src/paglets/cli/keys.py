"""Where the mesh key comes from (network.md section 1.3, "key source").

Order: the variable named by `--api-key-env` (given but unset or empty → exit 2), else
`PAGLETS_API_KEY`, else the key file (`--api-key-file`, default `~/.paglets/mesh.key`,
which must be mode 0600). A host removes the variables from its own environment once read,
so paglet code and the processes it starts never see the key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from paglets.cli.errors import CliError

__all__ = ["DEFAULT_ENV", "MeshKey", "default_key_file", "forget_key_variables", "read_mesh_key"]

DEFAULT_ENV = "PAGLETS_API_KEY"


@dataclass(frozen=True, slots=True)
class MeshKey:
    """The key (None: no key found) and where it came from, for messages. `repr` never
    shows the key."""

    value: str | None
    source: str

    def __repr__(self) -> str:
        return f"MeshKey(source={self.source!r}, present={self.value is not None})"


def default_key_file() -> Path:
    return Path.home() / ".paglets" / "mesh.key"


def read_mesh_key(
    api_key_env: str | None = None, api_key_file: str | Path | None = None
) -> MeshKey:
    """Find the mesh key; raise `CliError` (exit 2) for a named variable that is unset or
    empty, an explicit key file that is missing, a key file others can read, or an empty
    key file."""
    if api_key_env is not None:
        value = os.environ.get(api_key_env, "").strip()
        if not value:
            raise CliError(
                f"--api-key-env {api_key_env}: the variable {api_key_env} is not set or is empty",
                hint=f"export {api_key_env}=<the mesh key>, or leave out --api-key-env to use "
                f"{DEFAULT_ENV} or ~/.paglets/mesh.key",
            )
        return MeshKey(value, f"${api_key_env}")
    value = os.environ.get(DEFAULT_ENV, "").strip()
    if value:
        return MeshKey(value, f"${DEFAULT_ENV}")
    explicit = api_key_file is not None
    path = Path(api_key_file).expanduser() if explicit else default_key_file()
    try:
        info = path.stat()
    except FileNotFoundError:
        if explicit:
            raise CliError(
                f"--api-key-file: {path} does not exist",
                hint='write a key there with "paglets certs key --write" (it goes to '
                "~/.paglets/mesh.key) or pass the right path",
            ) from None
        return MeshKey(None, "none")
    except OSError as exc:
        raise CliError(f"--api-key-file: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CliError(f"--api-key-file: {path} is not a regular file")
    if info.st_mode & 0o077:
        raise CliError(
            f"the mesh key file {path} can be read by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); it must be mode 0600",
            hint=f"chmod 600 {path}",
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--api-key-file: cannot read {path}: {exc}") from None
    if not value:
        raise CliError(
            f"the mesh key file {path} is empty",
            hint='write a new key with "paglets certs key --write" and copy it to every host',
        )
    return MeshKey(value, str(path))


def forget_key_variables(api_key_env: str | None = None) -> None:
    """Remove the key variables from this process's environment (the host keeps the key
    in memory; children and paglet code must not inherit it)."""
    os.environ.pop(DEFAULT_ENV, None)
    if api_key_env:
        os.environ.pop(api_key_env, None)
