#!/usr/bin/env python3
"""Drain benchmark: how fast sluice-transform and sluice-audit empty the stream
into the store, next to what the store itself takes, and how long a record
takes from ingest's acknowledgement to being visible in `records`.

One run, on fresh servers on free loopback ports (nats-server with
sync_interval: always, FerretDB on SQLite, sluice-ingest):

  1. preload   --records records through ingest (IngestStream), with no
               consumer running, so the stream holds a backlog;
  2. alone     sluice-transform drains the backlog into `records`, then
               sluice-audit drains it into `audit`, one at a time;
  3. raw       the very documents they stored are inserted again with pymongo
               insert_many, unordered, in batches of the same size, into
               scratch collections of the same FerretDB: the store's own rate
               for this work, which the services' rates are divided by;
  3b. replicas  `audit` emptied again, then drained by 1, 2, ... replicas of
               sluice-audit sharing one new durable consumer (--replicas):
               how the rate grows with replicas until the store (or the
               CPUs) is the bound; the consumer's MaxAckPending (2 x batch x
               16) leaves every replica two batches;
  4. together  both collections emptied, both services replay the stream from
               sequence 1 at the same time (new consumers), as in production
               where both share one store;
  5. live      with both services caught up and running, --records / 2 more
               records are sent through ingest as fast as IngestStream goes:
               the end-to-end maximum, every process busy at once;
  6. lag       records are offered at half that maximum for --lag-seconds;
               each record's lag runs from its IngestStream acknowledgement to
               its document being stored (the transform's log line written
               once MongoDB acknowledged the insert); then the same again
               with a pymongo reader polling for sampled records, which adds
               the lag to a reader first finding them (see Bench.lag for how,
               and why both).

A drain rate is records / (time of the service's last batch - time it started
consuming), both read from its own log lines; the services run with
--log-level=debug for that. Prints a table and writes
bench/results/drain.json.

Usage: bench/drain.py [--records 20000] [--batch-size 256] [--lag-seconds 10]
                      [--replicas 1,2,3,4]
       (SLUICE_BUILD_DIR selects the build, default build/)
"""

import argparse
import calendar
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "e2e"))

import harness  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RULES = {"bench.*": "{total: (.items | map(.price * .qty) | add), customer: .customer}"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lag-seconds", type=float, default=10.0)
    p.add_argument("--replicas", default="1,2,3,4",
                   help="replica counts for the scale-out phase, comma-separated")
    p.add_argument("--out", default=str(RESULTS / "drain.json"))
    a = p.parse_args()
    if not 1000 <= a.records <= 200000:
        p.error("--records must be between 1000 and 200000")
    if not 1.0 <= a.lag_seconds <= 60.0:
        p.error("--lag-seconds must be between 1 and 60")
    try:
        a.replicas = [int(k) for k in a.replicas.split(",") if k.strip()]
    except ValueError:
        p.error("--replicas must be a comma-separated list of counts")
    if not all(1 <= k <= 8 for k in a.replicas):
        p.error("--replicas counts must be between 1 and 8")
    return a


# ---- helpers -------------------------------------------------------------------

def log_time(ts):
    """An sl_log "ts" (2026-01-01T00:00:00.123456789Z) as epoch seconds."""
    base, frac = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1e9


def drain_window(svc, n):
    """(start, end, records) of a drain, from the service's own log: start
    when it began consuming, end at the batch that settled the n-th record."""
    start, done, end = None, 0, None
    for ev in svc.events():
        msg = ev.get("msg", "")
        if msg.startswith("consuming ") or msg.startswith("MongoDB reachable"):
            t = log_time(ev["ts"])
            start = t if start is None else max(start, t)
        elif msg.startswith("batch of "):
            done += int(msg.split()[2])
            if done >= n and end is None:
                end = log_time(ev["ts"])
    return start, end, done


def last_batch_time(svc):
    """Epoch seconds of the service's last "batch of N settled" line."""
    last = 0.0
    for ev in svc.events("batch of "):
        last = log_time(ev["ts"])
    return last


def wait_settled(svc, n, timeout=600):
    """Waits until the service's log says it settled n records. Reads only
    what was appended since the last look and parses no JSON: the wait must
    cost next to nothing, because it runs while the drain is being timed (a
    document count would make FerretDB scan the collection)."""
    deadline = time.monotonic() + timeout
    pos, done = 0, 0
    while done < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{svc.name} settled {done} of {n} records in {timeout} s")
        if not svc.running():
            raise RuntimeError(f"{svc.name} exited:\n{svc.log()[-2000:]}")
        time.sleep(0.2)
        with open(svc.log_path, "rb") as f:
            f.seek(pos)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        pos += cut
        for line in chunk[:cut].splitlines():
            at = line.find(b'"batch of ')
            if at >= 0:
                done += int(line[at + 10:].split(b" ", 1)[0])


def stored_lags(svc, ids_in_order, acked_wall):
    """Per record, ms from its ingest ack to the log line of the batch that
    stored it. One consumer settles the stream in order, so the n-th record
    settled is the n-th record sent."""
    lags, k = [], 0
    for ev in svc.events():
        msg = ev.get("msg", "")
        if not msg.startswith("batch of "):
            continue
        ts = log_time(ev["ts"])
        for j in range(k, min(k + int(msg.split()[2]), len(ids_in_order))):
            lags.append((ts - acked_wall[ids_in_order[j]]) * 1000)
        k += int(msg.split()[2])
    return sorted(lags)


SAMPLE_EVERY = 0.25  # seconds of offered load between two records the reader follows


def percentiles(values):
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98], "max_ms": max(values)}


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-drain-"))
        (self.tmp / "pb").mkdir()
        harness.generate_python_stubs(self.tmp / "pb")
        from sluice.v1 import ingest_pb2, ingest_pb2_grpc
        self.pb, self.pb_grpc = ingest_pb2, ingest_pb2_grpc
        self.rules = self.tmp / "rules.json"
        self.rules.write_text(json.dumps(RULES))
        self.procs = []
        self.result = {"records": args.records, "batch_size": args.batch_size}

    # -- processes

    def start_servers(self):
        import pymongo
        self.nats = harness.NatsServer().start()
        self.ferret = harness.FerretDB().start()
        self.ingest = harness.Ingest(self.nats.url).start()
        self.procs += [self.ingest, self.ferret, self.nats]
        self.db = pymongo.MongoClient(self.ferret.uri(), serverSelectionTimeoutMS=20000).sluice

    def service(self, name, *extra):
        args = [f"--nats-url={self.nats.url}", f"--mongodb-uri={self.ferret.uri()}",
                f"--metrics-listen=127.0.0.1:{harness.free_port()}", "--log-level=debug",
                f"--batch-size={self.args.batch_size}", "--fetch-wait=100ms"]
        if name == "transform":
            args.append(f"--transform-rules={self.rules}")
        svc = harness.Service(name, args + list(extra)).start()
        self.procs.insert(0, svc)
        return svc

    def both_services(self):
        """transform and audit on their durables, once both reach the store."""
        both = (self.service("transform"), self.service("audit"))
        for svc in both:
            harness.wait_until(lambda: any(e.get("msg", "").startswith("MongoDB reachable")
                                           for e in svc.events()), timeout=20,
                               what=f"{svc.name} up")
        return both

    def stop(self, svc):
        code = svc.stop()
        if code != 0:
            raise RuntimeError(f"{svc.name} exited with {code}:\n{svc.log()[-2000:]}")

    def stop_all(self):
        for p in self.procs:
            if p.running():
                p.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- writing

    def record(self, i, prefix):
        payload = json.dumps({"customer": f"c-{i % 97}", "n": i,
                              "items": [{"sku": f"s-{j}", "price": (i + j) % 50, "qty": 1 + j}
                                        for j in range(3)]}).encode()
        return self.pb.Record(id=f"{prefix}-{i:07d}", type="bench.order", key=f"c-{i % 97}",
                              payload=payload, attributes={"source": "bench"})

    def stub(self):
        import grpc
        ch = grpc.insecure_channel(self.ingest.target)
        grpc.channel_ready_future(ch).result(timeout=10)
        return self.pb_grpc.IngestServiceStub(ch), ch

    def preload(self):
        n = self.args.records
        stub, ch = self.stub()
        t0 = time.monotonic()
        reqs = (self.pb.IngestRequest(record=self.record(i, "pre")) for i in range(n))
        results = list(stub.IngestStream(reqs, timeout=600))
        elapsed = time.monotonic() - t0
        ch.close()
        acked = sum(1 for r in results if r.WhichOneof("outcome") == "ack")
        if acked != n:
            raise RuntimeError(f"preload: {acked} of {n} acknowledged")
        self.result["preload"] = {"seconds": elapsed, "records_per_s": n / elapsed}

    # -- measuring

    def check_count(self, coll, n):
        """Once a drain is over: the collection holds exactly n documents."""
        got = self.db[coll].count_documents({})
        if got != n:
            raise RuntimeError(f"{coll} holds {got}, not {n}")

    def drain(self, name, coll, *extra):
        n = self.args.records
        svc = self.service(name, *extra)
        wait_settled(svc, n)
        self.check_count(coll, n)
        start, end, _ = drain_window(svc, n)
        return svc, {"seconds": end - start, "records_per_s": n / (end - start)}

    def alone(self):
        for name, coll in (("transform", "records"), ("audit", "audit")):
            svc, r = self.drain(name, coll)
            self.stop(svc)
            self.result.setdefault("alone", {})[name] = r

    def raw(self):
        bs = self.args.batch_size
        for coll in ("records", "audit"):
            docs = list(self.db[coll].find())
            scratch = self.db[f"bench_raw_{coll}"]
            scratch.drop()
            t0 = time.monotonic()
            for off in range(0, len(docs), bs):
                scratch.insert_many(docs[off:off + bs], ordered=False)
            elapsed = time.monotonic() - t0
            scratch.drop()
            self.result.setdefault("raw_insert_many", {})[coll] = {
                "seconds": elapsed, "records_per_s": len(docs) / elapsed}

    def replicas(self):
        """k replicas of sluice-audit share one new durable (a replay from
        sequence 1 under a consumer name of its own per k) and drain the
        whole stream into an emptied `audit`; the rate runs from the first
        replica consuming to the last batch any replica settled."""
        n = self.args.records
        out = {}
        for k in self.args.replicas:
            self.db.audit.drop()
            svcs = [self.service("audit", f"--consumer=scale{k}", "--replay-from-seq=1")
                    for _ in range(k)]
            harness.wait_until(lambda: self.settled_total(svcs) >= n, timeout=600,
                               interval=0.5, what=f"{k} replicas drained the stream")
            self.check_count("audit", n)
            windows = [drain_window(svc, n) for svc in svcs]
            start = min(w[0] for w in windows if w[0] is not None)
            end = max(last_batch_time(svc) for svc in svcs)
            shares = [w[2] for w in windows]
            for svc in svcs:
                self.stop(svc)
            out[str(k)] = {"seconds": end - start, "records_per_s": n / (end - start),
                           "records_per_replica": shares}
        self.result["replicas"] = out

    @staticmethod
    def settled_total(svcs):
        return sum(drain_window(svc, 1 << 62)[2] for svc in svcs)

    def together(self):
        n = self.args.records
        self.db.records.drop()
        self.db.audit.drop()
        t = self.service("transform", "--replay-from-seq=1")
        a = self.service("audit", "--replay-from-seq=1")
        for svc in (t, a):
            wait_settled(svc, n)
        self.check_count("records", n)
        self.check_count("audit", n)
        out = {}
        for svc in (t, a):
            start, end, _ = drain_window(svc, n)
            out[svc.name] = {"seconds": end - start, "records_per_s": n / (end - start)}
            self.stop(svc)
        self.result["together"] = out

    def live(self):
        """The end-to-end maximum: half of --records sent through ingest as fast
        as IngestStream goes while both services run, timed from the first
        send to the later of the two services' last batch."""
        n = self.args.records // 2
        t, a = self.both_services()
        stub, ch = self.stub()
        start = time.time()
        reqs = (self.pb.IngestRequest(record=self.record(i, "live")) for i in range(n))
        acked = sum(1 for r in stub.IngestStream(reqs, timeout=600)
                    if r.WhichOneof("outcome") == "ack")
        sent = time.time() - start
        ch.close()
        if acked != n:
            raise RuntimeError(f"live: {acked} of {n} acknowledged")
        ends = []
        for svc in (t, a):
            wait_settled(svc, n, timeout=300)
            ends.append(drain_window(svc, n)[1])
            self.stop(svc)
        self.result["live"] = {"records": n, "ingest_records_per_s": n / sent,
                               "end_to_end_records_per_s": n / (max(ends) - start)}

    def lag(self, reader):
        """Offers records at half the end-to-end maximum (live) for
        --lag-seconds and measures each record's lag from its IngestStream
        acknowledgement; first without a reader (result "lag"), then again
        with one (result "lag_with_reader"), because the reader's queries
        load the store whose lag is being measured:

        write_acknowledged: to the transform's "batch settled" log line,
          written once MongoDB acknowledged the insert (same host clock). On a
          single-node store an acknowledged insert is visible to every later
          read, so this is the lag to visibility, measured without a reader.
        visible_to_reader: to the moment a pymongo reader finds the
          document, for one record every SAMPLE_EVERY seconds. FerretDB on
          SQLite answers every query by scanning the collection (a lookup by
          _id costs ~7 us per stored document, a count ~70 us), so a reader
          following every record would measure its own queries; `records` is
          emptied before this phase to keep the scans short, and the mean
          lookup time is reported as the reader's resolution."""
        rate = 0.5 * self.result["live"]["end_to_end_records_per_s"]
        total = int(rate * self.args.lag_seconds)
        key, prefix = ("lag_with_reader", "lagr") if reader else ("lag", "lag")
        ids = [f"{prefix}-{i:07d}" for i in range(total)]
        self.db.records.drop()
        t, a = self.both_services()
        acked, acked_wall, seen, probes = [], {}, {}, []
        samples = list(range(0, total, max(1, int(rate * SAMPLE_EVERY))))
        sent = threading.Event()

        def send():
            stub, ch = self.stub()
            t0 = time.monotonic()

            def reqs():
                for i in range(total):
                    delay = t0 + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    yield self.pb.IngestRequest(record=self.record(i, prefix))
            for r in stub.IngestStream(reqs(), timeout=600):
                acked_wall[r.id] = time.time()
                acked.append(time.monotonic())
            ch.close()
            self.result[key] = {"send_seconds": time.monotonic() - t0}
            sent.set()

        def visible(i):
            t0 = time.monotonic()
            found = self.db.records.find_one({"_id": ids[i]}, {"_id": 1}) is not None
            probes.append((time.monotonic() - t0) * 1000)
            return found, t0

        def watch():
            """One sampled record at a time: once acknowledged, look it up
            by _id until found; it was visible when the query that found it
            started (SQLite reads a snapshot taken then)."""
            for i in samples:
                while len(acked) <= i:
                    time.sleep(0.001)
                while True:
                    found, at = visible(i)
                    if found:
                        seen[i] = at
                        break
                    time.sleep(0.002)

        threads = [threading.Thread(target=send)]
        if reader:
            threads.append(threading.Thread(target=watch))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for svc in (t, a):
            wait_settled(svc, total, timeout=300)
            self.stop(svc)
        if self.db.records.count_documents({}) != total:
            raise RuntimeError("lag: not every record reached `records`")
        stored = stored_lags(t, ids, acked_wall)
        self.result[key].update({
            "offered_records_per_s": rate, "records": total,
            "achieved_records_per_s": total / self.result[key]["send_seconds"],
            "write_acknowledged": percentiles(stored),
        })
        if reader:
            seen_ms = sorted((seen[i] - acked[i]) * 1000 for i in samples)
            self.result[key]["visible_to_reader"] = dict(
                percentiles(seen_ms), samples=len(samples), probes=len(probes),
                probe_ms=statistics.mean(probes))

    # -- report

    def environment(self):
        def version(cmd):
            try:
                return subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=10).stdout.strip().splitlines()[0]
            except Exception:
                return "unknown"
        self.result["environment"] = {
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "cpus": os.cpu_count(), "machine": platform.machine(),
            "kernel": platform.release(),
            "nats_server": version([str(harness.TOOLS / "nats-server"), "--version"]),
            "ferretdb": version([str(harness.TOOLS / "ferretdb"), "--version"]),
            "build": str(harness.BUILD),
            "nats_sync_interval": "always",
            "store": "FerretDB v1.24 SQLite, same host",
        }

    def report(self):
        r = self.result
        for name, coll in (("transform", "records"), ("audit", "audit")):
            r["alone"][name]["ratio_to_raw"] = (r["alone"][name]["records_per_s"] /
                                               r["raw_insert_many"][coll]["records_per_s"])
        print(f"\nSluice drain benchmark: {r['records']} records, batch {r['batch_size']}, "
              f"{r['environment']['cpus']} CPUs, {r['environment']['store']}")
        print(f"  preload through ingest       {r['preload']['records_per_s']:9.0f} rec/s")
        print("  drain into the store         records/s   vs raw insert_many")
        for name, coll in (("transform", "records"), ("audit", "audit")):
            a, raw = r["alone"][name], r["raw_insert_many"][coll]
            print(f"    {name:<9} alone           {a['records_per_s']:9.0f}   "
                  f"{raw['records_per_s']:9.0f} raw  ratio {a['ratio_to_raw']:.2f}")
        for name in ("transform", "audit"):
            print(f"    {name:<9} together        {r['together'][name]['records_per_s']:9.0f}")
        raw_audit = r["raw_insert_many"]["audit"]["records_per_s"]
        for k, rep in r.get("replicas", {}).items():
            shares = "/".join(str(x) for x in rep["records_per_replica"])
            print(f"    audit, {k} replica(s)      {rep['records_per_s']:9.0f}   "
                  f"{raw_audit:9.0f} raw  ratio {rep['records_per_s'] / raw_audit:.2f}"
                  f"   (records per replica {shares})")
        lv = r["live"]
        print(f"  end to end, both services live, {lv['records']} records as fast as "
              f"IngestStream goes:\n    {lv['end_to_end_records_per_s']:9.0f} rec/s stored by "
              f"both (ingest took them at {lv['ingest_records_per_s']:.0f} rec/s)")
        for key, title in (("lag", "no reader"), ("lag_with_reader", "a pymongo reader polling")):
            lg = r[key]
            print(f"  lag, ingest ack -> document in records, {title}, at "
                  f"{lg['offered_records_per_s']:.0f} rec/s offered "
                  f"({lg['achieved_records_per_s']:.0f} achieved, {lg['records']} records):")
            for field, label in (("write_acknowledged", "write acknowledged"),
                                 ("visible_to_reader", "seen by the reader")):
                w = lg.get(field)
                if w is not None:
                    print(f"    {label}   p50 {w['p50_ms']:7.1f} ms   p90 {w['p90_ms']:7.1f} ms"
                          f"   p99 {w['p99_ms']:7.1f} ms   max {w['max_ms']:7.1f} ms")
            vr = lg.get("visible_to_reader")
            if vr is not None:
                print(f"    (reader: {vr['samples']} sampled records, {vr['probes']} lookups by "
                      f"_id of {vr['probe_ms']:.1f} ms each on average: its resolution)")
        out = pathlib.Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2) + "\n")
        print(f"  written to {out}")


def main():
    args = parse_args()
    bench = Bench(args)
    try:
        bench.environment()
        bench.start_servers()
        bench.preload()
        bench.alone()
        bench.raw()
        bench.replicas()
        bench.together()
        bench.live()
        bench.lag(reader=False)
        bench.lag(reader=True)
        bench.report()
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
