"""Real servers and real Sluice processes for the end-to-end tests.

Every server runs on a free loopback port with its own temporary directory and
is stopped by the fixture that started it. Nothing here fakes a broker or a
database: NatsServer is nats-server with JetStream, FerretDB is FerretDB on
SQLite, and Service runs one of the Sluice binaries.
"""

import atexit
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
BUILD = pathlib.Path(os.environ.get("SLUICE_BUILD_DIR", ROOT / "build")).resolve()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


def wait_until(pred, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s (last: {last!r})")


def http_get(port, path):
    """GET http://127.0.0.1:port/path -> (status, body, content type); status 0
    when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type")
    except (urllib.error.URLError, ConnectionError) as e:  # nothing listening (yet)
        return 0, str(e), ""


def metric(text, name, **labels):
    """The value of the first sample of name whose labels include labels, in
    a Prometheus text exposition; 0 when there is none."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


def scrape(svc):
    """The /metrics text of a service with a metrics_port."""
    status, text, ctype = http_get(svc.metrics_port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    return text


async def stream_messages(url, stream="SLUICE"):
    """Every message a stream holds, in sequence order (nats-py RawStreamMsg)."""
    import nats  # only the tests that read the stream need it

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        msgs = [await js.get_msg(stream, seq)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        assert info.state.messages == len(msgs)
        return msgs
    finally:
        await nc.close()


async def stream_ids(url, stream="SLUICE"):
    """Every Nats-Msg-Id stored in the stream, in sequence order."""
    return [m.headers["Nats-Msg-Id"] for m in await stream_messages(url, stream)]


_scratch = None


def scratch_dir():
    """One temporary directory per test process for every server's data and
    log, removed when the process exits (kept with SLUICE_KEEP_TMP=1, for
    reading the logs of a failure at leisure)."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="sluice-test-")
        if os.environ.get("SLUICE_KEEP_TMP") != "1":
            atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch


class Proc:
    """A child process whose output goes to a log file kept for failures."""

    def __init__(self, name, argv, env=None, workdir=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"{name}-", dir=scratch_dir())
        self.log_path = pathlib.Path(self.workdir) / f"{name}.log"
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.workdir)
        log.close()
        return self

    def started(self, *ports):
        """Waits for ports to open; a process that never gets there is killed
        so no test leaves it behind."""
        try:
            for port in ports:
                wait_port(port, proc=self.proc)
        except Exception:
            if self.running():
                self.proc.kill()
                self.proc.wait(timeout=5)
            raise
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def kill(self):
        return self.stop(signal.SIGKILL)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def events(self, msg=None):
        """The JSON lines of the log (optionally only those whose msg starts
        with msg), parsed."""
        out = []
        for line in self.log().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if msg is None or str(ev.get("msg", "")).startswith(msg):
                out.append(ev)
        return out


class NatsServer(Proc):
    """nats-server with JetStream on a temporary store. By default it runs the
    shipped configuration (deploy/local/nats.conf: sync_interval always);
    sync=None runs the server's own default fsync policy instead, and config
    runs that configuration text (e.g. "jetstream {}" for every server
    default, max_payload 1MB included)."""

    def __init__(self, sync="always", port=None, config=None):
        super().__init__("nats", [])
        self.port = port or free_port()
        self.store = pathlib.Path(self.workdir) / "store"
        if config is None and sync == "always":
            conf = ROOT / "deploy" / "local" / "nats.conf"
        else:
            conf = pathlib.Path(self.workdir) / "nats.conf"
            conf.write_text(config if config is not None else "max_payload: 8MB\njetstream {}\n")
        self.argv = [str(TOOLS / "nats-server"), "-c", str(conf), "-a", "127.0.0.1",
                     "-p", str(self.port), "-sd", str(self.store)]

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        super().start()
        return self.started(self.port)


class ClusterNode(Proc):
    """One member of a NatsCluster: nats-server with JetStream and a route
    listener, restartable on the same ports and store."""

    def __init__(self, name, port, cluster_port, routes, workdir):
        super().__init__(name, [], workdir=workdir)
        self.port = port
        self.cluster_port = cluster_port
        self.store = pathlib.Path(workdir) / "store"
        conf = pathlib.Path(workdir) / "nats.conf"
        route_list = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        conf.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:{port}\n"
            "max_payload: 8MB\n"
            f"jetstream {{\n  store_dir: \"{self.store}\"\n  sync_interval: always\n}}\n"
            f"cluster {{\n  name: sluice\n  listen: 127.0.0.1:{cluster_port}\n"
            f"  routes: [{route_list}]\n}}\n")
        self.argv = [str(TOOLS / "nats-server"), "-c", str(conf)]

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        super().start()
        return self.started(self.port)


class NatsCluster:
    """A JetStream cluster of n nats-server nodes on loopback (routes between
    all of them, sync_interval always, as deploy/k8s runs it). url is the
    comma-separated list of every member, as NATS_URL takes it."""

    def __init__(self, n=3):
        base = tempfile.mkdtemp(prefix="nats-cluster-", dir=scratch_dir())
        ports = [free_port() for _ in range(n)]
        cluster_ports = [free_port() for _ in range(n)]
        self.nodes = []
        for i in range(n):
            workdir = pathlib.Path(base) / f"n{i}"
            workdir.mkdir()
            self.nodes.append(ClusterNode(f"n{i}", ports[i], cluster_ports[i],
                                          cluster_ports, str(workdir)))

    @property
    def url(self):
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout=60):
        for node in self.nodes:
            node.start()
        self.wait_jetstream(timeout)
        return self

    def stop(self):
        for node in self.nodes:
            node.stop()

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def wait_jetstream(self, timeout=60):
        """Until the cluster has a JetStream meta leader (streams can be
        created)."""
        def meta_leader():
            for node in self.nodes:
                if not node.running():
                    continue
                try:
                    info = run_coro(_account_info(node.url))
                except Exception:  # noqa: BLE001 - not ready yet
                    continue
                if info:
                    return True
            return False
        wait_until(meta_leader, timeout=timeout, interval=0.25, what="JetStream meta leader")

    def stream_leader(self, stream="SLUICE", timeout=30):
        """The node that leads stream's replicas now."""
        def leader():
            for node in self.nodes:
                if not node.running():
                    continue
                try:
                    name = run_coro(_stream_leader(node.url, stream))
                except Exception:  # noqa: BLE001 - election in progress
                    continue
                if name:
                    return name
            return None
        return self.node(wait_until(leader, timeout=timeout, interval=0.2,
                                    what=f"a leader for {stream}"))


def run_coro(coro):
    import asyncio
    return asyncio.run(coro)


async def _account_info(url):
    import nats
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    try:
        await nc.jetstream().account_info()
        return True
    finally:
        await nc.close()


async def _stream_leader(url, stream):
    import nats
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.cluster.leader if info.cluster else None
    finally:
        await nc.close()


class FerretDB(Proc):
    """FerretDB with its SQLite backend: the MongoDB wire protocol for tests."""

    def __init__(self, port=None):
        super().__init__("ferretdb", [])
        self.port = port or free_port()
        data = pathlib.Path(self.workdir) / "data"
        data.mkdir(exist_ok=True)
        self.argv = [str(TOOLS / "ferretdb"), "--handler=sqlite",
                     f"--sqlite-url=file:{data}/", f"--listen-addr=127.0.0.1:{self.port}",
                     "--debug-addr=-", "--telemetry=disable", "--log-level=warn",
                     f"--state-dir={self.workdir}"]

    def uri(self, db="sluice"):
        return f"mongodb://127.0.0.1:{self.port}/{db}"

    def start(self):
        super().start()
        return self.started(self.port)


def service_binary(name):
    path = BUILD / "services" / name / f"sluice-{name}"
    if not path.exists():
        raise FileNotFoundError(f"{path} not built; run scripts/setup.sh")
    return str(path)


class Service(Proc):
    """One Sluice binary (ingest, transform or audit) with flags."""

    def __init__(self, name, args, env_extra=None):
        env = dict(os.environ)
        # Only the flags given here configure the service under test.
        for k in list(env):
            if k.startswith("SLUICE_") or k in ("NATS_URL", "MONGODB_URI"):
                del env[k]
        env.update(env_extra or {})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        super().__init__(name, [service_binary(name)] + list(args), env=env)


class Ingest(Service):
    def __init__(self, nats_url, *extra, port=None, metrics_port=None):
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        args = [f"--listen=127.0.0.1:{self.port}", f"--nats-url={nats_url}",
                f"--metrics-listen=127.0.0.1:{self.metrics_port}", "--log-level=debug"]
        super().__init__("ingest", args + list(extra))

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def start(self, ready=True):
        """Starts and waits for the ports; with ready, also for JetStream
        (pass ready=False when NATS is not there on purpose)."""
        super().start()
        self.started(self.metrics_port, self.port)
        return self.wait_ready() if ready else self

    def wait_ready(self, timeout=30):
        """Until /readyz says connected to JetStream with the stream there:
        the ports open before NATS is reached."""
        wait_until(lambda: http_get(self.metrics_port, "/readyz")[0] == 200, timeout=timeout,
                   what="sluice-ingest ready")
        return self


def generate_python_stubs(out_dir):
    """Compiles proto/ into Python modules with grpcio-tools; returns out_dir."""
    from grpc_tools import protoc
    import grpc_tools

    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    # grpc.health.v1 comes from grpcio-health-checking (the grpc_health
    # package): generating it here would shadow the grpc package itself.
    protos = ["sluice/v1/ingest.proto", "google/rpc/status.proto",
              "google/rpc/error_details.proto"]
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{wkt}",
                      f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"] + protos)
    if rc != 0:
        raise RuntimeError("protoc failed")
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    return out_dir
