# The two commands a newcomer needs, and a few more.
#   make up     run the whole pipeline locally (nats-server, FerretDB, the three services);
#               SLUICE_SECURE=1 make up: the same with TLS, JWTs, API keys and a policy
#               (credentials made in .run/secure/), SLUICE_SECURE=mtls: and client certificates
#   make test   install what is missing, build, and run every test (also under ASan/UBSan)
.PHONY: up test test-fast test-faults build bench demo k8s fuzz clean

up:
	bash scripts/run-local.sh

test:
	bash scripts/test.sh

# Unit and end-to-end tests on the normal build only.
test-fast:
	SLUICE_TEST_SANITIZE=0 bash scripts/test.sh

# The fault suite in full (docs/faults.md); make test runs its short form.
test-faults:
	bash scripts/test-faults.sh

build:
	bash scripts/setup.sh

bench:
	bash bench/run.sh

demo:
	bash scripts/demo.sh

k8s:
	bash deploy/k8s/check.sh

# libFuzzer harnesses (test/fuzz), FUZZ_SECONDS each (default 60); see docs/fuzzing.md.
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf build build-asan build-fuzz .run bench/results
