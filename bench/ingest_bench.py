#!/usr/bin/env python3
"""Ingest benchmark: what Sluice's acknowledged write costs next to JetStream's own.

For each fsync policy of nats-server, one run on one fresh nats-server:

  1. `nats bench js pub async` (natscli) publishes into the SLUICE stream that
     sluice-ingest created, so the storage settings are Sluice's own (file,
     R1, limits, duplicate window) and, with --dedup, every message carries a
     Nats-Msg-Id as Sluice's do. Its --size is calibrated so that a bench
     message and a Sluice record take the same bytes in the stream.
  2. sluice-loadgen drives sluice-ingest with IngestStream, IngestBatch and
     unary Ingest, 64 callers each, and counts acknowledged records.
  3. Stream and batch keep the same number of records in flight as nats bench
     (--depth, its --batch), so each ratio compares equal work in flight:
     with sync_interval: always, throughput grows with the records that can
     share one fsync.

The measurements are interleaved in --rounds rounds (nats bench, stream,
batch, unary, nats bench, ...) and averaged, so that a slow spell of a
shared machine hits all of them alike; the stream is purged before each.
Every run also records the CPU time of nats-server, sluice-ingest, the client
and the rest of the machine, and each policy starts with a probe of the
store disk's fsync latency: these say how far the figures can be trusted.

Last, for each of --rss-shapes, a fresh sluice-ingest takes streams x window
records in flight (10,000 by default, as 10 x 1000 and as 100 x 100) and its
resident memory is sampled; the peak during each throughput run is kept too.

Prints one table per policy and the cost of fsync-before-ack (always vs the
server's default), and writes everything to bench/results/ingest.json.

--mode=security measures something else on the same machinery: the cost of
TLS and of token checks, plaintext vs TLS vs TLS + JWT (vs TLS + JWT + a
policy), interleaved in one run (bench/ingest_security.py;
bench/results/ingest-security.json).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "bin"
BUILD = pathlib.Path(os.environ.get("SLUICE_BUILD_DIR", ROOT / "build")).resolve()
RESULTS = ROOT / "bench" / "results"
STREAM = "SLUICE"
SUBJECT = "sluice.rec.bench.event"  # what sluice-ingest publishes a "bench.event" to
CLK_TCK = os.sysconf("SC_CLK_TCK")

POLICIES = {
    # The shipped configuration: fsync before every PubAck.
    "always": {"title": "sync_interval: always (shipped deploy/local/nats.conf)",
               "conf": ROOT / "deploy" / "local" / "nats.conf"},
    # The same file without sync_interval: the server's default (a 2 minute
    # fsync interval), the only difference.
    "default": {"title": "server default fsync policy (jetstream {})",
                "conf_text": "max_payload: 8MB\njetstream {}\n"},
}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"port {port} did not open within {timeout}s")


class Server:
    """A child process (nats-server or sluice-ingest) with its log in workdir."""

    def __init__(self, name, argv, workdir, port, env=None):
        self.name, self.argv, self.port, self.env = name, argv, port, env
        self.log_path = pathlib.Path(workdir) / f"{name}.log"
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)
        wait_port(self.port, self.proc)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def tail(self, n=5):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


def start_nats(policy, workdir):
    spec = POLICIES[policy]
    conf = spec.get("conf")
    if conf is None:
        conf = pathlib.Path(workdir) / "nats.conf"
        conf.write_text(spec["conf_text"])
    port = free_port()
    argv = [str(TOOLS / "nats-server"), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port),
            "-sd", str(pathlib.Path(workdir) / "store")]
    return Server("nats-server", argv, workdir, port).start()


def start_ingest(nats, workdir, name="sluice-ingest", extra=()):
    port = free_port()
    argv = [str(BUILD / "services" / "ingest" / "sluice-ingest"), f"--listen=127.0.0.1:{port}",
            f"--nats-url=nats://127.0.0.1:{nats.port}",
            f"--metrics-listen=127.0.0.1:{free_port()}"] + list(extra)
    # Only the flags given here configure the service under test.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLUICE_") and k not in ("NATS_URL", "MONGODB_URI")}
    srv = Server(name, argv, workdir, port, env=env).start()
    wait_stream(nats)
    return srv


# ---- nats CLI ---------------------------------------------------------------------

def nats_cli(nats, *args, timeout=120):
    argv = [str(TOOLS / "nats"), "--no-context", "-s", f"nats://127.0.0.1:{nats.port}"] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError(f"nats {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def stream_state(nats):
    return json.loads(nats_cli(nats, "stream", "info", STREAM, "--json"))["state"]


def stream_config(nats):
    return json.loads(nats_cli(nats, "stream", "info", STREAM, "--json"))["config"]


def wait_stream(nats, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stream_state(nats)
        except BenchError:
            if time.monotonic() > deadline:
                raise BenchError(f"stream {STREAM} not created by sluice-ingest within {timeout}s")
            time.sleep(0.1)


def purge(nats):
    nats_cli(nats, "stream", "purge", STREAM, "-f")


_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}


def _duration_ms(text):
    m = re.match(r"([\d,]+(?:\.\d+)?)\s*(ns|us|µs|ms|s)$", text.strip())
    if not m:
        return None
    return float(m.group(1).replace(",", "")) * _UNITS[m.group(2)]


def parse_nats_bench(out):
    """The publisher stats line of `nats bench js pub async` (natscli v0.5.0):
    'NATS JetStream asynchronous publisher stats: 64,843 msgs/sec ~ ... ~ P50: 6,910.91us ~ ...'."""
    line = next((l for l in out.splitlines() if "publisher stats:" in l), None)
    if line is None:
        raise BenchError(f"no stats line in nats bench output:\n{out[-2000:]}")
    rate = float(re.search(r"stats:\s*([\d,]+(?:\.\d+)?)\s*msgs/sec", line).group(1).replace(",", ""))
    lat = {}
    for key in ("P50", "P99"):
        m = re.search(key + r":\s*([^~]+)", line)
        lat[key] = _duration_ms(m.group(1)) if m else None
    return {"records_per_s": rate, "p50_ms": lat["P50"], "p99_ms": lat["P99"], "line": line.strip()}


def nats_bench(nats, msgs, size, depth):
    out = nats_cli(nats, "bench", "js", "pub", "async", SUBJECT, f"--stream={STREAM}",
                   f"--msgs={msgs}", f"--size={size}", "--dedup", "--clients=1",
                   f"--batch={depth}", "--no-progress", timeout=600)
    return parse_nats_bench(out)


# ---- measuring ---------------------------------------------------------------------------

def proc_cpu_s(pid):
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy_s():
    f = [int(x) for x in pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return (sum(f[:8]) - idle) / CLK_TCK


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """CPU seconds used during a run: by nats-server, sluice-ingest, the client
    (the child the run waited for) and everything else on the machine."""

    def __init__(self, nats, ingest):
        self.pids = {"nats_server": nats.pid, "ingest": ingest.pid if ingest else None}

    def __enter__(self):
        self.t0 = time.monotonic()
        self.p0 = {k: proc_cpu_s(p) if p else 0.0 for k, p in self.pids.items()}
        self.c0, self.m0 = children_cpu_s(), machine_busy_s()
        return self

    def __exit__(self, *exc):
        p1 = {k: proc_cpu_s(p) if p else 0.0 for k, p in self.pids.items()}
        self.cpu = {k: round(p1[k] - self.p0[k], 2) for k in p1}
        self.cpu["client"] = round(children_cpu_s() - self.c0, 2)
        busy = machine_busy_s() - self.m0
        self.cpu["other"] = round(max(0.0, busy - sum(self.cpu.values())), 2)
        self.cpu["wall"] = round(time.monotonic() - self.t0, 2)
        return False


def fsync_probe(directory, n=200):
    """Median and p99 ms of a 512-byte write + fsync in the store's directory:
    what sync_interval: always pays per flush."""
    path = pathlib.Path(directory) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 512)
            os.fsync(fd)
            lat.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    lat.sort()
    return {"p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99)], 3)}


def filesystem_of(path):
    best, fstype = "", "?"
    for line in pathlib.Path("/proc/mounts").read_text().splitlines():
        dev, mnt, typ = line.split()[:3]
        mnt = mnt.replace("\\040", " ")
        if str(path).startswith(mnt.rstrip("/") + "/") or str(path) == mnt:
            if len(mnt) >= len(best):
                best, fstype = mnt, typ
    return fstype


def loadgen(args, target, mode, concurrency, extra, duration, records=None):
    argv = [args.loadgen, f"--target={target}", f"--mode={mode}", f"--concurrency={concurrency}",
            f"--records={records or args.max_records}", f"--payload-bytes={args.payload_bytes}",
            f"--duration={duration}", f"--duration-limit={duration * 3 + 15}", "--json"] + extra
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 3 + 60)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"sluice-loadgen {mode} failed ({r.returncode}): {r.stderr.strip()}")


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms; keeps the highest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stop_flag = pid, 0, threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS") or 0)
            time.sleep(0.02)


def status_kib(pid, field):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def mib(kib):
    return round(kib / 1024.0, 1) if kib is not None else None


# ---- one policy ----------------------------------------------------------------------------

def calibrate(args, nats, ingest):
    """Stores one Sluice record and one nats bench message of --payload-bytes
    and returns the nats bench --size that takes the same bytes in the stream
    as a Sluice record (headers + protobuf body)."""
    purge(nats)
    loadgen(args, f"127.0.0.1:{ingest.port}", "unary", 1, [], 10, records=1)
    st = stream_state(nats)
    if st["messages"] != 1:
        raise BenchError(f"calibration: expected 1 stored record, stream has {st['messages']}")
    sluice_bytes = st["bytes"]
    purge(nats)
    nats_bench(nats, 1, args.payload_bytes, 1)
    bench_bytes = stream_state(nats)["bytes"]
    purge(nats)
    size = args.payload_bytes + sluice_bytes - bench_bytes
    return {"stored_bytes_per_record": sluice_bytes, "nats_bench_size": size,
            "request_payload_bytes": args.payload_bytes}


def sluice_runs(args):
    d, c = args.depth, args.callers
    per_caller = max(1, d // c)
    return [
        ("stream", "IngestStream", c, [f"--window={per_caller}"],
         f"{c} streams x window {per_caller}"),
        ("batch", "IngestBatch", c, [f"--batch-size={per_caller}"],
         f"{c} callers x {per_caller} records"),
        ("unary", "Ingest (unary)", c, [], f"{c} callers"),
    ]


def mean_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.fmean(vals), 3) if vals else None


def summarize(runs):
    out = {k: mean_of(runs, k) for k in ("records_per_s", "p50_ms", "p99_ms")}
    out["records_per_s"] = round(out["records_per_s"] or 0, 1)
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    out["spread_records_per_s"] = [round(min(r["records_per_s"] for r in runs), 1),
                                   round(max(r["records_per_s"] for r in runs), 1)]
    if all("ingest_peak_rss_mib" in r for r in runs):
        out["ingest_peak_rss_mib"] = max(r["ingest_peak_rss_mib"] for r in runs)
    out["cpu_s"] = {k: round(statistics.fmean(r["cpu"][k] for r in runs), 2)
                    for k in runs[0]["cpu"]}
    n = statistics.fmean(r.get("records", 0) or r.get("msgs", 0) for r in runs)
    if n:
        out["cpu_us_per_record"] = {k: round(v * 1e6 / n, 1) for k, v in out["cpu_s"].items()
                                    if k not in ("wall", "other")}
    out["runs"] = runs
    return out


def run_policy(args, policy):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{policy}-", dir=args.workdir))
    result = {"policy": policy, "title": POLICIES[policy]["title"]}
    nats = ingest = None
    try:
        result["store_filesystem"] = filesystem_of(workdir)
        result["fsync_probe"] = fsync_probe(workdir)
        nats = start_nats(policy, workdir)
        ingest = start_ingest(nats, workdir)
        target = f"127.0.0.1:{ingest.port}"
        cfg = stream_config(nats)
        keep = ("storage", "num_replicas", "retention", "discard", "duplicate_window", "max_age",
                "max_bytes")
        result["jetstream_stream"] = {k: cfg.get(k) for k in keep}
        cal = calibrate(args, nats, ingest)
        result["message"] = cal
        log(f"{policy}: fsync p50 {result['fsync_probe']['p50_ms']} ms; a record takes "
            f"{cal['stored_bytes_per_record']} B in the stream, nats bench --size={cal['nats_bench_size']}")

        # Size nats bench's message count to about --seconds.
        probe = nats_bench(nats, args.depth * 2, cal["nats_bench_size"], args.depth)
        msgs = int(min(args.max_records, max(args.depth * 4, probe["records_per_s"] * args.seconds)))
        purge(nats)

        runs = {"nats_bench": []}
        for kind, *_ in sluice_runs(args):
            runs[kind] = []
        for rnd in range(args.rounds):
            with CpuMeter(nats, ingest) as m:
                r = nats_bench(nats, msgs, cal["nats_bench_size"], args.depth)
            r.update(msgs=msgs, cpu=m.cpu)
            runs["nats_bench"].append(r)
            log(f"{policy} round {rnd + 1}: nats bench {r['records_per_s']:,.0f} msgs/s")
            purge(nats)
            for kind, _, conc, extra, _ in sluice_runs(args):
                sampler = RssSampler(ingest.pid)
                sampler.start()
                with CpuMeter(nats, ingest) as m:
                    r = loadgen(args, target, kind, conc, extra, args.seconds)
                sampler.stop_flag.set()
                sampler.join()
                r["cpu"] = m.cpu
                r["ingest_peak_rss_mib"] = mib(sampler.peak_kib)
                runs[kind].append(r)
                log(f"{policy} round {rnd + 1}: {kind} {r['records_per_s']:,.0f} records/s"
                    + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else ""))
                purge(nats)
                if not ingest.alive():
                    raise BenchError(f"sluice-ingest exited during {kind}:\n{ingest.tail()}")

        result["nats_bench"] = summarize(runs["nats_bench"])
        ref = result["nats_bench"]["records_per_s"]
        for kind, label, conc, _, shape in sluice_runs(args):
            s = summarize(runs[kind])
            s.update(label=label, shape=shape, ratio=round(s["records_per_s"] / ref, 3) if ref else None)
            result[kind] = s
        result["ingest_hwm_mib_after_throughput_runs"] = mib(status_kib(ingest.pid, "VmHWM"))
        ingest.stop()

        result["rss"] = measure_rss(args, nats, workdir)
        return result
    finally:
        for srv in (ingest, nats):
            if srv is not None:
                srv.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def measure_rss(args, nats, workdir):
    """For each --rss-shapes entry (streams x window), a fresh sluice-ingest
    holding streams * window records in flight; its resident memory is sampled
    throughout. Its --stream-window is at least the window (1024, the default,
    otherwise) and its --publish-timeout is raised to 60 s: with sync_interval:
    always, 10,000 records queued behind a few thousand fsyncs a second wait
    longer than the default 5 s, and this run is about memory, not timeouts.

    The run is long enough for every stream to go once around its ring of
    --stream-window result slots (so that all of it is resident, as in a
    long-lived stream), and at most --rss-seconds."""
    out = []
    for streams, window in args.rss_shapes:
        total = streams * window
        purge(nats)
        ingest = start_ingest(nats, workdir, name=f"sluice-ingest-rss-{streams}x{window}",
                              extra=[f"--stream-window={max(1024, window)}",
                                     f"--max-in-flight={max(16384, total)}",
                                     "--publish-timeout=60s"])
        try:
            idle = status_kib(ingest.pid, "VmRSS")
            sampler = RssSampler(ingest.pid)
            sampler.start()
            ring = max(1024, window)
            r = loadgen(args, f"127.0.0.1:{ingest.port}", "stream", streams,
                        [f"--window={window}"], args.rss_seconds,
                        records=streams * (ring + window))
            sampler.stop_flag.set()
            sampler.join()
            hwm = status_kib(ingest.pid, "VmHWM")
            res = {"streams": streams, "window": window, "records_in_flight": total,
                   "client_max_in_flight": r.get("max_in_flight"),
                   "stream_window_flag": ring, "records_per_stream": r["records"] // streams,
                   "idle_rss_mib": mib(idle),
                   "peak_rss_mib": mib(max(sampler.peak_kib, hwm or 0)), "records": r["records"],
                   "errors": r["errors"], "first_error": r["first_error"],
                   "records_per_s": r["records_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
            log(f"RSS with {streams} x {window} in flight: peak {res['peak_rss_mib']} MiB "
                f"(idle {res['idle_rss_mib']} MiB)")
            out.append(res)
        finally:
            ingest.stop()
            purge(nats)
    return out


# ---- report --------------------------------------------------------------------------------

def fmt_ms(v):
    return f"{v:8.2f}" if v is not None else "       -"


def print_policy(res, depth):
    cal = res["message"]
    nb = res["nats_bench"]
    print()
    print(f"== {res['title']}")
    fs = res["fsync_probe"]
    print(f"   store on {res['store_filesystem']}, fsync of 512 B: p50 {fs['p50_ms']} ms, "
          f"p99 {fs['p99_ms']} ms")
    print(f"   a record: {cal['request_payload_bytes']} B JSON payload -> "
          f"{cal['stored_bytes_per_record']} B in the stream; "
          f"nats bench --size={cal['nats_bench_size']} --dedup stores the same")
    print(f"   {'':39} {'records/s':>10} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
          f"   cpu s: {'nats':>5} {'ingest':>6} {'client':>6} {'other':>5}   {'rss MiB':>7}")
    rows = [("nats bench js pub async", f"batch {depth}", nb, 1.0)]
    for kind in ("stream", "batch", "unary"):
        rows.append((res[kind]["label"], res[kind]["shape"], res[kind], res[kind]["ratio"]))
    for label, shape, s, ratio in rows:
        c = s["cpu_s"]
        print(f"   {label + ', ' + shape:39} {s['records_per_s']:10,.0f} {ratio:6.2f} "
              f"{fmt_ms(s['p50_ms'])} {fmt_ms(s['p99_ms'])} {s['errors']:6d}"
              f"          {c['nats_server']:5.2f} {c['ingest']:6.2f} {c['client']:6.2f} {c['other']:5.2f}"
              f"   {s.get('ingest_peak_rss_mib', '-'):>7}")
    spreads = "; ".join(
        "{} {:,.0f}-{:,.0f}".format(name, *res[k]["spread_records_per_s"])
        for k, name in (("nats_bench", "nats bench"), ("stream", "stream"), ("batch", "batch"),
                        ("unary", "unary")))
    print(f"   lowest-highest round (records/s): {spreads}")
    runs = [r for k in ("nats_bench", "stream", "batch", "unary") for r in res[k]["runs"]]
    busy = sum(r["cpu"]["other"] for r in runs) / max(1e-9, sum(r["cpu"]["wall"] for r in runs))
    res["other_cpus_busy"] = round(busy, 2)
    if busy > 0.25:
        print(f"   WARNING: other processes kept {busy:.1f} of {os.cpu_count()} CPUs busy during "
              f"these runs: the figures are lower and noisier than on a quiet machine")
    per = res["stream"].get("cpu_us_per_record", {})
    if per:
        print(f"   CPU per record, IngestStream: sluice-ingest {per.get('ingest')} us, "
              f"nats-server {per.get('nats_server')} us, client {per.get('client')} us "
              f"(nats bench: nats-server {nb['cpu_us_per_record'].get('nats_server')} us, "
              f"client {nb['cpu_us_per_record'].get('client')} us)")
    for r in res["rss"]:
        print(f"   sluice-ingest resident memory, {r['records_in_flight']:,} records in flight as "
              f"{r['streams']} streams x {r['window']} (--stream-window={r['stream_window_flag']}): "
              f"peak {r['peak_rss_mib']} MiB, idle {r['idle_rss_mib']} MiB "
              f"({r['records_per_stream']:,} records per stream)"
              + (f"; {r['errors']} errors: {r['first_error']}" if r["errors"] else ""))


def print_fsync_cost(results):
    a, d = results.get("always"), results.get("default")
    if not (a and d):
        return None
    cost = {}
    print()
    print("== cost of fsync before ack (sync_interval: always vs the server's default)")
    print(f"   {'':26} {'always/s':>10} {'default/s':>10} {'always/default':>15} "
          f"{'p50 ms always':>14} {'default':>8}")
    for kind, label in (("nats_bench", "nats bench js pub async"), ("stream", "IngestStream"),
                        ("batch", "IngestBatch"), ("unary", "Ingest (unary)")):
        ra, rd = a[kind]["records_per_s"], d[kind]["records_per_s"]
        cost[kind] = round(ra / rd, 3) if rd else None
        print(f"   {label:26} {ra:10,.0f} {rd:10,.0f} {cost[kind]:15.2f} "
              f"{fmt_ms(a[kind]['p50_ms']):>14} {fmt_ms(d[kind]['p50_ms'])}")
    return cost


def environment(args):
    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    def git(*a):
        r = subprocess.run(["git", "-C", str(ROOT)] + list(a), capture_output=True, text=True)
        return r.stdout.strip()

    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")),
               platform.processor())
    dirty = "-dirty" if git("status", "--porcelain") else ""
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "loadavg_at_start": pathlib.Path("/proc/loadavg").read_text().split()[:3],
            "nats_server": version([str(TOOLS / "nats-server"), "--version"]),
            "natscli": version([str(TOOLS / "nats"), "--version"]),
            "git_commit": git("rev-parse", "--short", "HEAD") + dirty,
            "loadgen": str(pathlib.Path(args.loadgen).resolve())}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loadgen", default=os.environ.get("SLUICE_LOADGEN",
                                                       str(BUILD / "bench" / "sluice-loadgen")))
    p.add_argument("--mode", choices=("fsync", "security"), default="fsync",
                   help="fsync: nats bench vs Sluice under both fsync policies; security: "
                        "plaintext vs TLS vs TLS + JWT (bench/ingest_security.py)")
    p.add_argument("--policies", default="always,default", help="comma-separated: always, default")
    p.add_argument("--callers", type=int, default=64, help="concurrent callers for every Sluice RPC")
    p.add_argument("--depth", type=int, default=1024,
                   help="records in flight: nats bench --batch, and callers x window / batch size")
    p.add_argument("--payload-bytes", type=int, default=256, help="JSON payload of each record")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions, averaged")
    p.add_argument("--max-records", type=int, default=2_000_000, help="upper bound per run")
    p.add_argument("--rss-shapes", default="10x1000,100x100",
                   help="records in flight for the memory runs, as STREAMSxWINDOW, comma-separated")
    p.add_argument("--rss-seconds", type=float, default=20.0,
                   help="at most this long for each memory run")
    p.add_argument("--workdir", default=str(RESULTS / "work"),
                   help="where the temporary JetStream stores go (a real disk, not tmpfs)")
    p.add_argument("--json-out", default=None,
                   help="default bench/results/ingest.json (security: ingest-security.json)")
    p.add_argument("--keep", action="store_true", help="keep stores and logs")
    a = p.parse_args()
    a.policies = [x.strip() for x in a.policies.split(",") if x.strip()]
    if a.json_out is None:
        a.json_out = str(RESULTS / ("ingest-security.json" if a.mode == "security" else "ingest.json"))
    try:
        a.rss_shapes = [tuple(int(n) for n in x.split("x")) for x in a.rss_shapes.split(",") if x]
        assert all(len(t) == 2 and t[0] > 0 and t[1] > 0 for t in a.rss_shapes)
    except (ValueError, AssertionError):
        p.error("--rss-shapes: expected e.g. 10x1000,100x100")
    for pol in a.policies:
        if pol not in POLICIES:
            p.error(f"unknown policy {pol!r}")
    if a.callers < 1 or a.depth < a.callers or a.rounds < 1 or a.seconds <= 0:
        p.error("need callers >= 1, depth >= callers, rounds >= 1, seconds > 0")
    # Stream windows and batches are depth / callers each: nats bench gets the
    # same total.
    a.depth = a.depth // a.callers * a.callers
    return a


def main():
    args = parse_args()
    for path in (args.loadgen, TOOLS / "nats-server", TOOLS / "nats",
                 BUILD / "services" / "ingest" / "sluice-ingest"):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"bench: {path} missing; run bash scripts/setup.sh (or make bench)")
    pathlib.Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if filesystem_of(pathlib.Path(args.workdir).resolve()) in ("tmpfs", "ramfs"):
        log(f"warning: {args.workdir} is on tmpfs: fsync costs nothing there")
    if args.mode == "security":
        import ingest_security  # beside this file
        return ingest_security.main(sys.modules[__name__], args)
    env = environment(args)
    started = time.monotonic()
    results = {}
    for policy in args.policies:
        log(f"policy {policy}: {POLICIES[policy]['title']}")
        results[policy] = run_policy(args, policy)

    print(f"Sluice ingest benchmark — {env['cpus']} CPUs ({env['cpu_model']}), "
          f"load average at start {' '.join(env['loadavg_at_start'])}, {env['nats_server']}, "
          f"natscli {env['natscli']}, commit {env['git_commit']}")
    print(f"Every Sluice figure: {args.callers} concurrent callers, {args.payload_bytes} B JSON payload, "
          f"records acknowledged per second (mean of {args.rounds} rounds of ~{args.seconds:g} s); "
          f"ratio = Sluice / nats bench on the same server.")
    for policy in args.policies:
        print_policy(results[policy], args.depth)
    cost = print_fsync_cost(results)
    print(f"\n(total {time.monotonic() - started:.0f} s; figures in {args.json_out})")

    doc = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "environment": env,
           "parameters": {k: getattr(args, k) for k in ("callers", "depth", "payload_bytes", "seconds",
                                                         "rounds", "rss_shapes")},
           "policies": results, "fsync_cost_always_over_default": cost}
    out = pathlib.Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        raise SystemExit(f"bench: {e}")
    except KeyboardInterrupt:
        raise SystemExit(130)
