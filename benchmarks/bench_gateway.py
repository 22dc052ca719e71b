#!/usr/bin/env python
"""Instances per second through the gateway, with 1 and 4 associations, next to storescu
-> storescp directly and to ``dicomveil run`` on the same files.

Usage::

    python benchmarks/bench_gateway.py [--files 800] [--size 256] [--senders 4] [--rounds 3]
                                       [--workers N] [--settle 3] [--json OUT] [--baseline SRC]
                                       [--ab --baseline SRC [--baseline SRC2 ...]]

A synthetic corpus (CT series of 50 slices from :mod:`tests.support.synthetic`, one patient
each) is written to a scratch folder in ``--senders`` parts. Contenders:

* ``direct``: dcmtk storescu -> storescp (the network and storescp's writing: the ceiling),
  one association (one storescu sending every part) and ``--senders`` (one per part);
* ``gateway (folder)``: storescu -> ``dicomveil gateway`` writing to a folder, one and
  ``--senders`` associations; the time is until every storescu got every acknowledgement
  (so every instance is de-identified, checked by the release gate and fsynced);
* ``gateway -> storescp``: ``--senders`` associations through a forward route to storescp;
  the time runs until the last instance arrived at storescp;
* ``gateway STOW-RS (folder)``: the same files stored over DICOMweb instead, by one and
  ``--senders`` HTTP clients at once (``requests``, 25 instances per STOW-RS request, the
  files' bytes as they are); the time is until every request was answered (every instance
  de-identified, checked and fsynced);
* ``dicomveil run``: the command on the same files into a folder (its default workers);
* for context, the same work on both sides: the gateway with ``verify = false`` (no
  release gate), and ``dicomveil run --verify`` (with it);
* with ``--baseline SRC`` (a source tree, e.g. ``git worktree add /tmp/before HEAD~1``), the
  gateway of that tree too (``PYTHONPATH=SRC/src``), one and ``--senders`` associations, in
  the same rounds: before and after a change in one run;
* with ``--ab``, only the gateway with ``--senders`` associations into a folder, for this
  tree and each ``--baseline`` (repeatable), their order reversed every other round: an A/B
  of several trees without the other contenders' minutes.

The gateway runs as a ``dicomveil gateway --config`` subprocess, as in production, with its
default workers (the cores) unless ``--workers``; it is started before the clock. Each
contender runs ``--rounds`` times on fresh folders, the contenders alternating; the table
gives the median and the ratios the issue asks about (gateway with ``--senders``
associations to ``dicomveil run``, and to one association). Timings are for this machine
only and are never thresholds in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the data builders

from dicomveil import Key, write_key
from dicomveil.gateway.web import hash_token
from tests.support import synthetic

TOKEN = "bench-token"  # noqa: S105 (the STOW-RS route's bearer token, on loopback)
BOUNDARY = "bench-boundary-7d1f"
STOW_BATCH = 25  # instances per STOW-RS request

# Debian's dcmtk leaves Nagle's algorithm on unless TCP_NODELAY is set: with it on, every
# instance waits for a delayed ACK (about 40 ms on loopback), which measures nothing useful.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def dcmtk(name: str) -> str:
    """dcmtk's binary, not pynetdicom's Python script of the same name."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(folder) / name
        try:
            with candidate.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return str(candidate)
        except OSError:
            continue
    raise SystemExit(f"dcmtk's {name} is needed: sudo apt-get install dcmtk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, deadline: float = 600.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.01)
    raise SystemExit(f"gave up waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make_corpus(folder: Path, files: int, size: int, senders: int) -> list[Path]:
    """``senders`` folders holding ``files`` CT instances in all."""
    per_series = 50
    index = 0
    parts = [folder / f"part{i}" for i in range(senders)]
    while index < files:
        patient = synthetic.fake_patient(index)
        count = min(per_series, files - index)
        series = synthetic.ct_series(patient, seed=index, n_slices=count, rows=size, columns=size)
        for n, ds in enumerate(series):
            target = parts[(index + n) % senders]
            target.mkdir(parents=True, exist_ok=True)
            synthetic.write_series([ds], target, names=f"IM{index + n:06d}")
        index += count
    return parts


class Server:
    def __init__(self, args: list[str], port: int, log: Path, source: Path | None = None) -> None:
        env = DCMTK_ENV if source is None else {**DCMTK_ENV, "PYTHONPATH": str(source)}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        wait_for(lambda: listening(port) or self.proc.poll() is not None, args[0])
        if self.proc.poll() is not None:
            raise SystemExit(f"{args[0]} did not start; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def send(port: int, parts: list[Path], associations: int) -> None:
    """The parts in ``associations`` storescu processes at once (one association each);
    fails if any storescu fails."""
    storescu = dcmtk("storescu")
    groups = [parts[i::associations] for i in range(associations)]
    procs = [
        subprocess.Popen(
            [
                storescu,
                *("-aet", "BENCH", "-aec", "DICOMVEIL", "+sd", "+r"),
                "127.0.0.1",
                str(port),
                *map(str, group),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=DCMTK_ENV,
        )
        for group in groups
    ]
    for proc in procs:
        _, errors = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"storescu failed: {errors.decode(errors='replace')[-500:]}")


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def gateway_config(
    folder: Path,
    port: int,
    key: Path,
    dest_port: int | None,
    workers: int | None,
    *,
    verify: bool = True,
    web_port: int | None = None,
) -> Path:
    web = "" if web_port is None else f"[gateway.web]\nport = {web_port}\nmax_body = 1073741824\n"
    tokens = "" if web_port is None else f'[route.web]\ntokens = ["{hash_token(TOKEN)}"]\n'
    forward = (
        f'\n[route.forward]\nhost = "127.0.0.1"\nport = {dest_port}\nae_title = "DEST"\n'
        if dest_port is not None
        else f'output = "{folder / "out"}"\n'
    )
    text = f"""[gateway]
ae_title = "DICOMVEIL"
port = {port}
state_dir = "{folder / "state"}"
max_associations = 32
{"" if workers is None else f"workers = {workers}"}
{web}
[[route]]
name = "bench"
calling_ae = ["BENCH"]
key = "{key}"
verify = {"true" if verify else "false"}
{forward}{tokens}"""
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_direct(scratch: Path, parts: list[Path], files: int, associations: int) -> float:
    port = free_port()
    dest = scratch / "dest"
    dest.mkdir()
    server = Server(
        [dcmtk("storescp"), "--output-directory", str(dest), "-aet", "DICOMVEIL", str(port)],
        port,
        scratch / "storescp.log",
    )
    try:
        start = time.perf_counter()
        send(port, parts, associations)
        wait_for(lambda: count_files(dest) >= files, "storescp's files")
        return time.perf_counter() - start
    finally:
        server.stop()


def run_gateway(
    scratch: Path,
    parts: list[Path],
    files: int,
    key: Path,
    *,
    forward: bool,
    associations: int,
    workers: int | None,
    verify: bool = True,
    source: Path | None = None,
) -> float:
    """The gateway (``source``: its package from that folder) writing to a folder or
    forwarding to storescp, ``associations`` storescu sending ``parts``: seconds until
    every instance was acknowledged (and forwarded)."""
    port = free_port()
    dest_port = free_port() if forward else None
    servers: list[Server] = []
    dest = scratch / "dest"
    try:
        if dest_port is not None:
            dest.mkdir()
            servers.append(
                Server(
                    [
                        dcmtk("storescp"),
                        "--output-directory",
                        str(dest),
                        "-aet",
                        "DEST",
                        str(dest_port),
                    ],
                    dest_port,
                    scratch / "storescp.log",
                )
            )
        config = gateway_config(scratch, port, key, dest_port, workers, verify=verify)
        command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
        servers.append(Server([*command, str(config)], port, scratch / "gateway.log", source))
        start = time.perf_counter()
        send(port, parts, associations)
        if dest_port is not None:
            wait_for(lambda: count_files(dest) >= files, "forwarded files")
        elapsed = time.perf_counter() - start
        if dest_port is None and count_files(scratch / "out") < files:
            raise SystemExit("the gateway wrote fewer files than were sent")
        return elapsed
    finally:
        for server in reversed(servers):
            server.stop()


def stow(url: str, parts: list[Path], clients: int) -> None:
    """The parts' files stored with STOW-RS by ``clients`` threads at once, 25 instances per
    request; fails unless every instance was stored."""
    import requests

    groups = [parts[i::clients] for i in range(clients)]
    failures: list[str] = []

    def client(group: list[Path]) -> None:
        files = sorted(p for folder in group for p in folder.rglob("*") if p.is_file())
        session = requests.Session()
        session.trust_env = False
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        }
        for start in range(0, len(files), STOW_BATCH):
            body = (
                b"".join(
                    f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + path.read_bytes()
                    + b"\r\n"
                    for path in files[start : start + STOW_BATCH]
                )
                + f"--{BOUNDARY}--\r\n".encode()
            )
            answer = session.post(url, data=body, headers=headers, timeout=600)
            if answer.status_code != 200:
                failures.append(f"{answer.status_code}: {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(group,)) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"STOW-RS failed: {failures[0]}")


def run_stow(
    scratch: Path, parts: list[Path], files: int, key: Path, *, clients: int, workers: int | None
) -> float:
    """``dicomveil gateway`` writing to a folder, its instances stored over STOW-RS."""
    port, web_port = free_port(), free_port()
    config = gateway_config(scratch, port, key, None, workers, web_port=web_port)
    command = [str(Path(sys.executable).with_name("dicomveil")), "gateway", "--config"]
    server = Server([*command, str(config)], port, scratch / "gateway.log")
    try:
        wait_for(lambda: listening(web_port), "the gateway's DICOMweb port")
        start = time.perf_counter()
        stow(f"http://127.0.0.1:{web_port}/bench/studies", parts, clients)
        elapsed = time.perf_counter() - start
        if count_files(scratch / "out") < files:
            raise SystemExit("the gateway wrote fewer files than were sent")
        return elapsed
    finally:
        server.stop()


def run_command(
    scratch: Path, parts: list[Path], files: int, key: Path, *, verify: bool = False
) -> float:
    """``dicomveil run`` on the same files, into a folder (``--verify``: with the gate)."""
    command = [str(Path(sys.executable).with_name("dicomveil")), "run", "--key", str(key)]
    command += ["--verify"] if verify else []
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *map(str, parts), str(scratch / "out")], capture_output=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or count_files(scratch / "out") < files:
        raise SystemExit(f"dicomveil run failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def _baseline(
    source: Path, parts: list[Path], files: int, key: Path, count: int, workers: int | None
) -> Callable[[Path], float]:
    """The gateway of another source tree as a contender (``--baseline``)."""

    def contender(scratch: Path) -> float:
        return run_gateway(
            scratch,
            parts,
            files,
            key,
            forward=False,
            associations=count,
            workers=workers,
            source=source,
        )

    return contender


def _print_ab(
    times: dict[str, list[float]],
    medians: dict[str, float],
    files: int,
    results: dict[str, object],
) -> None:
    """``--ab``: each tree's instances/s, and each baseline's against this tree's, per round."""
    ours, *others = times
    print(f"{'tree':40} {'instances/s':>12} {'per round':>10}")
    for name in times:
        rates = [files / t for t in times[name]]
        results[name] = {"instances_per_second": files / medians[name], "runs": times[name]}
        print(f"{name:40} {files / medians[name]:12.1f}   {', '.join(f'{r:.0f}' for r in rates)}")
    for name in others:
        per = [b / a for a, b in zip(times[ours], times[name], strict=True)]
        results[f"this_vs_{name}"] = per
        print(
            f"this tree vs {name}: {medians[name] / medians[ours]:.2f}x the instances/s "
            f"(per round {', '.join(f'{r:.2f}' for r in per)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=800)
    parser.add_argument("--size", type=int, default=256, help="rows and columns of each image")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, help="the gateway's workers (default: cores)")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between one contender's end and the next one's start (default 3: the "
        "memory the last one freed is handed back to a VM's host first, so every contender "
        "starts alike; see README.md, 'The cost of a new page')",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        help="where the corpus, the gateway's state and every output go (default: the temp "
        "dir). Every contender's outputs stay there until the end: removing them before the "
        "next contender would make that one's files dear on ext4 without a journal (README.md, "
        "'Making files'). On a memory file system (/dev/shm) fsync costs nothing, which "
        "flatters the gateway (it fsyncs every instance; `dicomveil run` does not)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        help="also time the gateway of this source tree (before/after); with --ab, repeatable",
    )
    parser.add_argument(
        "--ab",
        action="store_true",
        help="only the gateway with --senders associations into a folder, this tree and each "
        "--baseline, their order alternating from round to round",
    )
    args = parser.parse_args()
    baselines: list[Path] = args.baseline or []
    if len(baselines) > 1 and not args.ab:
        parser.error("more than one --baseline needs --ab")
    if args.ab and not baselines:
        parser.error("--ab needs a --baseline")
    with tempfile.TemporaryDirectory(prefix="dicomveil-bench-gateway-", dir=args.scratch) as temp:
        root = Path(temp)
        print(f"scratch: {root} (see README.md, 'Making files')", flush=True)
        parts = make_corpus(root / "corpus", args.files, args.size, args.senders)
        key = root / "bench.key"
        write_key(key, Key.generate())
        n, w = args.senders, args.workers
        contenders: dict[str, Callable[[Path], float]] = {
            "direct, 1 association": lambda s: run_direct(s, parts, args.files, 1),
            f"direct, {n} associations": lambda s: run_direct(s, parts, args.files, n),
            "gateway (folder), 1 association": lambda s: run_gateway(
                s, parts, args.files, key, forward=False, associations=1, workers=w
            ),
            f"gateway (folder), {n} associations": lambda s: run_gateway(
                s, parts, args.files, key, forward=False, associations=n, workers=w
            ),
            f"gateway -> storescp, {n} associations": lambda s: run_gateway(
                s, parts, args.files, key, forward=True, associations=n, workers=w
            ),
            "gateway STOW-RS (folder), 1 client": lambda s: run_stow(
                s, parts, args.files, key, clients=1, workers=w
            ),
            f"gateway STOW-RS (folder), {n} clients": lambda s: run_stow(
                s, parts, args.files, key, clients=n, workers=w
            ),
            "dicomveil run (folder)": lambda s: run_command(s, parts, args.files, key),
            # The same work on both sides, for context: the release gate on both, or off.
            f"gateway (folder), {n} assoc., no gate": lambda s: run_gateway(
                s, parts, args.files, key, forward=False, associations=n, workers=w, verify=False
            ),
            "dicomveil run --verify (folder)": lambda s: run_command(
                s, parts, args.files, key, verify=True
            ),
        }
        sources = [b.resolve() / "src" for b in baselines]
        for source in sources:
            if not (source / "dicomveil").is_dir():
                raise SystemExit(f"--baseline: no dicomveil package in {source}")
        if args.ab:
            ours = f"gateway (folder), {n} associations"
            contenders = {ours: contenders[ours]}
            for source in sources:
                contenders[f"{source.parent.name}, {n} assoc."] = _baseline(
                    source, parts, args.files, key, n, w
                )
        elif sources:
            for count in (1, n):
                contenders[f"baseline gateway, {count} assoc."] = _baseline(
                    sources[0], parts, args.files, key, count, w
                )
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(args.rounds):
            order = list(contenders.items())
            if args.ab and round_ % 2:
                order.reverse()  # neither tree always first after the other
            for name, contender in order:
                scratch = root / f"round{round_}-contender{list(contenders).index(name)}"
                scratch.mkdir()
                os.sync()
                time.sleep(args.settle)
                times[name].append(contender(scratch))  # kept until the end (see --scratch)
    print(
        f"{args.files} instances ({args.size}x{args.size} CT, {args.files // 50} patients), "
        f"{args.rounds} rounds, median wall time; {os.cpu_count()} cores, gateway workers: "
        f"{'the cores' if w is None else w}"
    )
    results: dict[str, object] = {}
    medians = {name: statistics.median(values) for name, values in times.items()}
    if args.ab:
        _print_ab(times, medians, args.files, results)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        return
    direct = statistics.median(times[f"direct, {n} associations"])
    print(f"{'contender':40} {'seconds':>9} {'instances/s':>12} {'vs direct':>10}")
    for name, values in times.items():
        rate = args.files / medians[name]
        results[name] = {"seconds": medians[name], "instances_per_second": rate, "runs": values}
        print(f"{name:40} {medians[name]:9.2f} {rate:12.1f} {direct / medians[name]:10.2f}")
    many, one = (
        medians[f"gateway (folder), {n} associations"],
        medians["gateway (folder), 1 association"],
    )
    command = medians["dicomveil run (folder)"]
    ratios = {
        "many_vs_run": command / many,
        "many_vs_one": one / many,
        "gated_vs_run_verify": medians["dicomveil run --verify (folder)"] / many,
        "ungated_vs_run": command / medians[f"gateway (folder), {n} assoc., no gate"],
        "stow_vs_c_store": many / medians[f"gateway STOW-RS (folder), {n} clients"],
        "stow_one_vs_c_store_one": one / medians["gateway STOW-RS (folder), 1 client"],
    }
    results["ratios"] = ratios
    print(
        f"gateway with {n} associations: {ratios['many_vs_run']:.2f}x dicomveil run's "
        f"instances/s (goal >= 0.5), {ratios['many_vs_one']:.2f}x one association's "
        "(goal >= 1.6)"
    )
    # The two contenders run in the same round each time: their ratio per round is
    # less exposed to a machine whose speed drifts than the ratio of the medians.
    per_round = [
        run / gw
        for run, gw in zip(
            times["dicomveil run (folder)"],
            times[f"gateway (folder), {n} associations"],
            strict=True,
        )
    ]
    results["many_vs_run_per_round"] = per_round
    print(
        f"  per round: {', '.join(f'{r:.2f}' for r in per_round)} "
        f"(median {statistics.median(per_round):.2f})"
    )
    print(
        f"the same work on both sides: with the release gate {ratios['gated_vs_run_verify']:.2f}x "
        f"dicomveil run --verify, without it {ratios['ungated_vs_run']:.2f}x dicomveil run "
        "(the gateway also fsyncs every instance before acknowledging it)"
    )
    print(
        f"STOW-RS into the gateway: {ratios['stow_vs_c_store']:.2f}x C-STORE's instances/s with "
        f"{n} clients / associations, {ratios['stow_one_vs_c_store_one']:.2f}x with one"
    )
    if baselines:
        for count, ours in (
            (1, "gateway (folder), 1 association"),
            (n, f"gateway (folder), {n} associations"),
        ):
            name = f"baseline gateway, {count} assoc."
            per = [b / a for a, b in zip(times[ours], times[name], strict=True)]
            results[f"vs_baseline_{count}"] = per
            print(
                f"this tree vs --baseline, {count} association(s): "
                f"{medians[name] / medians[ours]:.2f}x the instances/s "
                f"(per round {', '.join(f'{r:.2f}' for r in per)})"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
