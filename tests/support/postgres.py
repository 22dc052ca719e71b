"""A real PostgreSQL server for the test session: ``initdb`` and ``pg_ctl`` from Debian's
``postgresql`` package (as the ``postgres`` user when the tests run as root), on a free
loopback port, stopped when the session ends. Used by the audit trail's and the gateway
cohort's tests (fixture ``postgres_server`` in ``conftest.py``)."""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql


@dataclass(frozen=True)
class PostgresServer:
    bindir: Path
    port: int
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"db_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def _postgres_bindir() -> Path | None:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    found = [p for p in found if (p.parent / "pg_ctl").exists()]
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_server() -> Iterator[PostgresServer]:
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="dicomveil-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    as_postgres: list[str] = []
    sockets.mkdir()
    if os.geteuid() == 0:  # the server refuses to run as root
        user = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        initdb = [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres"]
        options = "--auth=trust --encoding=UTF8 --no-locale --no-sync"
        subprocess.run([*initdb, *options.split()], check=True, capture_output=True)
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
            "-c fsync=off -c shared_buffers=16MB -c max_connections=40"
        )
        started = True
        done = subprocess.run(
            [*pg_ctl, "-l", str(log), "-o", options, "-w", "start"],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start: {done.stderr.decode()}\n{text}")
        yield PostgresServer(bindir, port, itertools.count(1))
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
