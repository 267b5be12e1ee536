"""What TLS and token checks cost sluice-ingest: `ingest_bench.py --mode=security`
(`bash bench/run.sh security`).

For each fsync policy of nats-server (--policies), on one fresh nats-server,
four sluice-ingest processes run side by side, the same but for security:

  plain           no TLS, no credentials (the stack as `make up` runs it)
  tls             TLS on the gRPC port (an EC P-256 certificate), nothing else
  tls_jwt         TLS and ES256 JWTs with issuer and audience checked: every
                  call's token is verified (signature, exp, iss, aud) when the
                  call starts
  tls_jwt_policy  the same and a policy: every record's type is checked
                  against the principal's patterns

sluice-loadgen drives each with IngestStream (--callers streams, depth /
callers in flight each), IngestBatch (--callers callers, depth / callers
records a call) and unary Ingest (--callers callers), over TLS with
--tls-ca and, with a JWT, the same token in the metadata of every call.
A stream checks its token once for all its records, a batch once per
batch, unary once per record: what each RPC pays for a check depends on
how many records share its call.

The credentials are made by scripts/local-credentials.sh (openssl, as
`SLUICE_SECURE=1 make up` makes them). The runs are interleaved: in each of
--rounds rounds, each RPC runs against the four servers back to back, the
order of the four rotating from round to round, so that a slow spell of a
shared machine hits all four alike; the stream is purged before each run.
Each run records the CPU seconds of nats-server, the sluice-ingest under
test, the load generator and the rest of the machine ("other"): sluice-ingest's
CPU per record is the figure that a busy machine disturbs least.

The functions of ingest_bench.py (servers, load generator, CPU meter) come
in as `ib`: ingest_bench.py's main passes itself, so there is one copy of
each.
"""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

CONFIGS = [
    # (name, label)
    ("plain", "plaintext"),
    ("tls", "TLS"),
    ("tls_jwt", "TLS + JWT"),
    ("tls_jwt_policy", "+ policy"),
]
RPCS = [
    # (loadgen mode, label)
    ("stream", "IngestStream"),
    ("batch", "IngestBatch"),
    ("unary", "Ingest (unary)"),
]
ISSUER, AUDIENCE = "sluice-local", "sluice"  # what local-credentials.sh signs


def make_credentials(ib, workdir):
    creds = pathlib.Path(workdir) / "creds"
    subprocess.run(["bash", str(ib.ROOT / "scripts" / "local-credentials.sh"), str(creds)],
                   check=True, capture_output=True, timeout=60)
    return creds


def server_flags(name, creds):
    if name == "plain":
        return []
    flags = [f"--tls-cert={creds / 'server.crt'}", f"--tls-key={creds / 'server.key'}"]
    if name.startswith("tls_jwt"):
        flags += [f"--auth-jwt-public-key={creds / 'jwt.pub.pem'}",
                  f"--auth-jwt-issuer={ISSUER}", f"--auth-jwt-audience={AUDIENCE}"]
    if name == "tls_jwt_policy":
        flags.append(f"--auth-policy={creds / 'policy.json'}")
    return flags


def client_flags(name, creds):
    if name == "plain":
        return []
    flags = [f"--tls-ca={creds / 'ca.crt'}"]
    if name.startswith("tls_jwt"):
        flags.append(f"--token=@{creds / 'token'}")  # off the command line
    return flags


def rpc_flags(args, kind):
    per_caller = max(1, args.depth // args.callers)
    return {"stream": [f"--window={per_caller}"], "batch": [f"--batch-size={per_caller}"],
            "unary": []}[kind]


def shape(args, kind):
    per_caller = max(1, args.depth // args.callers)
    return {"stream": f"{args.callers} streams x window {per_caller}",
            "batch": f"{args.callers} callers x {per_caller} records",
            "unary": f"{args.callers} callers"}[kind]


def run_policy(ib, args, policy):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"security-{policy}-", dir=args.workdir))
    result = {"policy": policy, "title": ib.POLICIES[policy]["title"]}
    nats = None
    servers = {}
    try:
        result["store_filesystem"] = ib.filesystem_of(workdir)
        result["fsync_probe"] = ib.fsync_probe(workdir)
        creds = make_credentials(ib, workdir)
        nats = ib.start_nats(policy, workdir)
        for name, _ in CONFIGS:
            servers[name] = ib.start_ingest(nats, workdir, name=f"sluice-ingest-{name}",
                                            extra=server_flags(name, creds))
        # A short unmeasured run on each: connections up, TLS handshakes done,
        # and a wrong credential fails here rather than in the middle.
        for name, _ in CONFIGS:
            r = ib.loadgen(args, f"127.0.0.1:{servers[name].port}", "stream", args.callers,
                           rpc_flags(args, "stream") + client_flags(name, creds), 1.0)
            if r["errors"] or not r["records"]:
                raise ib.BenchError(f"warm-up against {name}: {r['first_error']}")
        ib.purge(nats)

        runs = {(kind, name): [] for kind, _ in RPCS for name, _ in CONFIGS}
        for rnd in range(args.rounds):
            order = CONFIGS[rnd % len(CONFIGS):] + CONFIGS[:rnd % len(CONFIGS)]
            for kind, label in RPCS:
                for name, clabel in order:
                    ingest = servers[name]
                    with ib.CpuMeter(nats, ingest) as m:
                        r = ib.loadgen(args, f"127.0.0.1:{ingest.port}", kind, args.callers,
                                       rpc_flags(args, kind) + client_flags(name, creds),
                                       args.seconds)
                    r["cpu"] = m.cpu
                    r["round"] = rnd + 1
                    runs[(kind, name)].append(r)
                    ib.log(f"{policy} round {rnd + 1}: {label} {clabel}: "
                           f"{r['records_per_s']:,.0f} records/s"
                           + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else ""))
                    ib.purge(nats)
                    if not ingest.alive():
                        raise ib.BenchError(f"sluice-ingest ({name}) exited:\n{ingest.tail()}")

        for kind, label in RPCS:
            plain = ib.summarize(runs[(kind, "plain")])
            entry = {"label": label, "shape": shape(args, kind)}
            for name, _ in CONFIGS:
                s = plain if name == "plain" else ib.summarize(runs[(kind, name)])
                s["ratio_to_plain"] = round(s["records_per_s"] / plain["records_per_s"], 3) \
                    if plain["records_per_s"] else None
                # The same ratio round by round (each against the plain run of its
                # own round): how much of the mean is noise.
                s["ratio_by_round"] = [
                    round(a["records_per_s"] / b["records_per_s"], 3) if b["records_per_s"] else None
                    for a, b in zip(runs[(kind, name)], runs[(kind, "plain")])]
                entry[name] = s
            result[kind] = entry
        return result
    finally:
        for srv in list(servers.values()) + [nats]:
            if srv is not None:
                srv.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def print_policy(ib, res):
    print()
    print(f"== {res['title']}")
    fs = res["fsync_probe"]
    print(f"   store on {res['store_filesystem']}, fsync of 512 B: p50 {fs['p50_ms']} ms, "
          f"p99 {fs['p99_ms']} ms")
    print(f"   {'':45} {'records/s':>10} {'/plain':>7} {'by round':>17} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>6}   CPU us/record: {'ingest':>6} {'client':>6} {'nats':>5}")
    for kind, label in RPCS:
        entry = res[kind]
        for name, clabel in CONFIGS:
            s = entry[name]
            per = s.get("cpu_us_per_record", {})
            rounds = ",".join(f"{x:.2f}" for x in s["ratio_by_round"] if x is not None)
            head = f"{label}, {entry['shape']}" if name == "plain" else ""
            print(f"   {head:33} {clabel:11} {s['records_per_s']:10,.0f} "
                  f"{s['ratio_to_plain']:7.2f} {rounds:>17} {ib.fmt_ms(s['p50_ms'])} "
                  f"{ib.fmt_ms(s['p99_ms'])} {s['errors']:6d}                  "
                  f"{per.get('ingest', 0):6.1f} {per.get('client', 0):6.1f} "
                  f"{per.get('nats_server', 0):5.1f}")
    all_runs = [r for kind, _ in RPCS for name, _ in CONFIGS for r in res[kind][name]["runs"]]
    busy = sum(r["cpu"]["other"] for r in all_runs) / max(1e-9, sum(r["cpu"]["wall"] for r in all_runs))
    res["other_cpus_busy"] = round(busy, 2)
    print(f"   the rest of the machine kept {busy:.2f} of {os.cpu_count()} CPUs busy during these runs"
          + (": the figures are lower and noisier than on a quiet machine" if busy > 0.25 else ""))
    st = res["stream"]
    print(f"   IngestStream: TLS/plain {st['tls']['ratio_to_plain']:.2f}, "
          f"TLS+JWT/plain {st['tls_jwt']['ratio_to_plain']:.2f}, "
          f"TLS+JWT+policy/plain {st['tls_jwt_policy']['ratio_to_plain']:.2f} "
          f"(design target: TLS + JWT keeps at least 0.85 of IngestStream's throughput)")


def main(ib, args):
    started = time.monotonic()
    env = ib.environment(args)
    results = {}
    for policy in args.policies:
        ib.log(f"security, policy {policy}: {ib.POLICIES[policy]['title']}")
        results[policy] = run_policy(ib, args, policy)

    print(f"Sluice ingest: the cost of TLS and token checks — {env['cpus']} CPUs "
          f"({env['cpu_model']}), load average at start {' '.join(env['loadavg_at_start'])}, "
          f"{env['nats_server']}, commit {env['git_commit']}")
    print(f"Each figure: records acknowledged per second, mean of {args.rounds} interleaved "
          f"rounds of ~{args.seconds:g} s, {args.payload_bytes} B JSON payload; /plain = over "
          f"the plaintext server's; TLS + JWT = ES256 token verified per call; + policy = and "
          f"each record's type checked against the policy.")
    for policy in args.policies:
        print_policy(ib, results[policy])
    print(f"\n(total {time.monotonic() - started:.0f} s; figures in {args.json_out})")

    doc = {"generated_at": ib.datetime.datetime.now(ib.datetime.timezone.utc)
           .isoformat(timespec="seconds"),
           "environment": env,
           "parameters": {k: getattr(args, k) for k in ("callers", "depth", "payload_bytes",
                                                         "seconds", "rounds")},
           "configs": dict(CONFIGS), "policies": results}
    out = pathlib.Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
