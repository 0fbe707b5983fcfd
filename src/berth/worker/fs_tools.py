#!/usr/bin/env python3
"""Berth's stand-in for Modal's `modal-sandbox-fs-tools`, the helper the client's `Sandbox.filesystem` API execs
inside a sandbox (at /__modal/.bin/modal-sandbox-fs-tools) with one JSON command as its argument:
{"ReadFile": {"path"}}, {"WriteFile": {"path"}} (contents on stdin), {"ListFiles": {"path"}}, {"Stat": {"path"}},
{"MakeDirectory": {"path", "parents"}}, {"Remove": {"path", "recursive"}}. Results go to stdout (raw bytes, or
JSON for listings); failures exit 1 with {"error_kind", "message"} on stderr, which the client turns into its
SandboxFilesystem* exceptions (modal/_utils/sandbox_fs_utils.py).

It runs on the sandbox image's own python3 and imports nothing but the standard library (no berth, no
modal): a worker bind-mounts this file into the container read-only."""

import errno
import grp
import json
import os
import pwd
import shutil
import stat
import sys
from typing import Any, NoReturn

MAX_READ_BYTES = 5 * 1024 * 1024 * 1024
CHUNK = 1024 * 1024

_KINDS = {
    errno.ENOENT: "NotFound",
    errno.EISDIR: "IsDirectory",
    errno.ENOTDIR: "NotDirectory",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
    errno.EEXIST: "AlreadyExists",
    errno.ENOTEMPTY: "DirectoryNotEmpty",
}


def fail(kind: str, message: str) -> NoReturn:
    sys.stderr.write(json.dumps({"error_kind": kind, "message": message}))
    sys.exit(1)


def fail_os(exc: OSError, exists_kind: str = "AlreadyExists") -> NoReturn:
    kind = _KINDS.get(exc.errno or 0, "Other")
    if kind == "AlreadyExists":
        kind = exists_kind
    fail(kind, exc.strerror or str(exc))


def _name(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def info(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        kind, target = "symlink", os.readlink(path)
    else:
        kind, target = ("directory" if stat.S_ISDIR(st.st_mode) else "file"), None
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "permissions": stat.filemode(st.st_mode),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
        "modified_time": st.st_mtime,
        "symlink_target": target,
    }


def read_file(path: str) -> None:
    if os.path.isdir(path):
        fail("IsDirectory", "Is a directory")
    try:
        if os.path.getsize(path) > MAX_READ_BYTES:
            fail("FileTooLarge", f"File is larger than {MAX_READ_BYTES} bytes")
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                sys.stdout.buffer.write(chunk)
    except OSError as exc:
        fail_os(exc)


def write_file(path: str) -> None:
    if os.path.isdir(path):
        fail("IsDirectory", "Is a directory")
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            while chunk := sys.stdin.buffer.read(CHUNK):
                f.write(chunk)
    except FileExistsError:
        fail("NotDirectory", "A parent of the path is not a directory")
    except OSError as exc:
        fail_os(exc)


def list_files(path: str) -> None:
    try:
        if not os.path.isdir(path):
            if os.path.exists(path):
                fail("NotDirectory", "Not a directory")
            fail("NotFound", "No such file or directory")
        entries = [info(os.path.join(path, name)) for name in sorted(os.listdir(path))]
    except OSError as exc:
        fail_os(exc)
    sys.stdout.write(json.dumps(entries))


def stat_path(path: str) -> None:
    try:
        sys.stdout.write(json.dumps(info(path)))
    except OSError as exc:
        fail_os(exc)


def make_directory(path: str, parents: bool) -> None:
    try:
        if parents:
            if os.path.exists(path) and not os.path.isdir(path):
                fail("PathAlreadyExists", "A file exists at this path")
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)
    except OSError as exc:
        fail_os(exc, exists_kind="PathAlreadyExists")


def remove(path: str, recursive: bool) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            if recursive:
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
    except OSError as exc:
        fail_os(exc)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        fail("Other", "usage: modal-sandbox-fs-tools '<json command>'")
    try:
        command = json.loads(argv[1])
        (op, args), *_ = command.items()
        path = str(args["path"])
    except (ValueError, AttributeError, KeyError, TypeError):
        fail("Other", f"Unknown command: {argv[1][:200]}")
    if op == "ReadFile":
        read_file(path)
    elif op == "WriteFile":
        write_file(path)
    elif op == "ListFiles":
        list_files(path)
    elif op == "Stat":
        stat_path(path)
    elif op == "MakeDirectory":
        make_directory(path, bool(args.get("parents", True)))
    elif op == "Remove":
        remove(path, bool(args.get("recursive", False)))
    else:
        fail("NotSupported", f"Berth's sandbox filesystem does not support {op} yet")


if __name__ == "__main__":
    main(sys.argv)
