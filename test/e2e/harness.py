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
import random
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


def restart_port():
    """A free port below the kernel's ephemeral range, for a server that a
    test kills and starts again on the same port: while it is down, a port
    from free_port() can be handed by the kernel to any process's outgoing
    connection or bind(0) (other tests on the machine, or a client of the
    dead server connecting to itself), and the server then cannot have it
    back. Falls back to free_port() when the range leaves no room below."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 0
    if ephemeral_low < 21000:
        return free_port()
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(20000, ephemeral_low)
        if port in _restart_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _restart_ports.add(port)
        return port
    return free_port()


_restart_ports = set()  # handed out by this process: never twice


def _listening_inodes(port):
    """Socket inodes listening on port (any local address), from /proc."""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listens_on(pid, port):
    """True when process pid itself holds a listening socket on port (not
    some other process that happens to have it)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def wait_port(port, timeout=30.0, proc=None):
    """Until port accepts connections; given proc, until proc itself
    listens on it (a port someone else holds is not proc's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        if proc is not None and os.path.isdir("/proc/self/fd"):
            if listens_on(proc.pid, port):
                return
            time.sleep(0.05)
            continue
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
        self.paused = False

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.workdir)
        log.close()
        self.paused = False
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

    def pause(self):
        """SIGSTOP: the process keeps its sockets open and answers nothing."""
        self.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.running():
            return self.proc.returncode if self.proc else None
        if self.paused and sig != signal.SIGKILL:
            self.resume()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def kill(self):
        return self.stop(signal.SIGKILL)

    def log(self, since=0):
        """The log from byte offset since (a log_mark()) to its end."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """Where the log ends now: events(since=mark) sees only what comes
        after, e.g. the lines of a restarted process, not its predecessor's."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, msg=None, since=0):
        """The JSON lines of the log (optionally only those whose msg starts
        with msg, and only after the log_mark() since), parsed."""
        out = []
        for line in self.log(since).splitlines():
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
    default, max_payload 1MB included); conf names a configuration file
    instead (env: variables it refers to, scheme: "tls" when its clients
    must speak TLS)."""

    def __init__(self, sync="always", port=None, config=None, conf=None, env=None,
                 scheme="nats"):
        super().__init__("nats", [], env=dict(os.environ, **(env or {})))
        self.port = port or free_port()
        self.scheme = scheme
        self.store = pathlib.Path(self.workdir) / "store"
        if conf is None and config is None and sync == "always":
            conf = ROOT / "deploy" / "local" / "nats.conf"
        elif conf is None:
            conf = pathlib.Path(self.workdir) / "nats.conf"
            conf.write_text(config if config is not None else "max_payload: 8MB\njetstream {}\n")
        self.argv = [str(TOOLS / "nats-server"), "-c", str(conf), "-a", "127.0.0.1",
                     "-p", str(self.port), "-sd", str(self.store)]

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

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
        ports = [restart_port() for _ in range(n)]
        cluster_ports = [restart_port() for _ in range(n)]
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

    def live_nodes(self):
        """The members running and not paused: the ones that can answer."""
        return [n for n in self.nodes if n.running() and not n.paused]

    def wait_jetstream(self, timeout=60):
        """Until the cluster has a JetStream meta leader (streams can be
        created)."""
        def meta_leader():
            for node in self.live_nodes():
                try:
                    info = run_coro(_account_info(node.url))
                except Exception:  # noqa: BLE001 - not ready yet
                    continue
                if info:
                    return True
            return False
        wait_until(meta_leader, timeout=timeout, interval=0.25, what="JetStream meta leader")

    def stream_leader(self, stream="SLUICE", timeout=30, other_than=None):
        """The node that leads stream's replicas now (with other_than, a node
        other than that one: the leader elected after it went away)."""
        def leader():
            info = self.stream_info(stream)
            name = info.cluster.leader if info is not None and info.cluster else None
            if name and (other_than is None or name != other_than.name):
                return name
            return None
        return self.node(wait_until(leader, timeout=timeout, interval=0.2,
                                    what=f"a leader for {stream}"))

    def stream_info(self, stream="SLUICE"):
        """The stream's info as the first member that answers tells it; None
        while none does (no quorum, election in progress)."""
        for node in self.live_nodes():
            try:
                return run_coro(_stream_info(node.url, stream))
            except Exception:  # noqa: BLE001 - not answering yet
                continue
        return None

    def wait_stream_current(self, stream="SLUICE", timeout=60):
        """Until stream has a leader and every other member is a replica that
        is online and current: all replicas caught up, the cluster whole."""
        last = []

        def whole():
            info = self.stream_info(stream)
            if info is None or not info.cluster or not info.cluster.leader:
                last[:] = ["no leader"]
                return False
            replicas = info.cluster.replicas or []
            last[:] = [f"leader {info.cluster.leader}"] + [
                f"{r.name} current={r.current} offline={r.offline} lag={r.lag} active={r.active}"
                for r in replicas]
            return (len(replicas) == len(self.nodes) - 1 and
                    all(r.current and not r.offline for r in replicas))
        try:
            wait_until(whole, timeout=timeout, interval=0.25, what=f"{stream} replicas current")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last seen: {', '.join(last)}") from None


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


async def _stream_info(url, stream):
    import nats
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    try:
        return await nc.jetstream(timeout=2).stream_info(stream)
    finally:
        await nc.close()


class FerretDB(Proc):
    """FerretDB with its SQLite backend: the MongoDB wire protocol for tests.
    extra: more FerretDB flags (a TLS listener, authentication)."""

    def __init__(self, port=None, extra=()):
        super().__init__("ferretdb", [])
        self.port = port or free_port()
        data = pathlib.Path(self.workdir) / "data"
        data.mkdir(exist_ok=True)
        self.argv = [str(TOOLS / "ferretdb"), "--handler=sqlite",
                     f"--sqlite-url=file:{data}/", f"--listen-addr=127.0.0.1:{self.port}",
                     "--debug-addr=-", "--telemetry=disable", "--log-level=warn",
                     f"--state-dir={self.workdir}"] + list(extra)

    def uri(self, db="sluice"):
        return f"mongodb://127.0.0.1:{self.port}/{db}"

    def start(self):
        super().start()
        return self.started(self.port)


# ---- NATS identities made at test time (certificates: pki.py) ----------------

def nats_cli(*args, env=None, timeout=20):
    """Runs natscli (.tools/bin/nats) without any context of the user's."""
    e = dict(os.environ, **(env or {}))
    e.pop("NATS_URL", None)
    e["XDG_CONFIG_HOME"] = e.get("SLUICE_TEST_NATS_HOME", scratch_dir())
    return subprocess.run([str(TOOLS / "nats"), "--no-context"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=e)


def nkey_pair(path):
    """A new NATS user NKey: the seed written to path, the public key
    returned (both by natscli, independently of Sluice's own code)."""
    r = nats_cli("auth", "nkey", "gen", "user", f"--output={path}")
    assert r.returncode == 0, r.stderr
    r = nats_cli("auth", "nkey", "show", path)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# The standard variables the services read besides SLUICE_*.
SERVICE_ENV = ("NATS_URL", "NATS_URL_FILE", "NATS_CREDS", "NATS_NKEY", "NATS_CA", "NATS_CERT",
               "NATS_KEY", "MONGODB_URI", "MONGODB_URI_FILE")


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
            if k.startswith("SLUICE_") or k in SERVICE_ENV:
                del env[k]
        env.update(env_extra or {})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        super().__init__(name, [service_binary(name)] + list(args), env=env)


class Ingest(Service):
    """sluice-ingest; nats_url None leaves the URL to extra or env."""

    def __init__(self, nats_url, *extra, port=None, metrics_port=None, env=None):
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        args = [f"--listen=127.0.0.1:{self.port}",
                f"--metrics-listen=127.0.0.1:{self.metrics_port}", "--log-level=debug"]
        if nats_url is not None:
            args.append(f"--nats-url={nats_url}")
        super().__init__("ingest", args + list(extra), env_extra=env)

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
