"""NATS identity and permissions, end to end: the shipped least-privilege
configuration (deploy/local/nats-auth.conf, keys made by
scripts/nats-keys.sh) carries the whole pipeline, and natscli with the same
keys proves what each user may not do; a .creds file (operator mode, made
with natscli) and a user and password in NATS_URL work too; a bad setting
stops a service at start with one line, and no secret reaches a log."""

import base64
import json
import os
import subprocess

import pytest

import harness
from conftest_access import (ROOT, SERVICES, Pipeline, carries_records, cli, start_error,
                             stops_cleanly, stream_messages)
from conftest_downstream import ferretdb, mongo, send  # noqa: F401


def nats_keys(dir):
    """scripts/nats-keys.sh into dir: {VARIABLE: public key}."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "nats-keys.sh"), "--env", str(dir)],
                       capture_output=True, text=True, check=True,
                       env=dict(os.environ, NATS_CLI=str(harness.TOOLS / "nats")))
    return dict(line.split("=", 1) for line in r.stdout.split())


@pytest.fixture
def keys(tmp_path):
    pubs = nats_keys(tmp_path / "keys")
    return {u: tmp_path / "keys" / f"{u}.nk" for u in SERVICES + ("admin",)}, pubs


@pytest.fixture
def auth_server(keys):
    """nats-server running deploy/local/nats-auth.conf with fresh keys."""
    srv = harness.NatsServer(conf=ROOT / "deploy" / "local" / "nats-auth.conf",
                             env=keys[1]).start()
    yield srv
    srv.stop()


# DLQ rule: one record type whose jq program fails, so that transform
# creates SLUICE_DLQ and publishes a dead letter with its own permissions.
RULES = {"bad.*": "error(\"refused by the test rule\")", ">": "."}


def test_least_privilege_users_carry_the_pipeline(pb, tmp_path, keys, auth_server, ferretdb,
                                                  mongo):
    seeds, _ = keys
    p = Pipeline(auth_server.url, ferretdb.uri(), rules=RULES, tmp=tmp_path,
                 args={name: [f"--nats-nkey={seeds[name]}"] for name in SERVICES}).start()
    try:
        carries_records(pb, p, mongo, n=40)
        bad = pb.ingest.Record(id="bad-1", type="bad.thing", payload=b'{"a": 1}')
        send(pb, p.ingest, [bad])
        harness.wait_until(lambda: _dlq_count(auth_server, seeds["admin"]) == 1, timeout=30,
                           what="the dead letter of transform")
        # Ingest listed the stream's consumers for its lag metrics (every 5 s).
        harness.wait_until(lambda: _lag_series(p.ingest) == {"audit", "transform"}, timeout=20,
                           what="ingest's lag metrics for both consumers")
        assert stream_messages(auth_server, seeds["admin"]) == 41
    finally:
        stops_cleanly(p)
    # The permissions shipped are all the services needed: nothing refused.
    assert "NATS refused" not in p.logs(), p.logs()[-3000:]
    assert p.ingest.events("NATS: ")[0]["msg"].endswith("no TLS")
    assert "NKey U" in p.ingest.events("NATS: ")[0]["msg"]


def _lag_series(ingest):
    """The consumers ingest reports sluice_ingest_consumer_pending_messages for."""
    return {ln.split('consumer="')[1].split('"')[0]
            for ln in harness.scrape(ingest).splitlines()
            if ln.startswith("sluice_ingest_consumer_pending_messages{")}


def _dlq_count(server, admin):
    r = cli(server, "stream", "info", "SLUICE_DLQ", "--json", key=admin)
    return json.loads(r.stdout)["state"]["messages"] if r.returncode == 0 else 0


def _refused(r, subject):
    out = r.stdout + r.stderr
    return r.returncode != 0 and f'Permissions Violation for Publish to "{subject}"' in out


def test_each_user_is_refused_what_it_may_not_do(keys, auth_server):
    seeds, _ = keys
    r = cli(auth_server, "stream", "add", "SLUICE", "--subjects=sluice.rec.>", "--defaults",
            key=seeds["ingest"])
    assert r.returncode == 0, r.stderr  # ingest creates its stream
    assert stream_messages(auth_server, seeds["admin"]) == 0

    # A consumer's credentials cannot publish a record.
    for name in ("transform", "audit"):
        r = cli(auth_server, "publish", "sluice.rec.x", "{}", key=seeds[name])
        assert _refused(r, "sluice.rec.x"), (name, r.stdout, r.stderr)
    # Ingest's credentials cannot delete (or purge) the stream.
    r = cli(auth_server, "stream", "rm", "SLUICE", "-f", key=seeds["ingest"])
    assert _refused(r, "$JS.API.STREAM.DELETE.SLUICE"), (r.stdout, r.stderr)
    r = cli(auth_server, "stream", "purge", "SLUICE", "-f", key=seeds["ingest"])
    assert _refused(r, "$JS.API.STREAM.PURGE.SLUICE"), (r.stdout, r.stderr)
    # Ingest may not publish anything but records, e.g. a dead letter.
    r = cli(auth_server, "publish", "sluice.dlq.transform.x", "{}", key=seeds["ingest"])
    assert _refused(r, "sluice.dlq.transform.x"), (r.stdout, r.stderr)
    # A consumer may not read, nor take messages from, the other's durable,
    # nor dead-letter in its name.
    r = cli(auth_server, "consumer", "info", "SLUICE", "audit", key=seeds["transform"])
    assert _refused(r, "$JS.API.CONSUMER.INFO.SLUICE.audit"), (r.stdout, r.stderr)
    r = cli(auth_server, "consumer", "next", "SLUICE", "transform", key=seeds["audit"])
    assert _refused(r, "$JS.API.CONSUMER.MSG.NEXT.SLUICE.transform"), (r.stdout, r.stderr)
    r = cli(auth_server, "publish", "sluice.dlq.transform.x", "{}", key=seeds["audit"])
    assert _refused(r, "sluice.dlq.transform.x"), (r.stdout, r.stderr)
    # Nobody got anything into the stream, and it is still there.
    assert stream_messages(auth_server, seeds["admin"]) == 0


def test_unknown_key_and_no_key_are_refused(keys, auth_server, tmp_path):
    stranger = tmp_path / "stranger.nk"
    harness.nkey_pair(stranger)
    for extra in ([f"--nats-nkey={stranger}"], []):
        svc = harness.Ingest(auth_server.url, *extra).start(ready=False)
        try:
            harness.wait_until(lambda: svc.events("NATS at "), what="the connect error")
            ev = svc.events("NATS at ")[0]
            assert ev["level"] == "error" and "refused the credentials" in ev["msg"], ev
            assert harness.http_get(svc.metrics_port, "/readyz")[0] == 503
        finally:
            assert svc.stop() == 0


# ---- a .creds file (operator mode) ---------------------------------------------

def _jwt_subject(jwt):
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]


@pytest.fixture
def operator_server(tmp_path):
    """nats-server in operator mode (JWT accounts, memory resolver), with
    one user of account APP whose .creds file natscli wrote."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    steps = [("auth", "operator", "add", "sluice-test"),
             ("auth", "account", "add", "APP", "--operator=sluice-test", "--jetstream",
              "--js-disk=1G", "--js-memory=64M", "--defaults"),
             ("auth", "user", "add", "svc", "APP", "--operator=sluice-test", "--defaults",
              f"--credential={tmp_path / 'svc.creds'}")]
    for step in steps:
        r = harness.nats_cli(*step, env=dict(env, SLUICE_TEST_NATS_HOME=env["XDG_CONFIG_HOME"]))
        assert r.returncode == 0, (step, r.stdout, r.stderr)
    store = tmp_path / "data" / "nats" / "nsc" / "stores" / "sluice-test"
    system = (store / "accounts" / "SYSTEM" / "SYSTEM.jwt").read_text().strip()
    app = (store / "accounts" / "APP" / "APP.jwt").read_text().strip()
    conf = tmp_path / "operator.conf"
    conf.write_text(
        f'operator: "{store / "sluice-test.jwt"}"\n'
        f"system_account: {_jwt_subject(system)}\n"
        "resolver: MEMORY\n"
        f'resolver_preload: {{\n  {_jwt_subject(system)}: "{system}"\n'
        f'  {_jwt_subject(app)}: "{app}"\n}}\n'
        "max_payload: 8MB\njetstream { sync_interval: always }\n")
    srv = harness.NatsServer(conf=conf).start()
    srv.creds = tmp_path / "svc.creds"
    yield srv
    srv.stop()


def test_creds_file_carries_the_pipeline(pb, tmp_path, operator_server, ferretdb, mongo):
    env = {"NATS_CREDS": str(operator_server.creds)}
    p = Pipeline(operator_server.url, ferretdb.uri(), tmp=tmp_path,
                 env={name: env for name in SERVICES}).start()
    try:
        carries_records(pb, p, mongo, n=20)
    finally:
        stops_cleanly(p)
    assert "credentials file " in p.audit.events("NATS: ")[0]["msg"]
    # Without the file, the server refuses the connection.
    svc = harness.Ingest(operator_server.url).start(ready=False)
    try:
        harness.wait_until(lambda: svc.events("NATS at "), what="the connect error")
        assert "refused the credentials" in svc.events("NATS at ")[0]["msg"]
    finally:
        assert svc.stop() == 0


# ---- user and password in NATS_URL -------------------------------------------------

PASSWORD = "pa55-w0rd-in-url"


@pytest.fixture
def password_server(tmp_path):
    conf = tmp_path / "password.conf"
    conf.write_text("max_payload: 8MB\njetstream { sync_interval: always }\n"
                    f'authorization {{ users: [ {{user: sluice, password: "{PASSWORD}"}} ] }}\n')
    srv = harness.NatsServer(conf=conf).start()
    yield srv
    srv.stop()


def test_password_in_url_works_and_never_shows(pb, tmp_path, password_server, ferretdb, mongo):
    url = f"nats://sluice:{PASSWORD}@127.0.0.1:{password_server.port}"
    url_file = tmp_path / "nats-url"
    url_file.write_text(url + "\n")  # a Secret file ends with a newline
    p = Pipeline(None, ferretdb.uri(), tmp=tmp_path,
                 args={"ingest": [f"--nats-url={url}"], "audit": [f"--nats-url-file={url_file}"]},
                 env={"transform": {"NATS_URL_FILE": str(url_file)}}).start()
    try:
        carries_records(pb, p, mongo, n=20)
    finally:
        stops_cleanly(p)
    logs = p.logs()
    assert PASSWORD not in logs
    assert "nats://sluice:***@127.0.0.1" in logs
    assert "user sluice (password in the URL)" in p.transform.events("NATS: ")[0]["msg"]

    wrong = harness.Ingest(f"nats://sluice:wrong-{PASSWORD}@127.0.0.1:{password_server.port}")
    wrong.start(ready=False)
    try:
        harness.wait_until(lambda: wrong.events("NATS at "), what="the connect error")
        assert "refused the credentials" in wrong.events("NATS at ")[0]["msg"]
    finally:
        assert wrong.stop() == 0
    assert PASSWORD not in wrong.log()


# ---- settings checked at start -----------------------------------------------------

@pytest.mark.parametrize("name", SERVICES)
def test_bad_nats_settings_stop_at_start(name, tmp_path):
    seed, cert = tmp_path / "user.nk", tmp_path / "cert.pem"
    harness.nkey_pair(seed)
    cert.write_text("not a certificate\n")
    url_file, empty = tmp_path / "url", tmp_path / "empty"
    url_file.write_text("nats://u:hidden-pw@127.0.0.1:4222\n")
    empty.write_text("\n")
    cases = [
        (["--nats-creds=/nonexistent/svc.creds"],
         'cannot read --nats-creds (NATS_CREDS) /nonexistent/svc.creds: No such file'),
        ([f"--nats-creds={seed}"], "no user JWT"),
        (["--nats-nkey=/nonexistent/svc.nk"], "cannot read --nats-nkey (NATS_NKEY)"),
        ([f"--nats-nkey={cert}"], "no valid user NKey seed"),
        ([f"--nats-nkey={seed}", f"--nats-creds={seed}"], "exclude each other"),
        ([f"--nats-cert={cert}"], "--nats-cert (NATS_CERT) and --nats-key (NATS_KEY) go together"),
        ([f"--nats-ca={cert}"], "--nats-ca (NATS_CA)"),
        ([f"--nats-cert={cert}", f"--nats-key={seed}"], "not a PEM certificate"),
        (["--nats-ca=/nonexistent/ca.pem"], "cannot read --nats-ca (NATS_CA)"),
        ([f"--nats-url-file={empty}"], "the file is empty"),
        ([f"--nats-url-file={url_file}", "--nats-url=nats://h:4222"], "exclude each other"),
    ]
    for args, want in cases:
        line = start_error(name, *args)
        assert want in line, (args, line)
        assert "hidden-pw" not in line
    # The environment, with natscli's names, is read the same way.
    line = start_error(name, env={"NATS_CREDS": "/nonexistent/env.creds"})
    assert "NATS_CREDS) /nonexistent/env.creds:" in line
    line = start_error(name, env={"NATS_URL_FILE": str(url_file), "NATS_URL": "nats://h:1"})
    assert "exclude each other" in line


@pytest.mark.parametrize("name", SERVICES)
def test_help_lists_the_access_settings(name):
    out = subprocess.run([harness.service_binary(name), "--help"], capture_output=True,
                         text=True, check=True).stdout
    for flag, env in [("--nats-url-file", "NATS_URL_FILE"), ("--nats-creds", "NATS_CREDS"),
                      ("--nats-nkey", "NATS_NKEY"), ("--nats-ca", "NATS_CA"),
                      ("--nats-cert", "NATS_CERT"), ("--nats-key", "NATS_KEY")]:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(flag + " ")), "")
        assert env in line, (flag, out)
    if name != "ingest":
        assert "MONGODB_URI_FILE" in out and "--mongodb-uri-file" in out

